"""Property-based fuzz of the auth endpoints: any input gets a 2xx or a 4xx problem."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import random_ip
from tests.servers import ApiServer

ENDPOINTS = [
    "/v1/auth/register",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/mfa/verify",
    "/v1/auth/mfa/confirm",
]
FIELDS = ["email", "password", "full_name", "role", "phone", "refresh_token", "mfa_token", "code"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
plausible_bodies = st.fixed_dictionaries(
    {}, optional={name: json_values | st.text(max_size=300) for name in FIELDS}
)
raw_bodies = st.binary(max_size=300)


@pytest.fixture(scope="module")
def http(api: ApiServer) -> Any:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        yield client


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == response.status_code
        if response.status_code == 422:
            assert body["errors"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(endpoint=st.sampled_from(ENDPOINTS), body=plausible_bodies)
def test_structured_bodies_never_500(
    http: httpx.Client, endpoint: str, body: dict[str, Any]
) -> None:
    response = http.post(
        endpoint,
        content=json.dumps(body),
        headers={"X-Forwarded-For": random_ip(), "content-type": "application/json"},
    )
    _check(response)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from([*ENDPOINTS, "/v1/auth/me"]),
    body=raw_bodies,
    authorization=st.none()
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    key=st.none()
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
)
def test_raw_bytes_and_hostile_headers_never_500(
    http: httpx.Client, endpoint: str, body: bytes, authorization: str | None, key: str | None
) -> None:
    headers = {"X-Forwarded-For": random_ip()}
    if authorization is not None:
        headers["Authorization"] = authorization.strip()
    if key is not None:
        headers["Idempotency-Key"] = key.strip()
    method = "GET" if endpoint.endswith("/me") else "POST"
    _check(http.request(method, endpoint, content=body, headers=headers))
