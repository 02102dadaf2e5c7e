"""The Celery application: ``celery -A workers.app worker`` / ``beat``."""

from __future__ import annotations

import os
import tempfile

# Before prometheus-client is imported anywhere: the prefork children and the metrics
# server in the main process then share one set of values (multiprocess mode).
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="amrutam-worker-metrics-")
)

from celery import Celery
from celery.schedules import crontab
from kombu import Exchange, Queue

from amrutam.infra.logs import configure_logging
from amrutam.settings import get_settings
from workers import metrics
from workers.queues import QUEUES

settings = get_settings()
configure_logging(settings.log_level, settings.log_file)

app = Celery("amrutam", broker=settings.redis_url, backend=None, include=["workers.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="UTC",
    enable_utc=True,
    task_ignore_result=True,
    # A task is acknowledged when it finishes, and a worker that dies mid-task gives it
    # back: nothing is lost, so every task must be safe to run twice (they are).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # One message at a time per process: the rest stay countable in the broker, which
    # is what the scaling policy reads.
    worker_prefetch_multiplier=1,
    task_time_limit=300,
    task_soft_time_limit=240,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
    worker_hijack_root_logger=False,
    task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
    task_default_queue="default",  # a task's own queue is on its decorator (tasks.py)
    beat_schedule={
        "relay-outbox": {"task": "workers.tasks.relay_outbox", "schedule": 1.0},
        "resend-revocations": {"task": "workers.tasks.resend_revocations", "schedule": 5.0},
        "end-expired-holds": {"task": "workers.tasks.end_expired_holds", "schedule": 15.0},
        "schedule-reminders": {"task": "workers.tasks.schedule_reminders", "schedule": 60.0},
        "mark-no-shows": {"task": "workers.tasks.mark_no_shows", "schedule": 300.0},
        "seal-audit-trail": {
            "task": "workers.tasks.seal_audit_trail",
            "schedule": crontab(minute="*/5"),
        },
        "maintain-audit-partitions": {
            "task": "workers.tasks.maintain_audit_partitions",
            "schedule": crontab(hour=2, minute=30),
        },
        "purge-expired-refresh-tokens": {
            "task": "workers.tasks.purge_expired_refresh_tokens",
            "schedule": crontab(hour=3, minute=15),
        },
    },
)
metrics.install(QUEUES)
