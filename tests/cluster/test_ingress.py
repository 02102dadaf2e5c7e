"""The API as outside clients reach it: through the chart's Ingress, served by Traefik
(make cluster) over TLS from a Secret the tests made, from two client addresses.

The chart trusts exactly one proxy (config.trustedProxies: 1): the API must see each
client's own address (Traefik's X-Forwarded-For), never the ingress pod's, and a client
cannot choose it by sending X-Forwarded-For itself. The edge's own limits come from the
chart's values (ingress.limits: 64 KiB, 10 requests a second, bursts of 20)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.cluster.clients import doctor_with_a_slot, patient, through_ingress
from tests.cluster.kube import CLIENT_IPS, NODE_IP, get, sql, wait_until
from tests.helpers import PASSWORD, unique_email

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("release"), pytest.mark.timeout(600)]
A, B = CLIENT_IPS
FORGED = {"X-Forwarded-For": "203.0.113.7"}


@pytest.fixture(scope="module")
def ca(ingress_certificates: dict[str, str]) -> str:
    """The CA of the ingress's certificate, once Traefik routes the release's Ingress."""
    ca_file = ingress_certificates["ca_file"]

    def routed() -> bool:
        try:
            with through_ingress(A, ca_file) as http:
                return http.get("/v1/doctors", params={"limit": 1}).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(routed, "Traefik routes the release's Ingress with its certificate", timeout=120)
    return ca_file


def _remaining(response: httpx.Response) -> int:
    """What the API's rate limiter says is left of the caller's budget."""
    found = re.search(r";r=(\d+);", response.headers["RateLimit"])
    assert found, response.headers
    return int(found.group(1))


def _login(http: httpx.Client, email: str, **headers: str) -> httpx.Response:
    return http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=headers)


def test_login_search_and_booking_work_through_the_ingress_on_its_certificate(ca: str) -> None:
    with through_ingress(A, ca) as http:
        doctor, slot = doctor_with_a_slot(http)
        found = http.get("/v1/doctors", params={"q": "Dr Cluster", "limit": 100})
        assert found.status_code == 200, found.text
        email = patient(http)
        login = _login(http, email)
        assert login.status_code == 200, login.text
        booked = http.post(
            "/v1/appointments/book",
            json={"slot_id": slot, "reason": "through the ingress"},
            headers={
                "Authorization": f"Bearer {login.json()['access_token']}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        assert booked.status_code == 201, booked.text
        assert booked.json()["doctor_id"] == doctor
        # The FHIR facade is published too (the ingress had only /v1: found by the SLO
        # run through it); probes and metrics stay inside the cluster.
        metadata = http.get("/fhir/R4/metadata")
        assert metadata.status_code == 200
        assert metadata.json()["resourceType"] == "CapabilityStatement"
        assert http.get("/metrics").status_code == 404
        assert http.get("/readyz").status_code == 404


def test_the_audit_trail_records_each_clients_own_address_even_when_it_forges_one(
    ca: str,
) -> None:
    ingress_pods = {p["status"]["podIP"] for p in get("pods", namespace="traefik")}
    seen = {}
    for address in CLIENT_IPS:
        with through_ingress(address, ca) as http:
            email = patient(http)
            assert _login(http, email, **FORGED).status_code == 200
        seen[address] = sql(
            "SELECT a.ip FROM audit_logs a JOIN users u ON u.id = a.actor_id "
            f"WHERE u.email = '{email}' AND a.action = 'auth.login'"
        )
    assert seen == {A: A, B: B}
    assert not ingress_pods & set(seen.values())
    assert NODE_IP not in seen.values()


def test_the_rate_limiter_keeps_one_budget_per_client_that_a_forged_header_cannot_reset(
    ca: str,
) -> None:
    with through_ingress(A, ca) as a, through_ingress(B, ca) as b:
        first = _remaining(a.get("/v1/doctors", params={"limit": 1}))
        forged = _remaining(a.get("/v1/doctors", params={"limit": 1}, headers=FORGED))
        other = _remaining(b.get("/v1/doctors", params={"limit": 1}))
    assert forged < first  # the same budget, one request further down
    assert other > forged  # B's own budget, untouched by A's requests


def test_the_login_throttle_stops_one_client_and_not_the_other(ca: str) -> None:
    with through_ingress(B, ca) as b:
        email = patient(b)
    with through_ingress(A, ca) as a:
        answers = [_login(a, unique_email("nobody"), **FORGED) for _ in range(25)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    assert refused[0].headers["content-type"] == "application/problem+json"  # the API's
    assert "login attempts" in refused[0].json()["detail"]
    with through_ingress(B, ca) as b:
        assert _login(b, email).status_code == 200


def test_the_edge_refuses_a_body_over_its_limit_and_a_client_over_its_rate(ca: str) -> None:
    with through_ingress(A, ca) as a, through_ingress(B, ca) as b:
        # 100 KB: under the API's own limit (1 MiB), over the edge's 64 KiB.
        large = a.post("/v1/auth/login", content=b"{" + b" " * 100_000 + b"}")
        assert large.status_code == 413
        assert "problem+json" not in large.headers.get("content-type", "")  # not the API's
        statuses = [a.get("/v1/doctors", params={"limit": 1}).status_code for _ in range(60)]
        assert statuses[0] == 200
        assert 429 in statuses, statuses
        assert b.get("/v1/doctors", params={"limit": 1}).status_code == 200
