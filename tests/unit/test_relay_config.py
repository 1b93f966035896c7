"""Relay config validation: one clear line per bad key, safe defaults, O1."""

from __future__ import annotations

import json

import pytest

from codexrelay.relay.config import RelayConfig, load_relay_config
from codexrelay.relay.origins import same_site
from codexrelay.settings import ConfigError, dump_config
from tests.helpers import write_relay_config


def _load_with(tmp_path, **overrides):
    setup = write_relay_config(tmp_path, **overrides)
    return load_relay_config(setup.config_path)


def test_defaults_are_safe(tmp_path):
    """R17: write mode is off by default; other defaults are conservative."""
    config = _load_with(tmp_path)
    assert config.features.codex_exec_write is False
    assert config.max_body_bytes == 1048576
    assert config.passkey_challenge_ttl_sec <= 300


def test_every_bad_key_reported_once(tmp_path):
    """Each bad key yields one line naming it and the fix, all reported together."""
    with pytest.raises(ConfigError) as exc:
        _load_with(
            tmp_path,
            listenPort="eighty",
            publicOrigin="ftp://relay",
            sessionTtlSec=5,
            features={"codexExec": "maybe"},
            trustedProxies=["not-an-ip"],
            colour="blue",
        )
    lines = exc.value.lines
    assert len(lines) == 6, lines
    joined = "\n".join(lines)
    for key in (
        "listenPort",
        "publicOrigin",
        "sessionTtlSec",
        "features.codexExec",
        "trustedProxies",
        "colour",
    ):
        assert f"key '{key}'" in joined
    assert "unknown key" in joined
    assert "60 to 2592000" in joined


def test_missing_file_says_how_to_create(tmp_path):
    """A missing config names the init command."""
    with pytest.raises(ConfigError, match="codexrelay relay init"):
        load_relay_config(tmp_path / "absent.json")


def test_invalid_json_names_position(tmp_path):
    """Broken JSON reports line and column."""
    path = tmp_path / "relay.json"
    path.write_text('{"listenPort": 1,\n  oops}')
    with pytest.raises(ConfigError, match="line 2 column"):
        load_relay_config(path)


def test_secret_never_in_errors_or_repr(tmp_path):
    """tokenSecret stays out of reprs and error lines."""
    secret = "s" * 20  # too short: an error must not echo it
    with pytest.raises(ConfigError) as exc:
        _load_with(tmp_path, tokenSecret=secret)
    assert secret not in str(exc.value)
    config = _load_with(tmp_path / "ok")
    assert config.token_secret.get_secret_value() not in repr(config)


def test_public_origin_normalized(tmp_path):
    """Origins are lower-cased and a trailing slash dropped; paths are refused."""
    assert _load_with(tmp_path, publicOrigin="HTTPS://Relay.Example.org/").public_origin == (
        "https://relay.example.org"
    )
    with pytest.raises(ConfigError, match="origin only"):
        _load_with(tmp_path / "b", publicOrigin="https://relay.example.org/app")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://relay.example.org", True),
        ("http://localhost:8787", True),
        ("http://127.0.0.1:8787", True),
        ("http://relay.example.org", False),
        ("http://192.168.1.5:8787", False),
    ],
)
def test_insecure_origin_problem(tmp_path, origin, allowed):
    """O1: a non-loopback http origin needs --insecure-http."""
    config = _load_with(tmp_path, publicOrigin=origin)
    assert (config.insecure_origin_problem() is None) == allowed


def test_relative_data_dir_resolves_next_to_config(tmp_path):
    """dataDir is relative to the config file, not the working directory."""
    config = _load_with(tmp_path / "conf", dataDir="data/relay")
    assert config.state_path == (tmp_path / "conf" / "data" / "relay" / "state.json").resolve()


def test_every_key_documented_in_model():
    """Every config key has a description (used as the fix hint and in docs)."""
    for name, field in RelayConfig.model_fields.items():
        assert field.description, name


def test_config_round_trips(tmp_path):
    """What init writes loads back identically."""
    config = _load_with(tmp_path)
    data = json.loads(dump_config(config))
    assert RelayConfig.model_validate(data).model_dump() == config.model_dump()


@pytest.mark.parametrize(
    ("app", "relay", "same"),
    [
        ("https://app.example.org", "https://relay.example.org", True),
        ("https://example.org", "https://relay.example.org", True),
        ("http://localhost:8001", "http://localhost:8787", True),
        ("http://app.example.org", "https://relay.example.org", False),
        ("https://app.other.org", "https://relay.example.org", False),
        ("https://app.example.org", "https://relay.example.net", False),
        ("http://127.0.0.1:8001", "http://localhost:8787", False),
        ("http://10.0.0.2", "http://10.0.0.3", False),
    ],
)
def test_same_site(app, relay, same):
    assert same_site(app, relay) is same


def test_a_separate_app_origin_sets_the_passkey_site_and_allowed_origins(tmp_path):
    config = _load_with(
        tmp_path,
        publicOrigin="https://relay.example.org",
        web={"appOrigin": "https://App.Example.org/"},
    )
    assert config.web.app_origin == "https://app.example.org"
    assert config.app_url == "https://app.example.org"
    assert config.rp_host == "app.example.org"
    assert config.browser_origins == {"https://app.example.org", "https://relay.example.org"}
    plain = _load_with(tmp_path / "plain", publicOrigin="https://relay.example.org")
    assert (plain.app_url, plain.rp_host) == ("https://relay.example.org", "relay.example.org")


def test_an_app_origin_on_another_site_is_refused(tmp_path):
    with pytest.raises(ConfigError) as exc:
        _load_with(
            tmp_path,
            publicOrigin="https://relay.example.org",
            web={"appOrigin": "https://app.elsewhere.net"},
        )
    assert any("same site" in line for line in exc.value.lines), exc.value.lines
