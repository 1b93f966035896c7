"""Test helpers shared by every layer: configs, a settable clock, a real relay process.

No fixed ports and no bare sleeps: servers bind a free port and readiness is polled to a
deadline, with the server's own output shown on failure.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from codexrelay.crypto import new_secret, sha256_hex
from codexrelay.relay.storage.inspection import check_database, read_database
from codexrelay.relay.storage.jsonfile import encode_state, read_state
from codexrelay.relay.storage.pginspect import check_pg_database, read_pg_database
from codexrelay.relay.storage.records import State

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Every storage backend; the suite runs on the default (SQLite) unless this says otherwise,
# and tests where the store matters run on each (``@both_backends``; PostgreSQL on a real
# server the ``pg_server`` fixture starts).
BACKENDS = ("sqlite", "json", "postgres")
# The backends that keep their store in the data dir (state.json moves in, files to damage).
FILE_BACKENDS = ("sqlite", "json")
TEST_BACKEND = os.environ.get("CODEXRELAY_TEST_BACKEND", "sqlite")
_shared_pg: Any = None


def shared_pg_server() -> Any:
    """This test process's one real PostgreSQL server, started on first use and stopped at
    exit (the ``pg_server`` fixture, and every relay when the suite runs on PostgreSQL)."""
    global _shared_pg  # noqa: PLW0603 - one server per test process, started lazily
    if _shared_pg is None:
        from tests.pgserver import PgServer  # noqa: PLC0415 - pgserver imports this module

        _shared_pg = PgServer().start()
        atexit.register(_shared_pg.stop)
    return _shared_pg


def default_storage() -> dict[str, str]:
    """The storage config of a relay the suite starts: the backend under test, and on
    PostgreSQL a fresh database of its own."""
    if TEST_BACKEND != "postgres":
        return {"backend": TEST_BACKEND}
    return {"backend": "postgres", "url": shared_pg_server().new_database()}


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(0.02)
    detail = f" (last error: {last_exc!r})" if last_exc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}{detail}")


class FakeClock:
    """A clock tests move by hand; injected into the app, never patched."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class RelaySetup:
    """A relay config file on disk and the recovery token that goes with it."""

    config_path: Path
    token: str
    port: int
    data_dir: Path

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def backend(self) -> str:
        return str(self.config().get("storage", {}).get("backend", "sqlite"))

    def stored_bytes(self) -> bytes:
        """Every byte the store keeps on disk (the database, its WAL and shared memory, or
        state.json): what a secret must never be found in."""
        if self.backend == "postgres":
            return encode_state(read_pg_database(self.database_url))
        names = ("state.json", "relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm")
        return b"".join(
            (self.data_dir / n).read_bytes() for n in names if (self.data_dir / n).exists()
        )

    def stored_text(self) -> str:
        return self.stored_bytes().decode("latin-1")

    def stored_docs(self, table: str) -> list[dict[str, Any]]:
        """The records of one table exactly as stored (camelCase JSON)."""
        if self.backend == "json":
            return list(json.loads(self.state_path.read_text())[table].values())
        if self.backend == "postgres":
            with psycopg.connect(self.database_url) as pg:
                rows = pg.execute(f"SELECT doc FROM {table} ORDER BY rowid".encode()).fetchall()  # noqa: S608
            return [json.loads(doc) for (doc,) in rows]
        with contextlib.closing(sqlite3.connect(self.data_dir / "relay.sqlite3")) as conn:
            return [json.loads(doc) for (doc,) in conn.execute(f"SELECT doc FROM {table}")]  # noqa: S608

    def stored_state(self) -> State:
        """Every record the store holds, read from disk as another process would."""
        if self.backend == "json":
            state = read_state(self.state_path)
            assert state is not None, "state.json is gone"
            return state
        if self.backend == "postgres":
            return read_pg_database(self.database_url)
        return read_database(self.data_dir / "relay.sqlite3")

    @property
    def database_url(self) -> str:
        """The PostgreSQL database of a relay on the postgres backend."""
        return str(self.config()["storage"]["url"])

    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def update_config(self, **changes: Any) -> None:
        data = self.config()
        data.update(changes)
        self.config_path.write_text(json.dumps(data, indent=2))


def write_relay_config(directory: Path, **overrides: Any) -> RelaySetup:
    """Write a relay config for local testing (http://localhost:<free port>)."""
    port = overrides.pop("listenPort", None) or free_port()
    token = "crb_" + new_secret()
    data: dict[str, Any] = {
        "listenHost": "127.0.0.1",
        "listenPort": port,
        "publicOrigin": f"http://localhost:{port}",
        "dataDir": "data",
        "bootstrapAdminTokenHash": sha256_hex(token),
        "tokenSecret": new_secret(),
        "maxLoginAttemptsPerMinute": 1000,
        "maxPairAttemptsPerMinute": 1000,
    }
    data.update(overrides)
    data.setdefault("storage", default_storage())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "relay.json"
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return RelaySetup(config_path=path, token=token, port=port, data_dir=directory / "data")


@dataclass
class RelayProcess:
    """A real ``codexrelay relay start`` subprocess serving on 127.0.0.1."""

    setup: RelaySetup
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def start(self, *, wait: bool = True) -> RelayProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "codexrelay",
                "relay",
                "start",
                "--config",
                str(self.setup.config_path),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"relay exited early:\n{self.logs()}")
            return httpx.get(f"{self.setup.base_url}/healthz", timeout=1).status_code == 200

        try:
            wait_until(ready, timeout=timeout, what="relay /healthz")
        except AssertionError as exc:
            self.kill()  # never leave a relay behind that came up too late
            raise AssertionError(f"{exc}\n--- relay log ---\n{self.logs()}") from None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def client(self, **kwargs: Any) -> httpx.Client:
        """A phone-like client: JSON, same Origin as the relay's public origin."""
        return httpx.Client(
            base_url=self.setup.base_url,
            headers={"Origin": self.setup.origin},
            timeout=10,
            **kwargs,
        )

    def login(self, client: httpx.Client | None = None) -> httpx.Client:
        """Sign in as the owner with the recovery token; returns the client holding the cookie."""
        client = client or self.client()
        res = client.post("/api/v1/auth/bootstrap", json={"token": self.setup.token})
        assert res.status_code == 200, res.text
        return client


def both_backends(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run a test once per storage backend (it overrides the ``store_backend`` fixture)."""
    import pytest  # noqa: PLC0415 - helpers is imported by non-test code too (bench)

    return pytest.mark.parametrize("store_backend", BACKENDS)(test)


def assert_store_sound(setup: RelaySetup) -> None:
    """The store on disk is whole: state.json parses, or SQLite's integrity check passes
    (read-only, WAL included, as the next relay to open it would see it)."""
    if setup.backend == "json":
        json.loads(setup.state_path.read_text())
        return
    if setup.backend == "postgres":
        report = check_pg_database(setup.database_url)
        assert report.problems == [], report.problems
        return
    report = check_database(setup.data_dir / "relay.sqlite3")
    assert report.problems == [], report.problems
