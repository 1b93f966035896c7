"""The agent config file: defaults, per-key errors, and `agent init` / `agent check-config`."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codexrelay.agent.config import build_init_config, load_agent_config, resolve_inside
from codexrelay.agent.enroll import code_format_problem
from codexrelay.cli import main
from codexrelay.settings import ConfigError
from tests.fakes import fake_agent_config_data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(data))
    return path


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_agent_config(write(tmp_path, data))
    return caught.value.lines


def workspace(tmp_path: Path) -> Path:
    """A project directory beside (not around) the config and state of a test."""
    path = tmp_path / "ws"
    path.mkdir(exist_ok=True)
    return path


def minimal(tmp_path: Path) -> dict[str, Any]:
    return {
        "relayBaseUrl": "https://relay.example.org/",
        "agentId": "dev-box",
        "agentLabel": "Dev box",
        "workspaceRoot": str(workspace(tmp_path)),
    }


def test_agent_config_minimal_file_gets_safe_defaults(tmp_path, monkeypatch):
    """R17: write mode and write-on-resume are off unless the file turns them on."""
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "ch"))
    config = load_agent_config(write(tmp_path, minimal(tmp_path)))
    assert config.features.codex_exec_write is False
    assert config.codex.allow_write_on_resume is False
    assert config.codex.command == ["codex"]
    assert config.codex_home == tmp_path / "ch"
    assert config.max_concurrent_tasks == 2
    assert config.actions == {}
    assert config.log_sources == {}
    assert config.relay_base_url == "https://relay.example.org"


def test_agent_config_codex_home_falls_back_to_dot_codex(tmp_path, monkeypatch):
    """Without CODEX_HOME the Codex home is ~/.codex, like the CLI's own default."""
    monkeypatch.delenv("CODEX_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_agent_config(write(tmp_path, minimal(tmp_path)))
    assert config.codex_home == tmp_path / ".codex"


def test_agent_config_state_dir_resolves_next_to_config_file(tmp_path, monkeypatch):
    """A relative stateDir is relative to the config file, not the working directory."""
    monkeypatch.chdir("/")
    config = load_agent_config(write(tmp_path, {**minimal(tmp_path), "stateDir": "st"}))
    assert config.state_path == tmp_path.resolve() / "st"


def test_agent_config_workspace_root_is_stored_resolved(tmp_path):
    """A symlinked workspaceRoot is stored as the real directory it points to."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    config = load_agent_config(
        write(tmp_path, {**minimal(tmp_path), "workspaceRoot": str(tmp_path / "link")})
    )
    assert config.root == real.resolve()


def test_agent_config_refuses_shell_string_argv(tmp_path):
    """R15: an action given as a shell string is refused with a message about argv lists."""
    data = {**minimal(tmp_path), "actions": {"build": {"label": "Build", "argv": "make && ls"}}}
    lines = problems(tmp_path, data)
    assert len(lines) == 1
    assert "actions.build.argv" in lines[0]
    assert "argv must be a list" in lines[0]


def test_agent_config_refuses_empty_argv_and_empty_words(tmp_path):
    """An action needs a program: no empty argv, no empty strings in it."""
    data = {
        **minimal(tmp_path),
        "actions": {"a": {"label": "A", "argv": []}, "b": {"label": "B", "argv": ["ls", ""]}},
    }
    lines = problems(tmp_path, data)
    assert any("actions.a.argv" in line for line in lines)
    assert any("actions.b.argv[1]" in line for line in lines)


def test_agent_config_refuses_cwd_escaping_with_dotdot(tmp_path):
    """An action cwd may not leave workspaceRoot through `..`."""
    data = {**minimal(tmp_path), "actions": {"up": {"label": "Up", "argv": ["ls"], "cwd": "../"}}}
    lines = problems(tmp_path, data)
    assert len(lines) == 1
    assert "action 'up'" in lines[0]
    assert "outside workspaceRoot" in lines[0]


def test_agent_config_refuses_cwd_escaping_through_symlink(tmp_path):
    """An action cwd is checked after resolving symlinks: a link out of the root is refused."""
    data = minimal(tmp_path)
    (tmp_path / "ws" / "out").symlink_to(tmp_path)
    data["actions"] = {"s": {"label": "S", "argv": ["ls"], "cwd": "out"}}
    lines = problems(tmp_path, data)
    assert "outside workspaceRoot" in lines[0]


def test_agent_config_accepts_cwd_inside_root(tmp_path):
    """A subdirectory (also one reached through an inner symlink) is a valid action cwd."""
    data = minimal(tmp_path)
    (tmp_path / "ws" / "sub").mkdir()
    (tmp_path / "ws" / "inner").symlink_to(tmp_path / "ws" / "sub")
    data["actions"] = {"s": {"label": "S", "argv": ["ls"], "cwd": "inner"}}
    config = load_agent_config(write(tmp_path, data))
    assert resolve_inside(config.root, "inner") == (tmp_path / "ws" / "sub").resolve()


def test_agent_config_refuses_relative_workspace_root(tmp_path):
    """workspaceRoot must be absolute."""
    lines = problems(tmp_path, {**minimal(tmp_path), "workspaceRoot": "ws"})
    assert lines == [
        "key 'workspaceRoot': Value error, must be an absolute path "
        "(expected: an absolute path to an existing directory Codex may work in)"
    ]


def test_agent_config_refuses_missing_workspace_root(tmp_path):
    """workspaceRoot must exist."""
    lines = problems(tmp_path, {**minimal(tmp_path), "workspaceRoot": str(tmp_path / "nope")})
    assert "not an existing directory" in lines[0]


def test_agent_config_refuses_unknown_keys_top_and_nested(tmp_path):
    """Typos are refused by name, at the top and inside nested objects."""
    data = {**minimal(tmp_path), "maxTasks": 3, "codex": {"comand": ["codex"]}}
    lines = problems(tmp_path, data)
    assert "key 'maxTasks': unknown key; remove it or check its spelling" in lines
    assert "key 'codex.comand': unknown key; remove it or check its spelling" in lines


def test_agent_config_reports_every_problem_together(tmp_path):
    """O6: bad ids, a relative log path, a bad URL and a bad env name are reported at once."""
    data = {
        **minimal(tmp_path),
        "relayBaseUrl": "ftp://relay",
        "actions": {
            "*": {"label": "All", "argv": ["ls"]},
            "e": {"label": "E", "argv": ["ls"], "env": {"A B": "1"}},
        },
        "logSources": {"app": {"label": "App", "path": "app.log"}},
    }
    lines = problems(tmp_path, data)
    assert any(line.startswith("key 'relayBaseUrl'") for line in lines)
    assert any(line.startswith("key 'actions.*.[key]'") for line in lines)
    assert any("'A B' is not an environment variable name" in line for line in lines)
    assert any(line.startswith("key 'logSources.app.path'") for line in lines)
    assert len(lines) == 4


def test_agent_config_caps_are_bounded(tmp_path):
    """Output and diff caps stay within what one protocol message can carry (R18)."""
    data = {**minimal(tmp_path), "maxTaskLogBytes": 1 << 30, "maxDiffBytes": 10}
    lines = problems(tmp_path, data)
    assert [line.split(":")[0] for line in lines] == ["key 'maxTaskLogBytes'", "key 'maxDiffBytes'"]


def test_agent_config_test_helper_data_is_valid(tmp_path):
    """The shared test config (fake Codex) validates, so other tests start from a good file."""
    config = load_agent_config(write(tmp_path, fake_agent_config_data(tmp_path)))
    assert config.codex.command[-1].endswith("fake_codex.py")


def test_build_init_config_production_is_minimal(tmp_path):
    """O6, R17: production init enables read-only Codex only, with no actions or logs."""
    config = build_init_config(
        mode="production",
        relay_base_url="https://relay.example.org",
        agent_id="box",
        agent_label="Box",
        workspace_root=str(tmp_path),
    )
    assert config.actions == {}
    assert config.log_sources == {}
    flags = config.features
    assert (flags.codex_exec, flags.codex_exec_write, flags.run_action, flags.read_log) == (
        True,
        False,
        False,
        False,
    )


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def test_agent_init_writes_private_config_and_state_dir(tmp_path):
    """`agent init` writes a valid 0600 config and a 0700 stateDir, with a sample action."""
    path = tmp_path / "conf" / "agent.json"
    state = tmp_path / "state"
    result = run_cli(
        "agent", "init", "--config", str(path), "--workspace-root", str(workspace(tmp_path)),
        "--agent-id", "box-1", "--state-dir", str(state),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_agent_config(path)
    assert stat.S_IMODE(config.state_path.stat().st_mode) == 0o700
    assert config.state_path == state
    assert list(config.actions) == ["git-status"]
    assert config.agent_label == "box-1"
    assert "token" not in path.read_text().lower()


def test_agent_init_defaults_to_the_users_own_directories(tmp_path):
    """Without --config or --state-dir, the config goes to $XDG_CONFIG_HOME/codexrelay and the
    state to $XDG_STATE_HOME/codexrelay/agent/<agentId>: nothing lands in the workspace."""
    ws = workspace(tmp_path)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "st")}
    result = run_cli("agent", "init", "--workspace-root", str(ws), "--agent-id", "box", env=env)
    assert result.exit_code == 0, result.output
    path = tmp_path / "cfg" / "codexrelay" / "agent.json"
    config = load_agent_config(path)
    assert config.state_path == tmp_path / "st" / "codexrelay" / "agent" / "box"
    assert config.state_path.is_dir()
    assert list(ws.iterdir()) == []
    check = run_cli("agent", "check-config", env=env)
    assert check.exit_code == 0, check.output
    assert f"State directory: {config.state_path}" in check.output


def test_agent_config_without_state_dir_uses_the_per_user_state_dir(tmp_path, monkeypatch):
    """A hand-written config with no stateDir keeps the token in the per-user state dir,
    and ~/.local/state when XDG_STATE_HOME is unset or relative (as the spec says)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    config = load_agent_config(write(tmp_path, minimal(tmp_path)))
    assert config.state_path == tmp_path / "xdg" / "codexrelay" / "agent" / "dev-box"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "state" / "codexrelay" / "agent" / "dev-box"
    assert load_agent_config(write(tmp_path, minimal(tmp_path))).state_path == expected


def test_agent_init_keeps_the_config_out_of_the_workspace_unless_told(tmp_path):
    """A --config inside the workspace is refused with the fix named; --config-in-workspace
    allows it (the config holds no secret)."""
    ws = workspace(tmp_path)
    path = ws / "agent.json"
    base = ["agent", "init", "--config", str(path), "--workspace-root", str(ws),
            "--state-dir", str(tmp_path / "state")]  # fmt: skip
    refused = run_cli(*base)
    assert refused.exit_code == 2
    assert "inside the workspace" in refused.output
    assert "--config-in-workspace" in refused.output
    assert not path.exists()
    allowed = run_cli(*base, "--config-in-workspace")
    assert allowed.exit_code == 0, allowed.output
    assert load_agent_config(path).state_path == tmp_path / "state"


def test_agent_init_refuses_a_state_dir_in_the_workspace(tmp_path):
    """The token's directory may never be inside the workspace, flag or not."""
    ws = workspace(tmp_path)
    path = tmp_path / "agent.json"
    result = run_cli(
        "agent", "init", "--config", str(path), "--workspace-root", str(ws),
        "--state-dir", str(ws / "data"), "--config-in-workspace",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "is inside workspaceRoot" in result.output
    assert not path.exists()
    assert not (ws / "data").exists()


def test_agent_init_refuses_to_overwrite_without_force(tmp_path):
    """An existing config is kept unless --force is given."""
    path = tmp_path / "agent.json"
    path.write_text("{}")
    ws = str(workspace(tmp_path))
    result = run_cli("agent", "init", "--config", str(path), "--workspace-root", ws)
    assert result.exit_code == 1
    assert "--force" in result.output
    assert path.read_text() == "{}"
    forced = run_cli("agent", "init", "--config", str(path), "--workspace-root", ws, "--force")
    assert forced.exit_code == 0, forced.output
    load_agent_config(path)


def test_agent_init_uses_config_path_from_environment(tmp_path):
    """Without --config the path comes from CODEXRELAY_AGENT_CONFIG."""
    path = tmp_path / "from-env.json"
    result = run_cli(
        "agent", "init", "--workspace-root", str(workspace(tmp_path)),
        env={"CODEXRELAY_AGENT_CONFIG": str(path)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert path.exists()


def test_agent_init_production_needs_https_relay(tmp_path):
    """Production init refuses a missing or plain-http non-loopback relay URL."""
    path = tmp_path / "agent.json"
    base = ["agent", "init", "--config", str(path), "--workspace-root", str(workspace(tmp_path))]
    missing = run_cli(*base, "--mode", "production")
    plain = run_cli(*base, "--mode", "production", "--relay", "http://relay.example.org")
    assert (missing.exit_code, plain.exit_code) == (2, 2)
    assert "https" in plain.output
    assert not path.exists()
    good = run_cli(*base, "--mode", "production", "--relay", "https://relay.example.org")
    assert good.exit_code == 0, good.output
    assert load_agent_config(path).actions == {}


def test_agent_init_reports_bad_option_as_key_error(tmp_path):
    """A bad --agent-id is reported with the key it lands in, exit 2."""
    result = run_cli(
        "agent", "init", "--config", str(tmp_path / "a.json"),
        "--workspace-root", str(workspace(tmp_path)), "--agent-id", "no spaces",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "key 'agentId'" in result.output


def test_agent_check_config_prints_every_problem_and_exits_2(tmp_path):
    """`agent check-config` lists each bad key on its own line and exits 2."""
    data = {**minimal(tmp_path), "agentId": "", "actions": {"x": {"label": "X", "argv": "ls"}}}
    path = write(tmp_path, data)
    result = run_cli("agent", "check-config", "--config", str(path))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2


def test_agent_check_config_accepts_good_file_and_warns(tmp_path):
    """A valid file passes; a missing log file and Codex binary are warnings, not errors."""
    data = fake_agent_config_data(
        tmp_path,
        codex={"command": [str(tmp_path / "no-codex")]},
        logSources={"app": {"label": "App", "path": str(tmp_path / "app.log")}},
    )
    result = run_cli("agent", "check-config", "--config", str(write(tmp_path, data)))
    assert result.exit_code == 0, result.output
    assert "ok (agent test-agent" in result.output
    assert "npm install -g @openai/codex" in result.output
    assert "log source app" in result.output


def test_agent_check_config_refuses_state_in_the_workspace(tmp_path):
    """The layout older READMEs led to (config and data/agent in the project) is an error
    naming the fix, not a warning."""
    ws = workspace(tmp_path)
    path = ws / "agent.json"
    path.write_text(json.dumps({**minimal(tmp_path), "stateDir": "data/agent"}))
    result = run_cli("agent", "check-config", "--config", str(path))
    assert result.exit_code == 2
    assert f"stateDir {ws.resolve() / 'data' / 'agent'} is inside workspaceRoot" in result.output
    assert "remove the key to use" in result.output
    assert ": ok" not in result.output


@pytest.mark.parametrize("link", ["state dir", "token file"])
def test_agent_refuses_state_linked_into_the_workspace(tmp_path, link):
    """Symlinks are followed: a stateDir outside the workspace that is a link into it, or a
    token file linked into it, is refused by check-config, pair (before any request) and
    start."""
    ws = workspace(tmp_path)
    hidden = ws / ".cache" / "agent"
    hidden.mkdir(parents=True)
    state = tmp_path / "state"
    if link == "state dir":
        state.symlink_to(hidden, target_is_directory=True)
    else:
        state.mkdir()
        (state / "agent-token.json").symlink_to(hidden / "agent-token.json")
    path = write(tmp_path, {**minimal(tmp_path), "stateDir": str(state)})
    expected = "is inside workspaceRoot" if link == "state dir" else "links to"
    for command in (["check-config"], ["pair", "--pair-code", "K7QX-M2PD"], ["start"]):
        result = run_cli("agent", *command, "--config", str(path))
        assert result.exit_code == 2, (command, result.output)
        assert expected in result.output, (command, result.output)
        assert "cannot reach the relay" not in result.output
    assert list(hidden.iterdir()) == []


@pytest.mark.parametrize("code", ["K7QX", "K7QX-M2PD-AAAA", "K7QX_M2P!", "", "K7QU-M2PD"])
def test_agent_pair_tells_a_malformed_code_apart_before_any_request(tmp_path, code):
    """A code that cannot be a pairing code is named as such locally; the relay (here an
    address nothing listens on) is never asked."""
    path = write(tmp_path, {**minimal(tmp_path), "stateDir": str(tmp_path / "state")})
    result = run_cli("agent", "pair", "--config", str(path), "--pair-code", code)
    assert result.exit_code == 2
    assert "codes look like XXXX-XXXX" in result.output
    assert "cannot reach the relay" not in result.output


@pytest.mark.parametrize("code", ["K7QX-M2PD", "k7qx m2pd", "K7QXM2PD", "KOQI-L2PD"])
def test_pairing_code_format_accepts_what_the_relay_accepts(code):
    """Lower case, a space or no dash, and look-alike letters pass the local check."""
    assert code_format_problem(code) is None


def test_agent_refuses_a_codex_home_in_the_workspace(tmp_path):
    """The Codex CLI's login and sessions (codex.home) may not sit in the workspace either."""
    ws = workspace(tmp_path)
    data = {**minimal(tmp_path), "stateDir": str(tmp_path / "state")}
    data["codex"] = {"home": str(ws / ".codex")}
    result = run_cli("agent", "check-config", "--config", str(write(tmp_path, data)))
    assert result.exit_code == 2
    assert "codex.home" in result.output
    assert "auth.json" in result.output
