"""Per-user directories for what the agent keeps: its config and its state (token, ledger).

They live under the person's home, never inside a project: a workspace is what Codex and
actions read, so nothing secret may sit in it. Linux follows the XDG base directories
(``$XDG_CONFIG_HOME``, ``$XDG_STATE_HOME``); macOS uses ``~/Library/Application Support``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

APP = "codexrelay"
XDG = {"config": ("XDG_CONFIG_HOME", ".config"), "state": ("XDG_STATE_HOME", ".local/state")}


def user_dir(kind: Literal["config", "state"]) -> Path:
    """This user's directory for ``kind`` files of the product (not created here)."""
    if sys.platform == "darwin":
        return Path("~/Library/Application Support").expanduser() / APP
    env_var, fallback = XDG[kind]
    base = os.environ.get(env_var, "")
    # The XDG spec ignores a relative value, as if the variable were unset.
    root = Path(base) if Path(base).is_absolute() else Path.home() / fallback
    return root / APP


def default_agent_config() -> Path:
    """Where `agent init` writes the agent config when no path is given."""
    return user_dir("config") / "agent.json"


def default_agent_state(agent_id: str) -> Path:
    """The agent's state directory (token, task ledger, status) when the config names none."""
    return user_dir("state") / "agent" / agent_id
