"""The local stack behind ``make run``: PostgreSQL and Redis under ``.local/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url

from amrutam.devservices import PostgresServer, RedisServer
from amrutam.settings import Settings


@dataclass
class LocalStack:
    postgres: PostgresServer
    redis: RedisServer
    database: str

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
        self.postgres.start()
        self.postgres.create_database(self.database)
        self.redis.start()

    def down(self) -> None:
        self.redis.stop()
        self.postgres.stop()
