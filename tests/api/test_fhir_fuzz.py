"""Property-based fuzz of the FHIR facade: any query, id or header gets a FHIR answer
(a valid Bundle or resource, or a 4xx OperationOutcome), never a 500."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amrutam.timeutil import utcnow
from tests.api.test_fhir import valid
from tests.factories import make_admin
from tests.helpers import PASSWORD, random_ip, unique_email
from tests.servers import ApiServer

SEARCHES = {
    "Slot": ["schedule", "status", "start"],
    "PractitionerRole": ["specialty", "practitioner"],
    "Schedule": ["actor", "specialty"],
    "Appointment": ["patient", "practitioner", "date", "status"],
    "MedicationRequest": ["patient"],
    "AuditEvent": ["date", "agent", "entity"],
}
READS = ["Practitioner", "PractitionerRole", "Schedule", "Appointment", "Encounter"]
READS += ["MedicationRequest", "Slot", "Patient"]


@pytest.fixture(scope="module")
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def doctor(http: httpx.Client) -> str:
    """A doctor with a few slots, so that searches find something."""
    registered = http.post(
        "/v1/auth/register",
        json={
            "email": unique_email("fuzz"),
            "password": PASSWORD,
            "full_name": "F",
            "role": "doctor",
        },
    ).json()
    headers = {"Authorization": f"Bearer {registered['access_token']}"}
    profile = {
        "specialty": "fuzz",
        "languages": ["english"],
        "consultation_fee": 1,
        "experience_years": 1,
        "timezone": "Asia/Kolkata",
    }
    http.put("/v1/doctors/me/profile", json=profile, headers=headers).raise_for_status()
    start = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    slots = [
        {
            "starts_at": (start + timedelta(minutes=30 * i)).isoformat(),
            "ends_at": (start + timedelta(minutes=30 * (i + 1))).isoformat(),
        }
        for i in range(5)
    ]
    http.post("/v1/doctors/me/slots", json={"slots": slots}, headers=headers).raise_for_status()
    return str(registered["user"]["id"])


@pytest.fixture(scope="module")
def admin(database_url: str) -> dict[str, str]:
    return asyncio.run(make_admin(database_url))


def values(doctor: str) -> st.SearchStrategy[str]:
    day = st.dates().map(str)
    prefixed = st.tuples(st.sampled_from(["", "ge", "gt", "le", "lt", "eq", "sa", "xx"]), day)
    references = st.sampled_from(
        [f"Schedule/{doctor}", f"Practitioner/{doctor}", doctor, "Patient/x", "Appointment/1/2"]
    )
    return st.one_of(
        prefixed.map("".join),
        references,
        st.sampled_from(["free", "busy,free", "busy-tentative", "booked", "|fuzz", "x|y", ","]),
        st.text(max_size=60),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120),
    )


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 304:
        return
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = valid(response.json())
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome"
    else:
        assert body["resourceType"] != "OperationOutcome"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_search_queries_never_500(
    http: httpx.Client, doctor: str, admin: dict[str, str], data: Any
) -> None:
    kind = data.draw(st.sampled_from(sorted(SEARCHES)))
    names = st.sampled_from([*SEARCHES[kind], "_count", "_cursor", "_format", "bogus"])
    names = names | st.tuples(names, st.sampled_from([":not", ":exact", ""])).map("".join)
    params = data.draw(st.lists(st.tuples(names, values(doctor)), max_size=5))
    headers = {"X-Forwarded-For": random_ip(), **data.draw(st.sampled_from([{}, admin]))}
    check(http.get(f"/fhir/R4/{kind}", params=params, headers=headers))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(READS),
    id_=st.text(min_size=1, max_size=80) | st.uuids().map(str) | st.just("00000000-0000"),
    authorization=st.none()
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    if_none_match=st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)),
)
def test_reads_with_any_id_and_headers_never_500(
    http: httpx.Client,
    doctor: str,
    kind: str,
    id_: str,
    authorization: str | None,
    if_none_match: str | None,
) -> None:
    headers = {"X-Forwarded-For": random_ip()}
    if authorization is not None:
        headers["Authorization"] = authorization.strip()
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match.strip()
    for target in (id_, doctor, f"{uuid.uuid4()}-1"):
        check(http.get(f"/fhir/R4/{kind}/{quote(target, safe='')}", headers=headers))
