"""Members, invites, recovery codes and the instance owner's user administration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from codexrelay.relay.access import people, policy, sessions
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditDep, memberships
from codexrelay.relay.api.deps import (
    ActiveCallerDep,
    Admin,
    Caller,
    ServicesDep,
    Viewer,
)
from codexrelay.relay.api.passkeys import PasskeysOut
from codexrelay.relay.audit import ref
from codexrelay.relay.storage.records import (
    Role,
)
from codexrelay.relay.views import MemberOut, PasskeyOut, UserAdminOut, UserMembershipOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["people"])

AdminAccess = Annotated[WorkspaceAccess, Admin]
ViewerAccess = Annotated[WorkspaceAccess, Viewer]
Code = Annotated[str, Field(min_length=1, max_length=64)]
INVITE_TTL_MIN, INVITE_TTL_MAX = 300, 2592000
RECOVERY_TTL_MIN, RECOVERY_TTL_MAX = 300, 604800


async def instance_owner(caller: ActiveCallerDep) -> Caller:
    """Only the relay's owner user administers other users (I2)."""
    policy.enforce(policy.can_manage_users(is_relay_owner=caller.user.is_owner))
    return caller


InstanceOwnerDep = Annotated[Caller, Depends(instance_owner)]


# --- shapes ---


class RoleBody(CamelModel):
    role: Role


class MemberEnvelope(CamelModel):
    member: MemberOut


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
        services.store, access=access, user_id=user_id, role=body.role, now=services.now()
    )
    await audit.memberships_changed(user_id, before)
    await services.store.commit()
    return MemberEnvelope(member=MemberOut.of(user, user_id=user.id, role=body.role))


@router.delete("/workspaces/{wid}/members/{user_id}", status_code=204)
async def remove_member(
    user_id: str, access: ViewerAccess, services: ServicesDep, audit: AuditDep
) -> Response:
    """Remove someone below you, or leave (any role); the last owner cannot go (409)."""
    people.remove_member(services.store, access=access, user_id=user_id, now=services.now())
    wid, left = access.workspace.id, user_id == access.user_id
    await audit.record("member.removed", workspace=wid, userId=user_id, left=left)
    await services.store.commit()
    return Response(status_code=204)


# --- the instance owner's administration (I2) ---


def _admin_row(summary: people.UserSummary) -> UserAdminOut:
    """One row of the owner's user list."""
    return UserAdminOut.of(
        summary.user,
        passkey_count=summary.passkeys,
        session_count=summary.sessions,
        memberships=[
            UserMembershipOut(workspace_id=wid, workspace_name=name, role=role)
            for wid, name, role in summary.memberships
        ],
    )


@router.get("/users", response_model=UsersOut)
async def list_users(_: InstanceOwnerDep, services: ServicesDep) -> UsersOut:
    """Every user on this relay."""
    return UsersOut(users=[_admin_row(s) for s in people.list_users(services.store)])


@router.get("/users/{user_id}/passkeys", response_model=PasskeysOut)
async def list_user_passkeys(
    user_id: str, _: InstanceOwnerDep, services: ServicesDep
) -> PasskeysOut:
    """Any user's passkeys."""
    people.find_user(services.store, user_id)
    return PasskeysOut(
        passkeys=[PasskeyOut.of(p) for p in people.user_passkeys(services.store, user_id)]
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
        services.store,
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
        services.store, user_id=user_id, credential_id=None, now=services.now(), force=force
    )
    await audit.record("passkey.revoked", userId=user_id, count=count, forced=force)
    await services.store.commit()
    return Response(status_code=204)


@router.delete("/users/{user_id}/sessions", status_code=204)
async def end_user_sessions(
    user_id: str, _: InstanceOwnerDep, services: ServicesDep, audit: AuditDep
) -> Response:
    """End every session of a user at once (I2)."""
    people.find_user(services.store, user_id)
    count = sessions.end_user_sessions(services.store, user_id)
    await audit.record("session.ended", userId=user_id, count=count, reason="revoked-all")
    await services.store.commit()
    return Response(status_code=204)
