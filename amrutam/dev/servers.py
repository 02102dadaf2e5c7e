"""Throwaway or local PostgreSQL and Redis servers, for the local stack and the tests.

PostgreSQL refuses to run as root, so when we are root the server runs as the
unprivileged ``postgres`` OS user that Debian's package creates.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from amrutam.infra.system import as_postgres_user, chown_to_postgres, port_in_use

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/local/pgsql/bin")


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_bindir() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise ServiceError("PostgreSQL 15 server binaries not found: apt-get install postgresql-15")


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    user: str = "postgres"

    @property
    def bindir(self) -> Path:
        return pg_bindir()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            as_postgres_user([str(self.bindir / args[0]), *args[1:]]),
            check=check,
            capture_output=True,
            text=True,
        )

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.datadir.chmod(0o700)
        chown_to_postgres(self.datadir)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "-A",
            "trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )

    def include(self, name: str, text: str) -> None:
        """Settings in a file of their own, included from postgresql.conf (applied at
        the next start)."""
        self.init()
        (self.datadir / name).write_text(text)
        chown_to_postgres(self.datadir / name)
        conf = self.datadir / "postgresql.conf"
        line = f"include_if_exists = '{name}'\n"
        if line not in conf.read_text():
            with conf.open("a") as handle:
                handle.write(line)

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def start(self) -> None:
        self.init()
        if self.running():
            return
        if port_in_use(self.port):
            raise ServiceError(
                f"port {self.port} is already in use: stop what holds it or choose another port"
            )
        options = [f"-p {self.port}", f"-k {self.datadir}", "-c listen_addresses=127.0.0.1"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.datadir / "server.log"),
            "-o",
            " ".join(options),
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = (self.datadir / "server.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"PostgreSQL did not start: {result.stderr}\n{log}")

    def stop(self, mode: str = "fast") -> None:
        if self.initialised() and self.running():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop", check=False)

    def start_standby(self, datadir: Path, port: int, synchronous: bool = True) -> PostgresServer:
        """A streaming standby of this (running) server, started in ``datadir``. When
        ``synchronous``, this server waits for the standby's flush at every commit from
        now on (a commit it confirmed survives its loss)."""
        datadir.parent.mkdir(parents=True, exist_ok=True)
        chown_to_postgres(datadir.parent)
        conninfo = f"host=127.0.0.1 port={self.port} user={self.user} application_name=standby"
        self._run(
            "pg_basebackup",
            "-D",
            str(datadir),
            "-X",
            "stream",
            "-R",
            "--checkpoint=fast",
            "--no-sync",
            "-d",
            conninfo,
        )
        standby = PostgresServer(datadir, port, dict(self.settings), self.user)
        standby.start()
        if synchronous:
            self.psql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            self.psql("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while self.psql("SELECT sync_state FROM pg_stat_replication") != "sync":
                if time.monotonic() > deadline:
                    raise ServiceError("the standby did not become synchronous")
                time.sleep(0.1)
        return standby

    def promote(self) -> None:
        """Make this standby a primary (failover), once it accepts writes."""
        self._run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "promote")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ServiceError(f"unsafe database name {name!r}")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.psql(f'CREATE DATABASE "{name}"')

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"


@dataclass
class RedisServer:
    workdir: Path
    port: int
    persistent: bool = False

    @property
    def pidfile(self) -> Path:
        return self.workdir / "redis.pid"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def running(self) -> bool:
        return self._ping()

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise ServiceError("redis-server not found: apt-get install redis-server")
        if self.running():
            return
        if port_in_use(self.port):
            raise ServiceError(
                f"port {self.port} is already in use: stop what holds it or choose another port"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "" if not self.persistent else "300 10",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.workdir / "redis.log"),
                "--dir",
                str(self.workdir),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not self._ping():
            if time.monotonic() > deadline:
                raise ServiceError("Redis did not start; see " + str(self.workdir / "redis.log"))
            time.sleep(0.05)

    def stop(self) -> None:
        if not self.running():
            return
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [cli, "-p", str(self.port), "shutdown", "save" if self.persistent else "nosave"],
            check=False,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while self._ping() and time.monotonic() < deadline:
            time.sleep(0.05)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"
