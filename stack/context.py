"""What every step of the stack is built from: the resolved settings and the children's environment."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from copytrade.core.settings import PROJECT_ROOT, Settings

# A backing server that one of these variables points at is used as it is, never started.
EXTERNAL_URL_VARIABLES = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "nats": "NATS_URL"}


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings as a child started with `env` will read them.

    Passed as keyword arguments because pydantic-settings otherwise reads only os.environ, and the
    stack is often started with an environment of its own (tests on free ports, a temp DATA_DIR).
    """
    upper = {key.upper(): value for key, value in env.items()}
    # Text as in the environment; pydantic converts and validates each value, as it does os.environ's.
    values: dict[str, Any] = {name: upper[name.upper()] for name in Settings.model_fields if name.upper() in upper}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = [f"  {'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in exc.errors()]
        raise ValueError("invalid configuration:\n" + "\n".join(problems)) from None


def external_servers(env: Mapping[str, str]) -> dict[str, str]:
    """The backing servers named by a non-empty URL variable: name -> URL."""
    return {name: env[var] for name, var in EXTERNAL_URL_VARIABLES.items() if env.get(var)}


@dataclass(frozen=True)
class StackContext:
    settings: Settings
    # The complete environment of every child: the caller's plus the resolved URLs and DATA_DIR.
    env: Mapping[str, str]

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


def python_module(module: str, *args: str) -> list[str]:
    """argv running a module with this interpreter, so children use the same virtualenv."""
    return [sys.executable, "-m", module, *args]


# Children run from the project root so `python -m services.<name>` resolves even without an install.
WORKING_DIR = PROJECT_ROOT
