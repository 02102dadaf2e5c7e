"""Running pgbackrest. As root, every command runs as the ``postgres`` OS user, which
owns the data directory, the repository, the spool and the logs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amrutam.infra.system import as_postgres_user, chown_to_postgres

BACKUP_TYPES = {"full": "full", "diff": "diff", "incr": "incr"}


class BackupError(Exception):
    """A pgbackrest command failed; the message is its own."""


@dataclass(frozen=True)
class PgBackRest:
    config: Path
    stanza: str
    env: dict[str, str] | None = None  # e.g. PGBACKREST_REPO1_S3_KEY for an S3 repository

    def run(self, *args: str, timeout: float | None = None) -> str:
        cmd = as_postgres_user(
            ["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}", *args]
        )
        env = {**os.environ, **(self.env or {})}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if result.returncode != 0:
            raise BackupError((result.stderr or result.stdout).strip()[-2000:])
        return result.stdout

    def stanza_create(self) -> None:
        self.run("stanza-create")

    def check(self) -> None:
        """Checks the configuration, and forces the current WAL segment into the archive."""
        self.run("check")

    def backup(self, kind: str) -> None:
        self.run(f"--type={BACKUP_TYPES[kind]}", "backup")

    def expire(self, *options: str) -> None:
        self.run(*options, "expire")

    def info(self, *options: str, timeout: float | None = None) -> dict[str, Any]:
        stanzas = json.loads(self.run("--output=json", *options, "info", timeout=timeout))
        for stanza in stanzas:
            if stanza["name"] == self.stanza:
                return dict(stanza)
        raise BackupError(f"stanza {self.stanza!r} not in the repository")

    def restore(self, into: Path, target: datetime | None, *options: str) -> None:
        """Restore into a new, empty data directory; ``target`` None means the latest.

        The restore gets a spool directory of its own: pgBackRest clears the stanza's spool
        when it restores, which races with (and fails beside) the live database's
        asynchronous archive-push on the same host.
        """
        spool = Path(tempfile.mkdtemp(prefix="pgbackrest-restore-spool-"))
        chown_to_postgres(spool)
        chosen = [f"--pg1-path={into}", f"--spool-path={spool}", *options]
        if target is not None:
            when = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
            chosen += ["--type=time", f"--target={when}", "--target-action=promote"]
        self.run(*chosen, "restore")
