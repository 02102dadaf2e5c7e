"""From events to messages: who is told what, exactly once per person and reason.

Every producer inserts into ``notifications`` with a unique (source, kind, recipient):
an event handled twice, a reminder scan run twice, a worker restarted mid-way, all
find the row already there. Delivery marks the row sent; a delivery that runs again
for a sent row does nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import SYSTEM, record
from amrutam.infra import deadletters
from amrutam.notifications.providers import Message, Provider

# The Celery task that delivers one notification (its only argument: the notification id).
DELIVERY_TASK = "workers.tasks.deliver_notification"

# event type -> (notification kind, payload key of the recipient)
EVENT_NOTIFICATIONS: dict[str, list[tuple[str, str]]] = {
    "appointment.booked": [("booking_confirmation", "patient_id")],
    "appointment.cancelled": [("cancellation", "patient_id"), ("cancellation", "doctor_id")],
    "appointment.rescheduled": [("reschedule", "patient_id")],
    "prescription.issued": [("prescription_ready", "patient_id")],
    "waitlist.offered": [("waitlist_offer", "patient_id")],
}
# kind -> the window (from, to] ahead of now in which an appointment gets it: a booking
# made 30 minutes ahead gets the 1-hour reminder only.
REMINDERS = {
    "reminder_24h": (timedelta(hours=1), timedelta(hours=24)),
    "reminder_1h": (timedelta(0), timedelta(hours=1)),
}
_NAMESPACE = uuid.UUID("7d1b3c2e-1f7a-4c55-9c1e-4c9b6a0e2f10")

SUBJECTS = {
    "booking_confirmation": "Your appointment is confirmed",
    "cancellation": "An appointment was cancelled",
    "reschedule": "Your appointment has moved",
    "prescription_ready": "Your prescription is ready",
    "waitlist_offer": "A slot you waited for is held for you: book it before the hold expires",
    "reminder_24h": "Reminder: your appointment is tomorrow",
    "reminder_1h": "Reminder: your appointment starts within the hour",
}


async def notifications_for_event(conn: asyncpg.Connection, event: dict[str, Any]) -> list[str]:
    """Create the event's notification rows (once); returns the ids still to deliver."""
    payload = event["payload"]
    created = []
    for kind, recipient_key in EVENT_NOTIFICATIONS.get(event["type"], []):
        row_id = await _create(
            conn,
            uuid.UUID(event["id"]),
            kind,
            uuid.UUID(payload[recipient_key]),
            uuid.UUID(payload["appointment_id"]) if "appointment_id" in payload else None,
        )
        if row_id:
            created.append(row_id)
    return created


async def _create(
    conn: asyncpg.Connection,
    source_id: uuid.UUID,
    kind: str,
    recipient: uuid.UUID,
    appointment_id: uuid.UUID | None,
) -> str | None:
    """The id of the row to deliver: new, or an earlier one never sent."""
    row = await conn.fetchrow(
        """
        INSERT INTO notifications (id, source_id, kind, recipient_id, appointment_id)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (source_id, kind, recipient_id)
            DO UPDATE SET kind = EXCLUDED.kind  -- a no-op that returns the existing row
        RETURNING id, status
        """,
        uuid.uuid4(),
        source_id,
        kind,
        recipient,
        appointment_id,
    )
    return str(row["id"]) if row["status"] == "pending" else None


async def due_reminders(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """Reminder rows for appointments entering their 24 h and 1 h windows (once each)."""
    created = []
    for kind, (after, until) in REMINDERS.items():
        rows = await conn.fetch(
            "SELECT id, patient_id FROM appointments "
            "WHERE status = 'booked' AND starts_at > $1 AND starts_at <= $2",
            now + after,
            now + until,
        )
        for row in rows:
            source = uuid.uuid5(_NAMESPACE, f"{row['id']}:{kind}")
            row_id = await _create(conn, source, kind, row["patient_id"], row["id"])
            if row_id:
                created.append(row_id)
    return created


async def mark_no_shows(conn: asyncpg.Connection, grace: timedelta = timedelta(minutes=15)) -> int:
    """Booked appointments that ended with no consultation become no-shows."""
    async with conn.transaction():
        rows = await conn.fetch(
            """
            UPDATE appointments a SET status = 'no_show', updated_at = now()
            WHERE a.status = 'booked' AND a.ends_at < now() - $1::interval
              AND NOT EXISTS (SELECT 1 FROM consultations c WHERE c.appointment_id = a.id)
            RETURNING a.id
            """,
            grace,
        )
        for row in rows:
            await record(conn, SYSTEM, Action.APPOINTMENT_NO_SHOW, "appointment", row["id"])
    return len(rows)


async def deliver(conn: asyncpg.Connection, notification_id: str, provider: Provider) -> bool:
    """Send one notification unless it was sent already; True when sent now.

    The row stays locked while the provider works, so two deliveries of the same
    notification (a duplicate enqueue, a redelivery) never send it twice: the second
    skips a row being sent and finds a sent one done.
    """
    key = uuid.UUID(notification_id)
    # Counted outside the transaction: an attempt cut short by a crash still counts.
    await conn.execute(
        "UPDATE notifications SET attempts = attempts + 1 WHERE id = $1 AND status <> 'sent'", key
    )
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT kind, recipient_id, appointment_id FROM notifications "
            "WHERE id = $1 AND status <> 'sent' FOR UPDATE SKIP LOCKED",
            key,
        )
        if row is None:
            return False
        await _send(conn, notification_id, row, provider)
        await conn.execute(
            "UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL "
            "WHERE id = $1",
            key,
        )
    return True


async def _send(
    conn: asyncpg.Connection, notification_id: str, row: asyncpg.Record, provider: Provider
) -> None:
    user = await conn.fetchrow(
        "SELECT email, full_name FROM users WHERE id = $1", row["recipient_id"]
    )
    when = ""
    if row["appointment_id"] is not None:
        starts = await conn.fetchval(
            "SELECT starts_at FROM appointments WHERE id = $1", row["appointment_id"]
        )
        when = f" The appointment starts at {starts:%Y-%m-%d %H:%M} UTC." if starts else ""
    subject = SUBJECTS.get(row["kind"], "A message from Amrutam")
    provider.send(
        Message(
            notification_id=notification_id,
            kind=row["kind"],
            to_name=user["full_name"],
            to_email=user["email"],
            subject=subject,
            body=f"Hello {user['full_name']},\n\n{subject}.{when}\n\nAmrutam",
        )
    )


async def note_failure(
    conn: asyncpg.Connection, notification_id: str, error: str, final: bool = False
) -> None:
    """Keep the last error; ``final`` when retries are exhausted (dead-lettered)."""
    await conn.execute(
        "UPDATE notifications SET last_error = $2, "
        "status = CASE WHEN $3 AND status = 'pending' THEN 'failed' ELSE status END "
        "WHERE id = $1",
        uuid.UUID(notification_id),
        error,
        final,
    )


async def bury(
    conn: asyncpg.Connection, task_name: str, queue: str, args: list[Any], error: str
) -> None:
    """A task failed for good: into the dead-letter store; a delivery's row is marked failed."""
    async with conn.transaction():
        await deadletters.bury(conn, task_name, queue, args, error)
        if task_name == DELIVERY_TASK and args:
            await note_failure(conn, args[0], error, final=True)


async def requeue_dead(
    conn: asyncpg.Connection, ids: list[uuid.UUID] | None, publish: deadletters.Publish
) -> int:
    """Dead tasks back on their queues; a failed delivery's row becomes pending again."""
    async with conn.transaction():
        rows = await deadletters.take_for_retry(conn, ids)
        for row in rows:
            if row["task_name"] == DELIVERY_TASK and row["args"]:
                await conn.execute(
                    "UPDATE notifications SET status = 'pending' WHERE id = $1 "
                    "AND status = 'failed'",
                    uuid.UUID(row["args"][0]),
                )
    for row in rows:  # after the commit: a task never runs before its row is pending
        publish(row["task_name"], row["args"], row["queue"])
    return len(rows)
