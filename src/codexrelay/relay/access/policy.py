"""Who may do what: every permission rule of the relay, as pure functions of facts (R03,
R09, R17, B7).

Each ``can_*`` function takes the facts a rule needs (roles, who owns what, flags) and
returns a ``Decision``; nothing here reads storage or the clock, so the whole policy is one
table in its tests. Routes and domain functions ask these functions and call ``enforce``;
none restates a rule inline. The route-level minimum roles (viewer < member < admin <
owner per route) are declared on the routes themselves (``api.deps``) and checked by
``can_enter_workspace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.storage.records import Role


@dataclass(frozen=True)
class Decision:
    """Allowed, or refused with the error code and sentence the caller sees."""

    allowed: bool
    code: ErrorCode = ErrorCode.FORBIDDEN
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(allowed=True)


def deny(reason: str, code: ErrorCode = ErrorCode.FORBIDDEN) -> Decision:
    """A refusal with its sentence."""
    return Decision(allowed=False, code=code, reason=reason)


def refusal(decision: Decision) -> AppError:
    """The refusal as the one error type."""
    return AppError(decision.code, decision.reason or "That is not allowed.")


def enforce(decision: Decision) -> None:
    """Raise the refusal (no-op when allowed)."""
    if not decision.allowed:
        raise refusal(decision)


# --- workspaces and memberships (R03, R04) ---


def can_enter_workspace(role: Role | None, minimum: Role) -> Decision:
    """A route of a workspace: members only (others learn nothing: 404), at its minimum."""
    if role is None:
        return deny("No such workspace.", ErrorCode.NOT_FOUND)
    if not role.at_least(minimum):
        return deny(f"This needs the {minimum.value} role or higher in this workspace.")
    return ALLOW


def can_create_workspace(*, is_relay_owner: bool, user_workspaces_allowed: bool) -> Decision:
    """The relay owner creates workspaces; others only where the relay allows it."""
    if is_relay_owner or user_workspaces_allowed:
        return ALLOW
    return deny("Only the relay owner can create workspaces.")


def can_grant_role(actor: Role, role: Role) -> Decision:
    """Invites: nobody grants above their own role; only owners grant admin or owner."""
    if role.at_least(Role.ADMIN) and actor != Role.OWNER:
        return deny("Only workspace owners can grant the admin or owner role.")
    if not actor.at_least(role):
        return deny("You cannot grant a role above your own.")
    return ALLOW


def can_change_role(actor: Role, *, current: Role, new: Role) -> Decision:
    """Admins move viewers and members among those roles; owners move anyone."""
    if actor == Role.OWNER:
        return ALLOW
    if not actor.at_least(Role.ADMIN):
        return deny("This needs the admin role or higher in this workspace.")
    if current.at_least(Role.ADMIN) or new.at_least(Role.ADMIN):
        return deny("Only workspace owners can grant or change admin and owner roles.")
    return ALLOW


def can_remove_member(actor: Role, *, is_self: bool, target: Role) -> Decision:
    """Anyone may leave (B7); admins remove those below them; owners remove anyone."""
    if is_self:
        return ALLOW
    if not actor.at_least(Role.ADMIN):
        return deny("You can only remove yourself from a workspace.")
    if actor != Role.OWNER and target.rank >= actor.rank:
        return deny("Admins can only remove viewers and members.")
    return ALLOW


# --- people administration (I2) ---


def can_manage_users(*, is_relay_owner: bool) -> Decision:
    """The relay-wide user list, other people's passkeys and sessions: the relay owner."""
    return ALLOW if is_relay_owner else deny("Only the relay owner can manage users.")


def can_issue_recovery_code(
    *,
    is_self: bool,
    target_is_relay_owner: bool,
    actor_roles: Mapping[str, Role],
    target_roles: Mapping[str, Role],
) -> Decision:
    """An admin may recover a person only where they outrank them in every workspace the
    person belongs to: a recovery code signs in as that person, so it must not lift the
    admin into a higher-placed account elsewhere (R03). Roles are by workspace id."""
    if is_self or target_is_relay_owner:
        return deny("Ask the relay owner for this recovery code.")
    for workspace_id, theirs in target_roles.items():
        mine = actor_roles.get(workspace_id)
        if mine is None or mine.rank <= theirs.rank:
            return deny(
                "This person holds a role you do not outrank in some workspace; "
                "ask the relay owner for their recovery code."
            )
    return ALLOW


# --- self-service: a person's own passkeys and sessions ---


def can_manage_own(owner_id: str, caller_id: str, what: str) -> Decision:
    """Passkeys and sessions are managed by their owner only; others' are not found."""
    if owner_id == caller_id:
        return ALLOW
    return deny(f"No such {what}.", ErrorCode.NOT_FOUND)


# --- tasks (R09, R17) ---


def can_submit_task(role: Role, *, write_access: bool) -> Decision:
    """Members submit read-only work; write mode needs an admin."""
    if not role.at_least(Role.MEMBER):
        return deny("This needs the member role or higher in this workspace.")
    if write_access and not role.at_least(Role.ADMIN):
        return deny("Write-mode tasks need the admin role.")
    return ALLOW


def can_use_write_mode(*, relay_allows: bool, agent_allows: bool) -> Decision:
    """Write mode runs only where both the relay and the agent allow it (R17)."""
    if relay_allows and agent_allows:
        return ALLOW
    side = "relay" if not relay_allows else "agent"
    return deny(f"Write mode is turned off on the {side} (R17).", ErrorCode.WRITE_MODE_DISABLED)


def can_cancel_task(role: Role, *, is_creator: bool) -> Decision:
    """The task's creator, or an admin, stops it."""
    if is_creator or role.at_least(Role.ADMIN):
        return ALLOW
    return deny("Only the task's creator or an admin can cancel it.")


# --- notifications (content-free Web Push) ---

# The lowest workspace role that receives each workspace kind: pairing requests wait for an
# admin's decision, approvals for someone who may run work; results go to whoever they
# are addressed to (the task's creator) as long as they can still see the workspace.
PUSH_MINIMUM_ROLE: Mapping[str, Role] = {
    "pair-request": Role.ADMIN,
    "approval-needed": Role.MEMBER,
    "finished": Role.VIEWER,
    "failed": Role.VIEWER,
}
# Kinds about the person's own account, not a workspace.
ACCOUNT_PUSH_KINDS = frozenset({"new-device"})


def can_receive_push(kind: str, role: Role | None, *, workspace: bool) -> Decision:
    """Whether a person with ``role`` in the notification's workspace (None: not a member)
    may be told that this kind of thing happened there. Account kinds carry no workspace
    and go only to the account's own devices."""
    if kind in ACCOUNT_PUSH_KINDS:
        return ALLOW if not workspace else deny("Account notifications name no workspace.")
    minimum = PUSH_MINIMUM_ROLE.get(kind)
    if minimum is None or not workspace:
        return deny("No such notification.")
    if role is None:
        return deny("No such workspace.", ErrorCode.NOT_FOUND)
    if not role.at_least(minimum):
        return deny(f"This notification needs the {minimum.value} role or higher.")
    return ALLOW


# --- live conversations (R09, R17; docs/SECURITY.md "Live conversations") ---
# Viewers watch every thread of their workspace (the route minimum). A thread belongs to
# whoever started it from a phone, or to whoever first took over a terminal or exec thread.

APPROVING = frozenset({"accept", "acceptForSession"})


def can_start_thread(role: Role, *, write_access: bool) -> Decision:
    """Members start read-only threads (and take over terminal ones read-only); a thread
    that may write files needs an admin, as a write-mode task does."""
    if not role.at_least(Role.MEMBER):
        return deny("This needs the member role or higher in this workspace.")
    if write_access and not role.at_least(Role.ADMIN):
        return deny("Write-mode threads need the admin role.")
    return ALLOW


def can_drive_thread(role: Role, *, is_owner: bool, thread_writes: bool) -> Decision:
    """Follow-up turns and steering: the thread's owner or an admin; a thread that writes
    files takes input from admins only."""
    if not role.at_least(Role.MEMBER):
        return deny("This needs the member role or higher in this workspace.")
    if thread_writes and not role.at_least(Role.ADMIN):
        return deny("This thread can write files; only an admin can send it turns.")
    if not is_owner and not role.at_least(Role.ADMIN):
        return deny("Only the person who started this thread or an admin can send it turns.")
    return ALLOW


def can_interrupt_turn(role: Role, *, is_starter: bool, is_owner: bool, starter: bool) -> Decision:
    """The turn's starter or an admin stops it; a turn started in the terminal (no
    ``starter`` on record) can also be stopped by the thread's owner."""
    if role.at_least(Role.ADMIN) or (role.at_least(Role.MEMBER) and is_starter):
        return ALLOW
    if role.at_least(Role.MEMBER) and not starter and is_owner:
        return ALLOW
    return deny("Only the person who started this turn or an admin can stop it.")


def can_answer_approval(
    role: Role, *, is_owner: bool, thread_writes: bool, relay_allows_write: bool, decision: str
) -> Decision:
    """Members answer the approvals of their own threads; admins answer anyone's. Letting
    Codex act on a thread that writes files is write mode: admins only, and only while the
    relay allows write mode (R17). Declining or stopping is always open to those allowed."""
    if not role.at_least(Role.MEMBER):
        return deny("This needs the member role or higher in this workspace.")
    if not is_owner and not role.at_least(Role.ADMIN):
        return deny("Only the person who started this thread or an admin can answer it.")
    if decision in APPROVING and thread_writes:
        if not role.at_least(Role.ADMIN):
            return deny("Approving on a thread that writes files needs the admin role.")
        if not relay_allows_write:
            return deny(
                "Write mode is turned off on the relay (R17).", ErrorCode.WRITE_MODE_DISABLED
            )
    return ALLOW
