"""The signed-in user: who they are, their memberships, their sessions."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response

from codexrelay.crypto import b64url, keyed_hash
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, sessions
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import ActiveCallerDep, CallerDep, ServicesDep, clear_session_cookie
from codexrelay.relay.audit import ref
from codexrelay.relay.config import RelayFeatures
from codexrelay.relay.storage.records import Role, SessionVia
from codexrelay.relay.views import MeUserOut, SessionOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/me", tags=["me"])


class MembershipOut(CamelModel):
    workspace_id: str
    workspace_name: str
    role: Role


class SessionInfo(CamelModel):
    id: str
    via: SessionVia
    expires_at: datetime
    is_recovery: bool
    enrollment_locked: bool


class RelayLimits(CamelModel):
    """Caps the app shows before sending (the same ones the relay enforces)."""

    max_prompt_bytes: int


class RelayInfo(CamelModel):
    """What the web app shows about this relay: its name, its feature flags (R09) and caps."""

    app_name: str
    features: RelayFeatures
    limits: RelayLimits


class MeOut(CamelModel):
    user: MeUserOut
    memberships: list[MembershipOut]
    session: SessionInfo
    relay: RelayInfo


class CacheKeyOut(CamelModel):
    key: str


class SessionsOut(CamelModel):
    sessions: list[SessionOut]


@router.get("", response_model=MeOut)
async def me(caller: CallerDep, services: ServicesDep) -> MeOut:
    """Readable by enrollment-locked sessions too, so the app knows what to show (R21)."""
    memberships = (
        []
        if caller.enrollment_locked
        else [
            MembershipOut(workspace_id=ws.id, workspace_name=ws.name, role=role)
            for ws, role in identity.user_workspaces(services.store, caller.user.id)
        ]
    )
    session = caller.session
    user = caller.user
    has_passkey = bool(services.store.passkeys.of_user(user.id))
    return MeOut(
        user=MeUserOut.of(user, has_passkey=has_passkey),
        memberships=memberships,
        session=SessionInfo(
            id=session.id,
            via=session.via,
            expires_at=session.expires_at,
            is_recovery=session.via in sessions.RECOVERY_VIAS,
            enrollment_locked=caller.enrollment_locked,
        ),
        relay=RelayInfo(
            app_name=services.config.web.app_name,
            features=services.config.features,
            limits=RelayLimits(max_prompt_bytes=services.config.max_prompt_bytes),
        ),
    )


@router.get("/cache-key", response_model=CacheKeyOut)
async def cache_key(caller: ActiveCallerDep, services: ServicesDep) -> CacheKeyOut:
    """The user's device-cache key (B5, R11): 32 bytes only a signed-in, enrolled session
    can fetch, so one user's cached task details are unreadable to another user of the same
    browser and to whoever holds the phone without a session. Rotating ``tokenSecret`` (I3)
    makes every device cache unreadable."""
    digest = keyed_hash(services.token_secret, "device-cache", caller.user.id)
    return CacheKeyOut(key=b64url(bytes.fromhex(digest)))


@router.get("/sessions", response_model=SessionsOut)
async def list_sessions(caller: ActiveCallerDep, services: ServicesDep) -> SessionsOut:
    """The caller's own sessions, newest first."""
    own = sessions.user_sessions(services.store, caller.user.id)
    current = caller.session.id
    return SessionsOut(sessions=[SessionOut.of(s, current=s.id == current) for s in own])


@router.delete("/sessions/{session_id}", status_code=204)
async def end_session(
    session_id: str, caller: ActiveCallerDep, services: ServicesDep, audit: AuditDep
) -> Response:
    """End one of the caller's sessions (I2); ending the current one also clears the cookie."""
    if not sessions.end_session(services.store, session_id, user_id=caller.user.id):
        raise AppError(ErrorCode.NOT_FOUND, "No such session.")
    await audit.record(
        "session.ended", userId=caller.user.id, session=ref(session_id), reason="revoked"
    )
    await services.store.commit()
    response = Response(status_code=204)
    if session_id == caller.session.id:
        clear_session_cookie(response, services)
    return response
