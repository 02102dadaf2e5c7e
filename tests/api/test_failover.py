"""PostgreSQL failover under a running API: a multi-host URL with
``target_session_attrs=read-write``, a synchronous standby promoted when the primary
dies, and no booking the API confirmed lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from amrutam.dev.servers import PostgresServer, RedisServer, free_port
from amrutam.infra.db import libpq_dsn
from amrutam.infra.migrate import upgrade
from tests.factories import make_doctor, make_slots
from tests.helpers import api_env, bearer, register
from tests.servers import ApiServer

DATABASE = "failover"


def multi_host_url(*servers: PostgresServer) -> str:
    hosts = "&".join(f"host=127.0.0.1:{server.port}" for server in servers)
    return f"postgresql+asyncpg://postgres@/{DATABASE}?{hosts}&target_session_attrs=read-write"


def test_a_multi_host_url_becomes_the_dsn_asyncpg_and_libpq_take() -> None:
    url = "postgresql+asyncpg://app:s%40cret@/amrutam?host=a:5432&host=b:5433&ssl=require"
    assert libpq_dsn(url) == "postgresql://app:s%40cret@a:5432,b:5433/amrutam?sslmode=require"
    single = "postgresql+asyncpg://app@db:5432/amrutam?ssl=require"
    assert libpq_dsn(single) == "postgresql://app@db:5432/amrutam?sslmode=require"


@pytest.fixture
def pair(workdir: Path) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary that waits for its standby's flush at every commit, and that standby."""
    root = workdir / f"failover-{free_port()}"
    primary = PostgresServer(root / "primary", free_port(), settings={"fsync": "off"})
    primary.start()
    primary.create_database(DATABASE)
    upgrade(primary.url(DATABASE))
    standby = primary.start_standby(root / "standby", free_port())
    yield primary, standby
    for server in (primary, standby):
        server.stop("immediate")


async def _bookings(server: PostgresServer) -> set[str]:
    conn = await asyncpg.connect(libpq_dsn(server.url(DATABASE)))
    try:
        return {str(row["id"]) for row in await conn.fetch("SELECT id FROM appointments")}
    finally:
        await conn.close()


async def test_failover_to_the_promoted_standby_loses_no_booking(
    pair: tuple[PostgresServer, PostgresServer], redis_server: RedisServer
) -> None:
    primary, standby = pair
    assert primary.psql("SELECT sync_state FROM pg_stat_replication") == "sync"
    env = api_env(multi_host_url(primary, standby), redis_server.url(), db_wait_s="8")
    api = ApiServer(env, workers=1).start()
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"X-Forwarded-For": "10.89.0.1"}, timeout=30
        ) as http:
            doctor = await make_doctor(http)
            slots = await make_slots(http, doctor, count=4)
            patient = await register(http)

            async def book(slot: dict[str, str]) -> httpx.Response:
                return await http.post(
                    "/v1/appointments/book",
                    json={"slot_id": slot["id"]},
                    headers={**bearer(patient), "Idempotency-Key": f"failover-{slot['id']}"},
                )

            confirmed = [(await book(slot)).json()["id"] for slot in slots[:2]]

            # The primary dies; the standby is promoted while requests are waiting.
            await asyncio.to_thread(primary.stop, "immediate")
            during = asyncio.gather(
                book(slots[2]), http.get("/v1/auth/me", headers=bearer(patient))
            )
            await asyncio.to_thread(standby.promote)
            booked, me = await during
            assert booked.status_code == 201, booked.text
            assert me.status_code == 200, me.text
            after = await book(slots[3])
            assert after.status_code == 201, after.text
            confirmed += [booked.json()["id"], after.json()["id"]]

        # Every booking the API answered 201 for is on the new primary.
        assert set(confirmed) <= await _bookings(standby)
    finally:
        api.stop()


@pytest.fixture
def two_primaries(workdir: Path) -> Iterator[list[PostgresServer]]:
    servers = []
    for name in ("old", "new"):
        server = PostgresServer(workdir / f"demoted-{name}-{free_port()}", free_port())
        server.start()
        server.create_database(DATABASE)
        upgrade(server.url(DATABASE))
        servers.append(server)
    yield servers
    for server in servers:
        server.stop("immediate")


async def test_a_write_refused_as_read_only_is_retried_on_the_read_write_host(
    two_primaries: list[PostgresServer], redis_server: RedisServer
) -> None:
    """A demoted primary still answers, read-only: the write that reaches it is refused
    before it changes anything, the pool is refilled and the write lands on the other."""
    old, new = two_primaries
    env = api_env(multi_host_url(old, new), redis_server.url())
    api = ApiServer(env, workers=1).start()
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"X-Forwarded-For": "10.89.0.2"}, timeout=30
        ) as http:
            first = await register(http)  # fills the pool with connections to "old"
            old.psql("ALTER SYSTEM SET default_transaction_read_only = on")
            old.psql("SELECT pg_reload_conf()")
            second = await register(http)
            assert (await http.get("/v1/auth/me", headers=bearer(second))).status_code == 200

        def emails(server: PostgresServer) -> str:
            return server.psql("SELECT string_agg(email, ',') FROM users", DATABASE)

        assert first["user"]["email"] in emails(old)
        assert second["user"]["email"] not in emails(old)
        assert second["user"]["email"] in emails(new)
    finally:
        api.stop()
