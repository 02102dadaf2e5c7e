"""Celery tasks: thin wrappers that run core use cases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from celery import Task

from amrutam.audit.partitions import maintain
from amrutam.audit.seals import seal
from amrutam.auth.service import purge_expired_tokens
from amrutam.auth.sessions import Revocations
from amrutam.infra import outbox
from amrutam.infra.cache import Cache
from amrutam.infra.db import OUTAGE, connect
from amrutam.infra.logs import get_logger
from amrutam.notifications import service as notifications
from amrutam.notifications.providers import DeliveryFailed, provider_for
from amrutam.scheduling.holds import end_expired
from amrutam.scheduling.waitlist import touch_released
from amrutam.settings import get_settings
from amrutam.timeutil import utcnow
from workers.app import app
from workers.runtime import redis, run

log = get_logger(__name__)
settings = get_settings()


class Buried(Task):  # type: ignore[misc]
    """A task whose final failure lands in the dead-letter store, with its error."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        queue = (self.request.delivery_info or {}).get("routing_key") or "default"
        error = f"{type(exc).__name__}: {exc}"

        async def bury(pool: asyncpg.Pool) -> None:
            async with pool.acquire() as conn:
                await notifications.bury(conn, self.name, queue, list(args), error)

        run(bury)
        log.error("task.dead_lettered", task=self.name, task_id=task_id, error=error)


def _enqueue_deliveries(ids: list[str]) -> None:
    for notification_id in ids:
        # The task id is the notification id: a duplicate enqueue is visibly the same work.
        deliver_notification.apply_async(args=[notification_id], task_id=notification_id)


@app.task(name="workers.tasks.relay_outbox")  # type: ignore[untyped-decorator]
def relay_outbox() -> int:
    """Publish committed domain events to the event handler (at least once)."""

    def publish(event: dict[str, Any]) -> None:
        handle_event.apply_async(args=[event], task_id=event["id"])

    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            total = 0
            while sent := await outbox.relay(conn, publish):
                total += sent
            return total

    return run(job)


@app.task(  # type: ignore[untyped-decorator]
    name="workers.tasks.handle_event",
    base=Buried,
    # A database restart or failover delays the event; it is not dead-lettered for it.
    autoretry_for=OUTAGE,
    retry_backoff=1,
    retry_backoff_max=60,
    max_retries=settings.task_max_retries,
)
def handle_event(event: dict[str, Any]) -> int:
    """Turn one event into its notifications (idempotent by event id)."""

    async def job(pool: asyncpg.Pool) -> list[str]:
        async with pool.acquire() as conn, conn.transaction():
            return await notifications.notifications_for_event(conn, event)

    ids = run(job)
    _enqueue_deliveries(ids)
    return len(ids)


@app.task(  # type: ignore[untyped-decorator]
    name=notifications.DELIVERY_TASK,
    queue="notifications",
    base=Buried,
    autoretry_for=(DeliveryFailed, *OUTAGE),
    retry_backoff=2,
    retry_backoff_max=settings.task_retry_backoff_max_s,
    retry_jitter=settings.task_retry_jitter,
    max_retries=settings.task_max_retries,
)
def deliver_notification(notification_id: str) -> bool:
    """Send one notification through the configured provider, once."""
    provider = provider_for(settings)

    async def job(pool: asyncpg.Pool) -> bool:
        async with pool.acquire() as conn:
            try:
                return await notifications.deliver(conn, notification_id, provider)
            except DeliveryFailed as exc:
                await notifications.note_failure(conn, notification_id, str(exc))
                raise

    return run(job)


@app.task(name="workers.tasks.schedule_reminders")  # type: ignore[untyped-decorator]
def schedule_reminders() -> int:
    """Reminders 24 hours and 1 hour ahead; each is created once, whatever restarts."""

    async def job(pool: asyncpg.Pool) -> list[str]:
        async with pool.acquire() as conn, conn.transaction():
            return await notifications.due_reminders(conn, utcnow())

    ids = run(job)
    _enqueue_deliveries(ids)
    return len(ids)


@app.task(name="workers.tasks.mark_no_shows", queue="maintenance")  # type: ignore[untyped-decorator]
def mark_no_shows() -> int:
    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            return await notifications.mark_no_shows(conn)

    return run(job)


@app.task(  # type: ignore[untyped-decorator]
    name="workers.tasks.purge_expired_refresh_tokens", queue="maintenance"
)
def purge_expired_refresh_tokens() -> int:
    """Delete refresh tokens that expired more than a week ago."""

    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            return await purge_expired_tokens(conn, older_than=timedelta(days=7))

    return run(job)


@app.task(name="workers.tasks.end_expired_holds", expires=30)  # type: ignore[untyped-decorator]
def end_expired_holds() -> int:
    """Record the holds that expired (they stopped counting when they did): audit,
    ``slot.released`` events, and the caches of their days."""

    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            released = await end_expired(conn, timedelta(seconds=settings.hold_ttl_s))
        await touch_released(Cache(redis()), released)
        return len(released)

    return run(job)


@app.task(name="workers.tasks.resend_revocations", expires=10)  # type: ignore[untyped-decorator]
def resend_revocations() -> int:
    """Write again the Redis markers of recently ended sessions (a restarted or failed-over
    Redis, or one that was away at the moment of a logout, has them back)."""

    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            return await Revocations(redis(), settings.access_token_ttl_s).resend(conn)

    return run(job)


@app.task(  # type: ignore[untyped-decorator]
    name="workers.tasks.maintain_audit_partitions", queue="maintenance"
)
def maintain_audit_partitions() -> dict[str, Any]:
    """Keep three monthly audit partitions ahead, whatever the traffic."""

    async def job(_: asyncpg.Pool) -> dict[str, Any]:
        async with connect(settings.database_admin_url) as conn:  # partition DDL: the owner
            return (await maintain(conn, premake=3)).as_dict()

    report = run(job)
    log.info("audit.partitions_maintained", **report)
    return report


@app.task(name="workers.tasks.seal_audit_trail", queue="maintenance")  # type: ignore[untyped-decorator]
def seal_audit_trail() -> int:
    """Seal the audit trail's closed hours (tamper evidence)."""
    key = settings.audit_signing_key.get_secret_value().encode()

    async def job(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn, conn.transaction():
            return await seal(conn, key)

    return run(job)
