"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings

from codexrelay.relay.app import create_app
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.storage.backends import open_configured_store
from codexrelay.relay.storage.jsonfile import CHECK_SAVES_ENV
from tests.fakes.push_service import PushServiceStandIn
from tests.helpers import (
    TEST_BACKEND,
    FakeClock,
    RelayProcess,
    RelaySetup,
    shared_pg_server,
    write_relay_config,
)
from tests.pgserver import PgServer

# Every relay the tests start (in process or as a subprocess, which inherits this) refuses a
# commit that carries a record changed without save(): the JSON store would still write it,
# but a backend that writes only changed rows would lose it.
os.environ[CHECK_SAVES_ENV] = "1"

# The default suite (and CI) replays the same generated examples every run, so a result
# never depends on the draw; ``make test-slow`` and ``make proof`` explore fresh ones
# (``--hypothesis-profile=explore``) and print a reproduction blob for any failure.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("repeatable")

# An agent started without --config or stateDir uses the person's own directories; tests
# (and the processes they start) get private ones instead of the real ~/.config and
# ~/.local/state.
_USER_DIRS = Path(tempfile.mkdtemp(prefix="codexrelay-test-home-"))
os.environ["XDG_CONFIG_HOME"] = str(_USER_DIRS / "config")
os.environ["XDG_STATE_HOME"] = str(_USER_DIRS / "state")


def pytest_addoption(parser: pytest.Parser) -> None:
    """--run-slow includes the long proofs marked ``slow``."""
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long proofs run only with --run-slow (``make test-slow``), so the default suite
    stays inside CI's time budget."""
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long proof: run with `make test-slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand."""
    return FakeClock()


@pytest.fixture
def store_backend() -> str:
    """The storage backend of the relays a test starts; ``@both_backends`` tests run on each."""
    return TEST_BACKEND


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    """A real PostgreSQL server for the whole session (each test gets its own database)."""
    server: PgServer = shared_pg_server()
    return server


@pytest.fixture
def storage_settings(store_backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``storage`` config of the relays a test starts (a fresh database for postgres)."""
    if store_backend == "postgres":
        server: PgServer = request.getfixturevalue("pg_server")
        return {"backend": "postgres", "url": server.new_database()}
    return {"backend": store_backend}


@pytest.fixture
def relay_setup(tmp_path: Path, storage_settings: dict[str, str]) -> RelaySetup:
    """A relay config in a temporary directory."""
    return write_relay_config(tmp_path / "relay", storage=storage_settings)


@pytest.fixture
def app_client(relay_setup: RelaySetup, clock: FakeClock) -> Iterator[TestClient]:
    """The relay app in-process (lifespan included), on the fake clock."""
    config = load_relay_config(relay_setup.config_path)
    store = open_configured_store(config, now=clock)
    app = create_app(config, store, clock=clock)
    with TestClient(
        app, base_url=relay_setup.base_url, headers={"Origin": relay_setup.origin}
    ) as client:
        client.setup = relay_setup  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def relay(relay_setup: RelaySetup, tmp_path: Path) -> Iterator[RelayProcess]:
    """A real relay subprocess on a free port."""
    proc = RelayProcess(setup=relay_setup, log_path=tmp_path / "relay.log").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def stand_in() -> Iterator[PushServiceStandIn]:
    """A loopback Web Push service (and the browsers behind it) for one test."""
    service = PushServiceStandIn().start()
    yield service
    service.stop()
