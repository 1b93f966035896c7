"""Per-action policies (B6, TRUST.md §4.13): who may run what, with which proof.

The policy lives in the genesis and changes only by an owner-signed ``policy.set`` entry.
For each kind of action (read-only Codex, write-mode Codex, each predefined action, each log
source, approval decisions) it names the minimum role, whether a fresh user verification is
needed, whether the passkey must be device-bound, and an optional two-person rule: ``k``
people, distinct, each qualifying, within ``within`` seconds. The agent enforces it from its
verified log; the relay runs the same function as a first filter, to show "waiting for a
second approver".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field

from codexrelay.e2e.statements import Id, Strict, TaskType

Role = Literal["viewer", "member", "admin", "owner"]
ROLE_RANK: Final[Mapping[str, int]] = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
MAX_NAMED_RULES: Final = 256


def at_least(role: str, minimum: str) -> bool:
    """``role`` is ``minimum`` or above it (viewer < member < admin < owner)."""
    return ROLE_RANK[role] >= ROLE_RANK[minimum]


class TwoPerson(Strict):
    """``k`` distinct qualifying people within ``within`` seconds of each other and of now."""

    k: Annotated[int, Field(ge=2, le=5)]
    within: Annotated[int, Field(ge=30, le=86_400)]


class Rule(Strict):
    """What one kind of action needs."""

    min_role: Role
    fresh_uv: bool = True
    device_bound: bool = False
    two_person: TwoPerson | None = None


class Policy(Strict):
    """The workspace's policy object, as the genesis and ``policy.set`` carry it."""

    e2e: Annotated[Literal["required"], Field(alias="e2e")]
    # "sealed": task content must travel end-to-end encrypted; agents refuse plaintext
    # (TRUST.md §2, downgrade). "signed" is the earlier phase: signed but readable by the
    # relay, kept so workspaces made before sealing keep their exact genesis bytes.
    content: Literal["signed", "sealed"] = "signed"
    task_ttl_sec: Annotated[int, Field(ge=60, le=3600)]
    codex_read: Rule
    codex_write: Rule
    action_default: Rule
    actions: Annotated[dict[Id, Rule], Field(max_length=MAX_NAMED_RULES)]
    log_default: Rule
    logs: Annotated[dict[Id, Rule], Field(max_length=MAX_NAMED_RULES)]
    approvals: Rule


def default_policy() -> Policy:
    """Today's relay rules as a policy: members run read-only work, admins write mode."""
    member = {"minRole": "member"}
    return Policy.model_validate(
        {
            "e2e": "required",
            "taskTtlSec": 600,
            "codexRead": member,
            "codexWrite": {"minRole": "admin"},
            "actionDefault": member,
            "actions": {},
            "logDefault": member,
            "logs": {},
            "approvals": member,
        }
    )


@dataclass(frozen=True)
class ActionKey:
    """What is being done: ``codex.read``, ``codex.write``, ``action:<id>``, ``log:<id>``,
    or ``approval``."""

    kind: Literal["codex.read", "codex.write", "action", "log", "approval"]
    name: str | None = None

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"


def task_action(
    task_type: TaskType, *, write_access: bool, action_id: str | None, log_source_id: str | None
) -> ActionKey:
    """The action key of a task statement's fields."""
    if task_type == "run_action":
        return ActionKey("action", action_id)
    if task_type == "read_log":
        return ActionKey("log", log_source_id)
    return ActionKey("codex.write" if write_access else "codex.read")


def rule_for(policy: Policy, key: ActionKey) -> Rule:
    """The rule for ``key``; a named action or log falls back to its default."""
    if key.kind == "action":
        return policy.actions.get(key.name or "", policy.action_default)
    if key.kind == "log":
        return policy.logs.get(key.name or "", policy.log_default)
    fixed = {
        "codex.read": policy.codex_read,
        "codex.write": policy.codex_write,
        "approval": policy.approvals,
    }
    return fixed[key.kind]


class PolicyReason(StrEnum):
    """Why a policy check did not allow the action (yet)."""

    ROLE_TOO_LOW = "role-too-low"
    UV_REQUIRED = "uv-required"
    DEVICE_BOUND_REQUIRED = "device-bound-required"
    NEEDS_MORE_APPROVERS = "needs-more-approvers"


@dataclass(frozen=True)
class Approval:
    """One person's verified, signed say-so: the submitter's statement or a decision."""

    user_id: str
    role: Role
    issued_at: int
    user_verified: bool
    device_bound: bool


@dataclass(frozen=True)
class Verdict:
    """The outcome: allowed, refused with a reason, or waiting for ``missing`` more people."""

    allowed: bool
    reason: PolicyReason | None = None
    missing: int = 0
    approvers: tuple[str, ...] = ()


def qualifies(rule: Rule, approval: Approval) -> PolicyReason | None:
    """Why one person's approval does not count under ``rule`` (None if it does)."""
    if not at_least(approval.role, rule.min_role):
        return PolicyReason.ROLE_TOO_LOW
    if rule.fresh_uv and not approval.user_verified:
        return PolicyReason.UV_REQUIRED
    if rule.device_bound and not approval.device_bound:
        return PolicyReason.DEVICE_BOUND_REQUIRED
    return None


def check(policy: Policy, key: ActionKey, approvals: Sequence[Approval], *, now: int) -> Verdict:
    """Decide ``key`` given the submitter's approval first, then any others.

    The submitter must qualify on their own. With a two-person rule, ``k`` distinct
    qualifying users whose approvals are no older than ``within`` seconds are needed; fewer
    is a "waiting" verdict with the number still missing, never an error.
    """
    rule = rule_for(policy, key)
    if not approvals:
        return Verdict(allowed=False, reason=PolicyReason.NEEDS_MORE_APPROVERS, missing=1)
    why = qualifies(rule, approvals[0])
    if why is not None:
        return Verdict(allowed=False, reason=why)
    needed = rule.two_person.k if rule.two_person else 1
    window = rule.two_person.within if rule.two_person else None
    counted: list[str] = []
    for approval in approvals:
        fresh = window is None or now - window <= approval.issued_at <= now + window
        if fresh and approval.user_id not in counted and qualifies(rule, approval) is None:
            counted.append(approval.user_id)
    if len(counted) >= needed:
        return Verdict(allowed=True, approvers=tuple(counted))
    missing = needed - len(counted)
    return Verdict(
        allowed=False,
        reason=PolicyReason.NEEDS_MORE_APPROVERS,
        missing=missing,
        approvers=tuple(counted),
    )
