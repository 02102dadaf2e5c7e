"""The local stack behind ``make run``: PostgreSQL and Redis under ``.local/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url

from amrutam.dev.servers import PostgresServer, RedisServer
from amrutam.settings import Settings


@dataclass
class LocalStack:
    postgres: PostgresServer
    redis: RedisServer
    database: str
    backups: Path | None = None  # where the pgBackRest repository lives, when archiving
    stanza: str = "amrutam"

    @classmethod
    def from_settings(cls, settings: Settings, root: Path) -> LocalStack:
        db_url = make_url(settings.database_admin_url)
        redis_port = urlparse(settings.redis_url).port or 6379
        return cls(
            postgres=PostgresServer(root / "postgres", db_url.port or 5432),
            redis=RedisServer(root / "redis", redis_port, persistent=True),
            database=db_url.database or "amrutam",
        )

    def up(self) -> None:
        if self.backups is not None:
            self._archive_wal(self.backups)
        self.postgres.start()
        self.postgres.create_database(self.database)
        self.redis.start()

    def _archive_wal(self, root: Path) -> None:
        from amrutam.backups.config import archiving_settings, prepare_local

        config = prepare_local(root, self.stanza, self.postgres.datadir, self.postgres.port)
        self.postgres.include("archiving.conf", archiving_settings(config, self.stanza))

    def first_backup(self) -> str:
        """Create the stanza and, if the repository is empty, take a full backup."""
        from amrutam.backups.pgbackrest import PgBackRest

        assert self.backups is not None
        repo = PgBackRest(self.backups / "pgbackrest.conf", self.stanza)
        repo.stanza_create()
        if not repo.info().get("backup"):
            repo.backup("full")
        return str(self.backups / "pgbackrest.conf")

    def down(self) -> None:
        self.redis.stop()
        self.postgres.stop()
