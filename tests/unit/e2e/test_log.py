"""The membership log: genesis, role rules, revocation, agent rotation, forks (TRUST.md §10)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexrelay.e2e import keys
from codexrelay.e2e.log import (
    Head,
    HeadStatus,
    LogError,
    LogReason,
    extend,
    find_fork,
    head_status,
    parse_signed,
    verify_genesis,
)
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.webauthn_verify import PasskeyReason
from codexrelay.e2e.wire import b64u, b64u_decode
from tests.unit.e2e.logkit import LogKit, Person, agent_body, device_keys, dumps

ROLES = ("viewer", "member", "admin", "owner")
RANK = {role: n for n, role in enumerate(ROLES)}
# Who manages whom, from TRUST.md §4.3: admin+ for roles below admin, owner for admin/owner.
MANAGES = {(s, t) for s in ROLES for t in ROLES if RANK[s] >= (3 if RANK[t] >= 2 else 2)}
SELF_SHED = {"member.remove", "passkey.add", "passkey.revoke", "device.revoke"}


def expected(
    op: str, signer: str, target: str | None, *, own: bool, new_role: str | None = None
) -> bool:
    """The spec's table, written out independently of the code under test."""
    if op in {"policy.set", "checkpoint"}:
        return signer == "owner"
    if op in {"agent.add", "agent.revoke"}:
        return signer in {"admin", "owner"}
    if op == "device.add":
        return own
    if own and op in SELF_SHED:
        return True
    assert target is not None
    if op == "member.role":
        return (signer, target) in MANAGES and (signer, new_role) in MANAGES
    return (signer, target) in MANAGES


def refusal(kit: LogKit) -> LogError:
    """Verify the kit's log and return the refusal (fails if it verified)."""
    with pytest.raises(LogError) as caught:
        kit.view()
    return caught.value


def person_body(kit: LogKit, op: str, target: Person, new_role: str | None) -> dict[str, Any]:
    """The body of a person op aimed at ``target``."""
    if op == "member.role":
        return {"userId": target.user_id, "role": new_role}
    if op == "member.remove":
        return {"userId": target.user_id}
    if op == "passkey.add":
        extra = Person(target.user_id)
        return {"userId": target.user_id, **extra.passkey()}
    if op == "passkey.revoke":
        return {"userId": target.user_id, "credId": target.cred_id}
    if op == "device.add":
        return {"userId": target.user_id, **device_keys(f"dv_new_{target.user_id}")}
    return {"userId": target.user_id, "deviceId": f"dv_{target.user_id}"}


PERSON_CASES = [
    (op, signer, target, own, new_role)
    for op in (
        "member.remove",
        "passkey.add",
        "passkey.revoke",
        "device.add",
        "device.revoke",
        "member.role",
    )
    for signer, target in itertools.product(ROLES, ROLES)
    for own in (False, True)
    for new_role in (ROLES if op == "member.role" else (None,))
    if not own or signer == target
]


def test_log_role_rules_exact_for_every_person_op_signer_and_target() -> None:
    """For every (op, signer role, target role, self or not) the log accepts exactly the table."""
    mismatches = []
    for op, signer_role, target_role, own, new_role in PERSON_CASES:
        kit = LogKit()
        signer = kit.member("u_signer", signer_role)
        target = signer if own else kit.member("u_target", target_role)
        kit.add(op, person_body(kit, op, target, new_role), signer)
        try:
            kit.view()
            outcome: LogReason | None = None
        except LogError as exc:
            outcome = exc.reason
        allowed = expected(op, signer_role, target_role, own=own, new_role=new_role)
        if outcome is not (None if allowed else LogReason.NOT_ALLOWED):
            mismatches.append((op, signer_role, target_role, own, new_role, outcome))
    assert mismatches == []


@pytest.mark.parametrize("signer_role", ROLES)
@pytest.mark.parametrize("target_role", ROLES)
def test_log_member_add_rule(signer_role: str, target_role: str) -> None:
    """member.add of a role: admin+ below admin, owner for admin and owner."""
    kit = LogKit()
    signer = kit.member("u_signer", signer_role)
    kit.member("u_new", target_role, signer=signer)
    if expected("member.add", signer_role, target_role, own=False):
        assert kit.view().role_of("u_new") == target_role
    else:
        assert refusal(kit).reason is LogReason.NOT_ALLOWED


@pytest.mark.parametrize("signer_role", ROLES)
@pytest.mark.parametrize("op", ["agent.add", "agent.revoke", "policy.set", "checkpoint"])
def test_log_agent_and_owner_ops_rule(signer_role: str, op: str) -> None:
    """Agents by admin+, policy and checkpoints by owners only."""
    kit = LogKit()
    signer = kit.member("u_signer", signer_role)
    body, _ = agent_body()
    if op == "agent.revoke":
        kit.add("agent.add", body, kit.owner)
        body = {"agentId": "ag_1"}
    elif op == "policy.set":
        body = {"policy": default_policy().model_dump(by_alias=True) | {"taskTtlSec": 300}}
    elif op == "checkpoint":
        body = {"reason": "fork at 3"}
    kit.add(op, body, signer)
    if expected(op, signer_role, None, own=False):
        view = kit.view()
        assert view.history[-1].op == op
        assert view.history[-1].signer == "u_signer"
    else:
        assert refusal(kit).reason is LogReason.NOT_ALLOWED


def test_log_genesis_view() -> None:
    """The genesis pins rp id, origins, the owner's passkey and device, and the policy."""
    kit = LogKit()
    view = kit.view()
    assert view.head == Head(0, kit.genesis_hash)
    assert view.genesis_hash == kit.genesis_hash
    assert view.role_of("u_owner") == "owner"
    assert view.rp_id == "relay.example"
    assert kit.owner.cred_id in view.passkeys
    assert [d.device_id for d in view.reader_devices()] == ["dv_owner"]
    assert view.policy.task_ttl_sec == 600


def test_log_genesis_pin_mismatch_refused() -> None:
    """An agent that pinned a genesis hash refuses any other genesis."""
    kit, other = LogKit(), LogKit()
    with pytest.raises(LogError) as caught:
        verify_genesis(parse_signed(other.signed[0]), pinned=kit.genesis_hash)
    assert caught.value.reason is LogReason.GENESIS_MISMATCH


def test_log_genesis_signed_by_someone_else_refused() -> None:
    """A genesis signed by a passkey that is not the owner's is a forgery."""
    kit = LogKit()
    raw = b64u_decode(kit.signed[0]["entry"], max_bytes=1 << 16)
    kit.signed[0]["sigs"] = [Person("u_relay").sign(raw)]
    with pytest.raises(LogError) as caught:
        verify_genesis(parse_signed(kit.signed[0]))
    assert caught.value.reason is LogReason.UNKNOWN_SIGNER


def test_log_first_entry_must_be_genesis() -> None:
    """A log that starts with an ordinary entry is refused."""
    kit = LogKit()
    kit.member("u_a", "member")
    with pytest.raises(LogError) as caught:
        verify_genesis(parse_signed(kit.signed[1]))
    assert caught.value.reason is LogReason.NOT_GENESIS


def test_log_revoked_passkey_cannot_sign() -> None:
    """After passkey.revoke, that passkey's signatures are stale."""
    kit = LogKit()
    admin = kit.member("u_admin", "admin")
    kit.add("passkey.revoke", {"userId": "u_admin", "credId": admin.cred_id}, admin)
    kit.member("u_late", "member", signer=admin)
    error = refusal(kit)
    assert error.reason is LogReason.REVOKED_SIGNER
    assert error.seq == 3


def test_log_removed_member_cannot_sign() -> None:
    """A removed admin's passkeys die with the membership."""
    kit = LogKit()
    admin = kit.member("u_admin", "admin")
    kit.add("member.remove", {"userId": "u_admin"}, kit.owner)
    kit.member("u_late", "member", signer=admin)
    assert refusal(kit).reason is LogReason.REVOKED_SIGNER
    view = kit.view(upto=3)
    assert view.role_of("u_admin") is None
    assert not view.devices["dv_u_admin"].active


def test_log_demoted_admin_loses_rights() -> None:
    """Rights come from the role at the time of the entry: a demoted admin is stale."""
    kit = LogKit()
    admin = kit.member("u_admin", "admin")
    kit.add("member.role", {"userId": "u_admin", "role": "member"}, kit.owner)
    body, _ = agent_body()
    kit.add("agent.add", body, admin)
    assert refusal(kit).reason is LogReason.NOT_ALLOWED


def test_log_unknown_signer_refused() -> None:
    """An entry signed by a passkey the log never pinned (a relay's own) is refused."""
    kit = LogKit()
    kit.add(
        "member.add",
        {"userId": "u_x", "name": "X", "role": "admin", "passkeys": [], "devices": []},
        Person("u_relay"),
    )
    assert refusal(kit).reason is LogReason.UNKNOWN_SIGNER


def test_log_entry_without_uv_refused() -> None:
    """Log entries need user verification like tasks."""
    kit = LogKit()
    body, _ = agent_body()
    kit.add("agent.add", body, kit.owner, user_verified=False)
    error = refusal(kit)
    assert error.reason is LogReason.BAD_SIGNATURE
    assert error.passkey is PasskeyReason.USER_NOT_VERIFIED


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"seq": 5}, LogReason.BAD_SEQ),
        ({"prev": b64u(bytes(32))}, LogReason.BAD_PREV),
        ({"ws": "ws_other"}, LogReason.WRONG_WORKSPACE),
        ({"op": "member.promote"}, LogReason.MALFORMED),
        ({"extra": 1}, LogReason.MALFORMED),
        ({"v": 2}, LogReason.MALFORMED),
    ],
)
def test_log_entry_envelope_refusals(changes: dict[str, Any], reason: LogReason) -> None:
    """Wrong seq, prev, workspace, op or fields are refused with their reason."""
    kit = LogKit()
    body, _ = agent_body()
    kit.add("agent.add", body, kit.owner, changes=changes)
    assert refusal(kit).reason is reason


def test_log_body_must_fit_its_op() -> None:
    """A body with a field of another op is refused."""
    kit = LogKit()
    kit.add("member.remove", {"userId": "u_owner", "role": "viewer"}, kit.owner)
    assert refusal(kit).reason is LogReason.MALFORMED


def test_log_duplicate_key_in_entry_refused() -> None:
    """An entry with a duplicate key is not one unambiguous object."""
    kit = LogKit()
    body, _ = agent_body()
    raw = kit.entry_bytes("agent.add", body)[:-1] + b',"op":"policy.set"}'
    kit.append({"entry": b64u(raw), "sigs": [kit.owner.sign(raw)]})
    assert refusal(kit).reason is LogReason.MALFORMED


@pytest.mark.parametrize(
    ("op", "body_of"),
    [
        (
            "member.add",
            lambda k: {
                "userId": "u_owner",
                "name": "O",
                "role": "viewer",
                "passkeys": [],
                "devices": [],
            },
        ),
        ("member.remove", lambda k: {"userId": "u_ghost"}),
        ("passkey.revoke", lambda k: {"userId": "u_owner", "credId": b64u(b"nope")}),
        ("passkey.add", lambda k: {"userId": "u_owner", **k.owner.passkey()}),
        (
            "passkey.add",
            lambda k: {"userId": "u_owner", "credId": b64u(b"x"), "cose": b64u(b"not cose!")},
        ),
        ("device.revoke", lambda k: {"userId": "u_owner", "deviceId": "dv_ghost"}),
        ("device.add", lambda k: {"userId": "u_owner", **device_keys("dv_owner")}),
        (
            "device.add",
            lambda k: {"userId": "u_owner", **(device_keys("dv_2") | {"suite": "p256"})},
        ),
        ("agent.revoke", lambda k: {"agentId": "ag_ghost"}),
    ],
)
def test_log_invalid_targets_refused(op: str, body_of: Any) -> None:
    """Existing members, unknown targets, reused ids and keys that do not parse are refused."""
    kit = LogKit()
    kit.add(op, body_of(kit), kit.owner)
    assert refusal(kit).reason is LogReason.INVALID_TARGET


def test_log_last_owner_cannot_leave_or_lose_keys() -> None:
    """No entry may leave the workspace without an owner holding a live passkey."""
    for op, body in [
        ("member.remove", {"userId": "u_owner"}),
        ("member.role", {"userId": "u_owner", "role": "admin"}),
    ]:
        kit = LogKit()
        kit.add(op, body, kit.owner)
        assert refusal(kit).reason is LogReason.WOULD_ORPHAN
    kit = LogKit()
    kit.add("passkey.revoke", {"userId": "u_owner", "credId": kit.owner.cred_id}, kit.owner)
    assert refusal(kit).reason is LogReason.WOULD_ORPHAN


def test_log_second_owner_lets_the_first_leave() -> None:
    """With another owner, an owner may leave."""
    kit = LogKit()
    kit.member("u_co", "owner")
    kit.add("member.remove", {"userId": "u_owner"}, kit.owner)
    assert kit.view().role_of("u_owner") is None


def test_log_device_add_is_self_certified_only() -> None:
    """An admin cannot plant a reader device for someone else (§2, key substitution)."""
    kit = LogKit()
    kit.member("u_bob", "member")
    kit.add("device.add", {"userId": "u_bob", **device_keys("dv_planted")}, kit.owner)
    assert refusal(kit).reason is LogReason.NOT_ALLOWED


def test_log_agent_rotate_by_its_own_key() -> None:
    """agent.rotate is signed by the agent's current key; the new keys then apply."""
    kit = LogKit()
    body, key = agent_body()
    kit.add("agent.add", body, kit.owner)
    new_key = keys.generate_signing_key("p256")
    rotate = {
        "agentId": "ag_1",
        "sigPub": keys.public_text(new_key),
        "kexPub": keys.public_text(keys.generate_kex_key("p256")),
        "suite": "p256",
    }
    kit.append(kit.agent_sign("agent.rotate", rotate, key, "ag_1"))
    view = kit.view()
    assert view.agents["ag_1"].suite == "p256"
    assert view.history[-1].signer == "agent:ag_1"
    # The old key is now stale.
    again = dict(rotate, suite="c25519", sigPub=body["sigPub"], kexPub=body["kexPub"])
    kit.append(kit.agent_sign("agent.rotate", again, key, "ag_1"))
    assert refusal(kit).reason is LogReason.BAD_SIGNATURE


def test_log_agent_rotate_needs_the_agent_key() -> None:
    """A passkey (even the owner's) cannot rotate an agent's keys."""
    kit = LogKit()
    body, _ = agent_body()
    kit.add("agent.add", body, kit.owner)
    kit.add(
        "agent.rotate",
        {"agentId": "ag_1", "sigPub": body["sigPub"], "kexPub": body["kexPub"], "suite": "c25519"},
        kit.owner,
    )
    assert refusal(kit).reason is LogReason.NOT_ALLOWED


def test_log_agent_signature_only_for_rotate() -> None:
    """An agent key cannot sign anything else (for example adding a member)."""
    kit = LogKit()
    body, key = agent_body()
    kit.add("agent.add", body, kit.owner)
    kit.append(
        kit.agent_sign(
            "member.add",
            {"userId": "u_x", "name": "X", "role": "owner", "passkeys": [], "devices": []},
            key,
            "ag_1",
        )
    )
    assert refusal(kit).reason is LogReason.NOT_ALLOWED


def test_log_counters_within_the_log_must_rise() -> None:
    """A passkey's count within one log must rise (0 after 0 excepted)."""
    kit = LogKit()
    body, _ = agent_body()
    kit.add("agent.add", body, kit.owner, sign_count=1)
    assert refusal(kit).passkey is PasskeyReason.COUNTER_REGRESSED


def test_log_extend_and_history() -> None:
    """extend() continues from a verified view; history names each change's signer."""
    kit = LogKit()
    admin = kit.member("u_admin", "admin")
    view = kit.view()
    body, _ = agent_body()
    kit.add("agent.add", body, admin)
    longer = extend(view, [parse_signed(kit.signed[-1])])
    assert longer.head.seq == 2
    assert [(c.seq, c.op, c.signer) for c in longer.history] == [
        (0, "genesis", "u_owner"),
        (1, "member.add", "u_owner"),
        (2, "agent.add", "u_admin"),
    ]
    assert longer.agents["ag_1"].label == "build-01"


def test_log_fork_two_valid_entries_with_the_same_prev() -> None:
    """A second valid entry on the same prev is evidence of a fork; junk is not."""
    kit = LogKit()
    kit.member("u_admin", "admin")
    prev_head = kit.head
    kit.member("u_bob", "member")
    view = kit.view()
    twin_kit = LogKit.__new__(LogKit)
    twin_kit.__dict__.update(kit.__dict__)
    twin_kit.signed = kit.signed[:2]
    twin_kit.head = prev_head
    body, _ = agent_body()
    twin = twin_kit.make("agent.add", body, kit.owner)
    fork = find_fork(view, parse_signed(twin))
    assert fork is not None
    assert fork.seq == 2
    assert fork.ours == view.hashes[2]
    unsigned = twin_kit.make("agent.add", body, Person("u_relay"))
    assert find_fork(view, parse_signed(unsigned)) is None
    assert find_fork(view, parse_signed(kit.signed[2])) is None


def test_log_head_status() -> None:
    """A reported head is on our chain, ahead of it, or a fork."""
    kit = LogKit()
    kit.member("u_a", "member")
    view = kit.view()
    assert head_status(view, Head(1, view.hashes[1])) is HeadStatus.ON_CHAIN
    assert head_status(view, Head(0, view.genesis_hash)) is HeadStatus.ON_CHAIN
    assert head_status(view, Head(2, view.hashes[1])) is HeadStatus.AHEAD
    assert head_status(view, Head(1, view.genesis_hash)) is HeadStatus.FORKED


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_log_any_flipped_bit_in_an_entry_is_refused(data: st.DataObject) -> None:
    """Flipping any bit of a signed entry's bytes makes the log refuse it."""
    kit = _flip_kit()
    raw = bytearray(b64u_decode(kit.signed[-1]["entry"], max_bytes=1 << 16))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    kit.signed[-1] = dict(kit.signed[-1], entry=b64u(bytes(raw)))
    with pytest.raises(LogError):
        kit.view()


_KIT: list[LogKit] = []


def _flip_kit() -> LogKit:
    if not _KIT:
        kit = LogKit()
        body, _ = agent_body()
        kit.add("agent.add", body, kit.owner)
        _KIT.append(kit)
    kit = LogKit.__new__(LogKit)
    kit.__dict__.update(_KIT[0].__dict__)
    kit.signed = list(_KIT[0].signed)
    return kit


def test_log_entry_bytes_are_hashed_not_reserialised() -> None:
    """The chain hash is over the exact bytes: a re-spaced twin has another hash."""
    kit = LogKit()
    body, _ = agent_body()
    signed = kit.add("agent.add", body, kit.owner)
    view = kit.view()
    raw = b64u_decode(signed["entry"], max_bytes=1 << 16)
    assert view.head.hash != b64u(
        __import__("hashlib").sha256(dumps(__import__("json").loads(raw))).digest()
    )
