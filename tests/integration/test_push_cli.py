"""The operator's side of push: relay init makes the VAPID key, check-config reports push
readiness, rotate-secrets --vapid replaces the key (and the old key's subscriptions end at
the next start)."""

from __future__ import annotations

import stat

from codexrelay.relay.push.vapid import load_vapid_key
from tests.helpers import write_relay_config
from tests.integration.test_relay_cli import cli


def _value(stdout: str, prefix: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(prefix))[len(prefix) :]


def test_init_makes_the_vapid_key_and_check_config_reports_push(tmp_path):
    """init prints the public key of a 0600 key file; check-config names the key, the
    contact and the allowed hosts, and warns about a localhost contact."""
    res = cli("relay", "init", "--config", "relay.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    public = _value(res.stdout, "Push (VAPID) public key: ")
    key_file = tmp_path / "data/relay/vapid-private-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_vapid_key(key_file.parent).public_b64 == public
    check = cli("relay", "check-config", "--config", "relay.json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert f"public key {public}" in check.stdout
    assert "sends only to fcm.googleapis.com" in check.stdout
    assert "push.contact" in check.stderr  # mailto:codexrelay@localhost is for local use


def test_check_config_refuses_a_key_others_can_read(tmp_path):
    """A VAPID key readable by others fails check-config (the relay would not start)."""
    setup = write_relay_config(tmp_path / "relay")
    res = cli("relay", "rotate-secrets", "--vapid", "--config", str(setup.config_path))
    assert res.returncode == 0, res.stderr
    (setup.data_dir / "vapid-private-key.pem").chmod(0o644)
    check = cli("relay", "check-config", "--config", str(setup.config_path))
    assert check.returncode == 1
    assert "readable by others" in check.stderr


def test_rotate_vapid_replaces_the_key(tmp_path):
    """rotate-secrets --vapid writes a new key and says what follows."""
    setup = write_relay_config(tmp_path / "relay", push={"enabled": True})
    first = cli("relay", "rotate-secrets", "--vapid", "--config", str(setup.config_path))
    second = cli("relay", "rotate-secrets", "--vapid", "--config", str(setup.config_path))
    assert first.returncode == second.returncode == 0
    old = _value(first.stdout, "VAPID key rotated; new public key ")
    new = _value(second.stdout, "VAPID key rotated; new public key ")
    assert old != new
    assert load_vapid_key(setup.data_dir).public_b64 + "." == new
