"""Per-action policies (B6): roles, fresh UV, device-bound keys, two-person rules."""

from __future__ import annotations

import pytest

from codexrelay.e2e.policy import (
    ActionKey,
    Approval,
    Policy,
    PolicyReason,
    check,
    default_policy,
    rule_for,
    task_action,
)
from codexrelay.e2e.statements import StatementError, validate

NOW = 1_800_000_000


def approval(
    user: str, role: str = "member", *, age: int = 0, uv: bool = True, bound: bool = False
) -> Approval:
    """A verified say-so ``age`` seconds old."""
    return Approval(
        user_id=user, role=role, issued_at=NOW - age, user_verified=uv, device_bound=bound
    )  # type: ignore[arg-type]


def two_person_policy() -> Policy:
    """Write mode needs two admins within 10 minutes; deploy needs a device-bound owner key."""
    data = default_policy().model_dump(by_alias=True)
    data["codexWrite"] = {"minRole": "admin", "twoPerson": {"k": 2, "within": 600}}
    data["actions"] = {"deploy": {"minRole": "owner", "deviceBound": True}}
    data["logs"] = {"audit": {"minRole": "admin"}}
    return validate(Policy, data)


def test_policy_action_keys_from_task_fields() -> None:
    """Each task maps to its kind of action."""
    assert (
        str(task_action("codex_exec", write_access=False, action_id=None, log_source_id=None))
        == "codex.read"
    )
    assert (
        str(task_action("codex_exec", write_access=True, action_id=None, log_source_id=None))
        == "codex.write"
    )
    assert (
        str(task_action("run_action", write_access=False, action_id="deploy", log_source_id=None))
        == "action:deploy"
    )
    assert (
        str(task_action("read_log", write_access=False, action_id=None, log_source_id="app"))
        == "log:app"
    )


def test_policy_named_rules_fall_back_to_defaults() -> None:
    """An action or log without its own rule uses the default one."""
    policy = two_person_policy()
    assert rule_for(policy, ActionKey("action", "deploy")).min_role == "owner"
    assert rule_for(policy, ActionKey("action", "test")).min_role == "member"
    assert rule_for(policy, ActionKey("log", "audit")).min_role == "admin"
    assert rule_for(policy, ActionKey("log", "app")).min_role == "member"


@pytest.mark.parametrize(
    ("role", "key", "allowed"),
    [
        ("viewer", ActionKey("codex.read"), False),
        ("member", ActionKey("codex.read"), True),
        ("member", ActionKey("codex.write"), False),
        ("admin", ActionKey("codex.write"), True),
        ("member", ActionKey("approval"), True),
        ("viewer", ActionKey("log", "app"), False),
    ],
)
def test_policy_default_roles(role: str, key: ActionKey, allowed: bool) -> None:
    """The default policy keeps today's relay rules: member+ read-only, admin+ write mode."""
    verdict = check(default_policy(), key, [approval("u_a", role)], now=NOW)
    assert verdict.allowed is allowed
    assert verdict.reason is (None if allowed else PolicyReason.ROLE_TOO_LOW)


def test_policy_uv_and_device_bound() -> None:
    """Without UV, or with a synced key where a device-bound one is required, refused."""
    policy = two_person_policy()
    assert (
        check(policy, ActionKey("codex.read"), [approval("u_a", uv=False)], now=NOW).reason
        is PolicyReason.UV_REQUIRED
    )
    deploy = ActionKey("action", "deploy")
    assert (
        check(policy, deploy, [approval("u_o", "owner")], now=NOW).reason
        is PolicyReason.DEVICE_BOUND_REQUIRED
    )
    assert check(policy, deploy, [approval("u_o", "owner", bound=True)], now=NOW).allowed


def test_policy_two_person_rule() -> None:
    """Write mode waits for a second distinct admin within the window."""
    policy = two_person_policy()
    write = ActionKey("codex.write")
    alone = check(policy, write, [approval("u_a", "admin")], now=NOW)
    assert (alone.allowed, alone.reason, alone.missing) == (
        False,
        PolicyReason.NEEDS_MORE_APPROVERS,
        1,
    )
    same_person = check(
        policy, write, [approval("u_a", "admin"), approval("u_a", "admin")], now=NOW
    )
    assert same_person.missing == 1
    too_low = check(policy, write, [approval("u_a", "admin"), approval("u_m", "member")], now=NOW)
    assert too_low.missing == 1
    stale = check(
        policy, write, [approval("u_a", "admin"), approval("u_b", "owner", age=601)], now=NOW
    )
    assert stale.missing == 1
    done = check(
        policy, write, [approval("u_a", "admin"), approval("u_b", "owner", age=599)], now=NOW
    )
    assert done.allowed
    assert done.approvers == ("u_a", "u_b")


def test_policy_submitter_must_qualify_alone() -> None:
    """Two approvers do not lift a submitter whose role is too low."""
    policy = two_person_policy()
    verdict = check(
        policy,
        ActionKey("codex.write"),
        [approval("u_m", "member"), approval("u_a", "admin"), approval("u_b", "admin")],
        now=NOW,
    )
    assert verdict.reason is PolicyReason.ROLE_TOO_LOW


def test_policy_parsing_is_strict() -> None:
    """Unknown fields, k below 2 and snake_case names are refused."""
    data = default_policy().model_dump(by_alias=True)
    for bad in (
        data | {"extra": 1},
        data | {"codexWrite": {"minRole": "admin", "twoPerson": {"k": 1, "within": 600}}},
        data | {"codexRead": {"min_role": "member"}},
        data | {"e2e": "optional"},
    ):
        with pytest.raises(StatementError):
            validate(Policy, bad)
