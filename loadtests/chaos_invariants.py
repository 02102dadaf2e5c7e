"""What must hold in the database after the chaos run, whatever the faults did."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg

# Every appointment booked during the run is confirmed to its patient exactly once.
CONFIRMATION = "booking_confirmation"


async def drained(conn: asyncpg.Connection, since: datetime) -> bool:
    """Whether the workers have caught up: no event waiting to be published, no message
    of the run still pending."""
    waiting = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    pending = await conn.fetchval(
        "SELECT count(*) FROM notifications WHERE status = 'pending' AND created_at >= $1", since
    )
    return bool(waiting == 0 and pending == 0)


async def wait_drained(dsn: str, since: datetime, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    conn = await asyncpg.connect(dsn)
    try:
        while not await drained(conn, since):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(2)
        return True
    finally:
        await conn.close()


async def check(dsn: str, since: datetime, confirmed: set[str]) -> dict[str, Any]:
    """Each invariant: ``{"ok": bool, ...what was found}``."""
    conn = await asyncpg.connect(dsn)
    try:
        twice = await conn.fetch(
            "SELECT slot_id, count(*) AS n FROM appointments "
            "WHERE status <> 'cancelled' AND slot_id IS NOT NULL "
            "GROUP BY slot_id HAVING count(*) > 1"
        )
        present = {
            str(row["id"])
            for row in await conn.fetch(
                "SELECT id FROM appointments WHERE id = ANY($1::uuid[])", list(confirmed)
            )
        }
        run = await conn.fetch("SELECT id, status FROM appointments WHERE created_at >= $1", since)
        confirmations = {
            str(row["appointment_id"]): row["n"]
            for row in await conn.fetch(
                "SELECT appointment_id, count(*) FILTER (WHERE status = 'sent') AS n "
                "FROM notifications WHERE kind = $1 AND created_at >= $2 "
                "GROUP BY appointment_id",
                CONFIRMATION,
                since,
            )
        }
        audited: dict[tuple[str, str], int] = {
            (row["entity_id"], row["action"]): row["n"]
            for row in await conn.fetch(
                "SELECT entity_id, action, count(*) AS n FROM audit_logs "
                "WHERE occurred_at >= $1 AND entity_type = 'appointment' "
                "AND action IN ('appointment.booked', 'appointment.cancelled') "
                "GROUP BY entity_id, action",
                since,
            )
        }
    finally:
        await conn.close()

    unconfirmed = [str(r["id"]) for r in run if confirmations.get(str(r["id"])) != 1]
    unaudited = [
        str(r["id"])
        for r in run
        if audited.get((str(r["id"]), "appointment.booked")) != 1
        or (r["status"] == "cancelled")
        != (audited.get((str(r["id"]), "appointment.cancelled")) == 1)
    ]
    lost = sorted(confirmed - present)
    return {
        "no_slot_booked_twice": {"ok": not twice, "slots": [str(r["slot_id"]) for r in twice]},
        "no_confirmed_booking_lost": {
            "ok": not lost,
            "confirmed": len(confirmed),
            "lost": lost[:20],
        },
        "one_confirmation_per_booking": {
            "ok": not unconfirmed,
            "bookings": len(run),
            "wrong": unconfirmed[:20],
        },
        "one_audit_row_per_state_change": {"ok": not unaudited, "wrong": unaudited[:20]},
    }
