"""A device revoked while a sealed task runs gets nothing the agent says afterwards
(issue 19; TRUST.md §4.7, §4.10): the agent re-keys the running task.

A real relay (with its attack hooks) and a real agent process pinned to a protected
workspace whose policy seals content. The fake ``codex`` says one thing, waits until the
test has revoked a reader's device and seen the agent take the revocation in, then says
another. The revoked device's own key opens the first and none of the second; the readers
who remain read everything, verified, in one chain over both keys.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from codexrelay.agent.sealing import TASK_KEYS_FILE
from codexrelay.agent.trust import LOG_FILE
from codexrelay.e2e.envelope import nonce, parse_wire, sender_key
from codexrelay.e2e.sealed import read_task, task_keys
from codexrelay.e2e.wire import b64u_decode
from tests import sealkit
from tests.helpers import wait_until
from tests.proof import test_sealed_relay
from tests.proof.test_hostile_relay import AGENT
from tests.proof.test_sealed_relay import World, _person
from tests.trustkit import TrustedPhone

world = test_sealed_relay.world  # the same relay, agent and phones (one per module)


def _read(world: World, phone: TrustedPhone, task_id: str, items: list[bytes]) -> Any:
    return read_task(
        items, phone.kex_key, me=phone.device_id, view=world.view(), agent=AGENT, task=task_id
    )


def _everything_openable(items: list[bytes], key: bytes) -> list[bytes]:
    """Every plaintext a holder of ``key`` can decrypt, ignoring every order rule (what a
    revoked device that kept the key and reads the relay's store can get)."""
    found = []
    for data in items:
        _, header, hdr, ct = parse_wire(data)
        epoch = b64u_decode(header.epoch, max_bytes=8)
        k = sender_key(key, ws=header.ws, task=header.task, sender=header.sender, epoch=epoch)
        try:
            found.append(AESGCM(k).decrypt(nonce(header.seq), ct, hdr))
        except InvalidTag:
            continue
    return found


def _push(world: World) -> Any:
    page = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/e2e/log").json()
    entries = [{"entry": e["entry"], "sigs": e["sigs"]} for e in page["entries"]]
    return world.owner.phone.post(
        f"/api/v1/workspaces/{world.wid}/agents/{AGENT}/log-push",
        json={"start": 0, "entries": entries},
        timeout=30,
    )


def _agent_log_lines(world: World) -> int:
    return len((world.dir / "state" / LOG_FILE).read_bytes().splitlines())


def test_a_device_revoked_mid_task_reads_the_output_before_and_nothing_after(
    world: World, tmp_path: Path
) -> None:
    rex = _person(world.owner, world.wid, "viewer", "Rex")
    world.owner.add_member(world.book, rex, "viewer")
    before, after = f"BEFORE-{uuid.uuid4().hex}", f"AFTER-{uuid.uuid4().hex}"
    go = tmp_path / "go"
    prompt = f"FAKE: message {before}\nFAKE: wait-file {go}\nFAKE: message {after}"
    stmt, body = world.owner.task(world.book, AGENT, "codex_exec", prompt=prompt)
    task_id = stmt["task"]
    request, first_key = sealkit.seal(world.owner, world.view(), stmt, body)
    res = sealkit.submit(world.owner, world.wid, request)
    assert res.status_code == 201, res.text

    # Rex reads the first message while the task runs.
    def rex_sees_before() -> Any:
        items = sealkit.envelopes(rex, world.wid, task_id)
        if len(items) < 2:
            return None
        shown = _read(world, rex, task_id, items)
        return before in json.dumps(shown.progress) and shown

    shown = wait_until(rex_sees_before, timeout=30, what="Rex reading the first message")
    assert shown.done is None

    world.owner.add(world.book, "device.revoke", {"userId": rex.user_id, "deviceId": rex.device_id})
    # The owner's phone pushes the log holding the revocation to the agent (TRUST.md
    # §4.10); its signed acknowledgement says the agent took it in.
    res = _push(world)
    assert res.status_code == 200, res.text
    assert res.json()["reason"] is None, res.json()
    assert _agent_log_lines(world) == world.book.seq + 1
    go.write_text("go", encoding="utf-8")
    assert world.answer(task_id)["type"] == "task.finished"
    items = wait_until(
        lambda: (
            (e := sealkit.envelopes(world.owner, world.wid, task_id))
            and parse_wire(e[-1])[1].kind == "task.done"
            and e
        ),
        timeout=20,
        what="the task.done envelope",
    )

    # The agent switched keys once, and wrapped the new one only to those still readers.
    epochs = [parse_wire(i)[1].epoch for i in items[1:]]
    assert len(set(epochs)) == 2, epochs
    later = [i for i in items[1:] if parse_wire(i)[1].epoch == epochs[-1]]
    wrapped = {w.to for i in later for w in parse_wire(i)[0].keys or ()}
    assert wrapped == {world.owner.device_id, world.viewer.device_id}

    # Rex's device holds exactly the first key, which opens the first message and not one
    # byte of the second, in any envelope, whatever the order rules.
    rex_keys = task_keys(items, rex.kex_key, me=rex.device_id, ws=world.wid, task=task_id)
    assert rex_keys == [first_key]
    opened = b"".join(_everything_openable(items, first_key))
    assert before.encode() in opened
    assert after.encode() not in opened
    assert after[6:].encode() not in opened
    shown = _read(world, rex, task_id, items)
    assert before in json.dumps(shown.progress)
    assert not shown.complete
    assert shown.done is None
    assert shown.dropped
    assert after not in json.dumps([shown.progress, shown.texts])

    # Everyone still a reader reads everything, complete, over both keys.
    for phone in (world.owner, world.viewer):
        full = _read(world, phone, task_id, items)
        assert full.complete, full.dropped
        assert full.epochs == 2
        assert not full.dropped
        assert before in json.dumps(full.progress)
        assert after in full.texts["finalMessage"]

    # The agent kept the new key as the task's newest, for readers who ask later.
    owner_keys = task_keys(
        items, world.owner.kex_key, me=world.owner.device_id, ws=world.wid, task=task_id
    )
    assert len(owner_keys) == 2
    assert owner_keys[0] == first_key

    def kept() -> bytes | None:
        lines = (world.dir / "state" / TASK_KEYS_FILE).read_text(encoding="utf-8").splitlines()
        found = [json.loads(line) for line in lines if json.loads(line)["task"] == task_id]
        return b64u_decode(found[-1]["key"], max_bytes=32) if found else None

    wait_until(lambda: kept() == owner_keys[1], timeout=10, what="the new key kept")

    # A member who joins later asks for the key and gets both: the whole task reads.
    lea = _person(world.owner, world.wid, "viewer", "Lea")
    world.owner.add_member(world.book, lea, "viewer")
    res = lea.phone.post(
        f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/key-requests",
        json=sealkit.key_request(lea, world.view(), AGENT, task_id),
    )
    assert res.status_code == 202, res.text
    answered = wait_until(
        lambda: (
            (e := sealkit.envelopes(lea, world.wid, task_id))
            and parse_wire(e[-1])[1].kind == "key.wrap"
            and e
        ),
        timeout=20,
        what="the key.wrap envelope",
    )
    lea_keys = task_keys(answered, lea.kex_key, me=lea.device_id, ws=world.wid, task=task_id)
    assert lea_keys == owner_keys
    late = _read(world, lea, task_id, answered)
    assert late.complete, late.dropped
    assert after in late.texts["finalMessage"]
    assert before in json.dumps(late.progress)

    # A relay that cuts the last output under the first key, or serves the second key's
    # output first, leaves the reader with an incomplete task, never a spliced one.
    first_epoch = [i for i in items[1:] if parse_wire(i)[1].epoch == epochs[0]]
    cut = [i for i in items if i != first_epoch[-1]]
    assert not _read(world, world.owner, task_id, cut).complete
    swapped = [items[0], *later, *first_epoch]
    shown = _read(world, world.owner, task_id, swapped)
    assert not shown.complete
    assert shown.dropped
