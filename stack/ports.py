"""Free ports for a stack that runs beside another one (tests, a second checkout)."""

from __future__ import annotations

import socket
from pathlib import Path

from copytrade.core.settings import Settings


def free_port_env(data_dir: Path) -> dict[str, str]:
    """DATA_DIR and a free loopback port for every *_PORT setting, as environment variables.

    Every port setting is covered, so a process added later gets its own port without a change here.
    """
    sockets = []
    env = {"DATA_DIR": str(data_dir)}
    try:
        for name in Settings.model_fields:
            if name.endswith("_port"):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)  # held open until all are chosen, so no two settings share a port
                sock.bind(("127.0.0.1", 0))
                env[name.upper()] = str(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return env
