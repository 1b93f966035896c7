"""The relay's permission rules as one table: every ``can_*`` function, every role (R03,
R09, R17, B7, I2)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import pytest

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import policy
from codexrelay.relay.storage.records import ROLE_ORDER, Role

V, M, A, OWN = Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER

# (rule, arguments, allowed); each row is one fact pattern.
TABLE: list[tuple[str, Callable[[], policy.Decision], bool]] = [
    ("non-member enters", lambda: policy.can_enter_workspace(None, V), False),
    ("viewer enters a viewer route", lambda: policy.can_enter_workspace(V, V), True),
    ("viewer enters a member route", lambda: policy.can_enter_workspace(V, M), False),
    ("admin enters an admin route", lambda: policy.can_enter_workspace(A, A), True),
    ("admin enters an owner route", lambda: policy.can_enter_workspace(A, OWN), False),
    ("owner enters an owner route", lambda: policy.can_enter_workspace(OWN, OWN), True),
    (
        "relay owner creates a workspace",
        lambda: policy.can_create_workspace(is_relay_owner=True, user_workspaces_allowed=False),
        True,
    ),
    (
        "user creates a workspace",
        lambda: policy.can_create_workspace(is_relay_owner=False, user_workspaces_allowed=False),
        False,
    ),
    (
        "user creates a workspace where allowed",
        lambda: policy.can_create_workspace(is_relay_owner=False, user_workspaces_allowed=True),
        True,
    ),
    ("viewer grants member", lambda: policy.can_grant_role(V, M), False),
    ("member grants member", lambda: policy.can_grant_role(M, M), True),
    ("member grants admin", lambda: policy.can_grant_role(M, A), False),
    ("admin grants member", lambda: policy.can_grant_role(A, M), True),
    ("admin grants admin", lambda: policy.can_grant_role(A, A), False),
    ("owner grants owner", lambda: policy.can_grant_role(OWN, OWN), True),
    ("admin moves member to viewer", lambda: policy.can_change_role(A, current=M, new=V), True),
    ("admin raises member to admin", lambda: policy.can_change_role(A, current=M, new=A), False),
    ("admin lowers an admin", lambda: policy.can_change_role(A, current=A, new=M), False),
    ("owner lowers an owner", lambda: policy.can_change_role(OWN, current=OWN, new=V), True),
    ("member changes a role", lambda: policy.can_change_role(M, current=V, new=V), False),
    ("viewer leaves", lambda: policy.can_remove_member(V, is_self=True, target=V), True),
    ("owner leaves", lambda: policy.can_remove_member(OWN, is_self=True, target=OWN), True),
    ("member removes viewer", lambda: policy.can_remove_member(M, is_self=False, target=V), False),
    ("admin removes member", lambda: policy.can_remove_member(A, is_self=False, target=M), True),
    ("admin removes admin", lambda: policy.can_remove_member(A, is_self=False, target=A), False),
    ("owner removes owner", lambda: policy.can_remove_member(OWN, is_self=False, target=OWN), True),
    ("relay owner manages users", lambda: policy.can_manage_users(is_relay_owner=True), True),
    ("user manages users", lambda: policy.can_manage_users(is_relay_owner=False), False),
    (
        "admin recovers a member they outrank everywhere",
        lambda: policy.can_issue_recovery_code(
            is_self=False,
            target_is_relay_owner=False,
            actor_roles={"w1": A, "w2": OWN},
            target_roles={"w1": M, "w2": A},
        ),
        True,
    ),
    (
        "admin recovers a member who is an admin elsewhere",
        lambda: policy.can_issue_recovery_code(
            is_self=False,
            target_is_relay_owner=False,
            actor_roles={"w1": A, "w2": A},
            target_roles={"w1": M, "w2": A},
        ),
        False,
    ),
    (
        "admin recovers a member of a workspace they are not in",
        lambda: policy.can_issue_recovery_code(
            is_self=False,
            target_is_relay_owner=False,
            actor_roles={"w1": A},
            target_roles={"w1": V, "w9": V},
        ),
        False,
    ),
    (
        "admin recovers themself",
        lambda: policy.can_issue_recovery_code(
            is_self=True, target_is_relay_owner=False, actor_roles={}, target_roles={}
        ),
        False,
    ),
    (
        "admin recovers the relay owner",
        lambda: policy.can_issue_recovery_code(
            is_self=False, target_is_relay_owner=True, actor_roles={"w1": OWN}, target_roles={}
        ),
        False,
    ),
    ("own passkey", lambda: policy.can_manage_own("u1", "u1", "passkey"), True),
    ("someone else's passkey", lambda: policy.can_manage_own("u2", "u1", "passkey"), False),
    ("viewer submits", lambda: policy.can_submit_task(V, write_access=False), False),
    ("member submits read-only", lambda: policy.can_submit_task(M, write_access=False), True),
    ("member submits write mode", lambda: policy.can_submit_task(M, write_access=True), False),
    ("admin submits write mode", lambda: policy.can_submit_task(A, write_access=True), True),
    (
        "write mode on both sides",
        lambda: policy.can_use_write_mode(relay_allows=True, agent_allows=True),
        True,
    ),
    (
        "write mode off on the relay",
        lambda: policy.can_use_write_mode(relay_allows=False, agent_allows=True),
        False,
    ),
    (
        "write mode off on the agent",
        lambda: policy.can_use_write_mode(relay_allows=True, agent_allows=False),
        False,
    ),
    ("creator cancels", lambda: policy.can_cancel_task(M, is_creator=True), True),
    ("member cancels another's task", lambda: policy.can_cancel_task(M, is_creator=False), False),
    ("admin cancels another's task", lambda: policy.can_cancel_task(A, is_creator=False), True),
    # notifications: the role held now in the notification's workspace
    (
        "admin hears a pair request",
        lambda: policy.can_receive_push("pair-request", A, workspace=True),
        True,
    ),
    (
        "member hears a pair request",
        lambda: policy.can_receive_push("pair-request", M, workspace=True),
        False,
    ),
    (
        "outsider hears a pair request",
        lambda: policy.can_receive_push("pair-request", None, workspace=True),
        False,
    ),
    (
        "member hears an approval",
        lambda: policy.can_receive_push("approval-needed", M, workspace=True),
        True,
    ),
    (
        "viewer hears an approval",
        lambda: policy.can_receive_push("approval-needed", V, workspace=True),
        False,
    ),
    (
        "viewer hears their result",
        lambda: policy.can_receive_push("finished", V, workspace=True),
        True,
    ),
    (
        "outsider hears a result",
        lambda: policy.can_receive_push("failed", None, workspace=True),
        False,
    ),
    (
        "account hears a new device",
        lambda: policy.can_receive_push("new-device", None, workspace=False),
        True,
    ),
    (
        "workspace hears a new device",
        lambda: policy.can_receive_push("new-device", OWN, workspace=True),
        False,
    ),
    (
        "unknown kind",
        lambda: policy.can_receive_push("prompt", OWN, workspace=True),
        False,
    ),
    (
        "workspace kind without one",
        lambda: policy.can_receive_push("finished", OWN, workspace=False),
        False,
    ),
    # live conversations
    ("viewer starts a thread", lambda: policy.can_start_thread(V, write_access=False), False),
    (
        "member starts a read-only thread",
        lambda: policy.can_start_thread(M, write_access=False),
        True,
    ),
    ("member starts a write thread", lambda: policy.can_start_thread(M, write_access=True), False),
    ("admin starts a write thread", lambda: policy.can_start_thread(A, write_access=True), True),
    ("owner drives own thread", lambda: _drive(M, own=True, writes=False), True),
    ("member drives another's thread", lambda: _drive(M, own=False, writes=False), False),
    ("viewer drives own thread", lambda: _drive(V, own=True, writes=False), False),
    ("member drives own writing thread", lambda: _drive(M, own=True, writes=True), False),
    ("admin drives another's writing thread", lambda: _drive(A, own=False, writes=True), True),
    ("starter stops the turn", lambda: _stop(M, starter=True, own=False, known=True), True),
    ("member stops another's turn", lambda: _stop(M, starter=False, own=True, known=True), False),
    ("owner stops a terminal turn", lambda: _stop(M, starter=False, own=True, known=False), True),
    (
        "member stops a terminal turn",
        lambda: _stop(M, starter=False, own=False, known=False),
        False,
    ),
    ("viewer stops own-started turn", lambda: _stop(V, starter=True, own=True, known=True), False),
    ("admin stops any turn", lambda: _stop(A, starter=False, own=False, known=True), True),
    ("viewer answers", lambda: _answer(V, own=True, writes=False, decision="decline"), False),
    ("owner accepts", lambda: _answer(M, own=True, writes=False, decision="accept"), True),
    (
        "member accepts another's",
        lambda: _answer(M, own=False, writes=False, decision="accept"),
        False,
    ),
    (
        "member declines another's",
        lambda: _answer(M, own=False, writes=False, decision="decline"),
        False,
    ),
    (
        "admin accepts another's",
        lambda: _answer(A, own=False, writes=False, decision="accept"),
        True,
    ),
    (
        "owner accepts on a writing thread",
        lambda: _answer(M, own=True, writes=True, decision="accept"),
        False,
    ),
    (
        "owner declines on a writing thread",
        lambda: _answer(M, own=True, writes=True, decision="decline"),
        True,
    ),
    (
        "admin accepts on a writing thread",
        lambda: _answer(A, own=False, writes=True, decision="acceptForSession"),
        True,
    ),
    (
        "admin accepts on a writing thread, relay write off",
        lambda: _answer(A, own=True, writes=True, decision="accept", relay_write=False),
        False,
    ),
]


def _drive(role: Role, *, own: bool, writes: bool) -> policy.Decision:
    return policy.can_drive_thread(role, is_owner=own, thread_writes=writes)


def _stop(role: Role, *, starter: bool, own: bool, known: bool) -> policy.Decision:
    return policy.can_interrupt_turn(role, is_starter=starter, is_owner=own, starter=known)


def _answer(
    role: Role, *, own: bool, writes: bool, decision: str, relay_write: bool = True
) -> policy.Decision:
    return policy.can_answer_approval(
        role, is_owner=own, thread_writes=writes, relay_allows_write=relay_write, decision=decision
    )


@pytest.mark.parametrize(("rule", "decide", "allowed"), TABLE, ids=[row[0] for row in TABLE])
def test_policy_table(rule: str, decide: Callable[[], policy.Decision], allowed: bool) -> None:
    """Each fact pattern is allowed or refused exactly as the table says; a refusal carries a
    sentence for the person."""
    decision = decide()
    assert decision.allowed is allowed, rule
    if not allowed:
        assert decision.reason.endswith("."), decision


@pytest.mark.parametrize(("role", "minimum"), list(product(ROLE_ORDER, ROLE_ORDER)))
def test_workspace_entry_follows_role_order(role: Role, minimum: Role) -> None:
    """R03: a role enters every route at or below it and none above."""
    assert bool(policy.can_enter_workspace(role, minimum)) is (role.rank >= minimum.rank)


@pytest.mark.parametrize(("actor", "role"), list(product(ROLE_ORDER, ROLE_ORDER)))
def test_nobody_grants_above_themself(actor: Role, role: Role) -> None:
    """Invites never create a role above the inviter's, and admin+ only by owners."""
    allowed = bool(policy.can_grant_role(actor, role))
    assert allowed is (actor.rank >= role.rank and (role.rank < A.rank or actor == OWN))


def test_refusals_keep_their_codes() -> None:
    """Non-members learn nothing (404), another's passkey is not found, write mode has its
    own code; the rest are 403."""
    cases = {
        ErrorCode.NOT_FOUND: policy.can_enter_workspace(None, V),
        ErrorCode.WRITE_MODE_DISABLED: policy.can_use_write_mode(
            relay_allows=False, agent_allows=False
        ),
        ErrorCode.FORBIDDEN: policy.can_cancel_task(V, is_creator=False),
    }
    for code, decision in cases.items():
        with pytest.raises(AppError) as excinfo:
            policy.enforce(decision)
        assert excinfo.value.code == code
    assert policy.can_manage_own("a", "b", "session").code == ErrorCode.NOT_FOUND
    policy.enforce(policy.ALLOW)
