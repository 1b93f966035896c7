"""Sealed tasks end to end without a server (TRUST.md §4.5-§4.7, §5, §10 properties):
the phone's submission opens only for the agent, the agent's stream for reader devices,
long texts split and come back whole, the catalog fits, kept keys are private and expire,
and a flipped bit anywhere in any envelope is refused by a recipient it reaches."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.sealing import OutputSealer, TaskKeys, open_submit, seal_catalog
from codexrelay.e2e import keys
from codexrelay.e2e.envelope import EnvelopeError, Sealer, new_task_key, wrap_task_key
from codexrelay.e2e.logview import Agent, Device, Head, LogView, Member
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.sealed import read_catalog, read_task, reader_wraps, seal_record, text_pieces
from codexrelay.e2e.statements import digest
from codexrelay.e2e.wire import b64u
from codexrelay.protocol import SealedTask, TaskSpec
from tests.unit.e2e.builders import raw, task

WS, AGENT, TASK = "ws_7", "ag_3", task()["task"]
PROMPT_BODY = b'{"prompt":"hi","salt":"AAAAAAAAAAAAAAAAAAAAAA"}'


class Party:
    """The agent and two reader devices (of two people), with their keys and the view."""

    def __init__(self) -> None:
        self.agent_sig = keys.generate_signing_key("c25519")
        self.agent_kex = keys.generate_kex_key("c25519")
        self.kex = {d: keys.generate_kex_key("c25519") for d in ("dv_1", "dv_2")}
        self.view = _view(self)


def _view(p: Party) -> LogView:
    devices = {
        d: Device(d, f"u_{d}", d, keys.public_text(keys.generate_signing_key("c25519")),
                  keys.public_text(k), "c25519", 1)
        for d, k in p.kex.items()
    }  # fmt: skip
    return LogView(
        ws=WS, name="acme", rp_id="relay.example", origins=("https://relay.example",),
        genesis_hash=digest(b"genesis"),
        members={f"u_{d}": Member(f"u_{d}", d, "member", 1) for d in p.kex},
        passkeys={}, devices=devices,
        agents={AGENT: Agent(AGENT, "build", keys.public_text(p.agent_sig),
                             keys.public_text(p.agent_kex), "c25519", "pr_1", 1)},
        policy=default_policy(), head=Head(1, digest(b"h")), hashes=(), counters={},
        history=(), entries=(),
    )  # fmt: skip


def _submission(p: Party, **stmt_changes: Any) -> tuple[bytes, bytes]:
    """The phone's task.submit (device dv_1) and the task key."""
    stmt = raw(task(**stmt_changes))
    inner = {"stmt": b64u(stmt), "body": b64u(PROMPT_BODY), "auth": [{"credentialId": "x"}]}
    key = new_task_key()
    wraps = [
        wrap_task_key(key, p.agent_kex.public_key(), ws=WS, task=TASK, recipient_key_id=AGENT),
        wrap_task_key(key, p.kex["dv_1"].public_key(), ws=WS, task=TASK, recipient_key_id="dv_1"),
    ]
    sealer = Sealer(key, WS, AGENT, TASK, "dv_1")
    return seal_record(sealer, "task.submit", inner, wraps), key


def _stream(p: Party, final: str = "the answer") -> list[bytes]:
    """A whole sealed task: submission, two steps, the final message, done."""
    submit, key = _submission(p)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    assert opened.task_key == key
    sealer = OutputSealer(
        opened, ws=WS, agent_id=AGENT, signing=p.agent_sig,
        wraps=reader_wraps(p.view, key, ws=WS, task=TASK),
    )  # fmt: skip
    items = [submit]
    items += [sealer.out({"progress": {"seq": i, "kind": "output", "text": f"line {i}"}})
              .encode() for i in (1, 2)]  # fmt: skip
    items += [sealer.out({"text": {"field": "finalMessage", "chunk": final}}).encode()]
    items.append(sealer.done({"status": "completed", "exitCode": 0}).encode())
    return items


def _spec(envelope: bytes, task_id: str = TASK) -> TaskSpec:
    return TaskSpec(id=task_id, type="codex_exec", sealed=SealedTask(envelope=envelope.decode()))


def _reads(p: Party, device: str, items: list[bytes]) -> Any:
    return read_task(items, p.kex[device], me=device, view=p.view, agent=AGENT, task=TASK)


def test_every_reader_device_reads_the_whole_task() -> None:
    p = Party()
    items = _stream(p)
    for device in ("dv_1", "dv_2"):
        shown = _reads(p, device, items)
        assert (shown.dropped, shown.complete, shown.prompt) == ([], True, "hi")
        assert [s["text"] for s in shown.progress] == ["line 1", "line 2"]
        assert shown.texts == {"finalMessage": "the answer"}
        assert shown.done is not None
        assert shown.done.exit_code == 0


def test_the_agent_opens_the_submission_and_refuses_what_is_off() -> None:
    p = Party()
    submit, _ = _submission(p)
    spec = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex).spec
    assert (spec.prompt, spec.cwd, spec.signed is not None) == ("hi", "repo", True)
    cases = {
        "wrong-workspace": {"ws": "ws_8"},
        "wrong-agent": {"agent_id": "ag_9"},
        "statement-mismatch": {"task_id": "0b7f0000-0000-4000-8000-000000000009"},
        "sealed-invalid": {"kex": keys.generate_kex_key("c25519")},
    }
    for reason, change in cases.items():
        args = {"ws": WS, "agent_id": AGENT, "kex": p.agent_kex, **change}
        task_id = args.pop("task_id", TASK)
        with pytest.raises(TaskRefusedError) as caught:
            open_submit(_spec(submit, task_id), **args)
        assert caught.value.reason.value == reason, reason


def test_the_signing_device_must_be_the_sender() -> None:
    p = Party()
    submit, _ = _submission(p, device="dv_2")
    with pytest.raises(TaskRefusedError) as caught:
        open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    assert caught.value.reason.value == "statement-mismatch"


def test_long_texts_split_and_come_back_whole() -> None:
    p = Party()
    final = "é" * 150_000 + "end"
    items = _stream(p, final)
    submit, key = _submission(p)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    sealer = OutputSealer(opened, ws=WS, agent_id=AGENT, signing=p.agent_sig,
                          wraps=reader_wraps(p.view, key, ws=WS, task=TASK))  # fmt: skip
    pieces = text_pieces("finalMessage", final)
    assert len(pieces) == 3
    items = [submit, *(sealer.out(x).encode() for x in pieces)]
    items.append(sealer.done({"status": "completed"}).encode())
    shown = _reads(p, "dv_2", items)
    assert shown.texts["finalMessage"] == final
    assert shown.complete


def test_a_catalog_too_large_for_one_envelope_keeps_what_fits() -> None:
    p = Party()
    sessions = [{"sessionId": str(i), "title": "t" * 180, "preview": [{"text": "p" * 320}] * 10}
                for i in range(400)]  # fmt: skip
    envelope = seal_catalog(p.view, agent_id=AGENT, signing=p.agent_sig, sessions=sessions)
    found = read_catalog(envelope.encode(), p.kex["dv_2"], me="dv_2", view=p.view, agent=AGENT)
    assert 0 < len(found) < len(sessions)
    assert found == sessions[: len(found)]


def test_kept_task_keys_are_private_and_expire(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    kept = TaskKeys(tmp_path, keep_days=7, clock=lambda: now[0])
    kept.keep(WS, TASK, b"k" * 32)
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600
    assert kept.get(WS, TASK) == b"k" * 32
    assert kept.get("ws_other", TASK) is None
    now[0] += 7 * 86_400 + 1
    assert kept.get(WS, TASK) is None
    none = TaskKeys(tmp_path / "none", keep_days=0)
    none.keep(WS, TASK, b"k" * 32)
    assert not none.path.exists()


def test_kept_task_keys_append_one_line_each_and_survive_a_restart(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    kept = TaskKeys(tmp_path, keep_days=1, clock=lambda: now[0])
    for n in range(10):
        kept.keep(WS, f"task-{n}", bytes([n]) * 32)
    assert len(kept.path.read_text().splitlines()) == 10
    with kept.path.open("a") as fh:
        fh.write('{"task": "cut sho')  # a crash in the middle of an append
    again = TaskKeys(tmp_path, keep_days=1, clock=lambda: now[0])
    assert again.get(WS, "task-7") == bytes([7]) * 32
    assert again.get(WS, "cut sho") is None
    for n in range(300):
        again.keep(WS, f"old-{n}", b"o" * 32)
    assert len(again.path.read_text().splitlines()) == 310 + 1  # the cut line stays
    # Once expired lines are most of a long file, it is rewritten with the live keys only.
    now[0] += 86_400 + 1
    again.keep(WS, "new", b"n" * 32)
    assert len(again.path.read_text().splitlines()) == 1
    assert again.get(WS, "task-7") is None
    assert again.get(WS, "old-299") is None
    assert TaskKeys(tmp_path, keep_days=1, clock=lambda: now[0]).get(WS, "new") == b"n" * 32


def test_keys_an_earlier_agent_kept_move_to_the_line_file(tmp_path: Path) -> None:
    until = 1_800_000_000 + 86_400
    legacy = tmp_path / "task-keys.json"
    legacy.write_text(json.dumps({TASK: {"ws": WS, "key": b64u(b"o" * 32), "until": until}}))
    kept = TaskKeys(tmp_path, keep_days=1, clock=lambda: 1_800_000_000.0)
    assert kept.get(WS, TASK) == b"o" * 32
    assert not legacy.exists()
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_flipped_bit_anywhere_in_any_envelope_is_refused(data: st.DataObject) -> None:
    """Flip one bit of one envelope of a whole sealed task: some recipient it reaches (the
    agent for the submission, the reader devices for everything) refuses it; none ever
    shows changed content. (A key wrap is for one recipient only, so a flip there is
    refused by that recipient, while the others read on.)"""
    p = Party()
    items = _stream(p)
    which = data.draw(st.integers(0, len(items) - 1))
    bit = data.draw(st.integers(0, len(items[which]) * 8 - 1))
    flipped = bytearray(items[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    served = [*items[:which], bytes(flipped), *items[which + 1 :]]
    refusals = 0
    honest = [_reads(p, d, items) for d in ("dv_1", "dv_2")]
    for device, good in zip(("dv_1", "dv_2"), honest, strict=True):
        try:
            shown = _reads(p, device, served)
        except EnvelopeError:
            refusals += 1
            continue
        if shown.dropped or not shown.complete:
            refusals += 1
        else:  # nothing it accepted differs from the honest stream
            assert (shown.prompt, shown.progress, shown.texts) == (
                good.prompt, good.progress, good.texts,
            )  # fmt: skip
    if which == 0:
        try:
            open_submit(_spec(bytes(flipped)), ws=WS, agent_id=AGENT, kex=p.agent_kex)
        except (TaskRefusedError, UnicodeDecodeError, ValueError):
            refusals += 1
    assert refusals >= 1, f"bit {bit} of envelope {which} was accepted by every recipient"
    assert json.loads(items[which]) != _loads(bytes(flipped))


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
