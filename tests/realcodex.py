"""Drive the real Codex CLI (pinned in tools/codex) against the loopback model stand-in.

Shared by the real-CLI tests and by end-to-end tests that run it through relay and agent:
``install_codex()`` installs or reuses the pinned CLI, ``write_codex_home()`` writes a
CODEX_HOME whose only provider is the stand-in (reference: codex-cli.md section 1),
``codex_env()`` is the environment to run it with and ``run_codex_exec()`` runs one turn
with its own timeout, because the CLI never gives up on an unreachable model server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIN_FILE = ROOT / "tools" / "codex" / "package.json"
INSTALLER = ROOT / "scripts" / "install-codex.sh"
CODEX_VERSION: str = json.loads(PIN_FILE.read_text())["dependencies"]["@openai/codex"]
API_KEY_ENV = "CODEX_MOCK_API_KEY"
MODEL = "gpt-5.5"  # a slug in the CLI's bundled catalog, so no "model metadata" warning item
PROVIDER = "mock"


class CodexUnavailableError(Exception):
    """The pinned CLI cannot be installed here; ``str(exc)`` says why (for a skip)."""


def install_codex(*, timeout: float = 900) -> Path:
    """Install the pinned CLI into ``.cache/codex`` unless it is already there; the launcher."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise CodexUnavailableError("node/npm are not installed")
    try:
        proc = subprocess.run(
            [str(INSTALLER)], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise CodexUnavailableError(f"npm install did not finish within {timeout}s") from None
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("npm error")]
        why = " | ".join(errors[:3]) or proc.stderr.strip()[-400:]
        raise CodexUnavailableError(
            f"npm could not install @openai/codex@{CODEX_VERSION} (registry unreachable?): {why}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def codex_config_toml(model_base_url: str, *, model: str = MODEL) -> str:
    """config.toml for a CLI that talks only to ``model_base_url`` (no analytics, no plugins)."""
    return f"""\
model = {json.dumps(model)}
model_provider = "{PROVIDER}"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.{PROVIDER}]
name = "Offline mock"
base_url = {json.dumps(model_base_url)}
wire_api = "responses"
env_key = "{API_KEY_ENV}"
supports_websockets = false
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 20000
"""


def write_codex_home(home: Path, model_base_url: str, *, model: str = MODEL) -> Path:
    """Create (or re-point) a CODEX_HOME at ``home`` for the stand-in at ``model_base_url``.

    Rewriting it with a new URL keeps recorded sessions resumable: the provider id stays.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(codex_config_toml(model_base_url, model=model))
    return home


def codex_env(home: Path, tmpdir: Path) -> dict[str, str]:
    """Environment for the CLI: our CODEX_HOME, the mock key, and a TMPDIR of our own.

    A TMPDIR other than the one holding CODEX_HOME stops the CLI's helper-binary warning.
    """
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "OPENAI_"))}
    env.update(
        {"CODEX_HOME": str(home), "TMPDIR": str(tmpdir), API_KEY_ENV: "mock-key", "NO_COLOR": "1"}
    )
    return env


@dataclass(frozen=True)
class CodexRun:
    """One finished ``codex exec --json`` run: exit code, raw output and parsed events."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    @property
    def event_types(self) -> list[str]:
        return [str(event.get("type")) for event in self.events]

    @property
    def thread_id(self) -> str | None:
        return next(
            (e.get("thread_id") for e in self.events if e.get("type") == "thread.started"), None
        )

    @property
    def agent_messages(self) -> list[str]:
        return [
            e["item"].get("text", "")
            for e in self.events
            if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
        ]

    def describe(self) -> str:
        """Everything needed to understand a failed assertion."""
        return (
            f"argv: {self.argv}\nexit: {self.returncode} (timed out: {self.timed_out})\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


def run_codex_exec(
    launcher: Path,
    *,
    env: dict[str, str],
    workspace: Path,
    prompt: str,
    resume: str | None = None,
    sandbox: str = "read-only",
    timeout: float = 120,
) -> CodexRun:
    """Run one ``codex exec`` turn with the prompt on stdin; kill its process group on timeout."""
    argv = [
        str(launcher),
        "exec",
        "--json",
        "--sandbox",
        sandbox,
        "--skip-git-repo-check",
        "-C",
        str(workspace),
    ]
    if resume is not None:
        argv += ["resume", resume]
    argv.append("-")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = proc.communicate(prompt, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return CodexRun(argv, proc.returncode, stdout, stderr, timed_out)
