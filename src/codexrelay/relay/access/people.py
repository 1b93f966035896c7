"""People: membership changes (R03, B7), passkey management and owner administration (I2).
Plain functions over the ``Store``; no I/O. Invites and recovery codes are in ``invites``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, invites, policy
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.push import subscriptions as push_subscriptions
from codexrelay.relay.storage.records import PasskeyRecord, Role, UserRecord
from codexrelay.relay.storage.repositories import Store

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


def _owner_count(store: Store, workspace_id: str) -> int:
    return sum(1 for m in store.memberships.of_workspace(workspace_id) if m.role == Role.OWNER)


def _check_keeps_an_owner(store: Store, workspace_id: str, current: Role) -> None:
    if current == Role.OWNER and _owner_count(store, workspace_id) <= 1:
        raise AppError(
            ErrorCode.LAST_OWNER,
            "A workspace needs at least one owner; make someone else owner first.",
        )


def change_role(
    store: Store, *, access: WorkspaceAccess, user_id: str, role: Role, now: datetime
) -> UserRecord:
    """PATCH a member's role: admins move viewers and members; owners move anyone (R03)."""
    target = store.memberships.find(user_id, access.workspace.id)
    user = store.users.get(user_id)
    if target is None or user is None:
        raise _not_found("member in this workspace")
    policy.enforce(policy.can_change_role(access.role, current=target.role, new=role))
    if role != Role.OWNER:
        _check_keeps_an_owner(store, access.workspace.id, target.role)
    target.role = role
    store.memberships.save(target)
    if not role.at_least(Role.ADMIN):
        invites.retire_invites(store, user_id=user_id, workspace_id=access.workspace.id, now=now)
    return user


def remove_member(store: Store, *, access: WorkspaceAccess, user_id: str, now: datetime) -> None:
    """Remove a member (admin+ for those below them, owners for anyone) or leave (B7).

    Access ends at once: every workspace request re-checks the membership (R03).
    """
    target = store.memberships.find(user_id, access.workspace.id)
    if target is None:
        raise _not_found("member in this workspace")
    is_self = user_id == access.user_id
    policy.enforce(policy.can_remove_member(access.role, is_self=is_self, target=target.role))
    _check_keeps_an_owner(store, access.workspace.id, target.role)
    store.memberships.remove(target)
    invites.retire_invites(store, user_id=user_id, workspace_id=access.workspace.id, now=now)
    # Their devices stop hearing about this workspace at once, queued notifications
    # included; the app subscribes again when opened, for the workspaces left.
    push_subscriptions.forget_user(store, user_id)


# --- passkey management and owner administration (I2) ---


def user_passkeys(store: Store, user_id: str) -> list[PasskeyRecord]:
    """A user's passkeys, oldest first."""
    return store.passkeys.of_user(user_id)


def default_label(store: Store, user_id: str) -> str:
    """``Passkey N`` for the user's N-th passkey."""
    return f"Passkey {len(user_passkeys(store, user_id)) + 1}"


def _own_passkey(store: Store, user_id: str, credential_id: str) -> PasskeyRecord:
    passkey = store.passkeys.get(credential_id)
    if passkey is None:
        raise _not_found("passkey")
    policy.enforce(policy.can_manage_own(passkey.user_id, user_id, "passkey"))
    return passkey


def rename_passkey(store: Store, *, user_id: str, credential_id: str, label: str) -> PasskeyRecord:
    """Give one of the user's passkeys a new label."""
    passkey = _own_passkey(store, user_id, credential_id)
    cleaned = clean_label(label)
    if not cleaned:
        raise AppError(ErrorCode.INVALID_REQUEST, "Give a label of 1 to 60 characters.")
    passkey.label = cleaned
    store.passkeys.save(passkey)
    return passkey


def has_other_way_in(store: Store, user: UserRecord, now: datetime) -> bool:
    """Whether the user could still sign in with no passkey: the owner's recovery token, or
    a live recovery code."""
    return user.is_owner or any(
        r.used_at is None and r.expires_at > now for r in store.recovery_codes.of_user(user.id)
    )


def revoke_passkeys(
    store: Store,
    *,
    user_id: str,
    credential_id: str | None,
    now: datetime,
    force: bool,
) -> int:
    """Revoke one passkey (or all, with ``credential_id=None``) of a user (I2).

    Refused with 409 ``last-passkey`` when it would leave them no way in, unless forced.
    """
    user = find_user(store, user_id)
    doomed = (
        user_passkeys(store, user_id)
        if credential_id is None
        else [_own_passkey(store, user_id, credential_id)]
    )
    left = len(user_passkeys(store, user_id)) - len(doomed)
    if doomed and left == 0 and not force and not has_other_way_in(store, user, now):
        raise AppError(
            ErrorCode.LAST_PASSKEY,
            f"That is {user.name}'s last passkey and there is no other way for them to sign "
            "in; register another passkey or issue a recovery code first.",
        )
    for passkey in doomed:
        store.passkeys.remove(passkey)
    return len(doomed)


def list_users(store: Store) -> list[UserSummary]:
    """Every user with counts of passkeys and sessions, by name (owner only, I2)."""
    summaries = [
        UserSummary(
            user=user,
            passkeys=len(store.passkeys.of_user(user.id)),
            sessions=len(store.sessions.of_user(user.id)),
            memberships=[
                (ws.id, ws.name, role) for ws, role in identity.user_workspaces(store, user.id)
            ],
        )
        for user in store.users.all()
    ]
    return sorted(summaries, key=lambda s: (not s.user.is_owner, s.user.name.lower(), s.user.id))


def find_user(store: Store, user_id: str) -> UserRecord:
    """A user by id, or 404."""
    user = store.users.get(user_id)
    if user is None:
        raise _not_found("user")
    return user
