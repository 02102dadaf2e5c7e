"""A client's X-Request-ID is echoed and kept beside the server's own only when the whole
value is a short, visible-ASCII token; anything else is replaced (G3)."""

from __future__ import annotations

import asyncpg
import httpx

from tests.factories import pg_dsn
from tests.helpers import unique_email

LONG = ("a" * 128 + ' <script>"x" é ' + "b" * 7000).encode()


async def _failed_login(client: httpx.AsyncClient, request_id: bytes) -> httpx.Response:
    answer = await client.post(
        "/v1/auth/login",
        json={"email": unique_email(), "password": "not-the-password-1"},
        headers={"X-Request-ID": request_id},
    )
    assert answer.status_code == 401, answer.text
    return answer


async def _client_ids_kept(database_url: str, request_id: str) -> list[str | None]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT detail->>'client_request_id' AS client FROM audit_logs WHERE request_id = $1",
            request_id,
        )
    finally:
        await conn.close()
    return [row["client"] for row in rows]


async def test_a_long_request_id_is_neither_echoed_nor_stored_in_the_audit_trail(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """G3: a check of the first 128 characters kept all 7,000 of them."""
    echoed = (await _failed_login(client, LONG)).headers["x-request-id"]
    assert len(echoed) == 32  # the server's own
    assert await _client_ids_kept(database_url, echoed) == [None]


async def test_a_request_id_of_128_visible_characters_is_kept_and_129_are_not(
    client: httpx.AsyncClient, database_url: str
) -> None:
    kept = ("k" * 127 + "!").encode()
    assert (await _failed_login(client, kept)).headers["x-request-id"] == kept.decode()
    replaced = (await _failed_login(client, b"r" * 129)).headers["x-request-id"]
    assert len(replaced) == 32
    assert await _client_ids_kept(database_url, replaced) == [None]
