"""Tamper evidence: hourly seals that chain the audit rows under a secret key.

A seal covers one closed hour: the number of rows and an HMAC over the previous
seal's digest and every row hash of the hour, in order. The key lives in the
application's settings, not in the database, so a database superuser who alters,
deletes or inserts a row (or rewrites its hash, or a seal) cannot make the seals
agree again. ``verify`` recomputes row hashes, seal digests and the seal chain.
Rows of the current, unsealed hour are covered by their row hashes only; sealing runs
every few minutes (beat) so that window stays short.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from amrutam.audit.log import COLUMNS, Entry
from amrutam.timeutil import utcnow

PERIOD = timedelta(hours=1)
GRACE = timedelta(minutes=2)  # longer than any transaction may run before committing


def _floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _digest(key: bytes, previous: str | None, start: datetime, hashes: list[str]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(f"{previous or ''}|{start.isoformat()}|{len(hashes)}|".encode())
    for value in hashes:
        mac.update(value.encode())
    return mac.hexdigest()


async def _hashes(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[str]:
    rows = await conn.fetch(
        "SELECT row_hash FROM audit_logs WHERE occurred_at >= $1 AND occurred_at < $2 "
        "ORDER BY occurred_at, id",
        start,
        end,
    )
    return [r["row_hash"] for r in rows]


async def seal(conn: asyncpg.Connection, key: bytes, now: datetime | None = None) -> int:
    """Seal every closed hour not sealed yet; returns how many seals were written."""
    limit = _floor((now or utcnow()) - GRACE)
    last = await conn.fetchrow(
        "SELECT period_end, digest FROM audit_seals ORDER BY period_start DESC LIMIT 1"
    )
    if last is not None:
        start, previous = last["period_end"], last["digest"]
    else:
        first = await conn.fetchval("SELECT min(occurred_at) FROM audit_logs")
        if first is None:
            return 0
        start, previous = _floor(first), None
    written = 0
    while start + PERIOD <= limit:
        end = start + PERIOD
        hashes = await _hashes(conn, start, end)
        digest = _digest(key, previous, start, hashes)
        await conn.execute(
            "INSERT INTO audit_seals (period_start, period_end, row_count, digest, "
            "previous_digest) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            start,
            end,
            len(hashes),
            digest,
            previous,
        )
        start, previous, written = end, digest, written + 1
    return written


@dataclass
class Verdict:
    ok: bool
    checked: int
    sealed_periods: int
    first_bad: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "checked": self.checked,
            "sealed_periods": self.sealed_periods,
        }
        if self.first_bad is not None:
            out["first_bad"] = self.first_bad
        return out


async def verify(
    conn: asyncpg.Connection, key: bytes, start: datetime | None = None, end: datetime | None = None
) -> Verdict:
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    end = end or utcnow() + timedelta(days=1)
    checked = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(
            f"SELECT {', '.join(COLUMNS)} FROM audit_logs "
            "WHERE occurred_at >= $1 AND occurred_at < $2 ORDER BY occurred_at, id",
            start,
            end,
            prefetch=5000,
        )
        async for row in cursor:
            checked += 1
            if Entry.of(row).digest() != row["row_hash"]:
                return Verdict(
                    False,
                    checked,
                    0,
                    {
                        "reason": "row altered",
                        "id": str(row["id"]),
                        "occurred_at": row["occurred_at"].isoformat(),
                    },
                )
        seals = await conn.fetch(
            "SELECT period_start, period_end, row_count, digest, previous_digest FROM audit_seals "
            "WHERE period_end > $1 AND period_start < $2 ORDER BY period_start",
            start,
            end,
        )
        previous: str | None = None
        if seals:
            previous = await conn.fetchval(
                "SELECT digest FROM audit_seals WHERE period_end = $1", seals[0]["period_start"]
            )
        for index, item in enumerate(seals):
            bad = {"period_start": item["period_start"].isoformat()}
            if index and item["period_start"] != seals[index - 1]["period_end"]:
                return Verdict(False, checked, index, {**bad, "reason": "a seal is missing"})
            if (index or previous is not None) and item["previous_digest"] != previous:
                return Verdict(False, checked, index, {**bad, "reason": "seal chain broken"})
            hashes = await _hashes(conn, item["period_start"], item["period_end"])
            if (
                _digest(key, item["previous_digest"], item["period_start"], hashes)
                != item["digest"]
            ):
                reason = (
                    "rows deleted or inserted"
                    if len(hashes) != item["row_count"]
                    else "rows altered"
                )
                return Verdict(False, checked, index, {**bad, "reason": reason})
            previous = item["digest"]
    return Verdict(True, checked, len(seals))
