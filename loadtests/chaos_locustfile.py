"""The population of ``locustfile.py`` with every request written down, for the chaos run.

Each request is one JSON line in ``CHAOS_REQUESTS``: wall time, method, name, status, 1 when
it got its correct answer (2xx, or the 4xx the contract gives for the case) and 0 when not
(5xx, 503, a connection error), latency in ms, and for a confirmed booking its id.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from locust import events

from loadtests.locustfile import Admin, Doctor, Patient

__all__ = ["Admin", "Doctor", "Patient"]

_out = open(os.environ["CHAOS_REQUESTS"], "a", buffering=1 << 16)  # noqa: SIM115 (closed on quit)


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    exception: Any = None,
    response: Any = None,
    **_: Any,
) -> None:
    status = getattr(response, "status_code", 0) or 0
    row: list[Any] = [
        round(time.time(), 3),
        request_type,
        name,
        status,
        int(exception is None),
        round(response_time, 2),
    ]
    if exception is None and status == 201 and name == "/v1/appointments/book":
        row.append(response.json()["id"])
    _out.write(json.dumps(row) + "\n")


@events.quitting.add_listener
def _close(**_: Any) -> None:
    _out.close()
