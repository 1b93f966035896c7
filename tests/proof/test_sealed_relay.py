"""A compromised relay cannot read sealed tasks, nor forge, cut or reorder what the agent
says about them (TRUST.md §2 tier A, §4.5-§4.7, §10 items 5, 7 and 10).

The real relay app runs with its attack hooks (``tests/proof/hostile.py``) in front of a
real agent process pinned to a protected workspace whose owner-signed policy says
``content: sealed``. The owner's and a viewer's phones (``tests/sealkit.py``) seal tasks
and read them back from the relay's envelopes with their own device keys, checking the
agent's signature against their own verified copy of the log.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.trust import TRUST_FILE, AgentKeys, agent_safety_number
from codexrelay.cli import main
from codexrelay.e2e import keys
from codexrelay.e2e.envelope import EnvelopeError, Sealer, chain_link, parse_wire
from codexrelay.e2e.log import chain_hash
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.sealed import encode, find_task_key, read_catalog, read_task
from codexrelay.e2e.tags import tagged_hash
from codexrelay.e2e.wire import b64u, b64u_decode
from codexrelay.webbundle import bundle_hash, manifest
from tests import sealkit
from tests.helpers import wait_until
from tests.proof.hostile import HostileRelay
from tests.proof.test_hostile_relay import AGENT, _online, pair
from tests.softauthn import Phone, SoftAuthenticator, join_by_invite
from tests.trustkit import Book, TrustedPhone, dumps


@dataclass
class World:
    relay: HostileRelay
    owner: TrustedPhone
    viewer: TrustedPhone
    book: Book
    wid: str
    dir: Path

    def view(self) -> LogView:
        return sealkit.verified_view(self.owner, self.book)

    def answer(self, task_id: str) -> dict[str, Any]:
        """The agent's rejection or final report for ``task_id``, as the relay got it."""

        def find() -> dict[str, Any] | None:
            for message in list(self.relay.attack.received):
                if message.get("taskId") == task_id and message["type"] in {
                    "task.rejected",
                    "task.finished",
                }:
                    return message
            return None

        return wait_until(find, timeout=30, what=f"the agent's answer on {task_id}")

    def run(self, prompt: str, **fields: Any) -> tuple[str, list[bytes]]:
        """Seal, submit and wait for a Codex task; its id and every envelope."""
        stmt, body = self.owner.task(self.book, AGENT, "codex_exec", prompt=prompt, **fields)
        request, _ = sealkit.seal(self.owner, self.view(), stmt, body)
        res = sealkit.submit(self.owner, self.wid, request)
        assert res.status_code == 201, res.text
        answer = self.answer(stmt["task"])
        assert answer["type"] == "task.finished", answer
        items = wait_until(
            lambda: (
                (e := sealkit.envelopes(self.owner, self.wid, stmt["task"]))
                and parse_wire(e[-1])[1].kind == "task.done"
                and e
            ),
            timeout=20,
            what="the task.done envelope",
        )
        return stmt["task"], items


def _person(owner: TrustedPhone, wid: str, role: str, name: str) -> TrustedPhone:
    phone = join_by_invite(owner.phone, wid, role, name)
    me = phone.get("/api/v1/me").json()["user"]
    return TrustedPhone(phone, me["id"], me["name"], "localhost")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = Path(tmp_path_factory.mktemp("sealed"))
    relay = HostileRelay(directory / "relay").start()
    http = relay.client()
    phone = Phone(http).bootstrap(relay.setup.token)
    owner = TrustedPhone.enroll(phone, "localhost")
    wid = phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
    policy = default_policy().model_dump(by_alias=True) | {"content": "sealed"}
    book, _ = owner.genesis(wid, policy)
    viewer = _person(owner, wid, "viewer", "Vic")
    owner.add_member(book, viewer, "viewer")
    process, _, _ = pair(owner, book, relay, directory / "agent")
    try:
        wait_until((directory / "agent" / "state" / TRUST_FILE).exists, timeout=30, what="pin")
        wait_until(lambda: _online(owner, wid), timeout=30, what="the agent online and pinned")
        yield World(relay, owner, viewer, book, wid, directory / "agent")
    finally:
        process.stop()
        http.close()
        relay.stop()


def _read(world: World, phone: TrustedPhone, task_id: str, items: list[bytes]) -> Any:
    return read_task(
        items, phone.kex_key, me=phone.device_id, view=world.view(), agent=AGENT, task=task_id
    )


# --- the honest path ---


def test_every_reader_reads_the_sealed_task_and_the_relay_only_metadata(world):
    """The owner submits; the owner and a viewer (another person, another device) both read
    the same prompt, output and result; the relay's task shows ``sealed`` and nulls."""
    mark = uuid.uuid4().hex
    prompt = f"Look at {mark}\nFAKE: command echo out-{mark}\nFAKE: message said-{mark}"
    task_id, items = world.run(prompt)
    for phone in (world.owner, world.viewer):
        shown = _read(world, phone, task_id, items)
        assert shown.dropped == []
        assert shown.prompt == prompt
        assert shown.complete, "every task.out is vouched for by task.done"
        assert shown.done is not None
        assert (shown.done.status, shown.done.exit_code) == ("completed", 0)
        assert f"out-{mark}" in json.dumps(shown.progress)
        assert f"said-{mark}" in shown.texts["finalMessage"]
    task = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/tasks/{task_id}").json()["task"]
    assert task["sealed"] is True
    assert (task["status"], task["type"]) == ("completed", "codex_exec")
    for field in ("cwd", "exitCode", "codexSessionId", "actionId", "logSourceId", "prompt"):
        assert task.get(field) is None, field
    assert mark not in json.dumps(task)
    said = [m for m in world.relay.attack.received if m.get("taskId") == task_id]
    assert mark not in json.dumps(said), "the agent said something in the clear"
    assert {m["type"] for m in said} >= {"task.accepted", "task.started", "e2e.envelope"}


# --- §10 item 5: dropped, duplicated, reordered or truncated output ---


def test_dropped_duplicated_reordered_and_truncated_output_is_detected(world):
    """The relay serves the agent's stream with one envelope dropped, one repeated, two
    swapped, or the end cut off: the reader says so (counters, incomplete), and never
    shows anything out of order."""
    task_id, items = world.run("FAKE: command echo a\nFAKE: command echo b\nFAKE: message c")
    submit, stream = items[:1], items[1:]
    assert len(stream) >= 4
    honest = _read(world, world.owner, task_id, items)
    assert honest.complete
    assert honest.dropped == []
    cases = {
        "dropped": stream[:1] + stream[2:],
        "duplicated": stream[:2] + stream[1:],
        "reordered": [stream[0], stream[2], stream[1], *stream[3:]],
        "truncated": stream[:-2],
    }
    for name, served in cases.items():
        shown = _read(world, world.owner, task_id, submit + served)
        if name == "duplicated":
            assert shown.dropped, name
            assert "duplicate" in shown.dropped[0], name
            assert shown.complete, "a repeat is dropped; nothing is missing"
            continue
        assert not shown.complete, f"{name} output looked complete"
        assert name == "truncated" or shown.dropped, name
    assert honest.progress == _read(world, world.owner, task_id, items).progress


# --- §10 item 7: forged output by a member who holds the task key ---


def test_output_forged_by_a_member_holding_the_task_key_is_refused(world):
    """The owner's device holds K_t, so it can make a perfectly valid AEAD envelope in the
    agent's stream (right key, epoch, seq and chain). Only the agent's signature is
    missing or wrong, and every reader drops it."""
    task_id, items = world.run("FAKE: message the real answer")
    view = world.view()
    key = find_task_key(
        items, world.owner.kex_key, me=world.owner.device_id, ws=view.ws, task=task_id
    )
    _, last, hdr, ct = parse_wire(items[-1])
    for signer in (world.owner.device_key, None, keys.generate_signing_key("c25519")):
        forger = Sealer(
            key,
            view.ws,
            AGENT,
            task_id,
            AGENT,
            signer,
            epoch=b64u_decode(last.epoch, max_bytes=8),
            seq=last.seq + 1,
            prev=chain_link(hdr, ct),
        )
        forged = forger.seal(
            "task.out", encode({"text": {"field": "finalMessage", "chunk": "FORGED"}})
        )
        shown = _read(world, world.viewer, task_id, [*items, forged])
        assert "FORGED" not in json.dumps(shown.texts)
        reason = "missing-signature" if signer is None else "bad-signature"
        assert any(reason in d for d in shown.dropped), shown.dropped


# --- §10 items 7 and 10: downgrade, and a reader device the relay adds ---


def test_plaintext_is_refused_where_the_policy_says_sealed(world):
    """The relay's API refuses a plaintext signed task (409 e2e-required); a relay that
    sends one anyway (honestly signed by the owner), or strips the envelope off a sealed
    one, gets ``e2e-required`` from the agent, which runs nothing."""
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    signed = world.owner.signed_task(stmt, body)
    res = world.owner.submit(world.book, signed)
    assert (res.status_code, res.json()["error"]) == (409, "e2e-required")
    plain = {"id": stmt["task"], "type": "run_action", "actionId": "mark", "signed": signed}
    world.relay.inject({"type": "task", "task": plain})
    answer = world.answer(stmt["task"])
    assert (answer["type"], answer["reason"]) == ("task.rejected", "e2e-required")
    stripped = {"id": str(uuid.uuid4()), "type": "codex_exec", "prompt": "hello"}
    world.relay.inject({"type": "task", "task": stripped})
    answer = world.answer(stripped["id"])
    assert (answer["type"], answer["reason"]) == ("task.rejected", "e2e-required")
    assert not (world.dir / "marker.txt").exists(), "something ran"


def test_a_reader_device_the_relay_adds_gets_nothing(world):
    """The relay plants a ``device.add`` for its own device in its copy of the log (signed
    by a passkey of its own). The agent wraps the next task's key only to the devices of
    the log it verified, and refuses the planted device's key request."""
    attacker = SoftAuthenticator()
    credential = attacker.new_credential("localhost")
    evil_kex = keys.generate_kex_key("c25519")
    evil_sig = keys.generate_signing_key("c25519")
    head = sealkit.verified_view(world.owner, world.book).head
    entry = {
        "v": 1, "ws": world.wid, "seq": head.seq + 1, "prev": head.hash, "op": "device.add",
        "body": {"userId": world.viewer.user_id, "deviceId": "dv_relay", "label": "relay",
                 "sigPub": keys.public_text(evil_sig), "kexPub": keys.public_text(evil_kex),
                 "suite": "c25519"},
        "issuedAt": int(time.time()),
    }  # fmt: skip
    raw = dumps(entry)
    sig = attacker.sign_statement(
        tagged_hash("log", raw), rp_id="localhost", origin=world.owner.origin, credential=credential
    )
    planted = {
        "seq": head.seq + 1, "hash": chain_hash(raw), "op": "device.add", "entry": b64u(raw),
        "sigs": [sig], "createdAt": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    # What the agent fetches of the log gets the planted entry at its end.
    world.relay.attack.http["/api/v1/agent/e2e/log"] = lambda _p, data: {
        **data,
        "entries": [*data["entries"], planted],
    }
    try:
        task_id, items = world.run("FAKE: message for members only")
        wrapped = {w.to for item in items[1:] for w in parse_wire(item)[0].keys or ()}
        assert wrapped == {world.owner.device_id, world.viewer.device_id}
        request = {
            "v": 1, "kind": "key.req", "ws": world.wid, "agent": AGENT, "task": task_id,
            "device": "dv_relay", "kexPub": keys.public_text(evil_kex),
            "issuedAt": int(time.time()),
        }  # fmt: skip
        raw_request = dumps(request)
        signature = b64u(keys.sign(evil_sig, b"codexrelay/v1/keyreq\x00" + raw_request))
        before = len(sealkit.envelopes(world.owner, world.wid, task_id))
        world.relay.inject({"type": "e2e.keyreq", "stmt": b64u(raw_request), "sig": signature})
        refused = wait_until(
            lambda: _last_audit(world, "key.req"), timeout=20, what="the key request's record"
        )
        assert refused["outcome"] == "refused"
        assert len(sealkit.envelopes(world.owner, world.wid, task_id)) == before
    finally:
        world.relay.attack.http.clear()


def _last_audit(world: World, kind: str) -> dict[str, Any] | None:
    lines = (world.dir / "state" / AUDIT_FILE).read_bytes().splitlines()
    found = [json.loads(line) for line in lines if json.loads(line)["kind"] == kind]
    return found[-1] if found else None


# --- readers who come later (§4.7), and revocation (§4.10) ---


def test_a_member_who_joins_later_reads_history_and_a_revoked_device_gets_nothing(world):
    """A task runs; then Lee joins. Lee's device was in no wrap, so it cannot read, until
    it asks: the agent re-wraps the key to it. Once Lee's device is revoked, the relay
    refuses its request and the agent, given it anyway, refuses too; later tasks are not
    wrapped to it."""
    task_id, items = world.run("FAKE: message history for later readers")
    lee = _person(world.owner, world.wid, "viewer", "Lee")
    world.owner.add_member(world.book, lee, "viewer")
    with pytest.raises(EnvelopeError):
        _read(world, lee, task_id, items)
    res = lee.phone.post(
        f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/key-requests",
        json=sealkit.key_request(lee, world.view(), AGENT, task_id),
    )
    assert res.status_code == 202, res.text
    after = wait_until(
        lambda: (
            (e := sealkit.envelopes(lee, world.wid, task_id))
            and parse_wire(e[-1])[1].kind == "key.wrap"
            and e
        ),
        timeout=20,
        what="the key.wrap envelope",
    )
    shown = _read(world, lee, task_id, after)
    assert "history for later readers" in shown.texts["finalMessage"]
    assert shown.complete
    world.owner.add(world.book, "device.revoke", {"userId": lee.user_id, "deviceId": lee.device_id})
    request = sealkit.key_request(lee, world.view(), AGENT, task_id)
    res = lee.phone.post(
        f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/key-requests", json=request
    )
    assert res.status_code == 403, res.text
    world.relay.inject({"type": "e2e.keyreq", **request})
    wait_until(
        lambda: (r := _last_audit(world, "key.req")) and r.get("reason") == "revoked-signer",
        timeout=20,
        what="the agent's refusal",
    )
    later, later_items = world.run("FAKE: message after the revocation")
    wrapped = {w.to for item in later_items[1:] for w in parse_wire(item)[0].keys or ()}
    assert lee.device_id not in wrapped
    assert wrapped == {world.owner.device_id, world.viewer.device_id}
    del later


# --- the session catalog and previews (R12, §4.7) ---


def test_the_session_catalog_and_previews_are_sealed(world):
    """A Codex task leaves a session whose preview holds the prompt; the agent sends the
    catalog sealed, so the relay's session list is empty and its envelope reads only on
    reader devices (signed by the agent)."""
    mark = uuid.uuid4().hex
    world.run(f"Preview {mark}\nFAKE: message done")
    url = f"/api/v1/workspaces/{world.wid}/agents/{AGENT}/sealed-catalog"

    def sessions() -> list[dict[str, Any]] | None:
        envelope = world.viewer.phone.get(url).json()["envelope"]
        if envelope is None:
            return None
        found = read_catalog(
            envelope.encode("ascii"),
            world.viewer.kex_key,
            me=world.viewer.device_id,
            view=world.view(),
            agent=AGENT,
        )
        return found if mark in json.dumps(found) else None

    found = wait_until(sessions, timeout=30, what="the sealed catalog with the new session")
    assert any(mark in json.dumps(s.get("preview")) for s in found)
    plain = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/agents/{AGENT}/sessions")
    assert plain.json()["sessions"] == []
    envelope = world.owner.phone.get(url).json()["envelope"]
    assert mark not in envelope
    evil = keys.generate_kex_key("c25519")
    with pytest.raises(EnvelopeError):
        read_catalog(envelope.encode(), evil, me="dv_relay", view=world.view(), agent=AGENT)


# --- offline verifiers (B2, TRUST.md §7, §9 phase 4) ---


def test_verify_log_checks_the_log_and_the_agents_audit_log_offline(world, tmp_path):
    """``codexrelay verify-log`` verifies the log from the pinned genesis, prints the same
    safety number as the agent's CLI, checks the agent's audit log, and refuses an edit."""
    log = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/e2e/log").json()
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    audit = world.dir / "state" / AUDIT_FILE
    args = ["verify-log", str(path), "--genesis-hash", world.book.genesis_hash]
    result = CliRunner().invoke(main, [*args, "--agent-audit", str(audit), "--agent", AGENT])
    assert result.exit_code == 0, result.output
    agent_keys = AgentKeys.load_or_create(world.dir / "state")
    assert agent_safety_number(world.book.genesis_hash, AGENT, agent_keys) in result.output
    assert f"Audit log of {AGENT}:" in result.output
    log["entries"][1]["entry"] = log["entries"][1]["entry"][:-2] + "AA"
    path.write_text(json.dumps(log))
    broken = CliRunner().invoke(main, args)
    assert broken.exit_code != 0
    assert "does not verify" in broken.output


def test_verify_web_compares_the_served_bundle_with_the_release_hash(world):
    """The relay serves this package's web app byte for byte and states its hash; a
    different release hash is reported as a mismatch."""
    stated = world.owner.phone.get("/api/v1/web-bundle").json()
    assert stated["bundleHash"] == bundle_hash(manifest())
    ok = CliRunner().invoke(main, ["verify-web", world.relay.url])
    assert ok.exit_code == 0, ok.output
    assert "byte for byte" in ok.output
    wrong = CliRunner().invoke(main, ["verify-web", world.relay.url, "--expect", "0" * 64])
    assert wrong.exit_code != 0
    assert "not the release" in wrong.output
