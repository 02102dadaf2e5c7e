"""What a repository can restore: its backups and the recovery window, in plain words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def short(self) -> str:
        """e.g. "6d 23h": the printer column."""
        span = self.length
        return f"{span.days}d {span.seconds // 3600}h"

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


def _segment(wal: str | None) -> tuple[int, int] | None:
    """(timeline, segment number) of a 16 MiB WAL segment's name, or of the segment a
    backup history file (``<segment>.<offset>.backup``) names; None for other files."""
    if not wal or len(wal) < 24 or (len(wal) > 24 and not wal.endswith(".backup")):
        return None
    try:
        timeline, log, seg = (int(wal[i : i + 8], 16) for i in (0, 8, 16))  # the first 24
    except ValueError:
        return None
    return timeline, log * 0x100 + seg


@dataclass(frozen=True)
class Archiver:
    """PostgreSQL's own view of WAL archiving (``pg_stat_archiver``), with the
    database's clock and the segment it is writing."""

    archived: int
    failed: int
    last_archived: datetime | None
    last_failed: datetime | None
    last_failed_wal: str | None
    last_archived_wal: str | None = None
    current_wal: str | None = None
    now: datetime | None = None

    @property
    def healthy(self) -> bool:
        """False while the newest attempt failed, whatever the last backup says."""
        if self.last_failed is None:
            return True
        return self.last_archived is not None and self.last_archived > self.last_failed

    @property
    def waiting(self) -> int:
        """Finished segments not archived yet (the one being written is not counted)."""
        current, last = _segment(self.current_wal), _segment(self.last_archived_wal)
        if current is None or last is None or current[0] != last[0]:
            return 0
        return max(0, current[1] - last[1] - 1)

    def stalled(self, after: timedelta) -> bool:
        """Segments wait while nothing was archived for ``after``: an archiver that
        stopped without reporting a failure."""
        if self.waiting == 0 or self.now is None:
            return False
        return self.last_archived is None or self.now - self.last_archived > after


async def archiver(conn: Any) -> Archiver:
    row = await conn.fetchrow(
        "SELECT archived_count, failed_count, last_archived_time, last_failed_time, "
        "last_failed_wal, last_archived_wal, now() AS now, "
        "CASE WHEN pg_is_in_recovery() THEN NULL "
        "ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal "
        "FROM pg_stat_archiver"
    )
    return Archiver(
        archived=int(row["archived_count"]),
        failed=int(row["failed_count"]),
        last_archived=row["last_archived_time"],
        last_failed=row["last_failed_time"],
        last_failed_wal=row["last_failed_wal"],
        last_archived_wal=row["last_archived_wal"],
        current_wal=row["current_wal"],
        now=row["now"],
    )
