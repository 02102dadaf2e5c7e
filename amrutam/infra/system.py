"""The few operating-system helpers the runtime needs (pgBackRest runs, the API's port check).

PostgreSQL and pgBackRest refuse to run as root, so when we are root their commands run
as the unprivileged ``postgres`` OS user that Debian's package creates.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
