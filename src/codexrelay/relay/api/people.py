"""Members, invites, recovery codes and the instance owner's user administration."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import people, sessions
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.deps import (
    ActiveCallerDep,
    Admin,
    Caller,
    ServicesDep,
    Viewer,
)
from codexrelay.relay.api.passkeys import PasskeyOut, PasskeysOut
from codexrelay.relay.audit import ref
from codexrelay.relay.audit.context import AuditDep, memberships
from codexrelay.relay.storage.records import (
    Role,
    UserStatus,
)
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["people"])

AdminAccess = Annotated[WorkspaceAccess, Admin]
ViewerAccess = Annotated[WorkspaceAccess, Viewer]
Code = Annotated[str, Field(min_length=1, max_length=64)]
INVITE_TTL_MIN, INVITE_TTL_MAX = 300, 2592000
RECOVERY_TTL_MIN, RECOVERY_TTL_MAX = 300, 604800


async def instance_owner(caller: ActiveCallerDep) -> Caller:
    """Only the relay's owner user administers other users (I2)."""
    if not caller.user.is_owner:
        raise AppError(ErrorCode.FORBIDDEN, "Only the relay owner can manage users.")
    return caller


InstanceOwnerDep = Annotated[Caller, Depends(instance_owner)]


# --- shapes ---


class RoleBody(CamelModel):
    role: Role


class MemberOut(CamelModel):
    user_id: str
    name: str
    role: Role
    status: UserStatus


class MemberEnvelope(CamelModel):
    member: MemberOut


class UserMembershipOut(CamelModel):
    workspace_id: str
    workspace_name: str
    role: Role


class UserAdminOut(CamelModel):
    id: str
    name: str
    status: UserStatus
    is_owner: bool
    created_at: datetime
    passkey_count: int
    session_count: int
    memberships: list[UserMembershipOut]

    @classmethod
    def of(cls, summary: people.UserSummary) -> UserAdminOut:
        """One row of the owner's user list."""
        user = summary.user
        return cls(
            id=user.id,
            name=user.name,
            status=user.status,
            is_owner=user.is_owner,
            created_at=user.created_at,
            passkey_count=summary.passkeys,
            session_count=summary.sessions,
            memberships=[
                UserMembershipOut(workspace_id=wid, workspace_name=name, role=role)
                for wid, name, role in summary.memberships
            ],
        )


class UsersOut(CamelModel):
    users: list[UserAdminOut]


# --- members (R03, B7) ---


@router.patch("/workspaces/{wid}/members/{user_id}", response_model=MemberEnvelope)
async def change_role(
    user_id: str, body: RoleBody, access: AdminAccess, services: ServicesDep, audit: AuditDep
) -> MemberEnvelope:
    """Admins move viewers and members; owners move anyone, never the last owner."""
    before = memberships(services, user_id)
    user = people.change_role(
        services.state, access=access, user_id=user_id, role=body.role, now=services.now()
    )
    await audit.memberships_changed(user_id, before)
    await services.store.commit()
    return MemberEnvelope(
        member=MemberOut(user_id=user.id, name=user.name, role=body.role, status=user.status)
    )


@router.delete("/workspaces/{wid}/members/{user_id}", status_code=204)
async def remove_member(
    user_id: str, access: ViewerAccess, services: ServicesDep, audit: AuditDep
) -> Response:
    """Remove someone below you, or leave (any role); the last owner cannot go (409)."""
    people.remove_member(services.state, access=access, user_id=user_id, now=services.now())
    wid, left = access.workspace.id, user_id == access.user_id
    await audit.record("member.removed", workspace=wid, userId=user_id, left=left)
    await services.store.commit()
    return Response(status_code=204)


# --- the instance owner's administration (I2) ---


@router.get("/users", response_model=UsersOut)
async def list_users(_: InstanceOwnerDep, services: ServicesDep) -> UsersOut:
    """Every user on this relay."""
    return UsersOut(users=[UserAdminOut.of(s) for s in people.list_users(services.state)])


@router.get("/users/{user_id}/passkeys", response_model=PasskeysOut)
async def list_user_passkeys(
    user_id: str, _: InstanceOwnerDep, services: ServicesDep
) -> PasskeysOut:
    """Any user's passkeys."""
    people.find_user(services.state, user_id)
    return PasskeysOut(
        passkeys=[PasskeyOut.of(p) for p in people.user_passkeys(services.state, user_id)]
    )


@router.delete("/users/{user_id}/passkeys/{credential_id}", status_code=204)
async def revoke_user_passkey(
    user_id: str,
    credential_id: str,
    _: InstanceOwnerDep,
    services: ServicesDep,
    audit: AuditDep,
    force: Annotated[bool, Query()] = False,
) -> Response:
    """Revoke one passkey of any user; ``?force=true`` even if it is their last way in."""
    people.revoke_passkeys(
        services.state,
        user_id=user_id,
        credential_id=credential_id,
        now=services.now(),
        force=force,
    )
    credential = ref(credential_id)
    await audit.record("passkey.revoked", userId=user_id, credential=credential, forced=force)
    await services.store.commit()
    return Response(status_code=204)


@router.delete("/users/{user_id}/passkeys", status_code=204)
async def revoke_user_passkeys(
    user_id: str,
    _: InstanceOwnerDep,
    services: ServicesDep,
    audit: AuditDep,
    force: Annotated[bool, Query()] = False,
) -> Response:
    """Revoke every passkey of a user (I2); ``?force=true`` past the last-passkey guard."""
    count = people.revoke_passkeys(
        services.state, user_id=user_id, credential_id=None, now=services.now(), force=force
    )
    await audit.record("passkey.revoked", userId=user_id, count=count, forced=force)
    await services.store.commit()
    return Response(status_code=204)


@router.delete("/users/{user_id}/sessions", status_code=204)
async def end_user_sessions(
    user_id: str, _: InstanceOwnerDep, services: ServicesDep, audit: AuditDep
) -> Response:
    """End every session of a user at once (I2)."""
    people.find_user(services.state, user_id)
    count = sessions.end_user_sessions(services.state, user_id)
    await audit.record("session.ended", userId=user_id, count=count, reason="revoked-all")
    await services.store.commit()
    return Response(status_code=204)
