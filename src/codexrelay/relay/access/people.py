"""People: membership changes (R03, B7), passkey management and owner administration (I2).
Plain functions over ``State``; no I/O. Invites and recovery codes are in ``invites``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, invites
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.storage.records import (
    PasskeyRecord,
    Role,
    State,
    UserRecord,
)

LABEL_MAX = 60
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class UserSummary:
    """One user as the instance owner's administration page shows them."""

    user: UserRecord
    passkeys: int
    sessions: int
    memberships: list[tuple[str, str, Role]]


def clean_label(label: str | None) -> str:
    """A passkey label fit for a list."""
    return identity.clean_text(label, LABEL_MAX)


def _not_found(what: str) -> AppError:
    return AppError(ErrorCode.NOT_FOUND, f"No such {what}.")


# --- roles and memberships (R03, B7) ---


def _owner_count(state: State, workspace_id: str) -> int:
    return sum(
        1 for m in state.memberships if m.workspace_id == workspace_id and m.role == Role.OWNER
    )


def _check_keeps_an_owner(state: State, workspace_id: str, current: Role) -> None:
    if current == Role.OWNER and _owner_count(state, workspace_id) <= 1:
        raise AppError(
            ErrorCode.LAST_OWNER,
            "A workspace needs at least one owner; make someone else owner first.",
        )


def change_role(
    state: State, *, access: WorkspaceAccess, user_id: str, role: Role, now: datetime
) -> UserRecord:
    """PATCH a member's role: admins move viewers and members; owners move anyone (R03)."""
    target = identity.find_membership(state, user_id, access.workspace.id)
    if target is None or user_id not in state.users:
        raise _not_found("member in this workspace")
    if access.role != Role.OWNER and (
        target.role.at_least(Role.ADMIN) or role.at_least(Role.ADMIN)
    ):
        raise AppError(
            ErrorCode.FORBIDDEN, "Only workspace owners can grant or change admin and owner roles."
        )
    if role != Role.OWNER:
        _check_keeps_an_owner(state, access.workspace.id, target.role)
    target.role = role
    if not role.at_least(Role.ADMIN):
        invites.retire_invites(state, user_id=user_id, workspace_id=access.workspace.id, now=now)
    return state.users[user_id]


def remove_member(state: State, *, access: WorkspaceAccess, user_id: str, now: datetime) -> None:
    """Remove a member (admin+ for those below them, owners for anyone) or leave (B7).

    Access ends at once: every workspace request re-checks the membership (R03).
    """
    target = identity.find_membership(state, user_id, access.workspace.id)
    if target is None:
        raise _not_found("member in this workspace")
    if user_id != access.user_id:
        if not access.role.at_least(Role.ADMIN):
            raise AppError(ErrorCode.FORBIDDEN, "You can only remove yourself from a workspace.")
        if access.role != Role.OWNER and target.role.rank >= access.role.rank:
            raise AppError(ErrorCode.FORBIDDEN, "Admins can only remove viewers and members.")
    _check_keeps_an_owner(state, access.workspace.id, target.role)
    state.memberships.remove(target)
    invites.retire_invites(state, user_id=user_id, workspace_id=access.workspace.id, now=now)


# --- passkey management and owner administration (I2) ---


def user_passkeys(state: State, user_id: str) -> list[PasskeyRecord]:
    """A user's passkeys, oldest first."""
    own = [p for p in state.passkeys.values() if p.user_id == user_id]
    return sorted(own, key=lambda p: p.created_at)


def default_label(state: State, user_id: str) -> str:
    """``Passkey N`` for the user's N-th passkey."""
    return f"Passkey {len(user_passkeys(state, user_id)) + 1}"


def _own_passkey(state: State, user_id: str, credential_id: str) -> PasskeyRecord:
    passkey = state.passkeys.get(credential_id)
    if passkey is None or passkey.user_id != user_id:
        raise _not_found("passkey")
    return passkey


def rename_passkey(state: State, *, user_id: str, credential_id: str, label: str) -> PasskeyRecord:
    """Give one of the user's passkeys a new label."""
    passkey = _own_passkey(state, user_id, credential_id)
    cleaned = clean_label(label)
    if not cleaned:
        raise AppError(ErrorCode.INVALID_REQUEST, "Give a label of 1 to 60 characters.")
    passkey.label = cleaned
    return passkey


def has_other_way_in(state: State, user: UserRecord, now: datetime) -> bool:
    """Whether the user could still sign in with no passkey: the owner's recovery token, or
    a live recovery code."""
    return user.is_owner or any(
        r.user_id == user.id and r.used_at is None and r.expires_at > now
        for r in state.recovery_codes.values()
    )


def revoke_passkeys(
    state: State,
    *,
    user_id: str,
    credential_id: str | None,
    now: datetime,
    force: bool,
) -> int:
    """Revoke one passkey (or all, with ``credential_id=None``) of a user (I2).

    Refused with 409 ``last-passkey`` when it would leave them no way in, unless forced.
    """
    user = state.users.get(user_id)
    if user is None:
        raise _not_found("user")
    doomed = (
        user_passkeys(state, user_id)
        if credential_id is None
        else [_own_passkey(state, user_id, credential_id)]
    )
    left = len(user_passkeys(state, user_id)) - len(doomed)
    if doomed and left == 0 and not force and not has_other_way_in(state, user, now):
        raise AppError(
            ErrorCode.LAST_PASSKEY,
            f"That is {user.name}'s last passkey and there is no other way for them to sign "
            "in; register another passkey or issue a recovery code first.",
        )
    for passkey in doomed:
        del state.passkeys[passkey.credential_id]
    return len(doomed)


def list_users(state: State) -> list[UserSummary]:
    """Every user with counts of passkeys and sessions, by name (owner only, I2)."""
    passkeys: dict[str, int] = {}
    for p in state.passkeys.values():
        passkeys[p.user_id] = passkeys.get(p.user_id, 0) + 1
    live: dict[str, int] = {}
    for s in state.sessions.values():
        live[s.user_id] = live.get(s.user_id, 0) + 1
    summaries = [
        UserSummary(
            user=user,
            passkeys=passkeys.get(user.id, 0),
            sessions=live.get(user.id, 0),
            memberships=[
                (ws.id, ws.name, role) for ws, role in identity.user_workspaces(state, user.id)
            ],
        )
        for user in state.users.values()
    ]
    return sorted(summaries, key=lambda s: (not s.user.is_owner, s.user.name.lower(), s.user.id))


def find_user(state: State, user_id: str) -> UserRecord:
    """A user by id, or 404."""
    user = state.users.get(user_id)
    if user is None:
        raise _not_found("user")
    return user
