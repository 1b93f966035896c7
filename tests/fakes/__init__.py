"""Stand-ins for what the product drives: the model server (run for real on loopback) and
the Codex CLI (``fake_codex.py``, a real executable speaking the CLI's argv and JSONL)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

FAKES_DIR = Path(__file__).resolve().parent
FAKE_CODEX = FAKES_DIR / "fake_codex.py"


def fake_codex_command() -> list[str]:
    """A ``codex.command`` value that runs the fake CLI with this interpreter."""
    return [sys.executable, str(FAKE_CODEX)]


def fake_agent_config_data(
    tmp_path: Path,
    *,
    features: dict[str, Any] | None = None,
    codex: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """An agent config (camelCase JSON) whose Codex is the fake CLI, all under ``tmp_path``."""
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "relayBaseUrl": "http://127.0.0.1:9",
        "agentId": "test-agent",
        "agentLabel": "Test agent",
        "stateDir": str(tmp_path / "state"),
        "workspaceRoot": str(workspace),
        "features": {
            "codexExec": True,
            "codexExecWrite": False,
            "runAction": True,
            "readLog": True,
            **(features or {}),
        },
        "codex": {
            "command": fake_codex_command(),
            "home": str(tmp_path / "codex-home"),
            "timeoutSec": 20,
            **(codex or {}),
        },
    }
    data.update(top)
    return data
