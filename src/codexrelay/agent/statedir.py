"""The agent's secrets stay out of its workspace: what is inside ``workspaceRoot``, Codex and
actions can read (a model told to "look around" would find the agent token there). The same
holds for the Codex home the agent runs the CLI with (its login and session files).

The check follows symlinks, so neither a ``stateDir`` that is a link into the workspace nor
a token file linked there slips through. The agent refuses to pair or start while it fails.
"""

from __future__ import annotations

from pathlib import Path

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.ledger import LEDGER_FILE
from codexrelay.agent.status import STATUS_FILE
from codexrelay.agent.tokenstore import TOKEN_FILE
from codexrelay.userdirs import default_agent_state

STATE_FILES = (TOKEN_FILE, LEDGER_FILE, STATUS_FILE)


def workspace_exposure(config: AgentConfig) -> str | None:
    """Why the agent's state would be readable from its workspace, with the fix; or None."""
    root = config.root
    state = config.state_path
    if state.resolve().is_relative_to(root):
        default = default_agent_state(config.agent_id)
        return (
            f"stateDir {state} is inside workspaceRoot {root}, where Codex and actions can read "
            f"the agent token. Fix: set stateDir to a directory outside the workspace (or remove "
            f"the key to use {default}), then pair again with "
            "`codexrelay agent pair --pair-code CODE`."
        )
    codex_home = config.codex_home.resolve()
    if codex_home.is_relative_to(root):
        return (
            f"codex.home {config.codex_home} is inside workspaceRoot {root}, where Codex and "
            "actions can read its login (auth.json) and session files. Fix: set codex.home to "
            "a directory outside the workspace (or remove the key to use ~/.codex)."
        )
    for name in STATE_FILES:
        path = state / name
        real = path.resolve()
        if real.is_relative_to(root):
            return (
                f"{path} links to {real}, inside workspaceRoot {root}, where Codex and actions "
                f"can read it. Fix: delete the link {path}; the agent keeps its files in "
                "stateDir itself."
            )
    return None


def config_exposure(config_path: Path, root: Path) -> str | None:
    """Why writing the config at ``config_path`` would put it in the workspace; or None."""
    real = config_path.expanduser().resolve()
    if not real.is_relative_to(root.resolve()):
        return None
    return (
        f"{config_path} is inside the workspace {root}, which Codex reads and git would list. "
        "Leave out --config to keep it in your user config directory, or pass "
        "--config-in-workspace to keep it there anyway."
    )
