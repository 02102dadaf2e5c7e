"""Schemathesis over the whole served OpenAPI document, as each kind of caller.

Every check is on (a 5xx, an undocumented status, a wrong content type, a response that
does not match its schema, invalid input accepted, a missing header, a 405 without
Allow); the run is bounded by examples per operation and a fixed seed, so it is the
same work on every CI run. Endpoints added later are covered by being routed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amrutam.dev.servers import RedisServer
from amrutam.settings import Settings
from tests.factories import make_admin, make_doctor, make_slots
from tests.helpers import api_env, bearer, register
from tests.servers import ApiServer

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = "25"
SEED = "20261129"
# Hypothesis, describing a strategy from two threads at once, can trip CPython's AST
# recursion check (a RuntimeError inside the fuzzer, reported as an "error" of the
# operation it was generating for, with no request sent): not a finding about the API.
TOOL_FAULT = "AST constructor recursion depth mismatch"


@pytest.fixture(scope="module")
def fuzz_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    # Limits out of the way (the fuzzer is one caller sending thousands of requests) and
    # tokens that outlive the run.
    env = api_env(
        database_url,
        redis_server.url(6),
        access_token_ttl_s="7200",
        rate_limit_login_account="1000000/minute",
        rate_limit_login_account_total="1000000/minute",
        max_body_bytes=str(Settings.model_fields["max_body_bytes"].default),  # production's
    )
    server = ApiServer(env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def callers(fuzz_api: ApiServer, database_url: str) -> dict[str, dict[str, str]]:
    async def make() -> dict[str, dict[str, str]]:
        async with httpx.AsyncClient(base_url=fuzz_api.url, timeout=30) as http:
            doctor = await make_doctor(http)
            await make_slots(http, doctor, count=20)
            return {
                "anonymous": {},
                "patient": bearer(await register(http)),
                "doctor": doctor["headers"],
                "admin": await make_admin(database_url),
            }

    return asyncio.run(make())


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", ["anonymous", "patient", "doctor", "admin"])
def test_schemathesis_finds_nothing(
    fuzz_api: ApiServer, callers: dict[str, dict[str, str]], role: str
) -> None:
    headers = [arg for name, value in callers[role].items() for arg in ("-H", f"{name}: {value}")]
    run = fuzz(fuzz_api, headers)
    if run.returncode and TOOL_FAULT in run.stdout:
        run = fuzz(fuzz_api, headers)  # the fuzzer's own fault, not a finding: once more
    summary = run.stdout[run.stdout.find("SUMMARY") :]
    print(f"schemathesis as {role}:\n{summary}")
    failures = run.stdout[run.stdout.find("FAILURES") : run.stdout.find("SUMMARY")]
    assert run.returncode == 0, (failures or run.stdout)[:12000]
    document = httpx.get(f"{fuzz_api.url}/openapi.json").json()
    operations = sum(len(methods) for methods in document["paths"].values())
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested is not None
    assert int(tested.group(1)) == operations  # every operation was reached


def fuzz(fuzz_api: ApiServer, headers: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{fuzz_api.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--workers",
            "2",
            *headers,
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
