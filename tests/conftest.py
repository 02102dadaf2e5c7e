"""Real PostgreSQL, Redis and API server processes for the whole test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from amrutam.dev.servers import PostgresServer, RedisServer, free_port
from amrutam.infra.migrate import upgrade

# Imported first: it also sets the operator's test settings, before anything imports it.
from tests.helpers import PUBLIC_BASE_URL, SHORT_HOLD_S, api_env, random_ip
from tests.servers import ApiServer

# pgBackRest keeps its locks and spool under /tmp and these tests all use one stanza name,
# so under xdist their modules share one worker and run one after another.
_SHARE_PGBACKREST = ("tests/backup/", "tests/operator/test_backups.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) each worker has its own PostgreSQL,
    Redis and servers (the session fixtures), and a module runs whole on one worker, so its
    module fixtures are set up once."""
    for item in items:
        module = item.nodeid.partition("::")[0]
        shared = module.startswith(_SHARE_PGBACKREST)
        item.add_marker(pytest.mark.xdist_group("pgbackrest" if shared else module))


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="amrutam-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(
        workdir / "pg",
        free_port(),
        settings={
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
        },
    )
    server.start()
    yield server
    server.stop("immediate")


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres: PostgresServer) -> str:
    postgres.create_database("amrutam_test")
    url = postgres.url("amrutam_test")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    env = api_env(database_url, redis_server.url(), public_base_url=PUBLIC_BASE_URL)
    server = ApiServer(env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def short_hold_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    """A server whose holds (and waitlist offers) last ``SHORT_HOLD_S`` seconds."""
    env = api_env(database_url, redis_server.url(), hold_ttl_s=str(SHORT_HOLD_S))
    server = ApiServer(env).start()
    yield server
    server.stop()


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that looks like one distinct address (behind the trusted proxy)."""
    async with httpx.AsyncClient(
        base_url=api.url, headers={"X-Forwarded-For": random_ip()}, timeout=30
    ) as http:
        yield http


@pytest.fixture(scope="session")
def strict_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    """A server with tiny limits, for the rate-limit tests."""
    env = api_env(
        database_url,
        redis_server.url(),
        rate_limit_anonymous="20/4 seconds",
        rate_limit_user="5/minute",
        rate_limit_login_ip="6/minute",
        rate_limit_login_account="3/minute",
        rate_limit_login_account_total="6/minute",
    )
    server = ApiServer(env).start()
    yield server
    server.stop()


@pytest.fixture
async def strict_client(strict_api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=strict_api.url, headers={"X-Forwarded-For": random_ip()}, timeout=30
    ) as http:
        yield http


@pytest.fixture
def strict_api_url(strict_api: ApiServer) -> str:
    return strict_api.url


@pytest.fixture
def api_url(api: ApiServer) -> str:
    return api.url
