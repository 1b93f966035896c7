"""The agent's checks on conversation statements (TRUST.md §4.8, §4.13), without a server: a
real log written by software passkeys, the agent's pinned store and run-once ledger on
disk, and each refusal by its specific reason, recorded in the agent's audit log."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest

from codexrelay.agent.convgate import ConversationGate
from codexrelay.agent.ledger import TaskLedger
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.e2e.statements import (
    StatementError,
    StatementReason,
    TurnStatement,
    check_input,
    decode_statement,
    digest,
)
from codexrelay.e2e.tags import tagged_hash
from codexrelay.e2e.wire import b64u
from codexrelay.protocol import SignedTurn
from codexrelay.protocol_threads import ThreadList, ThreadStart, ThreadTurn
from tests.unit.e2e.builders import NOW, ORIGIN, RP_ID
from tests.unit.e2e.logkit import Person, dumps
from tests.unit.test_agent_trust import AGENT, World


def _input(prompt: str, **fields: Any) -> bytes:
    body = {"prompt": prompt, "images": None, "cwd": None, "model": None, "effort": None}
    return dumps({**body, **fields, "salt": b64u(secrets.token_bytes(16))})


class Conv:
    """A pinned agent's conversation gate and the people who sign turns for it."""

    def __init__(self, tmp: Path) -> None:
        self.world = World(tmp)
        self.ledger = TaskLedger.open(tmp)
        gate = self.world.gate()
        gate.checker.seen = self.ledger.__contains__
        self.gate = ConversationGate(gate, self.ledger)
        self.tmp = tmp

    def turn(
        self, person: Person, raw_input: bytes, mode: str = "new", **changes: Any
    ) -> dict[str, Any]:
        view = self.world.store.view()
        stmt = {
            "v": 1,
            "kind": "turn",
            "ws": "ws_7",
            "agent": AGENT,
            "thread": str(uuid.uuid4()),
            "turn": str(uuid.uuid4()),
            "mode": mode,
            "inputHash": digest(raw_input),
            "writeAccess": False,
            "device": self.world.device_of(person),
            "logHead": {"seq": view.head.seq, "hash": view.head.hash},
            "issuedAt": NOW,
            "expiresAt": NOW + 300,
        }
        return {**stmt, **changes}

    def signed(self, person: Person, stmt: dict[str, Any], raw_input: bytes) -> SignedTurn:
        raw = dumps(stmt)
        auth = person.authenticator.sign_statement(
            tagged_hash("turn", raw), rp_id=RP_ID, origin=ORIGIN, credential=person.credential
        )
        return SignedTurn(stmt=b64u(raw), input=b64u(raw_input), auth=[auth])

    def start(self, prompt: str, person: Person | None = None, **changes: Any) -> ThreadStart:
        person = person or self.world.member
        raw = _input(prompt)
        stmt = self.turn(person, raw, **changes)
        return ThreadStart(
            request_id=uuid.uuid4().hex, prompt=prompt, signed=self.signed(person, stmt, raw)
        )

    def refusal(self, request: Any) -> str:
        with pytest.raises(TaskRefusedError) as caught:
            asyncio.run(self.gate.admit(request, None))
        return caught.value.reason.value

    def last_audit(self) -> dict[str, Any]:
        return json.loads((self.tmp / "audit.jsonl").read_bytes().splitlines()[-1])


@pytest.fixture
def conv(tmp_path: Path) -> Conv:
    return Conv(tmp_path)


def test_a_signed_thread_start_is_admitted_once(conv):
    """Admitted, recorded (audit and run-once) before Codex sees it; the same bytes again
    are a duplicate, even for a gate that restarted on the same state directory."""
    request = conv.start("Explain the build")
    admitted = asyncio.run(conv.gate.admit(request, None))
    assert admitted is not None
    conv.gate.commit(admitted)
    assert (conv.last_audit()["kind"], conv.last_audit()["outcome"]) == ("turn", "accepted")
    assert conv.refusal(request) == "duplicate-task"
    again = Conv.__new__(Conv)
    again.world, again.tmp = conv.world, conv.tmp
    again.ledger = TaskLedger.open(conv.tmp)
    gate = conv.world.gate()
    gate.checker.seen = again.ledger.__contains__
    again.gate = ConversationGate(gate, again.ledger)
    assert again.refusal(request) == "duplicate-task"


def test_unsigned_work_is_refused_and_reading_is_not(conv):
    assert conv.refusal(ThreadStart(request_id="r1", prompt="hi")) == "signature-required"
    assert (conv.last_audit()["kind"], conv.last_audit()["reason"]) == (
        "turn",
        "signature-required",
    )
    tid = str(uuid.uuid4())
    assert conv.refusal(ThreadTurn(request_id="r2", thread_id=tid, prompt="hi")) == (
        "signature-required"
    )
    assert asyncio.run(conv.gate.admit(ThreadList(request_id="r3"), None)) is None


def test_an_unpinned_agent_admits_plain_requests(conv):
    conv.world.store.reset()
    assert asyncio.run(conv.gate.admit(ThreadStart(request_id="r1", prompt="hi"), None)) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"prompt": "rm -rf ~"}, "statement-mismatch"),
        ({"cwd": "elsewhere"}, "statement-mismatch"),
        ({"write_access": True}, "statement-mismatch"),
        ({"model": "other"}, "statement-mismatch"),
    ],
    ids=["prompt", "cwd", "writeAccess", "model"],
)
def test_the_relays_copy_must_equal_the_signed_input(conv, change, reason):
    request = conv.start("Explain the build")
    assert conv.refusal(request.model_copy(update=change)) == reason


def test_a_viewer_cannot_start_a_thread(conv):
    assert conv.refusal(conv.start("hi", conv.world.viewer)) == "role-too-low"


def test_a_follow_up_signed_as_a_new_thread_is_refused(conv):
    start = conv.start("hi")
    assert start.signed is not None
    turn = ThreadTurn(
        request_id="r9", thread_id=str(uuid.uuid4()), prompt="hi", signed=start.signed
    )
    assert conv.refusal(turn) == "statement-mismatch"


def test_an_expired_turn_is_refused(conv):
    conv.world.clock = float(NOW + 400)
    assert conv.refusal(conv.start("hi")) == "statement-expired"


def test_turn_input_fits_its_mode():
    """cwd, model and effort start a thread only; a steer carries no photos."""
    raw = _input("hi", cwd="src")
    stmt = {
        "v": 1,
        "kind": "turn",
        "ws": "ws_7",
        "agent": AGENT,
        "thread": "t1",
        "turn": str(uuid.uuid4()),
        "mode": "start",
        "inputHash": digest(raw),
        "writeAccess": False,
        "device": "dv_1",
        "logHead": {"seq": 0, "hash": digest(b"x")},
        "issuedAt": NOW,
        "expiresAt": NOW + 60,
    }
    signed = decode_statement(dumps(stmt), TurnStatement)
    with pytest.raises(StatementError) as caught:
        check_input(signed.value, raw)
    assert caught.value.reason == StatementReason.INCONSISTENT
    new = decode_statement(dumps({**stmt, "mode": "new"}), TurnStatement)
    assert check_input(new.value, raw).cwd == "src"
    with pytest.raises(StatementError) as caught:
        check_input(new.value, raw + b" ")
    assert caught.value.reason == StatementReason.BODY_MISMATCH
