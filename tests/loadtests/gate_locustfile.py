"""The smallest population that exercises the SLO gate: reads and writes."""

from __future__ import annotations

from locust import HttpUser, constant, task

import loadtests.slo  # noqa: F401  (the gate under test)


class Caller(HttpUser):
    wait_time = constant(0.05)

    @task(4)
    def read(self) -> None:
        self.client.get("/read")

    @task(1)
    def write(self) -> None:
        self.client.post("/write", json={})
