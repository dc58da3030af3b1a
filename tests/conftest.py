"""Fixtures: the real servers, settings per backend, the app over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from starmap.app import SERVER_ARGS, create_app
from starmap.settings import Settings, load_settings
from starmap.storage import TABLES, TableStore, open_store

from .rig import Azurite, RedisServer, Service, StarmapProcess, process_env

BACKENDS = ("sqlite", "azurite")

MakeSettings = Callable[..., Settings]
MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
MakeProcess = Callable[..., StarmapProcess]
Cli = Callable[..., subprocess.CompletedProcess[str]]


S = TypeVar("S", bound=Service)


def _serve(kind: type[S], tmp_path_factory: pytest.TempPathFactory) -> Iterator[S]:
    server = kind(tmp_path_factory.mktemp(kind.name))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session, on a free port."""
    yield from _serve(RedisServer, tmp_path_factory)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One real Azurite table service for the session (tests use their own tables)."""
    yield from _serve(Azurite, tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a table store backend; tests using it run once per backend."""
    return str(request.param)


@pytest.fixture
def table_prefix() -> str:
    """Tables of one test are theirs alone, even on the session's one Azurite."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def backend_env(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, table_prefix: str
) -> dict[str, str]:
    """The environment variables that point a process at this test's backend."""
    env = {"ENVIRONMENT": "test", "DATA_DIR": str(tmp_path / "data"), "STORAGE_TABLE_PREFIX": table_prefix}
    if backend == "azurite":
        server: Azurite = request.getfixturevalue("azurite")
        env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
    return env


@pytest.fixture
def make_settings(backend_env: dict[str, str], tmp_path: Path) -> MakeSettings:
    """Settings for this test's backend, with any variable overridden."""

    def make(**overrides: str) -> Settings:
        return load_settings({**backend_env, **overrides}, root=tmp_path)

    return make


@pytest.fixture
async def store(make_settings: MakeSettings) -> AsyncIterator[TableStore]:
    """A table store of this test's backend with every table created."""
    opened = open_store(make_settings())
    await opened.ensure_tables(TABLES)
    yield opened
    await opened.close()


@pytest.fixture
def make_client(aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
                make_settings: MakeSettings) -> MakeClient:  # fmt: skip
    """The real app on a real port, built by ``create_app`` from settings overrides."""

    async def make(**overrides: str) -> TestClient[web.Request, web.Application]:
        # Started here: pytest-aiohttp's server_kwargs reach the constructor, not the handler.
        server = TestServer(create_app(make_settings(**overrides)))
        await server.start_server(**SERVER_ARGS)
        return await aiohttp_client(server)

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[web.Request, web.Application]:
    return await make_client()


@pytest.fixture
def make_process(tmp_path: Path, backend_env: dict[str, str]) -> Iterator[MakeProcess]:
    """Start real ``python -m starmap`` processes on this test's backend; all stopped after."""
    started: list[StarmapProcess] = []

    def make(**overrides: str) -> StarmapProcess:
        proc = StarmapProcess(tmp_path / f"proc{len(started)}", {**backend_env, **overrides})
        started.append(proc)
        proc.start()
        return proc

    yield make
    for proc in started:
        proc.kill()


@pytest.fixture
def cli(backend_env: dict[str, str], tmp_path: Path) -> Cli:
    """Run ``python -m starmap ARGS`` on this test's backend (variables as keywords); the finished process."""

    def run(
        *args: str, timeout: float = 180, stdin: str = "", **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "starmap", *args],
            env=process_env({**backend_env, **env}),
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
