"""The links of a FHIR Bundle (self, next, each entry's fullUrl) come from the configured
public base URL, or are relative without one; never from the request's Host header,
which the client chooses (G5: a client following `next` sends its bearer token there)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import make_doctor
from tests.helpers import PUBLIC_BASE_URL
from tests.servers import ApiServer

FHIR = "/fhir/R4"
EVIL = {"Host": "evil.example"}


async def _page(http: httpx.AsyncClient) -> dict[str, Any]:
    """A first page of practitioner roles that has a next page."""
    for _ in range(2):
        await make_doctor(http)
    answer = await http.get(f"{FHIR}/PractitionerRole", params={"_count": 1}, headers=EVIL)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _links(bundle: dict[str, Any]) -> list[str]:
    return [link["url"] for link in bundle["link"]]


async def test_links_start_at_the_configured_base_whatever_the_host_header(
    client: httpx.AsyncClient,
) -> None:
    bundle = await _page(client)
    assert {link["relation"] for link in bundle["link"]} == {"self", "next"}
    for url in _links(bundle) + [e["fullUrl"] for e in bundle["entry"]]:
        assert url.startswith(f"{PUBLIC_BASE_URL}{FHIR}/"), url


async def test_without_a_base_links_are_relative_and_entries_have_no_full_url(
    short_hold_api: ApiServer,
) -> None:
    """The tests' second API server has no AMRUTAM_PUBLIC_BASE_URL."""
    async with httpx.AsyncClient(base_url=short_hold_api.url, timeout=30) as http:
        bundle = await _page(http)
    for url in _links(bundle):
        assert url.startswith(f"{FHIR}/PractitionerRole?"), url
    assert all("fullUrl" not in entry for entry in bundle["entry"])
