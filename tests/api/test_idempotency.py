"""Idempotency-Key on POST/PUT/PATCH: replay, in-flight 409, different body 422, scoping."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
from redis.asyncio import Redis

from amrutam.dev.servers import RedisServer
from amrutam.infra.idempotency import IdempotencyStore, Outcome, fingerprint
from tests.helpers import PASSWORD, assert_problem, unique_email


def _registration(email: str) -> dict[str, str]:
    return {"email": email, "password": PASSWORD, "full_name": "Idem Potent", "role": "patient"}


async def _users_with_email(database_url: str, email: str) -> int:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email))
    finally:
        await conn.close()


async def test_same_key_same_body_is_replayed(client: httpx.AsyncClient, database_url: str) -> None:
    email = unique_email()
    headers = {"Idempotency-Key": f"reg-{uuid.uuid4()}"}
    first = await client.post("/v1/auth/register", json=_registration(email), headers=headers)
    second = await client.post("/v1/auth/register", json=_registration(email), headers=headers)
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert second.headers["content-type"] == "application/json"
    assert await _users_with_email(database_url, email) == 1


async def test_client_errors_are_replayed_too(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": f"bad-{uuid.uuid4()}"}
    body = {"email": "not-an-email", "password": "x", "full_name": "", "role": "patient"}
    first = await client.post("/v1/auth/register", json=body, headers=headers)
    second = await client.post("/v1/auth/register", json=body, headers=headers)
    assert first.status_code == second.status_code == 422
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["content-type"].startswith("application/problem+json")


async def test_same_key_different_body_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await client.post(
        "/v1/auth/register", json=_registration(unique_email()), headers=headers
    )
    assert first.status_code == 201
    other = await client.post(
        "/v1/auth/register", json=_registration(unique_email()), headers=headers
    )
    body = assert_problem(other, 422)
    assert "Idempotency-Key" in body["detail"]
    assert [e["field"] for e in body["errors"]] == ["Idempotency-Key"]  # every 422 names one


async def test_key_still_in_flight_is_409(
    client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    key, email = f"k-{uuid.uuid4()}", unique_email()
    payload = _registration(email)
    request = client.build_request("POST", "/v1/auth/register", json=payload)
    # Claim the key exactly as a first request that is still running would.
    redis = Redis.from_url(redis_server.url())
    try:
        store = IdempotencyStore(redis, ttl_s=60, lock_s=60)
        scope = f"ip:{client.headers['x-forwarded-for']}"
        claim = await store.claim(
            scope, key, fingerprint("POST", "/v1/auth/register", request.content)
        )
        assert claim.outcome is Outcome.STARTED
        busy = await client.post(
            "/v1/auth/register", json=payload, headers={"Idempotency-Key": key}
        )
        assert_problem(busy, 409)
        await store.abandon(scope, key)
    finally:
        await redis.aclose()
    done = await client.post("/v1/auth/register", json=payload, headers={"Idempotency-Key": key})
    assert done.status_code == 201


async def test_concurrent_duplicates_create_one_account(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email, key = unique_email(), f"race-{uuid.uuid4()}"
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/auth/register", json=_registration(email), headers={"Idempotency-Key": key}
            )
            for _ in range(12)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    fresh = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    assert len(fresh) == 1
    assert await _users_with_email(database_url, email) == 1


async def test_different_callers_do_not_collide(api_url: str) -> None:
    key = f"shared-{uuid.uuid4()}"
    results = []
    for address in ("10.1.0.1", "10.2.0.2"):
        async with httpx.AsyncClient(
            base_url=api_url, headers={"X-Forwarded-For": address}
        ) as http:
            results.append(
                await http.post(
                    "/v1/auth/register",
                    json=_registration(unique_email()),
                    headers={"Idempotency-Key": key},
                )
            )
    assert [r.status_code for r in results] == [201, 201]
    assert all("idempotent-replayed" not in r.headers for r in results)
    assert results[0].json()["user"]["id"] != results[1].json()["user"]["id"]


async def test_malformed_keys_are_400(client: httpx.AsyncClient) -> None:
    for bad in ("", "x" * 256, "has space", "naïve"):
        response = await client.post(
            "/v1/auth/register",
            json=_registration(unique_email()),
            headers={"Idempotency-Key": bad.encode()},
        )
        assert_problem(response, 400)
