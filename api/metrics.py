"""HTTP metrics: request count and latency by route template and status, in-flight."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "amrutam_http_requests_total", "HTTP requests served.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "amrutam_http_request_duration_seconds",
    "HTTP request latency.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0),
)
IN_FLIGHT = Gauge(
    "amrutam_http_requests_in_flight", "HTTP requests being served.", multiprocess_mode="livesum"
)


@lru_cache(maxsize=4096)  # methods, route templates, statuses: a few hundred at most
def series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled children for one kind of request, looked up once per process."""
    return REQUESTS.labels(method, route, status), LATENCY.labels(method, route, status)
