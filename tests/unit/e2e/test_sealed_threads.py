"""Sealed conversations without a server (TRUST.md §4.7, §4.8, §4.13, §5, §10 properties):
the agent's ``ThreadSealing`` leaves no text in what the relay hears and every reader device
opens the thread; a drop, a duplicate, a reorder or an envelope forged by a key holder is
detected; a reader who leaves gets nothing new; sealed input opens only as signed, and the
relay's envelope store keeps its order under its cap."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.sealing import TaskKeys
from codexrelay.agent.threadseal import ThreadSealing
from codexrelay.e2e import keys
from codexrelay.e2e.envelope import (
    EnvelopeError,
    Sealer,
    parse_wire,
    unwrap_task_key,
    wrap_task_key,
)
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import seal_record
from codexrelay.e2e.sealedthreads import read_thread
from codexrelay.e2e.statements import digest
from codexrelay.e2e.wire import b64u
from codexrelay.protocol import Message
from codexrelay.protocol_sealed import SealedThreadEnvelope
from codexrelay.protocol_threads import (
    Approval,
    ApprovalUpdate,
    SealedThreadInput,
    ThreadDelta,
    ThreadInfo,
    ThreadItem,
    ThreadItemEvent,
    ThreadReply,
    ThreadStart,
    ThreadUpdate,
    TurnInfo,
)
from codexrelay.relay.conversations.envelopes import ThreadEnvelopes
from tests.unit.e2e.builders import raw, turn
from tests.unit.e2e.test_sealed import AGENT, WS, Party

THREAD = "01a2453b-9dc8-7e91-8d5d-687fde1c4a5f"
SECRET = "cnrythreadsecret0123456789abcdef"
NOW = datetime(2026, 12, 5, tzinfo=UTC)


@dataclasses.dataclass
class Pin:
    workspace_id: str = WS


class Gate:
    """The parts of the agent's trust gate that sealing uses."""

    def __init__(self, party: Party, tmp: Path, view: LogView) -> None:
        self.agent_id = AGENT
        self.keys = type("Keys", (), {"signing": party.agent_sig, "kex": party.agent_kex})()
        self.task_keys = TaskKeys(tmp, keep_days=7)
        self.view = view
        self.trust = self
        self.refusals: list[str] = []

    def current(self) -> tuple[Pin, LogView]:
        return Pin(), self.view

    def pin(self) -> Pin:
        return Pin()


def _sealed(view: LogView) -> LogView:
    return dataclasses.replace(view, policy=view.policy.model_copy(update={"content": "sealed"}))


def _world(tmp_path: Path) -> tuple[Party, Gate, ThreadSealing]:
    party = Party()
    gate = Gate(party, tmp_path, _sealed(party.view))
    return party, gate, ThreadSealing(gate)  # type: ignore[arg-type]


def _messages(n: int = 0) -> list[Message]:
    info = ThreadInfo(id=THREAD, source="phone", status="running", cwd="/w/repo", preview=SECRET)
    turn_info = TurnInfo(id="t1", thread_id=THREAD, status="failed", error=f"boom {SECRET}")
    approval = Approval(
        id="apr_1", thread_id=THREAD, turn_id="t1", item_id="i3", kind="command",
        command=f"echo {SECRET}", cwd="/w/repo", reason=SECRET,
        available_decisions=["accept", "decline"], status="pending",
        requested_at=NOW, expires_at=NOW + timedelta(minutes=5), request=b64u(SECRET.encode()),
    )  # fmt: skip
    return [
        ThreadUpdate(thread=info, turn=turn_info),
        ThreadItemEvent(
            thread_id=THREAD,
            item=ThreadItem(id=f"i{n}", seq=n + 1, type="agentMessage", text=SECRET),
        ),
        ThreadDelta(thread_id=THREAD, item_id=f"i{n}", seq=n + 2, field="text", delta=f" {SECRET}"),
        ApprovalUpdate(approval=approval),
    ]


def _send(sealing: ThreadSealing, messages: list[Message]) -> list[Message]:
    async def run() -> list[Message]:
        out: list[Message] = []
        for message in messages:
            out += await sealing.outgoing(message)
        return out

    return asyncio.run(run())


def _envelopes(out: list[Message]) -> list[bytes]:
    return [m.envelope.encode() for m in out if isinstance(m, SealedThreadEnvelope)]


def _read(party: Party, device: str, items: list[bytes], view: LogView | None = None) -> Any:
    return read_thread(
        items, party.kex[device], me=device, view=view or party.view, agent=AGENT, thread=THREAD
    )


def test_the_relay_hears_no_text_and_every_reader_opens_the_thread(tmp_path: Path) -> None:
    party, _, sealing = _world(tmp_path)
    out = _send(sealing, _messages())
    heard = [m for m in out if not isinstance(m, SealedThreadEnvelope)]
    assert [m.type for m in heard] == ["thread.update", "approval.update"]
    assert SECRET not in json.dumps([m.model_dump(mode="json") for m in out])
    assert SECRET[-10:] not in json.dumps([m.model_dump(mode="json") for m in out])
    for device in ("dv_1", "dv_2"):
        shown = _read(party, device, _envelopes(out))
        assert shown.dropped == []
        assert shown.items["i0"]["text"] == f"{SECRET} {SECRET}"
        assert shown.approvals["apr_1"]["command"] == f"echo {SECRET}"
        assert shown.thread["preview"] == SECRET
        assert shown.turns["t1"]["error"] == f"boom {SECRET}"
    assert TaskKeys(tmp_path, keep_days=7).get(WS, THREAD) is not None, "kept for later readers"


def test_a_signed_policy_sends_everything_as_before(tmp_path: Path) -> None:
    party, gate, sealing = _world(tmp_path)
    gate.view = party.view
    messages = _messages()
    assert _send(sealing, messages) == messages


def test_a_read_seals_the_history_again_and_the_relay_gets_ids_only(tmp_path: Path) -> None:
    party, _, sealing = _world(tmp_path)
    first = _envelopes(_send(sealing, _messages()))
    item = ThreadItem(id="i0", seq=2, type="agentMessage", text=f"{SECRET} {SECRET}")
    info = ThreadInfo(id=THREAD, source="phone", status="idle", cwd="/w", preview=SECRET)
    reply = ThreadReply(request_id="r1", thread=info, items=[item], seq=2, more=False)
    out = _send(sealing, [reply])
    [bare] = [m for m in out if isinstance(m, ThreadReply)]
    assert bare.items == [ThreadItem(id="i0", seq=2, type="sealed")]
    assert SECRET not in bare.model_dump_json()
    again = _envelopes(out)
    assert parse_wire(again[0])[0].keys is not None, "a new epoch, wrapped to every reader"
    shown = _read(party, "dv_2", again)  # the relay lost everything before
    assert shown.dropped == []
    assert shown.items["i0"]["text"] == f"{SECRET} {SECRET}"
    assert _read(party, "dv_1", first + again).dropped == []


def _stream(tmp_path: Path) -> tuple[Party, list[bytes]]:
    party, _, sealing = _world(tmp_path)
    return party, _envelopes(_send(sealing, _messages() + _messages(5)))


def test_a_drop_a_duplicate_or_a_reorder_is_detected(tmp_path: Path) -> None:
    party, items = _stream(tmp_path)
    assert _read(party, "dv_1", items).dropped == []
    dropped = _read(party, "dv_1", [*items[:2], *items[3:]])
    assert dropped.dropped[0].startswith("gap")
    doubled = _read(party, "dv_1", [*items[:3], items[2], *items[3:]])
    assert doubled.dropped == ["duplicate: seq 2"]
    swapped = _read(party, "dv_1", [items[0], items[2], items[1], *items[3:]])
    assert swapped.dropped
    assert swapped.dropped[0].startswith("gap")


def test_an_envelope_forged_by_a_reader_holding_the_key_is_refused(tmp_path: Path) -> None:
    """A reader device holds the thread key, so it can encrypt; it cannot sign as the agent."""
    party, items = _stream(tmp_path)
    wire = parse_wire(items[0])[0]
    wrap = next(w for w in wire.keys or () if w.to == "dv_1")
    key = unwrap_task_key(wrap, party.kex["dv_1"], ws=WS, task=THREAD)
    forger = Sealer(key, WS, AGENT, THREAD, AGENT, keys.generate_signing_key("c25519"))
    forged = seal_record(forger, "task.out", {"item": {"id": "x", "seq": 99, "type": "a"}})
    shown = _read(party, "dv_2", [*items, forged])
    assert shown.dropped == ["bad-signature"]
    assert "x" not in shown.items


def test_a_reader_who_leaves_gets_nothing_new(tmp_path: Path) -> None:
    party, gate, sealing = _world(tmp_path)
    before = _envelopes(_send(sealing, _messages()))
    members = {u: m for u, m in gate.view.members.items() if u != "u_dv_2"}
    gate.view = dataclasses.replace(gate.view, members=members)
    after = _envelopes(_send(sealing, _messages(5)))
    assert [w.to for w in parse_wire(after[0])[0].keys or ()] == ["dv_1"]
    stayed = _read(party, "dv_1", before + after)
    assert stayed.dropped == []
    assert "i5" in stayed.items
    left = _read(party, "dv_2", before + after)
    assert "i5" not in left.items
    assert len(left.dropped) == len(after)


def _sealed_turn(party: Party, mode: str = "new", **stmt: Any) -> tuple[str, dict[str, Any]]:
    given = raw({"prompt": SECRET, "images": None, "cwd": None, "model": None, "effort": None,
                 "salt": "AAAAAAAAAAAAAAAAAAAAAA"})  # fmt: skip
    statement = turn(ws=WS, agent=AGENT, mode=mode, thread=str(uuid.uuid4()),
                     inputHash=digest(given), **stmt)  # fmt: skip
    inner = {"stmt": b64u(raw(statement)), "input": b64u(given), "auth": [{"credentialId": "c"}]}
    key = b"k" * 32
    wrap = wrap_task_key(
        key, party.agent_kex.public_key(), ws=WS, task=statement["turn"], recipient_key_id=AGENT
    )
    sealer = Sealer(key, WS, AGENT, statement["turn"], "dv_1")
    return seal_record(sealer, "task.submit", inner, [wrap]).decode(), statement


def test_sealed_input_opens_as_the_signed_request_and_nothing_else(tmp_path: Path) -> None:
    party, _, sealing = _world(tmp_path)
    envelope, _ = _sealed_turn(party)
    opened = sealing.open_input(SealedThreadInput(request_id="r1", mode="new", envelope=envelope))
    assert isinstance(opened, ThreadStart)
    assert opened.prompt == SECRET
    assert opened.signed is not None
    with pytest.raises(TaskRefusedError) as refused:  # the relay says "steer"
        sealing.open_input(
            SealedThreadInput(request_id="r2", mode="steer", thread_id=THREAD, envelope=envelope)
        )
    assert refused.value.reason.value == "statement-mismatch"
    wire = json.loads(envelope)
    flipped = {**wire, "ct": ("B" if wire["ct"][0] == "A" else "A") + wire["ct"][1:]}
    with pytest.raises(TaskRefusedError) as refused:
        sealing.open_input(
            SealedThreadInput(request_id="r3", mode="new", envelope=json.dumps(flipped))
        )
    assert refused.value.reason.value == "sealed-invalid"
    other, _ = _sealed_turn(party, device="dv_2")  # signed by a device that did not seal it
    with pytest.raises(TaskRefusedError) as refused:
        sealing.open_input(SealedThreadInput(request_id="r4", mode="new", envelope=other))
    assert refused.value.reason.value == "statement-mismatch"


def test_the_relay_keeps_envelopes_in_order_under_its_cap() -> None:
    store = ThreadEnvelopes(max_bytes=100)
    assert [store.add("a", "x" * 30) for _ in range(3)] == [0, 1, 2]
    assert store.after("a", 0) == ([(1, "x" * 30), (2, "x" * 30)], False)
    store.add("b", "y" * 30)  # 120 bytes: thread a, heard from least recently, gives way
    assert store.total() == 30
    assert store.after("a", -1) == ([], True)
    assert store.add("a", "z") == 3, "indexes keep counting"
    assert store.after("a", 2) == ([(3, "z")], False)
    store.drop("b")
    assert store.after("b", -1) == ([], False)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_flipped_bit_anywhere_in_a_thread_envelope_is_refused(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Flip one bit of one envelope of a sealed thread: the reader drops it (and what its
    chain no longer vouches for), and what it does show is the honest stream's, at most at
    an earlier state. (A key wrap is for one device: a flip there is refused by that one.)"""
    party, items = _stream(tmp_path_factory.mktemp("flip"))
    which = data.draw(st.integers(0, len(items) - 1))
    bit = data.draw(st.integers(0, len(items[which]) * 8 - 1))
    flipped = bytearray(items[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    served = [*items[:which], bytes(flipped), *items[which + 1 :]]
    refused = 0
    for device in ("dv_1", "dv_2"):
        good = _read(party, device, items)
        try:
            shown = _read(party, device, served)
        except EnvelopeError:
            refused += 1
            continue
        if shown.dropped:
            refused += 1
        for item_id, item in shown.items.items():  # at most an earlier state (a drop)
            honest = good.items[item_id]
            assert item["seq"] <= honest["seq"]
            assert honest.get("text", "").startswith(item.get("text", ""))
            assert {k: v for k, v in item.items() if k not in {"seq", "text"}} == {
                k: v for k, v in honest.items() if k not in {"seq", "text"}
            }
        assert all(shown.approvals[a] == good.approvals[a] for a in shown.approvals)
    assert refused >= 1
