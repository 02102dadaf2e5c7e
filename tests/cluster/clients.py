"""The platform's own clients in the cluster tests: HTTP through the ingress from a
chosen address, and the accounts a test needs (a doctor with a slot, a patient)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import httpx

from tests.cluster.kube import INGRESS_HOST
from tests.factories import PROFILE
from tests.helpers import PASSWORD, totp_code, unique_email


def through_ingress(address: str, ca_file: str) -> httpx.Client:
    """A client on this machine that sends from ``address`` to the ingress's name and
    trusts only the CA of the ingress's certificate."""
    verify = ssl.create_default_context(cafile=ca_file)
    transport = httpx.HTTPTransport(local_address=address, verify=verify)
    return httpx.Client(base_url=f"https://{INGRESS_HOST}", transport=transport, timeout=30)


def doctor_with_a_slot(http: httpx.Client) -> tuple[str, str]:
    """A doctor who enrolled a second factor, published a profile and one slot in two
    days: (doctor id, slot id)."""
    email = unique_email("doctor")
    body = {"email": email, "password": PASSWORD, "full_name": "Dr Cluster", "role": "doctor"}
    registered = http.post("/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    tokens = registered.json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    setup = http.post("/v1/auth/mfa/setup", headers=auth)
    assert setup.status_code == 200, setup.text
    code = totp_code(setup.json()["secret"])
    assert http.post("/v1/auth/mfa/confirm", headers=auth, json={"code": code}).status_code == 200
    fresh = http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200, fresh.text
    auth = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    profile = http.put("/v1/doctors/me/profile", headers=auth, json=PROFILE)
    assert profile.status_code == 200, profile.text
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    slot = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=30)).isoformat()}
    made = http.post("/v1/doctors/me/slots", headers=auth, json={"slots": [slot]})
    assert made.status_code == 201, made.text
    return str(tokens["user"]["id"]), str(made.json()["items"][0]["id"])


def patient(http: httpx.Client) -> str:
    """A registered patient's e-mail (password: PASSWORD)."""
    email = unique_email("patient")
    body = {"email": email, "password": PASSWORD, "full_name": "P", "role": "patient"}
    registered = http.post("/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    return email
