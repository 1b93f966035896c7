"""``codexrelay agent terminal`` starts the Codex TUI on the agent's app-server socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.agents import write_agent_config
from tests.helpers import PYTHON

PRINT_ARGV = (
    "import json, os, sys; "
    "print(json.dumps([sys.argv[1:], os.environ.get('CODEX_HOME'), os.getcwd()]))"
)


def run_terminal(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "codexrelay", "agent", "terminal", "--config", str(config), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_agent_terminal_attaches_the_tui_to_the_agent_socket(tmp_path: Path):
    """The TUI gets --remote unix://<the agent's socket>, on-request, read-only, CODEX_HOME."""
    config = write_agent_config(
        tmp_path,
        "http://127.0.0.1:9",
        features={"codexExec": True, "conversations": True},
        codex={"command": [sys.executable, "-c", PRINT_ARGV], "home": str(tmp_path / "home")},
    )
    workspace = tmp_path / "workspace"
    missing = run_terminal(config, workspace)
    assert missing.returncode != 0
    assert "start the agent first" in missing.stderr
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(state / "codex.sock"))
    try:
        done = run_terminal(config, workspace, "fix the build")
        outside = run_terminal(config, tmp_path)
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr
    argv, home, cwd = json.loads(done.stdout)
    assert argv == [
        "--remote",
        f"unix://{state / 'codex.sock'}",
        "-a",
        "on-request",
        "-s",
        "read-only",
        "fix the build",
    ]
    assert home == str(tmp_path / "home")
    assert cwd == str(workspace)
    assert outside.returncode != 0
    assert "inside workspaceRoot" in outside.stderr


def test_agent_terminal_refuses_when_conversations_are_off(tmp_path: Path):
    """Without features.conversations there is no app-server to attach to."""
    config = write_agent_config(tmp_path, "http://127.0.0.1:9")
    done = run_terminal(config, tmp_path / "workspace", "--write")
    assert done.returncode != 0
    assert "features.conversations" in done.stderr
