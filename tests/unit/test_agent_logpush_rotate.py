"""Pure parts of the log push (TRUST.md §4.10), the audit log's key hand-over on rotation,
and the approval request bytes a signed decision commits to (§4.8); no server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codexrelay.agent.logpush import answer
from codexrelay.agent.runners.appserver.approvals import REQUEST_DIFF_BUDGET, request_bytes
from codexrelay.e2e import keys
from codexrelay.e2e.audit import AuditWriter, verify_audit
from codexrelay.e2e.statements import ApprovalRequest, decode_object
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import b64u, b64u_decode
from codexrelay.protocol import LogPush
from codexrelay.protocol_threads import Approval, ItemChange
from tests.unit.test_agent_trust import AGENT, World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _push(world: World, start: int, entries: list) -> dict:
    ack = answer(
        world.store, world.keys, AGENT, LogPush(push_id="p1", start=start, entries=entries)
    )
    return ack.model_dump(by_alias=True)


def test_a_pushed_removal_is_kept_and_acknowledged_with_the_agents_key(world):
    held = world.store.view().head
    world.kit.add("member.remove", {"userId": "u_member"}, world.kit.owner)
    ack = _push(world, 0, world.kit.signed)
    assert ack["reason"] is None
    raw = b64u_decode(ack["ack"], max_bytes=1000)
    key = keys.load_verify_key("c25519", world.keys.sig_pub)
    assert keys.verify(key, b64u_decode(ack["sig"], max_bytes=64), tag("logack") + raw)
    body = json.loads(raw)
    assert (body["kind"], body["agent"], body["pushId"]) == ("log.ack", AGENT, "p1")
    assert body["head"]["seq"] == held.seq + 1 == world.store.view().head.seq
    assert "u_member" not in world.store.view().members


def test_a_push_that_differs_or_leaves_a_gap_is_refused(world):
    held = world.store.view().head
    forged = [dict(e) for e in world.kit.signed]
    forged[1] = dict(forged[2])  # the relay swaps an entry the agent already holds
    assert _push(world, 0, forged)["reason"] == "log-fork"
    world.kit.add("member.remove", {"userId": "u_member"}, world.kit.owner)
    world.kit.add("member.remove", {"userId": "u_viewer"}, world.kit.owner)
    assert _push(world, held.seq + 2, world.kit.signed[-1:])["reason"] == "log-head-unknown"
    assert world.store.view().head == held


def test_the_audit_log_hands_over_to_the_rotated_key():
    old, new = keys.generate_signing_key("c25519"), keys.generate_signing_key("c25519")
    entry = {"op": "agent.rotate", "body": {"suite": "c25519", "sigPub": keys.public_text(new)}}
    first = AuditWriter(old, agent=AGENT, ws="ws_7")
    lines = [first.append(outcome="accepted", kind="task", now=1)]
    lines.append(
        first.append(
            outcome="accepted", kind="key.rotate", now=2, statement=json.dumps(entry).encode()
        )
    )
    second = AuditWriter(new, agent=AGENT, ws="ws_7", head=first.head)
    lines.append(second.append(outcome="accepted", kind="task", now=3))
    old_key = keys.load_verify_key("c25519", keys.public_text(old))
    assert verify_audit(lines, old_key).ok
    # A hand-over the old key did not sign, or one naming no rotation, hands over nothing.
    other = AuditWriter(old, agent=AGENT, ws="ws_7")
    plain = [other.append(outcome="accepted", kind="key.rotate", now=1, statement=b"{}")]
    plain.append(AuditWriter(new, agent=AGENT, ws="ws_7", head=other.head).append(
        outcome="accepted", kind="task", now=2))  # fmt: skip
    assert verify_audit(plain, old_key).reason == "bad-signature"


def _approval(**fields) -> Approval:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    base = {
        "id": "apr_1",
        "thread_id": "01a22885-38fc-7911-aba8-50d3d899054f",
        "turn_id": "01a22885-3934-7fb3-a94e-38b7c6aac953",
        "item_id": "call_1",
        "kind": "fileChange",
        "available_decisions": ["accept", "decline", "cancel"],
        "status": "pending",
        "requested_at": now,
        "expires_at": now + timedelta(minutes=10),
    }
    return Approval(**{**base, **fields})


def test_request_bytes_parse_strictly_and_hash_a_diff_past_the_budget():
    small = ItemChange(path="a.txt", kind="add", diff="hello\n")
    large = ItemChange(path="b.txt", kind="update", diff="x" * (REQUEST_DIFF_BUDGET + 1))
    raw = request_bytes(_approval(changes=[small, large]), AGENT)
    asked = decode_object(raw, ApprovalRequest, max_bytes=1 << 21)
    assert (asked.request_id, asked.agent, asked.type) == ("apr_1", AGENT, "fileChange")
    assert asked.changes is not None
    assert asked.changes[0] == {"path": "a.txt", "kind": "add", "diff": "hello\n"}
    assert set(asked.changes[1]) == {"path", "kind", "diffHash"}
    assert request_bytes(_approval(changes=[small, large]), AGENT) == raw
    assert request_bytes(_approval(changes=[small]), "other-agent") != request_bytes(
        _approval(changes=[small]), AGENT
    )
    assert b64u(raw)


# --- a fork freezes log updates until an owner's checkpoint (TRUST.md §4.11) ---


def _head(world: World) -> dict:
    return {"seq": world.kit.seq - 1, "hash": world.kit.view().head.hash}


def test_a_fork_freezes_log_updates_until_an_owners_checkpoint(world, tmp_path):
    """A statement on another branch raises the alarm (kept in stateDir, 0600); statements
    on the chain the agent holds still pass; newer entries are not adopted until one of
    them is an owner-signed checkpoint, which clears the alarm."""
    from tests.unit.test_agent_trust import accepts, reason  # noqa: PLC0415

    stmt, body = world.statement(world.member, logHead={"seq": 2, "hash": "A" * 43})
    assert reason(world, world.spec(stmt, body, [world.member])) == "log-fork"
    fork = tmp_path / "fork.json"
    assert fork.stat().st_mode & 0o777 == 0o600
    assert world.store.fork() is not None
    stmt, body = world.statement(world.member)
    assert accepts(world, world.spec(stmt, body, [world.member])) is not None
    held = world.store.view().head
    world.kit.add("member.role", {"userId": "u_viewer", "role": "member"}, world.kit.owner)
    stmt, body = world.statement(world.member, logHead=_head(world))
    assert reason(world, world.spec(stmt, body, [world.member]), fetch=True) == "log-fork"
    assert world.store.view().head == held
    world.kit.add("checkpoint", {"reason": "the branch we keep"}, world.kit.owner)
    stmt, body = world.statement(world.member, logHead=_head(world))
    assert accepts(world, world.spec(stmt, body, [world.member]), fetch=True) is not None
    assert world.store.fork() is None
    assert not fork.exists()
