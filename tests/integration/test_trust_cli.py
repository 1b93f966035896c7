"""Turning protection on for a workspace whose agent was paired before, end to end: a real
relay process, a real agent process, the phone's side in Python.

The running agent refuses signed tasks until it is pinned; ``agent trust pin`` with the
phone's one-time code pins it without a restart; then signed tasks run, plain ones are
refused by the relay, cancel is device-signed, ``trust show|verify|reset`` report and forget,
and ``audit verify --agent-log --expect-head`` catches a record cut from the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents import AgentProcess, write_agent_config
from tests.helpers import PYTHON, RelayProcess, wait_until, write_relay_config
from tests.softauthn import Phone
from tests.trustkit import Book, TrustedPhone

AGENT = "devbox"
TERMINAL = {"completed", "failed", "cancelled", "rejected", "interrupted"}


@dataclass
class World:
    relay: RelayProcess
    owner: TrustedPhone
    wid: str
    agent: AgentProcess
    config: Path
    dir: Path


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "codexrelay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pending(owner: TrustedPhone, wid: str, kind: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        listed = owner.phone.get(f"/api/v1/workspaces/{wid}/pair-requests").json()
        return next(
            (r for r in listed["pairRequests"] if r["status"] == "pending" and r["kind"] == kind),
            None,
        )

    found: dict[str, Any] = wait_until(find, timeout=30, what=f"a pending {kind} request")
    return found


def task_state(owner: TrustedPhone, wid: str, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task: dict[str, Any] = owner.phone.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}").json()[
            "task"
        ]
        return task if task["status"] in TERMINAL else None

    found: dict[str, Any] = wait_until(done, timeout=30, what=f"task {task_id} to finish")
    return found


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A workspace with an agent paired the plain way, then protected by the owner."""
    relay = RelayProcess(write_relay_config(tmp_path / "relay"), tmp_path / "relay.log").start()
    phone = Phone(relay.client()).bootstrap(relay.setup.token)
    owner = TrustedPhone.enroll(phone, "localhost")
    wid = phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
    config = write_agent_config(
        tmp_path / "agent",
        relay.setup.base_url,
        agent_id=AGENT,
        actions={"hello": {"label": "Hello", "argv": [sys.executable, "-c", "print('hello')"]}},
    )
    code = phone.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
    agent = AgentProcess(config, tmp_path / "agent.log").start("pair", "--pair-code", code)
    request = pending(owner, wid, "pair")
    assert (
        phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/approve").status_code
        == 200
    )
    wait_until(
        lambda: any(
            a["online"] for a in phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
        ),
        timeout=30,
        what="the agent online",
    )
    try:
        yield World(relay, owner, wid, agent, config, tmp_path / "agent")
    finally:
        agent.stop()
        phone.client.close()
        relay.stop()


def submit(world: World, book: Book, **fields: Any) -> tuple[dict[str, Any], Any]:
    kind = fields.pop("kind", "run_action")
    if kind == "run_action":
        fields.setdefault("actionId", "hello")
    stmt, body = world.owner.task(book, AGENT, kind, **fields)
    return stmt, world.owner.submit(book, world.owner.signed_task(stmt, body))


def test_protecting_a_workspace_and_pinning_a_paired_agent(world):
    book, _ = world.owner.genesis(world.wid)
    plain = world.owner.phone.post(
        f"/api/v1/workspaces/{world.wid}/tasks",
        json={"agentId": AGENT, "type": "run_action", "actionId": "hello"},
    )
    assert plain.json()["error"] == "signature-required"

    stmt, res = submit(world, book)
    assert res.status_code == 201, res.text
    assert task_state(world.owner, world.wid, stmt["task"])["reason"] == "workspace-not-pinned"

    # The phone makes a one-time code; the agent (still running) asks to pin with it.
    assert world.owner.sudo().status_code == 200
    pairing = world.owner.pairing_code(world.wid)
    pin = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "codexrelay",
            "agent",
            "trust",
            "pin",
            "--config",
            str(world.config),
            "--code",
            pairing.shown,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    request = pending(world.owner, world.wid, "pin")
    assert request["agentId"] == AGENT
    assert world.owner.sudo().status_code == 200
    assert world.owner.approve(book, request, pairing).status_code == 200
    out, _ = pin.communicate(timeout=60)
    assert pin.returncode == 0, out
    assert 'Paired to workspace "Default"' in out
    assert "Safety number:" in out

    stmt, res = submit(world, book)
    assert res.status_code == 201, res.text
    assert task_state(world.owner, world.wid, stmt["task"])["status"] == "completed"

    shown = cli("agent", "trust", "show", "--config", str(world.config))
    assert shown.returncode == 0, shown.stderr
    assert "Log head: 1:" in shown.stdout
    assert f"{world.owner.name} ({world.owner.user_id}): owner" in shown.stdout
    verified = cli("agent", "trust", "verify", "--config", str(world.config))
    assert verified.returncode == 0, verified.stderr
    assert "Relay's log verified: head 1:" in verified.stdout

    check_signed_cancel(world, book)
    check_agent_audit_log(world, shown.stdout)

    reset = cli("agent", "trust", "reset", "--yes", "--config", str(world.config))
    assert "Forgot the pinned workspace." in reset.stdout
    stmt, res = submit(world, book)
    assert task_state(world.owner, world.wid, stmt["task"])["reason"] == "workspace-not-pinned"


def check_signed_cancel(world: World, book: Book) -> None:
    """Cancel is device-signed; the agent stops the task."""
    stmt, res = submit(world, book, kind="codex_exec", actionId=None, prompt="FAKE: sleep 30\nhi")
    assert res.status_code == 201, res.text
    path = f"/api/v1/workspaces/{world.wid}/tasks/{stmt['task']}"
    wait_until(
        lambda: world.owner.phone.get(path).json()["task"]["status"] == "running",
        timeout=30,
        what="the Codex task running",
    )
    cancel = world.owner.cancel(book, AGENT, stmt["task"])
    assert world.owner.phone.post(path + "/signed-cancel", json=cancel).status_code == 200
    assert task_state(world.owner, world.wid, stmt["task"])["status"] == "cancelled"


def check_agent_audit_log(world: World, shown: str) -> None:
    """The agent's log verifies with its key up to the head the phone shows; a record cut
    from its end is caught with --expect-head."""
    key = next(
        line.split(": ", 1)[1] for line in shown.splitlines() if line.startswith("Agent key:")
    )
    log = world.dir / "state" / "audit.jsonl"
    last = json.loads(log.read_bytes().splitlines()[-1])

    def shown_head() -> dict[str, Any] | None:
        agents = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/agents").json()["agents"]
        head: dict[str, Any] = next(a for a in agents if a["agentId"] == AGENT)["trust"][
            "auditHead"
        ]
        return head if head["seq"] == last["seq"] else None

    head = wait_until(shown_head, timeout=15, what="the phone to show the agent's audit head")
    assert head["hash"] == last["hash"]
    noted = f"{head['seq']}:{head['hash']}"
    args = ["audit", "verify", "--agent-log", str(log), "--public-key", key, "--expect-head", noted]
    ok = cli(*args)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    assert cli(*args[:-2]).returncode == 0  # alone, a shorter chain still verifies
    cut = cli(*args)
    assert cut.returncode == 1
    assert "truncated" in cut.stdout
