"""A compromised relay cannot make an agent's Codex do anything in a live conversation
(TRUST.md §2 tier A, §4.8, §4.13, §10 items 2 and 3).

The real relay app runs behind the attack hooks of ``tests/proof/hostile.py``; a real agent
process, paired to a protected workspace through the §4.2 flow, drives the real pinned
Codex CLI (``codex app-server``) offline against the scripted loopback model. The model
stand-in records every request the CLI makes, so "nothing ran" is checked where it counts:
no model request carried the attacker's prompt, and no command or file change happened in
the workspace. Each scenario asserts the agent's specific refusal reason and that the
refusal is in the agent's signed audit log. One honest signed thread, answered with a
signed approval, proves the harness can see a run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.runners.appserver.supervisor import SOCKET_NAME
from codexrelay.agent.trust import TRUST_FILE
from codexrelay.e2e import keys
from codexrelay.e2e.audit import verify_audit
from codexrelay.e2e.tags import tagged_hash
from codexrelay.e2e.wire import b64u, b64u_decode
from tests.agents import AgentProcess, pair_pinned, write_agent_config
from tests.conversations import idle, item, pending_approval, read, threads_url
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import wait_until
from tests.proof.hostile import HostileRelay
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)
from tests.softauthn import Phone, SoftAuthenticator
from tests.trustkit import (
    Book,
    TrustedPhone,
    dumps,
    signed_decision,
    signed_interrupt,
    signed_turn,
    signed_turn_statement,
    turn_input,
)

pytestmark = [pytest.mark.realcodex, pytest.mark.timeout(300)]

AGENT = "conv-01"


@dataclass
class World:
    relay: HostileRelay
    owner: TrustedPhone
    book: Book
    wid: str
    agent: AgentProcess
    dir: Path
    model: ModelServer

    @property
    def workspace(self) -> Path:
        return self.dir / "workspace"

    def prompts(self) -> list[str]:
        """Every user prompt the CLI sent the model: each turn Codex ran."""
        return [text for request in self.model.requests for text in request.user_texts]

    def audit(self) -> list[dict[str, Any]]:
        lines = (self.dir / "state" / AUDIT_FILE).read_bytes().splitlines()
        return [json.loads(line) for line in lines]

    def answer(self, request_id: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next(
                (
                    m
                    for m in list(self.relay.attack.received)
                    if m.get("requestId") == request_id
                    and m["type"] in {"thread.reply", "thread.refused"}
                ),
                None,
            )

        found: dict[str, Any] = wait_until(find, timeout=30, what=f"the answer to {request_id}")
        return found

    def refused(self, message: dict[str, Any], reason: str, kind: str = "turn") -> None:
        """Inject ``message`` as the relay: the agent must refuse it for ``reason``, record
        the refusal, and Codex must see nothing of it."""
        before = len(self.model.requests)
        files = sorted(p.name for p in self.workspace.iterdir())
        message = {"requestId": f"evil-{uuid.uuid4().hex[:12]}", **message}
        self.relay.inject(message)
        answer = self.answer(message["requestId"])
        assert (answer["type"], answer.get("reason")) == ("thread.refused", reason), answer
        last = self.audit()[-1]
        assert (last["kind"], last["outcome"], last["reason"]) == (kind, "refused", reason)
        assert len(self.model.requests) == before, "Codex ran a turn"
        assert sorted(p.name for p in self.workspace.iterdir()) == files, "something ran"

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.owner.phone.post(threads_url(self.wid, *path.split("/")), json=body)

    def start(self, prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """An honest signed thread start through the relay's API: (response, signed)."""
        raw = turn_input(prompt)
        stmt = signed_turn_statement(self.owner, self.book, AGENT, "new", None, raw)
        signed = signed_turn(self.owner, stmt, raw)
        res = self.owner.phone.post(
            threads_url(self.wid), json={"agentId": AGENT, "prompt": prompt, "signed": signed}
        )
        assert res.status_code == 201, res.text
        return res.json(), signed

    def decide(self, tid: str, approval: dict[str, Any], decision: str) -> Any:
        signed = signed_decision(self.owner, self.book, AGENT, approval, decision)
        body = {"decision": decision, "signed": signed}
        return self.post(f"{tid}/approvals/{approval['id']}", body)


def _online(owner: TrustedPhone, wid: str) -> bool:
    agents = owner.phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
    return any(a["agentId"] == AGENT and a["online"] and a.get("trust") for a in agents)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    directory = Path(tmp_path_factory.mktemp("hostile-conv"))
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    with ModelServer(responder=scripted_reply) as model:
        relay = HostileRelay(directory / "relay").start()
        http = relay.client()
        owner = TrustedPhone.enroll(Phone(http).bootstrap(relay.setup.token), "localhost")
        wid = owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        book, _ = owner.genesis(wid)
        agent_dir = directory / "agent"
        config = write_agent_config(
            agent_dir,
            relay.url,
            agent_id=AGENT,
            features={"codexExec": True, "conversations": True},
            codex={
                "command": [str(launcher)],
                "home": str(write_codex_home(directory / "codex-home", model.base_url)),
            },
            conversations={"approvalTimeoutSec": 120},
        )
        env = {API_KEY_ENV: "mock-key", "NO_COLOR": "1", "TMPDIR": str(codex_tmp)}
        process = pair_pinned(owner, book, config, env)
        try:
            wait_until((agent_dir / "state" / TRUST_FILE).exists, timeout=30, what="the pin")
            wait_until(lambda: _online(owner, wid), timeout=30, what="the agent pinned")
            socket = agent_dir / "state" / SOCKET_NAME
            wait_until(socket.exists, timeout=60, what="the agent's app-server")
            yield World(relay, owner, book, wid, process, agent_dir, model)
        finally:
            process.stop()
            http.close()
            relay.stop()
            shutil.rmtree(codex_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def honest(world: World) -> dict[str, Any]:
    """An honest signed thread whose command waits for approval (reused by the replays)."""
    started, signed = world.start("MOCK_ESCALATE: touch honest.txt")
    tid = started["thread"]["id"]
    approval = pending_approval(world.owner.phone, world.wid, tid)
    return {"tid": tid, "signed": signed, "approval": approval, "started": started}


# --- the baseline: an honest signed thread runs, and a signed approval answers it ---


def test_a_signed_thread_and_a_signed_approval_run(world, honest):
    """The harness sees a run: the signed thread reached Codex, its approval carries the
    agent's exact request bytes, and the signed accept ran the command once."""
    assert any("touch honest.txt" in p for p in world.prompts())
    approval = honest["approval"]
    request = json.loads(b64u_decode(approval["request"], max_bytes=1 << 21))
    assert (request["kind"], request["requestId"], request["agent"]) == (
        "approval.req",
        approval["id"],
        AGENT,
    )
    assert "touch honest.txt" in request["command"]
    res = world.decide(honest["tid"], approval, "accept")
    assert res.status_code == 200, res.text
    item(world.owner.phone, world.wid, honest["tid"], "commandExecution", "completed")
    idle(world.owner.phone, world.wid, honest["tid"])
    assert (world.workspace / "honest.txt").exists()
    kinds = [(r["kind"], r["outcome"]) for r in world.audit()]
    assert ("turn", "accepted") in kinds
    assert ("decision", "accepted") in kinds


# --- unsigned, forged, altered, replayed turns ---


def test_an_unsigned_turn_is_refused(world, honest):
    """The relay's own plain thread start and follow-up (no downgrade)."""
    world.refused(
        {"type": "thread.start", "prompt": "MOCK_ESCALATE: touch plain.txt"}, "signature-required"
    )
    world.refused(
        {"type": "thread.turn", "threadId": honest["tid"], "prompt": "touch plain2.txt"},
        "signature-required",
    )


def test_a_turn_forged_from_scratch_is_refused(world):
    """The relay's own passkey is not in the log."""
    attacker = SoftAuthenticator()
    credential = attacker.new_credential("localhost")
    raw = turn_input("MOCK_ESCALATE: touch forged.txt")
    stmt = signed_turn_statement(world.owner, world.book, AGENT, "new", None, raw)
    auth = attacker.sign_statement(
        tagged_hash("turn", dumps(stmt)),
        rp_id="localhost",
        origin=world.owner.origin,
        credential=credential,
    )
    signed = {"stmt": b64u(dumps(stmt)), "input": b64u(raw), "auth": [auth]}
    message = {"type": "thread.start", "prompt": "MOCK_ESCALATE: touch forged.txt"}
    world.refused({**message, "signed": signed}, "unknown-signer")


def _honest_start(world: World, prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = turn_input(prompt)
    stmt = signed_turn_statement(world.owner, world.book, AGENT, "new", None, raw)
    return stmt, signed_turn(world.owner, stmt, raw)


def test_an_altered_turn_is_refused(world):
    """A genuine signature, and the relay changes what Codex would see: its plain prompt
    (statement-mismatch), the signed input bytes (body-mismatch), or the statement itself,
    here write mode switched on (signature-invalid)."""
    _, signed = _honest_start(world, "say hello")
    evil = "MOCK_ESCALATE: touch altered.txt"
    world.refused({"type": "thread.start", "prompt": evil, "signed": signed}, "statement-mismatch")
    raw = json.loads(b64u_decode(signed["input"], max_bytes=1 << 20))
    swapped = {**signed, "input": b64u(dumps({**raw, "prompt": evil}))}
    world.refused({"type": "thread.start", "prompt": evil, "signed": swapped}, "body-mismatch")
    stmt = json.loads(b64u_decode(signed["stmt"], max_bytes=8192))
    flipped = {**signed, "stmt": b64u(dumps({**stmt, "writeAccess": True}))}
    message = {"type": "thread.start", "prompt": "say hello", "writeAccess": True}
    world.refused({**message, "signed": flipped}, "signature-invalid")


def test_a_turn_for_another_thread_or_kind_is_refused(world, honest):
    """A signed follow-up is bound to its thread and its mode."""
    raw = turn_input("MOCK_ESCALATE: touch moved.txt")
    other = str(uuid.uuid4())
    stmt = signed_turn_statement(world.owner, world.book, AGENT, "start", other, raw)
    signed = signed_turn(world.owner, stmt, raw)
    message = {
        "type": "thread.turn",
        "threadId": honest["tid"],
        "prompt": "MOCK_ESCALATE: touch moved.txt",
    }
    world.refused({**message, "signed": signed}, "statement-mismatch")
    steer = {
        "type": "thread.steer",
        "threadId": honest["tid"],
        "prompt": "MOCK_ESCALATE: touch moved.txt",
    }
    world.refused({**steer, "signed": signed}, "statement-mismatch")


def test_a_replayed_turn_is_refused(world, honest):
    """The honest thread start, sent again by the relay: run once, never twice."""
    prompt = "MOCK_ESCALATE: touch honest.txt"
    world.refused(
        {"type": "thread.start", "prompt": prompt, "signed": honest["signed"]}, "duplicate-task"
    )


# --- approvals ---


def test_an_approval_flipped_from_decline_to_accept_is_refused(world):
    """The person declined; the relay forwards accept with the signed decline (or the
    signed decline rewritten to accept): the command never runs."""
    started, _ = world.start("MOCK_ESCALATE: touch flipped.txt")
    tid = started["thread"]["id"]
    approval = pending_approval(world.owner.phone, world.wid, tid)
    decline = signed_decision(world.owner, world.book, AGENT, approval, "decline")
    base = {"type": "approval.decide", "threadId": tid, "approvalId": approval["id"]}
    world.refused(
        {**base, "decision": "accept", "signed": decline}, "statement-mismatch", "decision"
    )
    stmt = json.loads(b64u_decode(decline["stmt"], max_bytes=8192))
    rewritten = {**decline, "stmt": b64u(dumps({**stmt, "decision": "accept"}))}
    world.refused(
        {**base, "decision": "accept", "signed": rewritten}, "signature-invalid", "decision"
    )
    assert world.decide(tid, approval, "decline").status_code == 200
    item(world.owner.phone, world.wid, tid, "commandExecution", "declined")
    idle(world.owner.phone, world.wid, tid)
    assert not (world.workspace / "flipped.txt").exists()


def test_an_approval_replayed_to_another_request_is_refused(world):
    """An accept the person signed for one request, replayed onto another (of another
    thread, or the same decision id with a reworded request): only the one it names runs."""
    first, _ = world.start("MOCK_ESCALATE: touch first.txt")
    second, _ = world.start("MOCK_ESCALATE: touch second.txt")
    a = pending_approval(world.owner.phone, world.wid, first["thread"]["id"])
    b = pending_approval(world.owner.phone, world.wid, second["thread"]["id"])
    accept_a = signed_decision(world.owner, world.book, AGENT, a, "accept")
    assert (
        world.post(
            f"{first['thread']['id']}/approvals/{a['id']}",
            {"decision": "accept", "signed": accept_a},
        ).status_code
        == 200
    )
    message = {
        "type": "approval.decide",
        "threadId": second["thread"]["id"],
        "approvalId": b["id"],
        "decision": "accept",
    }
    world.refused({**message, "signed": accept_a}, "statement-mismatch", "decision")
    reworded = {**b, "request": a["request"]}  # the relay shows B's card with A's bytes
    forged = signed_decision(world.owner, world.book, AGENT, reworded, "accept")
    world.refused({**message, "signed": forged}, "statement-mismatch", "decision")
    item(world.owner.phone, world.wid, first["thread"]["id"], "commandExecution", "completed")
    assert (world.workspace / "first.txt").exists()
    assert not (world.workspace / "second.txt").exists()
    assert (
        read(world.owner.phone, world.wid, second["thread"]["id"])["approvals"][-1]["status"]
        == "pending"
    )
    answered = world.decide(second["thread"]["id"], b, "decline")
    assert answered.status_code == 200, answered.text


def test_an_unsigned_approval_is_refused(world):
    """The relay answers an approval on its own."""
    started, _ = world.start("MOCK_ESCALATE: touch unsigned-approval.txt")
    tid = started["thread"]["id"]
    approval = pending_approval(world.owner.phone, world.wid, tid)
    message = {"type": "approval.decide", "threadId": tid, "approvalId": approval["id"]}
    world.refused({**message, "decision": "accept"}, "signature-required", "decision")
    assert not (world.workspace / "unsigned-approval.txt").exists()
    stop = signed_interrupt(world.owner, world.book, AGENT, tid, approval["turnId"])
    res = world.post(f"{tid}/interrupt", {"signed": stop})
    assert (res.status_code, res.json()["turn"]["status"]) == (200, "interrupted"), res.text
    last = world.audit()[-1]
    assert (last["kind"], last["outcome"]) == ("interrupt", "accepted")


def test_an_unsigned_interrupt_is_refused(world):
    """An interrupt can only stop work, yet the relay cannot forge one either."""
    started, _ = world.start("MOCK_ESCALATE: touch stopped.txt")
    tid = started["thread"]["id"]
    pending_approval(world.owner.phone, world.wid, tid)
    world.refused({"type": "thread.interrupt", "threadId": tid}, "signature-required", "interrupt")
    assert read(world.owner.phone, world.wid, tid)["thread"]["status"] != "idle"
    res = world.owner.phone.post(threads_url(world.wid, tid, "interrupt"))
    assert (res.status_code, res.json()["error"]) == (409, "signature-required")


# --- the relay's own first filter, and the record ---


def test_the_relay_refuses_unsigned_and_mismatched_requests(world):
    """The relay's API answers a plain request in a protected workspace with 409
    signature-required, and a signed one whose plain copy differs with 400."""
    res = world.owner.phone.post(threads_url(world.wid), json={"agentId": AGENT, "prompt": "hi"})
    assert (res.status_code, res.json()["error"]) == (409, "signature-required")
    _, signed = _honest_start(world, "say hello")
    body = {"agentId": AGENT, "prompt": "say goodbye", "signed": signed}
    res = world.owner.phone.post(threads_url(world.wid), json=body)
    assert (res.status_code, res.json()["error"]) == (400, "invalid-signature")


def test_the_agents_audit_log_verifies(world):
    """Every accepted and refused conversation statement is in the agent's signed chain."""
    trust = world.relay.services.store.agents.named(world.wid, AGENT)[-1].trust
    assert trust is not None
    lines = (world.dir / "state" / AUDIT_FILE).read_bytes().splitlines(keepends=True)
    assert verify_audit(lines, keys.load_verify_key("c25519", trust["sigPub"])).ok


def test_a_replay_through_the_relays_own_api_is_refused_by_the_agent(world, honest):
    """The relay keeps no run-once set; the agent does, and the phone hears why."""
    prompt = "MOCK_ESCALATE: touch honest.txt"
    body = {"agentId": AGENT, "prompt": prompt, "signed": honest["signed"]}
    before = len(world.model.requests)
    res = world.owner.phone.post(threads_url(world.wid), json=body)
    assert (res.status_code, res.json()["error"]) == (403, "statement-refused"), res.text
    assert "duplicate-task" in res.json()["message"]
    assert len(world.model.requests) == before
