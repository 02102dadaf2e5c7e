"""Prometheus metrics shared by every process of the platform.

Works with several processes per pod: when ``PROMETHEUS_MULTIPROC_DIR`` is set before
import, prometheus-client keeps values in files there and one scrape sums them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

REDIS_DEGRADED = Counter(
    "amrutam_redis_degraded_total",
    "Operations that went on without Redis because it could not be reached.",
    ["component"],
)
CACHE_REQUESTS = Counter(
    "amrutam_cache_requests_total", "Cache lookups by cache and result.", ["cache", "result"]
)
DB_WAITS = Counter(
    "amrutam_db_outage_waits_total",
    "Waits through a database outage: a connection got after retrying, a request repeated.",
    ["kind"],
)
LOCK_EVENTS = Counter("amrutam_slot_lock_total", "Slot lock outcomes.", ["outcome"])
WAITLIST_EVENTS = Counter(
    "amrutam_waitlist_total",
    "Waitlist events: joined, offered, accepted (booked), expired (an offer unused).",
    ["event"],
)
HOLD_EVENTS = Counter(
    "amrutam_slot_holds_total",
    "Slot holds by event: created, converted (booked), released, replaced, expired.",
    ["event"],
)


def registry() -> CollectorRegistry:
    """What a scrape reads: this process's metrics, or every process's, summed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)  # type: ignore[no-untyped-call]
        return summed
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
