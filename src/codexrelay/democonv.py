"""Which Codex the demo's live conversations use, and the settings that go with it.

With the Codex CLI on PATH and signed in (``codex login status``), the demo's agent uses it
as it is: the person's own login and model. Without a login, the real CLI runs against the
offline demo model (``codexrelay.demomodel``) through a CODEX_HOME of the demo's own, so
nothing of the person's Codex setup is touched. Without a CLI, conversations stay off.

The demo's sample project allows write mode on both sides (relay and agent), and only it:
the agent's ``workspaceRoot`` is the sample project, so nothing outside it is writable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codexrelay.demomodel import LABEL, DemoModel

Mode = Literal["real", "offline", "missing"]
DEMO_CODEX_MODEL = "gpt-5.5"  # a slug in the CLI's bundled catalog: no "unknown model" notice


def codex_home_config(base_url: str) -> str:
    """config.toml for a CLI that talks only to the offline demo model on loopback."""
    return f"""\
model = {json.dumps(DEMO_CODEX_MODEL)}
model_provider = "codexrelay-demo"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.codexrelay-demo]
name = {json.dumps(LABEL)}
base_url = {json.dumps(base_url)}
wire_api = "responses"
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0
"""


def signed_in(codex: str) -> bool:
    """Whether the Codex CLI has a login (``codex login status`` succeeds)."""
    try:
        done = subprocess.run(
            [codex, "login", "status"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "not logged in" not in (done.stdout + done.stderr).lower()


@dataclass
class DemoCodex:
    """The demo's Codex for conversations: the mode, the CLI and (offline) the model."""

    mode: Mode
    command: str | None = None
    home: Path | None = None
    model: DemoModel | None = None

    def agent_settings(self) -> dict[str, Any]:
        """What the demo agent's config gets: conversations and write mode where a CLI is."""
        if self.mode == "missing" or self.command is None:
            return {}
        codex: dict[str, Any] = {"command": [self.command]}
        if self.home is not None:
            codex["home"] = str(self.home)
        return {
            "features": {"conversations": True, "codexExecWrite": True},
            "codex": codex,
        }

    def describe(self) -> str:
        """The line the demo prints about it."""
        if self.mode == "real":
            return (
                f"Conversations: the real Codex model, with this computer's login ({self.command})"
            )
        if self.mode == "offline":
            return (
                "Conversations: OFFLINE DEMO MODEL (scripted, no network, no account) through the "
                f"real Codex CLI ({self.command}); run `codex login` for a real model"
            )
        return "Conversations: off (no Codex CLI on PATH; `make demo` installs the pinned one)"

    def stop(self) -> None:
        if self.model is not None:
            self.model.stop()
            self.model = None


def plan_codex(base: Path) -> DemoCodex:
    """Pick the demo's Codex; starts the offline demo model when it is the one."""
    codex = shutil.which("codex")
    if codex is None:
        return DemoCodex("missing")
    if signed_in(codex):
        return DemoCodex("real", command=codex)
    model = DemoModel().start()
    home = base / "codex-home"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The CLI's sandbox helper is not set up for a CODEX_HOME inside the temporary
    # directory (the demo's own lives in /tmp): the agent and its CLI, which inherit the
    # demo's environment, get a TMPDIR of their own beside it.
    tmp = base / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    (home / "config.toml").write_text(codex_home_config(model.base_url), encoding="utf-8")
    return DemoCodex("offline", command=codex, home=home, model=model)
