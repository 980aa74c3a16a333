"""The whole platform as local processes: `python -m stack`, or `async with LocalStack(env)` in tests.

Order (see launcher): embedded PostgreSQL, Redis and NATS JetStream (or the servers DATABASE_URL,
REDIS_URL and NATS_URL name), then the schema migrations, then the gRPC services, then Envoy. Each step
starts only when the one before it serves. Logs go to DATA_DIR/logs/<name>.log; data stays in DATA_DIR.

Why a small asyncio launcher and not honcho, supervisor or circus. The stack is a chain of readiness
gates with one-shot steps in it: PostgreSQL accepts a login, the database exists, the migrations exit
0, every service's gRPC health Check says SERVING, Envoy has a healthy host in every cluster. And the
tests need the same start as `async with LocalStack(env)` on free ports in a temp folder. honcho starts
every Procfile line at once and knows neither readiness nor one-shot steps; supervisor and circus order
by priority, not readiness (a program counts as started after `startsecs`), run as daemons with their
own config file and control socket, and would be one more dependency (circus brings pyzmq). Each would
need the same readiness code wrapped around it, so it would add configuration without removing code.
What is left of process management, a spawn with a log file and SIGTERM-then-SIGKILL by pid, is
processes.py.
"""

from stack.launcher import STAGES, LocalStack, process_names
from stack.ports import free_port_env
from stack.processes import ManagedProcess, ProcessSpec, StartupError

__all__ = [
    "STAGES",
    "LocalStack",
    "ManagedProcess",
    "ProcessSpec",
    "StartupError",
    "free_port_env",
    "process_names",
]
