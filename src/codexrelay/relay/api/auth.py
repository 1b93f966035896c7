"""Bootstrap (owner recovery) login and logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from codexrelay.relay.access import sessions
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import (
    ClientIpDep,
    ServicesDep,
    clear_session_cookie,
    cookie_session,
    set_session_cookie,
)
from codexrelay.relay.api.schemas import UserEnvelope
from codexrelay.relay.audit import ref, session_actor
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import SessionRecord, SessionVia
from codexrelay.relay.views import UserOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class BootstrapBody(CamelModel):
    token: str


def start_session(
    services: Services,
    response: Response,
    *,
    user_id: str,
    via: SessionVia,
    enrollment_only: bool = False,
    invite_id: str | None = None,
) -> SessionRecord:
    """Open a session and set its cookie (the caller commits the store)."""
    cfg = services.config
    issued = sessions.open_session(
        services.store,
        user_id=user_id,
        via=via,
        now=services.now(),
        ttl_sec=cfg.session_ttl_sec,
        max_per_user=cfg.max_sessions_per_user,
        secret=services.token_secret,
        rand=services.rand,
        enrollment_only=enrollment_only,
        invite_id=invite_id,
    )
    set_session_cookie(response, services, issued.cookie_value)
    return issued.record


@router.post("/bootstrap", response_model=UserEnvelope)
async def bootstrap_login(
    body: BootstrapBody,
    response: Response,
    services: ServicesDep,
    address: ClientIpDep,
    audit: AuditDep,
) -> UserEnvelope:
    """Owner recovery login with the bootstrap token (R01); every one is audited (O4)."""
    services.login_limiter.hit(address)
    owner = sessions.check_bootstrap_token(
        services.store, body.token, expected_hash=services.config.bootstrap_admin_token_hash
    )
    session = start_session(services, response, user_id=owner.id, via="bootstrap")
    await audit.record("auth.bootstrap.login", actor=session_actor(session), userId=owner.id)
    await services.store.commit()
    return UserEnvelope(user=UserOut.of(owner))


@router.post("/logout", status_code=204)
async def logout(request: Request, services: ServicesDep, audit: AuditDep) -> Response:
    """End this session (if any) and clear the cookie."""
    record = cookie_session(request, services)
    if record is not None:
        sessions.end_session(services.store, record.id)
        await audit.record(
            "session.ended", userId=record.user_id, session=ref(record.id), reason="logout"
        )
        await services.store.commit()
    response = Response(status_code=204)
    clear_session_cookie(response, services)
    return response
