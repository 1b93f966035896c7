"""The relay's command line: init, secrets, rotation, start-up refusals (O1, O3, I3)."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import httpx
import pytest

from codexrelay.crypto import sha256_hex
from codexrelay.relay.storage import schema
from tests.helpers import (
    FILE_BACKENDS,
    PYTHON,
    RelayProcess,
    RelaySetup,
    free_port,
    write_relay_config,
)


def cli(*args: str, cwd=None, stdin: str | None = None, timeout: float = 30):
    return subprocess.run(
        [PYTHON, "-m", "codexrelay", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _token_from(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("Recovery token: "))
    return line.removeprefix("Recovery token: ")


def test_init_writes_private_config_and_prints_token_once(tmp_path):
    """O3: init writes 0600 with fresh secrets, write mode off, and only the token's hash."""
    res = cli("relay", "init", "--config", "relay.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    path = tmp_path / "relay.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = _token_from(res.stdout)
    text = path.read_text()
    config = json.loads(text)
    assert token not in text
    assert config["bootstrapAdminTokenHash"] == sha256_hex(token)
    assert config["features"]["codexExecWrite"] is False
    assert len(config["tokenSecret"]) >= 43
    assert config["publicOrigin"] == "http://localhost:8787"
    again = cli("relay", "init", "--config", "relay.json", cwd=tmp_path)
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert path.read_text() == text
    forced = cli("relay", "init", "--config", "relay.json", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert json.loads(path.read_text())["tokenSecret"] != config["tokenSecret"]


def test_init_production_needs_https_origin(tmp_path):
    """O1: production mode refuses a missing or plain-http public origin."""
    assert cli("relay", "init", "--mode", "production", cwd=tmp_path).returncode == 2
    res = cli(
        "relay",
        "init",
        "--mode",
        "production",
        "--public-origin",
        "http://relay.example.org",
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert "https" in res.stderr
    res = cli(
        "relay",
        "init",
        "--mode",
        "production",
        "--public-origin",
        "https://relay.example.org",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    config = json.loads((tmp_path / "relay.json").read_text())
    assert config["listenHost"] == "127.0.0.1"
    assert config["trustedProxies"] == ["127.0.0.1", "::1"]


def test_secret_gen_and_hash():
    """O3: secrets are 256-bit URL-safe; hash prints SHA-256 hex of stdin."""
    first = cli("secret", "gen").stdout.strip()
    second = cli("secret", "gen").stdout.strip()
    assert first != second
    assert len(first) >= 43
    assert all(c.isalnum() or c in "-_" for c in first)
    assert cli("secret", "hash", stdin="abc\n").stdout.strip() == sha256_hex("abc")
    assert cli("secret", "hash", stdin="").returncode == 2


def test_bad_config_reports_each_key_and_exits_2(tmp_path):
    """Every bad key gets its own one-line error naming the key."""
    setup = write_relay_config(tmp_path, listenPort=70000, colour="blue")
    res = cli("relay", "start", "--config", str(setup.config_path))
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("'listenPort'" in line for line in errors)
    assert any("'colour'" in line and "unknown key" in line for line in errors)


def test_start_refuses_plain_http_public_origin(tmp_path):
    """O1: a non-loopback http origin is refused unless --insecure-http is given."""
    setup = write_relay_config(tmp_path, publicOrigin="http://relay.example.org")
    res = cli("relay", "start", "--config", str(setup.config_path))
    assert res.returncode == 2
    assert "--insecure-http" in res.stderr
    relay = RelayProcess(setup, tmp_path / "log", extra_args=["--insecure-http"]).start()
    try:
        assert httpx.get(f"{setup.base_url}/healthz").status_code == 200
    finally:
        relay.stop()


@pytest.mark.parametrize("store_backend", FILE_BACKENDS)
def test_corrupt_state_stops_start_and_is_untouched(tmp_path, store_backend):
    """A corrupt state.json stops start-up with a clear error and stays byte-identical (the
    SQLite backend refuses to move it in, and makes no database)."""
    setup = write_relay_config(tmp_path, storage={"backend": store_backend})
    setup.data_dir.mkdir(mode=0o700)
    content = b'{"schemaVersion": 1, "users": {'
    setup.state_path.write_bytes(content)
    res = cli("relay", "start", "--config", str(setup.config_path))
    assert res.returncode == 1
    assert "corrupt" in res.stderr
    assert "untouched" in res.stderr
    assert setup.state_path.read_bytes() == content
    assert not (setup.data_dir / "relay.sqlite3").exists()


def test_check_config_reports_backend_and_schema_version(tmp_path):
    """check-config names the backend, the database and its schema version."""
    setup = write_relay_config(tmp_path)
    res = cli("relay", "check-config", "--config", str(setup.config_path))
    assert res.returncode == 0, res.stderr
    assert f"storage: sqlite at {setup.data_dir / 'relay.sqlite3'}, not created yet" in res.stdout
    relay = RelayProcess(setup, tmp_path / "log").start()
    relay.stop()
    res = cli("relay", "check-config", "--config", str(setup.config_path))
    assert f"schema version {schema.SCHEMA_VERSION} (current)" in res.stdout
    setup.update_config(storage={"backend": "json"})
    res = cli("relay", "check-config", "--config", str(setup.config_path))
    assert f"storage: json at {setup.state_path}" in res.stdout


def _login_status(setup: RelaySetup, token: str) -> int:
    with httpx.Client(base_url=setup.base_url) as client:
        return client.post("/api/v1/auth/bootstrap", json={"token": token}).status_code


def test_rotate_bootstrap_token(tmp_path):
    """O3/I3: after rotation and restart, the old token fails and the new one works."""
    setup = write_relay_config(tmp_path)
    old_secret = setup.config()["tokenSecret"]
    res = cli("relay", "rotate-secrets", "--bootstrap", "--config", str(setup.config_path))
    assert res.returncode == 0, res.stderr
    new_token = _token_from(res.stdout)
    assert setup.config()["tokenSecret"] == old_secret
    assert stat.S_IMODE(setup.config_path.stat().st_mode) == 0o600
    relay = RelayProcess(setup, tmp_path / "log").start()
    try:
        assert _login_status(setup, setup.token) == 401
        assert _login_status(setup, new_token) == 200
    finally:
        relay.stop()


def test_rotate_token_secret_ends_sessions(tmp_path):
    """I3: rotating tokenSecret invalidates every existing session."""
    setup = write_relay_config(tmp_path)
    relay = RelayProcess(setup, tmp_path / "log").start()
    try:
        client = relay.login()
        assert client.get("/api/v1/me").status_code == 200
        relay.stop()
        res = cli("relay", "rotate-secrets", "--token-secret", "--config", str(setup.config_path))
        assert res.returncode == 0, res.stderr
        assert "invalid" in res.stdout
        relay.start()
        assert client.get("/api/v1/me").status_code == 401
        client.close()
    finally:
        relay.stop()


def test_rotate_requires_a_choice(tmp_path):
    """rotate-secrets without a flag explains the choices and changes nothing."""
    setup = write_relay_config(tmp_path)
    before = setup.config_path.read_text()
    res = cli("relay", "rotate-secrets", "--config", str(setup.config_path))
    assert res.returncode == 2
    assert setup.config_path.read_text() == before


def test_default_config_path_from_env(tmp_path):
    """CODEXRELAY_RELAY_CONFIG names the config when --config is absent."""
    path = tmp_path / "elsewhere.json"
    env = {**os.environ, "CODEXRELAY_RELAY_CONFIG": str(path)}
    res = subprocess.run(
        [PYTHON, "-m", "codexrelay", "relay", "init", "--listen-port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert path.exists()


@pytest.mark.parametrize("args", [["--help"], ["relay", "--help"], ["secret", "--help"]])
def test_help_works(args):
    """Help output is available for every group."""
    assert cli(*args).returncode == 0
