"""Test helpers for real agent processes: configs, pairing as a phone would, subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import PYTHON, ROOT, RelayProcess, wait_until

FAKE_CODEX = ROOT / "tests" / "fakes" / "fake_codex.py"


def write_agent_config(
    directory: Path, relay_url: str, *, agent_id: str = "devbox", **overrides: Any
) -> Path:
    """An agent config with a workspace, two actions and a log source (test mode)."""
    workspace = directory / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    log_file = directory / "app.log"
    if not log_file.exists():
        log_file.write_text("".join(f"line {i}\n" for i in range(1, 501)))
    data: dict[str, Any] = {
        "relayBaseUrl": relay_url,
        "agentId": agent_id,
        "agentLabel": f"{agent_id} label",
        "stateDir": "state",
        "workspaceRoot": str(workspace.resolve()),
        "features": {
            "codexExec": True,
            "codexExecWrite": False,
            "runAction": True,
            "readLog": True,
        },
        "actions": {
            "hello": {"label": "Say hello", "argv": [sys.executable, "-c", "print('hello')"]},
            "env": {"label": "Print environment", "argv": ["env"]},
        },
        "logSources": {"app": {"label": "App log", "path": str(log_file), "maxLines": 50}},
        "codex": {
            "command": [sys.executable, str(FAKE_CODEX)],
            "home": str(directory / "codex-home"),
            "timeoutSec": 30,
        },
    }
    data.update(overrides)
    path = directory / "agent.json"
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return path


def phone(relay: RelayProcess) -> httpx.Client:
    """A signed-in owner client (the phone)."""
    return relay.login()


def default_workspace(client: httpx.Client) -> str:
    """The id of the Default workspace."""
    workspaces = client.get("/api/v1/workspaces").json()["workspaces"]
    return next(w["id"] for w in workspaces if w["name"] == "Default")


def create_code(client: httpx.Client, wid: str, **body: Any) -> str:
    """A new pairing code, as an admin's phone makes it."""
    res = client.post(f"/api/v1/workspaces/{wid}/pairings", json=body)
    assert res.status_code == 201, res.text
    return str(res.json()["code"])


def pending_request(client: httpx.Client, wid: str, agent_id: str, timeout: float = 20) -> dict:
    """Wait for a pending pair request from ``agent_id`` to show up on the phone."""

    def find() -> dict | None:
        listed = client.get(f"/api/v1/workspaces/{wid}/pair-requests").json()["pairRequests"]
        return next(
            (r for r in listed if r["agentId"] == agent_id and r["status"] == "pending"), None
        )

    return wait_until(find, timeout=timeout, what=f"a pair request from {agent_id}")


def agent_info(client: httpx.Client, wid: str, agent_id: str) -> dict | None:
    """The agent as the phone's Agents list shows it."""
    agents = client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
    return next((a for a in agents if a["agentId"] == agent_id), None)


def wait_online(
    client: httpx.Client, wid: str, agent_id: str, *, online: bool = True, timeout: float = 20
) -> dict:
    """Wait until the agent's online flag is ``online``."""
    return wait_until(
        lambda: (info := agent_info(client, wid, agent_id)) and info["online"] == online and info,
        timeout=timeout,
        what=f"{agent_id} online={online}",
    )


@dataclass
class AgentProcess:
    """A real ``codexrelay agent ...`` subprocess."""

    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self, *args: str) -> AgentProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "codexrelay", "agent", *args, "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        log.close()
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"agent did not exit:\n{self.logs()}") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def pair_agent(
    relay: RelayProcess,
    client: httpx.Client,
    wid: str,
    directory: Path,
    *,
    agent_id: str = "devbox",
    process_env: dict[str, str] | None = None,
    **overrides: Any,
) -> AgentProcess:
    """Pair a new agent end to end (code, claim, approve) and leave it serving."""
    config = write_agent_config(directory, relay.setup.base_url, agent_id=agent_id, **overrides)
    code = create_code(client, wid)
    agent = AgentProcess(config, directory / "agent.log", env=dict(process_env or {}))
    agent.start("pair", "--pair-code", code)
    request = pending_request(client, wid, agent_id)
    res = client.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/approve")
    assert res.status_code == 200, res.text
    try:
        wait_online(client, wid, agent_id)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- agent log ---\n{agent.logs()}") from None
    return agent


def pair_pinned(
    owner: Any, book: Any, config: Path, env: dict[str, str] | None = None
) -> AgentProcess:
    """``agent pair --pair-code CODE.SECRET`` into a protected workspace, approved by the
    owner's ``trustkit.TrustedPhone`` with the MAC'd grant (TRUST.md §4.2); the agent pins."""
    assert owner.sudo().status_code == 200
    pairing = owner.pairing_code(book.ws)
    process = AgentProcess(config, config.parent / "agent.log", env=dict(env or {}))
    process.start("pair", "--pair-code", pairing.shown)

    def pending() -> dict[str, Any] | None:
        listed = owner.phone.get(f"/api/v1/workspaces/{book.ws}/pair-requests").json()
        return next((r for r in listed["pairRequests"] if r["status"] == "pending"), None)

    request = wait_until(pending, timeout=30, what="the pair request")
    assert owner.sudo().status_code == 200
    assert owner.approve(book, request, pairing).status_code == 200
    return process
