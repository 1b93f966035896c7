"""The real relay process: cookies, headers, and crash safety of its store (both backends)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.helpers import (
    RelayProcess,
    assert_store_sound,
    both_backends,
    wait_until,
    write_relay_config,
)


def test_real_server_cookie_attributes(relay):
    """R02: the real server sets HttpOnly, SameSite=Strict, Path=/ on http://localhost."""
    with relay.client() as client:
        res = client.post("/api/v1/auth/bootstrap", json={"token": relay.setup.token})
        assert res.status_code == 200
        cookie = res.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/" in cookie
        assert "secure" not in cookie


def test_real_server_headers_on_errors(relay):
    """R19: headers are present on 404 and 401 from the real server too."""
    with relay.client() as client:
        for path in ("/api/v1/nope", "/api/v1/me", "/"):
            res = client.get(path)
            assert "default-src 'self'" in res.headers["content-security-policy"]
            assert res.headers["x-content-type-options"] == "nosniff"


def test_real_server_logs_hold_no_secrets(relay):
    """Relay log lines never contain the recovery token or the session cookie."""
    with relay.client() as client:
        client.post("/api/v1/auth/bootstrap", json={"token": "crb_wrong_guess_canary"})
        res = client.post("/api/v1/auth/bootstrap", json={"token": relay.setup.token})
        cookie_value = res.cookies.get("codexrelay-session")
        client.get("/api/v1/me")
    relay.stop()
    logs = relay.logs()
    assert "POST /api/v1/auth/bootstrap 200" in logs
    for secret in (relay.setup.token, cookie_value, "crb_wrong_guess_canary"):
        assert secret not in logs


def _write_storm(relay: RelayProcess, acknowledged: list[str], stop: threading.Event) -> None:
    client = relay.login()

    def create(i: int) -> None:
        if stop.is_set():
            return
        try:
            res = client.post("/api/v1/workspaces", json={"name": f"storm-{i}"})
        except httpx.HTTPError:
            return
        if res.status_code == 201:
            acknowledged.append(res.json()["workspace"]["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(400)))
    client.close()


@both_backends
def test_sigkill_during_write_storm_keeps_acknowledged_changes(
    tmp_path, store_backend, storage_settings
):
    """kill -9 mid-burst: the store always reads back whole (SQLite's integrity check passes)
    and holds every acknowledged change."""
    rng = random.Random(20261129)
    setup = write_relay_config(tmp_path, storage=storage_settings)
    relay = RelayProcess(setup, tmp_path / "relay.log")
    total_acknowledged = 0
    for run in range(3):
        relay.start()
        acknowledged: list[str] = []
        stop = threading.Event()
        storm = threading.Thread(target=_write_storm, args=(relay, acknowledged, stop))
        storm.start()
        kill_after = rng.randint(20, 150)
        try:
            wait_until(
                lambda acks=acknowledged, n=kill_after: len(acks) >= n, timeout=60, what="acks"
            )
            relay.kill()
        finally:
            stop.set()
            storm.join()
        # Every 201 that reached a client was sent before the process died.
        snapshot = list(acknowledged)
        assert_store_sound(setup)
        state = setup.stored_state()
        missing = [wid for wid in snapshot if wid not in state.workspaces]
        assert not missing, f"run {run}: {len(missing)} acknowledged workspaces lost"
        total_acknowledged += len(snapshot)
    assert total_acknowledged >= 60
