"""Cross-cutting HTTP behaviour: request ids, problem+json, metrics, OpenAPI."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
from sanic import HTTPResponse

from amrutam.dev.servers import RedisServer, free_port
from api.responses import JsonResponse
from tests.helpers import api_env, assert_problem, bearer, register
from tests.servers import ApiServer


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/livez", headers={"X-Request-ID": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"
    fresh = await client.get("/livez")
    assert len(fresh.headers["x-request-id"]) == 32
    hostile = await client.get("/livez", headers={"X-Request-ID": "a b\tc"})
    assert hostile.headers["x-request-id"] != "a b\tc"


async def test_unknown_path_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404)
    not_allowed = await client.delete("/v1/auth/login")
    assert_problem(not_allowed, 405)


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    for raw in (b"{", b"not json", b"\xff\xfe", b'{"email": }'):
        response = await client.post(
            "/v1/auth/login", content=raw, headers={"content-type": "application/json"}
        )
        body = assert_problem(response, 400)
        assert "JSON" in body["detail"]


async def test_missing_body_is_400(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/v1/auth/login"), 400)


async def test_wrong_types_are_422_with_field_errors(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        json={"email": 5, "password": ["x"], "full_name": None, "role": "patient", "phone": {}},
    )
    body = assert_problem(response, 422)
    assert {e["field"] for e in body["errors"]} == {"email", "password", "full_name", "phone"}
    assert all(e["message"] for e in body["errors"])
    not_an_object = await client.post("/v1/auth/login", json=[1, 2])
    assert assert_problem(not_an_object, 422)["errors"][0]["field"] == "body"


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/login",
        content=b'{"email": "' + b"a" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413)


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    for _ in range(3):
        await client.get("/v1/auth/me", headers=bearer(tokens))
    text = (await client.get("/metrics")).text
    assert 'amrutam_http_requests_total{method="GET",route="/v1/auth/me",status="200"}' in text
    assert "amrutam_http_request_duration_seconds_bucket" in text
    assert "amrutam_http_requests_in_flight" in text


async def test_metrics_sum_over_worker_processes(client: httpx.AsyncClient) -> None:
    """Two Sanic workers serve in turn; one scrape must see every request."""
    before = _count(await client.get("/metrics"), "/openapi.json")
    for _ in range(20):
        async with httpx.AsyncClient(base_url=str(client.base_url)) as fresh:  # new connection
            await fresh.get("/openapi.json", headers={"X-Forwarded-For": "10.9.9.9"})
    after = _count(await client.get("/metrics"), "/openapi.json")
    assert after - before == 20


def _count(response: httpx.Response, route: str) -> float:
    prefix = f'amrutam_http_requests_total{{method="GET",route="{route}",status="200"}} '
    for line in response.text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_openapi_describes_the_auth_contract(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/me",
    ):
        assert path in spec["paths"], path
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_one_process_keeps_its_metrics_in_memory(
    database_url: str, redis_server: RedisServer
) -> None:
    """The Kubernetes shape (one process, no manager) writes no multiprocess files; the
    metrics port shows its requests, and the API port no /metrics at all."""
    metrics_port = free_port()
    env = api_env(database_url, redis_server.url(), metrics_port=str(metrics_port))
    started = time.time()
    server = ApiServer(env, workers=1).start()
    try:
        assert server.process is not None
        files = Path(tempfile.gettempdir()) / f"amrutam-metrics-{server.process.pid}"
        # One left by an earlier process that had the same pid is older than this one.
        assert not files.exists() or files.stat().st_mtime < started
        async with httpx.AsyncClient(base_url=server.url) as http:
            for _ in range(5):
                await http.get("/openapi.json")
            assert_problem(await http.get("/metrics"), 404)
            scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert _count(scraped, "/openapi.json") == 5
    finally:
        server.stop()


def test_json_responses_strip_header_injection_as_sanic_does() -> None:
    headers = {"X-Clean": "plain value", "X-Dirty": "a\r\nSet-Cookie: x=1\x00", "X\nName": "v"}
    ours = JsonResponse(b"{}", headers=headers, content_type="application/json")
    sanics = HTTPResponse(b"{}", headers=headers, content_type="application/json")
    assert list(ours.processed_headers) == list(sanics.processed_headers)
    assert (b"X-Dirty", b"aSet-Cookie: x=1") in list(ours.processed_headers)
