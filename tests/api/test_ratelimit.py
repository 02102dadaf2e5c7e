"""Rate limits in Redis: headers, 429 with Retry-After, reset, and the login throttle."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx

from tests.helpers import PASSWORD, assert_problem, bearer, random_ip, register, unique_email

_RATELIMIT = re.compile(r'^"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def _remaining(response: httpx.Response) -> int:
    match = _RATELIMIT.match(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return int(match["r"])


async def test_anonymous_limit_headers_429_and_reset(strict_client: httpx.AsyncClient) -> None:
    seen = [await strict_client.get("/openapi.json") for _ in range(20)]
    assert [r.status_code for r in seen] == [200] * 20
    assert seen[0].headers["ratelimit-policy"] == '"anonymous";q=20;w=4'
    assert [_remaining(r) for r in seen] == list(range(19, -1, -1))

    limited = await strict_client.get("/openapi.json")
    assert_problem(limited, 429)
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 5
    assert _remaining(limited) == 0

    await asyncio.sleep(retry_after + 0.2)
    after_reset = await strict_client.get("/openapi.json")
    assert after_reset.status_code == 200
    assert _remaining(after_reset) == 19


async def test_limits_are_per_address(strict_api_url: str) -> None:
    async with (
        httpx.AsyncClient(base_url=strict_api_url, headers={"X-Forwarded-For": random_ip()}) as a,
        httpx.AsyncClient(base_url=strict_api_url, headers={"X-Forwarded-For": random_ip()}) as b,
    ):
        for _ in range(20):
            await a.get("/livez")
            await a.get("/openapi.json")
        assert (await a.get("/openapi.json")).status_code == 429
        assert (await b.get("/openapi.json")).status_code == 200


async def test_authenticated_requests_are_limited_per_user(
    strict_client: httpx.AsyncClient, strict_api_url: str
) -> None:
    tokens = await register(strict_client)
    statuses = []
    # The same user from ever-changing addresses: the per-user limit still holds.
    for _ in range(6):
        async with httpx.AsyncClient(
            base_url=strict_api_url, headers={"X-Forwarded-For": random_ip()}
        ) as http:
            response = await http.get("/v1/auth/me", headers=bearer(tokens))
            statuses.append(response.status_code)
            policy = response.headers["ratelimit-policy"]
    assert statuses == [200] * 5 + [429]
    assert policy == '"user";q=5;w=60'


async def _login(base_url: str, address: str, email: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, headers={"X-Forwarded-For": address}) as http:
        return await http.post("/v1/auth/login", json={"email": email, "password": password})


async def test_guesses_lock_the_guessing_address_out_even_with_the_right_password(
    strict_api_url: str, strict_client: httpx.AsyncClient
) -> None:
    email, attacker = unique_email(), random_ip()
    await register(strict_client, email=email)
    for _ in range(3):
        assert (await _login(strict_api_url, attacker, email, "nope" * 3)).status_code == 401
    locked = await _login(strict_api_url, attacker, email, PASSWORD)
    body = assert_problem(locked, 429)
    assert "login" in body["detail"]
    assert locked.headers["ratelimit-policy"].startswith('"login-account"')
    assert int(locked.headers["retry-after"]) >= 1


async def test_an_attacker_cannot_lock_the_owner_out_from_elsewhere(
    strict_api_url: str, strict_client: httpx.AsyncClient
) -> None:
    """F6: failures count per account and address; the owner's own address still works."""
    email, attacker = unique_email(), random_ip()
    await register(strict_client, email=email)
    for _ in range(5):
        await _login(strict_api_url, attacker, email, "nope" * 3)
    owner = await _login(strict_api_url, random_ip(), email, PASSWORD)
    assert owner.status_code == 200, owner.text


async def test_guesses_spread_over_many_addresses_meet_the_account_ceiling(
    strict_api_url: str, strict_client: httpx.AsyncClient
) -> None:
    email = unique_email()
    await register(strict_client, email=email)
    for _ in range(6):  # the strict server's account-wide ceiling
        assert (await _login(strict_api_url, random_ip(), email, "nope" * 3)).status_code == 401
    locked = await _login(strict_api_url, random_ip(), email, "nope" * 3)
    assert_problem(locked, 429)
    assert locked.headers["ratelimit-policy"].startswith('"login-account-total"')


async def test_parallel_guesses_cannot_race_past_the_throttle(
    strict_api_url: str, strict_client: httpx.AsyncClient
) -> None:
    """F5: each attempt is counted before its password is checked."""
    email = unique_email()
    await register(strict_client, email=email)
    address = random_ip()
    answers = await asyncio.gather(
        *(_login(strict_api_url, address, email, f"wrong-guess-{n:04}") for n in range(15))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) <= 3, statuses
    assert set(statuses) <= {401, 429}


async def test_successful_login_clears_the_failure_count(strict_client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(strict_client, email=email)
    for _ in range(2):
        await strict_client.post("/v1/auth/login", json={"email": email, "password": "nope" * 3})
    ok = await strict_client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 200
    for _ in range(2):
        await strict_client.post("/v1/auth/login", json={"email": email, "password": "nope" * 3})
    again = await strict_client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert again.status_code == 200, (again.text, again.headers)


async def test_login_attempts_are_limited_per_address(strict_client: httpx.AsyncClient) -> None:
    statuses = [
        (
            await strict_client.post(
                "/v1/auth/login", json={"email": unique_email(), "password": "whatever-123"}
            )
        ).status_code
        for _ in range(7)
    ]
    assert statuses == [401] * 6 + [429]


async def test_health_endpoints_are_not_limited(strict_client: httpx.AsyncClient) -> None:
    statuses = {(await strict_client.get("/livez")).status_code for _ in range(12)}
    assert statuses == {200}


async def test_writes_refused_before_their_idempotency_claim_still_count(
    strict_client: httpx.AsyncClient,
) -> None:
    """A booking without its Idempotency-Key is refused (400) before any Redis call: the
    hit that would have ridden on the claim is sent anyway."""
    tokens = await register(strict_client)
    statuses = [
        (
            await strict_client.post(
                "/v1/appointments/book", json={"slot_id": str(uuid.uuid4())}, headers=bearer(tokens)
            )
        ).status_code
        for _ in range(6)
    ]
    assert statuses == [400] * 5 + [429]
