"""Users, workspaces and memberships (R03, R04): plain functions over ``State``.

Access to a workspace comes only from a membership; being the instance owner grants
nothing inside workspaces one is not a member of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from codexrelay.crypto import TokenSource, new_id
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.storage.records import (
    MembershipRecord,
    Role,
    State,
    UserRecord,
    UserStatus,
    WorkspaceRecord,
)

DEFAULT_WORKSPACE_NAME = "Default"
OWNER_NAME = "Owner"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class WorkspaceAccess:
    """A caller's view of one workspace: what it is and the role they hold there."""

    workspace: WorkspaceRecord
    role: Role
    user_id: str


def create_user(
    state: State,
    *,
    name: str,
    now: datetime,
    rand: TokenSource,
    status: UserStatus = "active",
    is_owner: bool = False,
) -> UserRecord:
    """Add a user record."""
    user = UserRecord(
        id=new_id("usr", rand), name=name, status=status, is_owner=is_owner, created_at=now
    )
    state.users[user.id] = user
    return user


def create_workspace(
    state: State, *, name: str, owner_id: str, now: datetime, rand: TokenSource
) -> WorkspaceRecord:
    """Add a workspace whose creator holds the ``owner`` role in it."""
    workspace = WorkspaceRecord(id=new_id("ws", rand), name=name, created_at=now)
    state.workspaces[workspace.id] = workspace
    set_membership(state, user_id=owner_id, workspace_id=workspace.id, role=Role.OWNER, now=now)
    return workspace


def ensure_owner(state: State, *, now: datetime, rand: TokenSource) -> bool:
    """On first start, create the instance owner and a default workspace. True if it did."""
    if any(user.is_owner for user in state.users.values()):
        return False
    owner = create_user(state, name=OWNER_NAME, now=now, rand=rand, is_owner=True)
    create_workspace(state, name=DEFAULT_WORKSPACE_NAME, owner_id=owner.id, now=now, rand=rand)
    return True


def instance_owner(state: State) -> UserRecord:
    """The one user the bootstrap token signs in as."""
    for user in state.users.values():
        if user.is_owner:
            return user
    msg = "relay state has no owner user"
    raise LookupError(msg)


def find_membership(state: State, user_id: str, workspace_id: str) -> MembershipRecord | None:
    """The membership of ``user_id`` in ``workspace_id``, if any."""
    for membership in state.memberships:
        if membership.user_id == user_id and membership.workspace_id == workspace_id:
            return membership
    return None


def set_membership(
    state: State, *, user_id: str, workspace_id: str, role: Role, now: datetime
) -> MembershipRecord:
    """Grant ``role`` (adding a membership or changing the existing one's role)."""
    membership = find_membership(state, user_id, workspace_id)
    if membership is None:
        membership = MembershipRecord(
            user_id=user_id, workspace_id=workspace_id, role=role, created_at=now
        )
        state.memberships.append(membership)
    else:
        membership.role = role
    return membership


def user_workspaces(state: State, user_id: str) -> list[tuple[WorkspaceRecord, Role]]:
    """The workspaces ``user_id`` belongs to, by name, with their role in each."""
    found = [
        (state.workspaces[m.workspace_id], m.role)
        for m in state.memberships
        if m.user_id == user_id and m.workspace_id in state.workspaces
    ]
    return sorted(found, key=lambda pair: (pair[0].name.lower(), pair[0].id))


def workspace_members(state: State, workspace_id: str) -> list[tuple[UserRecord, Role]]:
    """Members of ``workspace_id`` with their roles, highest role first."""
    found = [
        (state.users[m.user_id], m.role)
        for m in state.memberships
        if m.workspace_id == workspace_id and m.user_id in state.users
    ]
    return sorted(found, key=lambda pair: (-pair[1].rank, pair[0].name.lower()))


def check_workspace_access(
    state: State, *, user_id: str, workspace_id: str, minimum: Role
) -> WorkspaceAccess:
    """The single role check every workspace route goes through (R03).

    Non-members get ``not-found`` so a workspace's existence is not revealed; members whose
    role is too low get ``forbidden``.
    """
    workspace = state.workspaces.get(workspace_id)
    membership = find_membership(state, user_id, workspace_id) if workspace else None
    if workspace is None or membership is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such workspace.")
    if not membership.role.at_least(minimum):
        raise AppError(
            ErrorCode.FORBIDDEN,
            f"This needs the {minimum.value} role or higher in this workspace.",
        )
    return WorkspaceAccess(workspace=workspace, role=membership.role, user_id=user_id)


def check_role_grant(actor: Role, role: Role) -> None:
    """Nobody grants above their own role; only owners grant admin or owner."""
    if role.at_least(Role.ADMIN) and actor != Role.OWNER:
        raise AppError(
            ErrorCode.FORBIDDEN, "Only workspace owners can grant the admin or owner role."
        )
    if not actor.at_least(role):
        raise AppError(ErrorCode.FORBIDDEN, "You cannot grant a role above your own.")


def grant_membership(
    state: State, *, user_id: str, workspace_id: str, role: Role, now: datetime
) -> None:
    """Add a membership, never lowering a role the user already holds there."""
    existing = find_membership(state, user_id, workspace_id)
    if existing is None or not existing.role.at_least(role):
        set_membership(state, user_id=user_id, workspace_id=workspace_id, role=role, now=now)


def clean_text(value: str | None, limit: int) -> str:
    """Single-line, trimmed, control characters removed, capped."""
    printable = "".join(ch for ch in value or "" if ch.isprintable() or ch.isspace())
    return _SPACES.sub(" ", printable).strip()[:limit]
