"""With Redis stopped the API keeps serving: readiness says so, login stays throttled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amrutam.dev.servers import RedisServer, free_port
from tests.factories import make_doctor
from tests.helpers import PASSWORD, api_env, assert_problem, bearer, register, unique_email
from tests.servers import ApiServer


@pytest.fixture(scope="module")
def own_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-outage", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outage_api(database_url: str, own_redis: RedisServer) -> Iterator[ApiServer]:
    env = api_env(database_url, own_redis.url(), rate_limit_login_account="3/minute")
    server = ApiServer(env, workers=1).start()
    yield server
    server.stop()


async def test_api_survives_a_redis_outage(outage_api: ApiServer, own_redis: RedisServer) -> None:
    async with httpx.AsyncClient(
        base_url=outage_api.url, headers={"X-Forwarded-For": "10.77.0.1"}, timeout=10
    ) as http:
        email = unique_email()
        tokens = await register(http, email=email)
        await make_doctor(http)
        assert (await http.get("/readyz")).status_code == 200

        own_redis.stop()
        try:
            not_ready = await http.get("/readyz")
            body = assert_problem(not_ready, 503)
            assert "redis" in body["detail"]
            assert "postgres" not in body["detail"]
            assert body["checks"]["postgres"] == "ok"

            # Logins, registrations, reads and idempotent writes still work: no 500s.
            login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            assert "ratelimit" in login.headers
            assert (await http.get("/v1/auth/me", headers=bearer(tokens))).status_code == 200
            created = await http.post(
                "/v1/auth/register",
                json={
                    "email": unique_email(),
                    "password": PASSWORD,
                    "full_name": "N",
                    "role": "patient",
                },
                headers={"Idempotency-Key": "during-outage"},
            )
            assert created.status_code == 201

            # Password guessing is still throttled by the per-process fallback limiter.
            statuses = [
                (
                    await http.post(
                        "/v1/auth/login", json={"email": email, "password": "wrong-guess!"}
                    )
                ).status_code
                for _ in range(4)
            ]
            assert statuses == [401, 401, 401, 429]

            # Cached reads go to PostgreSQL and still answer.
            search = await http.get("/v1/doctors?sort=fee&limit=5")
            assert search.status_code == 200
            assert search.json()["items"]
            doctor_id = search.json()["items"][0]["id"]
            assert (await http.get(f"/v1/doctors/{doctor_id}")).status_code == 200

            metrics = (await http.get("/metrics")).text
            assert 'amrutam_redis_degraded_total{component="ratelimit"}' in metrics
            assert 'amrutam_redis_degraded_total{component="cache"}' in metrics
            assert 'status="500"' not in metrics
        finally:
            own_redis.start()

        ready_again = await http.get("/readyz")
        assert ready_again.status_code == 200, ready_again.text
        assert (await http.get("/v1/auth/me", headers=bearer(tokens))).status_code == 200
