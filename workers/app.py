"""The Celery application: ``celery -A workers.app worker`` / ``beat``."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from amrutam.logs import configure_logging
from amrutam.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level, settings.log_file)

app = Celery("amrutam", broker=settings.redis_url, backend=None, include=["workers.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="UTC",
    enable_utc=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_time_limit=300,
    task_soft_time_limit=240,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="default",
    task_routes={
        "workers.tasks.purge_expired_refresh_tokens": {"queue": "maintenance"},
        "workers.tasks.maintain_audit_partitions": {"queue": "maintenance"},
        "workers.tasks.seal_audit_trail": {"queue": "maintenance"},
    },
    beat_schedule={
        "purge-expired-refresh-tokens": {
            "task": "workers.tasks.purge_expired_refresh_tokens",
            "schedule": crontab(hour=3, minute=15),
        },
        "maintain-audit-partitions": {
            "task": "workers.tasks.maintain_audit_partitions",
            "schedule": crontab(hour=2, minute=30),
        },
        "seal-audit-trail": {
            "task": "workers.tasks.seal_audit_trail",
            "schedule": crontab(minute="*/5"),
        },
    },
)
