"""Invites (R21, O5) and recovery codes for lost passkeys: issue, list, cancel, redeem."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import Field

from codexrelay.relay.access import invites, sessions
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditDep, memberships
from codexrelay.relay.api.auth import start_session
from codexrelay.relay.api.deps import (
    Admin,
    ClientIpDep,
    ServicesDep,
    cookie_name,
)
from codexrelay.relay.api.people import InstanceOwnerDep
from codexrelay.relay.api.qr import qr_svg
from codexrelay.relay.api.schemas import UserEnvelope
from codexrelay.relay.audit import session_actor
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import (
    Role,
    UserRecord,
)
from codexrelay.relay.views import InviteOut, RecoveryCodeOut, UserOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["people"])

AdminAccess = Annotated[WorkspaceAccess, Admin]
Code = Annotated[str, Field(min_length=1, max_length=64)]
INVITE_TTL_MIN, INVITE_TTL_MAX = 300, 2592000
RECOVERY_TTL_MIN, RECOVERY_TTL_MAX = 300, 604800


class InviteBody(CamelModel):
    role: Role
    note: Annotated[str, Field(max_length=200)] | None = None
    ttl_sec: Annotated[int, Field(ge=INVITE_TTL_MIN, le=INVITE_TTL_MAX)] | None = None


class IssuedInviteOut(CamelModel):
    invite: InviteOut
    code: str
    url: str
    qr_svg: str


class InvitesOut(CamelModel):
    invites: list[InviteOut]


class AcceptBody(CamelModel):
    code: Code
    name: Annotated[str, Field(max_length=invites.NAME_MAX)] | None = None


class RecoveryIssueBody(CamelModel):
    ttl_sec: Annotated[int, Field(ge=RECOVERY_TTL_MIN, le=RECOVERY_TTL_MAX)] | None = None


class IssuedRecoveryOut(CamelModel):
    recovery_code: RecoveryCodeOut
    code: str
    url: str
    qr_svg: str


class RedeemBody(CamelModel):
    code: Code


def _issue_recovery(
    services: Services, *, user_id: str, issued_by: str, ttl_sec: int | None
) -> IssuedRecoveryOut:
    issued = invites.issue_recovery_code(
        services.store,
        user_id=user_id,
        issued_by=issued_by,
        ttl_sec=ttl_sec or invites.RECOVERY_CODE_TTL_SEC,
        now=services.now(),
        secret=services.token_secret,
        rand=services.rand,
    )
    url = f"{services.config.app_url}/#recovery={issued.code}"
    return IssuedRecoveryOut(
        recovery_code=RecoveryCodeOut.of(issued.record),
        code=issued.code,
        url=url,
        qr_svg=qr_svg(url),
    )


@router.post(
    "/workspaces/{wid}/members/{user_id}/recovery-code",
    status_code=201,
    response_model=IssuedRecoveryOut,
)
async def issue_member_recovery_code(
    user_id: str,
    access: AdminAccess,
    services: ServicesDep,
    audit: AuditDep,
    body: RecoveryIssueBody | None = None,
) -> IssuedRecoveryOut:
    """A workspace admin recovers a member they outrank in every shared workspace."""
    invites.check_recovery_authority(services.store, access=access, user_id=user_id)
    issued = _issue_recovery(
        services, user_id=user_id, issued_by=access.user_id, ttl_sec=body.ttl_sec if body else None
    )
    code_id = issued.recovery_code.id
    await audit.record(
        "recovery.issued", workspace=access.workspace.id, userId=user_id, recoveryCodeId=code_id
    )
    await services.store.commit()
    return issued


@router.post("/workspaces/{wid}/invites", status_code=201, response_model=IssuedInviteOut)
async def create_invite(
    body: InviteBody, access: AdminAccess, services: ServicesDep, audit: AuditDep
) -> IssuedInviteOut:
    """A one-time invite code, shown only in this response."""
    now = services.now()
    issued = invites.create_invite(
        services.store,
        access=access,
        role=body.role,
        note=body.note,
        ttl_sec=body.ttl_sec or services.config.invite_ttl_sec,
        now=now,
        secret=services.token_secret,
        rand=services.rand,
    )
    invite_id, wid = issued.invite.id, access.workspace.id
    await audit.record("invite.created", workspace=wid, inviteId=invite_id, role=body.role.value)
    await services.store.commit()
    url = f"{services.config.app_url}/#invite={issued.code}"
    return IssuedInviteOut(
        invite=InviteOut.of(issued.invite, status=invites.invite_status(issued.invite, now)),
        code=issued.code,
        url=url,
        qr_svg=qr_svg(url),
    )


@router.get("/workspaces/{wid}/invites", response_model=InvitesOut)
async def list_invites(access: AdminAccess, services: ServicesDep) -> InvitesOut:
    """The workspace's invites with their status, newest first."""
    now = services.now()
    found = invites.workspace_invites(services.store, access.workspace.id)
    return InvitesOut(
        invites=[InviteOut.of(i, status=invites.invite_status(i, now)) for i in found]
    )


@router.delete("/workspaces/{wid}/invites/{invite_id}", status_code=204)
async def cancel_invite(
    invite_id: str, access: AdminAccess, services: ServicesDep, audit: AuditDep
) -> Response:
    """Cancel an invite that has not yet made anyone a member."""
    invites.cancel_invite(
        services.store, workspace_id=access.workspace.id, invite_id=invite_id, now=services.now()
    )
    await audit.record("invite.cancelled", workspace=access.workspace.id, inviteId=invite_id)
    await services.store.commit()
    return Response(status_code=204)


def _signed_in_member(request: Request, services: Services) -> UserRecord | None:
    """The caller, if a fully enrolled user is signed in: they join, no new user is made."""
    cookie = request.cookies.get(cookie_name(services))
    record = (
        sessions.resolve_session(
            services.store, cookie, secret=services.token_secret, now=services.now()
        )
        if cookie
        else None
    )
    user = services.store.users.get(record.user_id) if record else None
    if record is None or user is None or record.enrollment_only or user.status != "active":
        return None
    return user


@router.post("/invites/accept", response_model=UserEnvelope)
async def accept_invite(
    body: AcceptBody,
    request: Request,
    response: Response,
    services: ServicesDep,
    address: ClientIpDep,
    audit: AuditDep,
) -> UserEnvelope:
    """Spend an invite (R20, R21): a signed-in active user joins; anyone else becomes a new
    enrollment-locked user with an enrollment-only ``invite`` session."""
    services.login_limiter.hit(address)
    member = _signed_in_member(request, services)
    before = memberships(services, member.id) if member is not None else {}
    accepted = invites.accept_invite(
        services.store,
        code=body.code,
        name=body.name,
        member=member,
        now=services.now(),
        secret=services.token_secret,
        rand=services.rand,
    )
    actor = None
    if accepted.new_user:
        actor = session_actor(
            start_session(
                services,
                response,
                user_id=accepted.user.id,
                via="invite",
                enrollment_only=True,
                invite_id=accepted.invite.id,
            )
        )
    invite = accepted.invite
    await audit.record(
        "invite.accepted",
        workspace=invite.workspace_id,
        actor=actor,
        inviteId=invite.id,
        userId=accepted.user.id,
        role=invite.role.value,
        newUser=accepted.new_user,
    )
    await audit.memberships_changed(accepted.user.id, before)  # an active user joins now
    await services.store.commit()
    return UserEnvelope(user=UserOut.of(accepted.user))


@router.post("/auth/recovery/redeem", response_model=UserEnvelope)
async def redeem_recovery_code(
    body: RedeemBody,
    response: Response,
    services: ServicesDep,
    address: ClientIpDep,
    audit: AuditDep,
) -> UserEnvelope:
    """A recovery code opens an enrollment-only session to register a new passkey (R20)."""
    services.login_limiter.hit(address)
    user = invites.redeem_recovery_code(
        services.store, code=body.code, now=services.now(), secret=services.token_secret
    )
    session = start_session(
        services, response, user_id=user.id, via="recovery-code", enrollment_only=True
    )
    await audit.record("recovery.redeemed", actor=session_actor(session), userId=user.id)
    await services.store.commit()
    return UserEnvelope(user=UserOut.of(user))


@router.post("/users/{user_id}/recovery-code", status_code=201, response_model=IssuedRecoveryOut)
async def issue_recovery_code(
    user_id: str,
    caller: InstanceOwnerDep,
    services: ServicesDep,
    audit: AuditDep,
    body: RecoveryIssueBody | None = None,
) -> IssuedRecoveryOut:
    """The owner issues a recovery code for anyone."""
    issued = _issue_recovery(
        services, user_id=user_id, issued_by=caller.user.id, ttl_sec=body.ttl_sec if body else None
    )
    await audit.record("recovery.issued", userId=user_id, recoveryCodeId=issued.recovery_code.id)
    await services.store.commit()
    return issued
