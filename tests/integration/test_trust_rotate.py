"""``codexrelay agent trust rotate-key`` end to end (TRUST.md §4.10): a real relay process,
a real agent paired into a protected workspace, the phone's side in Python.

The new keys are announced by an ``agent.rotate`` entry signed with the old key; the audit
log verifies across the change (a ``key.rotate`` record signed by the old key hands over to
the new one); after a restart the agent reports the new key and still runs signed tasks.
A running agent is not rotated under its own feet, and the relay takes no other entry from
an agent.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.tokenstore import TokenStore
from codexrelay.agent.trust import KEYS_FILE, TRUST_FILE, AgentKeys
from codexrelay.e2e import keys
from codexrelay.e2e.audit import verify_audit
from tests.agents import AgentProcess, pair_pinned, write_agent_config
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.integration.test_trust_cli import cli, task_state
from tests.softauthn import Phone
from tests.trustkit import Book, TrustedPhone

AGENT = "rotor"


@dataclass
class World:
    relay: RelayProcess
    owner: TrustedPhone
    book: Book
    agent: AgentProcess
    config: Path
    state: Path

    def trust(self) -> dict[str, Any] | None:
        agents = self.owner.phone.get(f"/api/v1/workspaces/{self.book.ws}/agents").json()
        found = next((a for a in agents["agents"] if a["agentId"] == AGENT), None)
        return found["trust"] if found and found["online"] else None

    def run_task(self) -> str:
        stmt, body = self.owner.task(self.book, AGENT, actionId="hello")
        res = self.owner.submit(self.book, self.owner.signed_task(stmt, body))
        assert res.status_code == 201, res.text
        return str(task_state(self.owner, self.book.ws, stmt["task"])["status"])

    def log_ops(self) -> list[dict[str, Any]]:
        page = self.owner.phone.get(f"/api/v1/workspaces/{self.book.ws}/e2e/log").json()
        found = []
        for item in page["entries"][1:]:
            raw = base64.urlsafe_b64decode(item["entry"] + "=" * (-len(item["entry"]) % 4))
            found.append(json.loads(raw))
        return found


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    relay = RelayProcess(write_relay_config(tmp_path / "relay"), tmp_path / "relay.log").start()
    owner = TrustedPhone.enroll(Phone(relay.client()).bootstrap(relay.setup.token), "localhost")
    wid = owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
    book, _ = owner.genesis(wid)
    config = write_agent_config(
        tmp_path / "agent",
        relay.setup.base_url,
        agent_id=AGENT,
        actions={"hello": {"label": "Hello", "argv": [sys.executable, "-c", "print('hello')"]}},
    )
    agent = pair_pinned(owner, book, config)
    world = World(relay, owner, book, agent, config, tmp_path / "agent" / "state")
    try:
        wait_until((world.state / TRUST_FILE).exists, timeout=30, what="the pin")
        wait_until(world.trust, timeout=30, what="the agent online and pinned")
        yield world
    finally:
        agent.stop()
        owner.phone.client.close()
        relay.stop()


def test_rotate_key_announces_the_new_key_and_keeps_the_audit_chain(world):
    assert world.run_task() == "completed"
    old = AgentKeys.load_or_create(world.state)
    refused = cli("agent", "trust", "rotate-key", "--config", str(world.config))
    assert refused.returncode != 0
    assert "stop the agent first" in refused.stderr
    world.agent.stop()
    done = cli("agent", "trust", "rotate-key", "--config", str(world.config))
    assert done.returncode == 0, done.stderr
    new = AgentKeys.load_or_create(world.state)
    assert new.sig_pub != old.sig_pub
    assert f"New agent key: {new.sig_pub}" in done.stdout
    assert (world.state / KEYS_FILE).stat().st_mode & 0o777 == 0o600
    rotation = world.log_ops()[-1]
    assert (rotation["op"], rotation["body"]["sigPub"]) == ("agent.rotate", new.sig_pub)
    lines = (world.state / AUDIT_FILE).read_bytes().splitlines(keepends=True)
    assert verify_audit(lines, keys.load_verify_key("c25519", old.sig_pub)).ok
    world.agent.start("start")
    wait_until(
        lambda: (t := world.trust()) is not None and t["sigPub"] == new.sig_pub,
        timeout=30,
        what="the agent back with its new key",
    )
    assert world.run_task() == "completed"
    lines = (world.state / AUDIT_FILE).read_bytes().splitlines(keepends=True)
    report = verify_audit(lines, keys.load_verify_key("c25519", old.sig_pub))
    assert report.ok
    assert not verify_audit(lines, keys.load_verify_key("c25519", new.sig_pub)).ok


def test_the_relay_takes_only_an_agents_own_rotation(world):
    """Another op, or another agent's rotation, posted with an agent token: 403."""
    stored = TokenStore(world.state).usable_for(world.relay.setup.base_url, AGENT)
    assert stored is not None
    headers = {"Authorization": f"Bearer {stored.token}"}
    ops = world.log_ops()
    entry = {
        "v": 1,
        "ws": world.book.ws,
        "seq": len(ops) + 1,
        "prev": world.book.head,
        "op": "agent.rotate",
        "body": {
            "agentId": "someone-else",
            "sigPub": "A" * 43,
            "kexPub": "A" * 43,
            "suite": "c25519",
        },
        "issuedAt": 1,
    }
    raw = json.dumps(entry, separators=(",", ":")).encode()
    posted = {
        "entry": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "sigs": [{"agentKey": "someone-else", "sig": "A" * 86}],
    }
    res = httpx.post(
        f"{world.relay.setup.base_url}/api/v1/agent/e2e/log", json=posted, headers=headers
    )
    assert (res.status_code, res.json()["error"]) == (403, "forbidden")
    assert world.log_ops() == ops
