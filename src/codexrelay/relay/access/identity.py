"""Users, workspaces and memberships (R03, R04): plain functions over the ``Store``.

Access to a workspace comes only from a membership; being the instance owner grants
nothing inside workspaces one is not a member of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from codexrelay.crypto import TokenSource, new_id
from codexrelay.relay.access import policy
from codexrelay.relay.storage.records import (
    MembershipRecord,
    Role,
    UserRecord,
    UserStatus,
    WorkspaceRecord,
)
from codexrelay.relay.storage.repositories import Store

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
    store: Store,
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
    store.users.add(user)
    return user


def create_workspace(
    store: Store, *, name: str, owner_id: str, now: datetime, rand: TokenSource
) -> WorkspaceRecord:
    """Add a workspace whose creator holds the ``owner`` role in it."""
    workspace = WorkspaceRecord(id=new_id("ws", rand), name=name, created_at=now)
    store.workspaces.add(workspace)
    set_membership(store, user_id=owner_id, workspace_id=workspace.id, role=Role.OWNER, now=now)
    return workspace


def ensure_owner(store: Store, *, now: datetime, rand: TokenSource) -> bool:
    """On first start, create the instance owner and a default workspace. True if it did."""
    if store.users.owner() is not None:
        return False
    owner = create_user(store, name=OWNER_NAME, now=now, rand=rand, is_owner=True)
    create_workspace(store, name=DEFAULT_WORKSPACE_NAME, owner_id=owner.id, now=now, rand=rand)
    return True


def instance_owner(store: Store) -> UserRecord:
    """The one user the bootstrap token signs in as."""
    owner = store.users.owner()
    if owner is not None:
        return owner
    msg = "relay state has no owner user"
    raise LookupError(msg)


def set_membership(
    store: Store, *, user_id: str, workspace_id: str, role: Role, now: datetime
) -> MembershipRecord:
    """Grant ``role`` (adding a membership or changing the existing one's role)."""
    membership = store.memberships.find(user_id, workspace_id)
    if membership is None:
        membership = MembershipRecord(
            user_id=user_id, workspace_id=workspace_id, role=role, created_at=now
        )
        store.memberships.add(membership)
    else:
        membership.role = role
        store.memberships.save(membership)
    return membership


def user_workspaces(store: Store, user_id: str) -> list[tuple[WorkspaceRecord, Role]]:
    """The workspaces ``user_id`` belongs to, by name, with their role in each."""
    found = [
        (workspace, m.role)
        for m in store.memberships.of_user(user_id)
        if (workspace := store.workspaces.get(m.workspace_id)) is not None
    ]
    return sorted(found, key=lambda pair: (pair[0].name.lower(), pair[0].id))


def workspace_members(store: Store, workspace_id: str) -> list[tuple[UserRecord, Role]]:
    """Members of ``workspace_id`` with their roles, highest role first."""
    found = [
        (user, m.role)
        for m in store.memberships.of_workspace(workspace_id)
        if (user := store.users.get(m.user_id)) is not None
    ]
    return sorted(found, key=lambda pair: (-pair[1].rank, pair[0].name.lower()))


def check_workspace_access(
    store: Store, *, user_id: str, workspace_id: str, minimum: Role
) -> WorkspaceAccess:
    """The single role check every workspace route goes through (R03).

    Non-members get ``not-found`` so a workspace's existence is not revealed; members whose
    role is too low get ``forbidden``.
    """
    workspace = store.workspaces.get(workspace_id)
    membership = store.memberships.find(user_id, workspace_id) if workspace else None
    decision = policy.can_enter_workspace(membership.role if membership else None, minimum)
    if workspace is None or membership is None or not decision:
        raise policy.refusal(decision)
    return WorkspaceAccess(workspace=workspace, role=membership.role, user_id=user_id)


def grant_membership(
    store: Store, *, user_id: str, workspace_id: str, role: Role, now: datetime
) -> None:
    """Add a membership, never lowering a role the user already holds there."""
    existing = store.memberships.find(user_id, workspace_id)
    if existing is None or not existing.role.at_least(role):
        set_membership(store, user_id=user_id, workspace_id=workspace_id, role=role, now=now)


def clean_text(value: str | None, limit: int) -> str:
    """Single-line, trimmed, control characters removed, capped."""
    printable = "".join(ch for ch in value or "" if ch.isprintable() or ch.isspace())
    return _SPACES.sub(" ", printable).strip()[:limit]
