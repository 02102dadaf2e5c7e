"""What a repository can restore: its backups and the recovery window, in plain words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TYPE_NAMES = {"full": "full", "diff": "differential", "incr": "incremental"}


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class Backup:
    label: str
    kind: str  # full | differential | incremental
    started: datetime
    finished: datetime
    size: int
    repo_size: int

    def as_status(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "startedAt": iso(self.started),
            "finishedAt": iso(self.finished),
            "sizeBytes": self.size,
            "repoSizeBytes": self.repo_size,
        }


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    def describe(self) -> str:
        span = self.end - self.start
        hours = span.seconds // 3600
        return (
            f"You can restore to any second from {iso(self.start)} to {iso(self.end)} "
            f"({span.days} days {hours} hours)."
        )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def backups(info: dict[str, Any]) -> list[Backup]:
    return [
        Backup(
            label=b["label"],
            kind=TYPE_NAMES[b["type"]],
            started=_at(b["timestamp"]["start"]),
            finished=_at(b["timestamp"]["stop"]),
            size=int(b["info"]["size"]),
            repo_size=int(b["info"]["repository"]["size"]),
        )
        for b in info.get("backup", [])
    ]


def latest_by_kind(found: list[Backup]) -> dict[str, Backup]:
    latest: dict[str, Backup] = {}
    for backup in sorted(found, key=lambda b: b.finished):
        latest[backup.kind] = backup
    return latest


def window(found: list[Backup], last_archived: datetime | None) -> Window | None:
    """From the end of the oldest backup (its first consistent point) to the newest
    moment the archive holds: the last archived WAL, or the newest backup's end."""
    if not found:
        return None
    start = min(b.finished for b in found)
    end = max([b.finished for b in found] + ([last_archived] if last_archived else []))
    return Window(start, end)


def repo_size(found: list[Backup]) -> int:
    return sum(b.repo_size for b in found)


@dataclass(frozen=True)
class Archiver:
    """PostgreSQL's own view of WAL archiving (``pg_stat_archiver``)."""

    archived: int
    failed: int
    last_archived: datetime | None
    last_failed: datetime | None
    last_failed_wal: str | None

    @property
    def healthy(self) -> bool:
        """False while the newest attempt failed, whatever the last backup says."""
        if self.last_failed is None:
            return True
        return self.last_archived is not None and self.last_archived > self.last_failed


async def archiver(conn: Any) -> Archiver:
    row = await conn.fetchrow(
        "SELECT archived_count, failed_count, last_archived_time, last_failed_time, "
        "last_failed_wal FROM pg_stat_archiver"
    )
    return Archiver(
        archived=int(row["archived_count"]),
        failed=int(row["failed_count"]),
        last_archived=row["last_archived_time"],
        last_failed=row["last_failed_time"],
        last_failed_wal=row["last_failed_wal"],
    )
