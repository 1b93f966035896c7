"""FastAPI dependencies: who is calling, and the one workspace role check (R03)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request, Response

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, sessions
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.http.ratelimit import client_address
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import Role, SessionRecord, UserRecord

LAST_SEEN_RESOLUTION = timedelta(seconds=60)


async def get_services(request: Request) -> Services:
    """The process's service container."""
    services: Services = request.app.state.services
    return services


def cookie_name(services: Services) -> str:
    """``__Host-`` prefixed on https so the cookie is host-only, Secure and Path=/."""
    return "__Host-codexrelay-session" if services.config.https else "codexrelay-session"


def set_session_cookie(response: Response, services: Services, value: str) -> None:
    """R02: HttpOnly, SameSite=Strict, Path=/; Secure on https."""
    response.set_cookie(
        cookie_name(services),
        value,
        max_age=services.config.session_ttl_sec,
        path="/",
        secure=services.config.https,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, services: Services) -> None:
    """Expire the session cookie in the browser."""
    response.delete_cookie(
        cookie_name(services),
        path="/",
        secure=services.config.https,
        httponly=True,
        samesite="strict",
    )


ServicesDep = Annotated[Services, Depends(get_services)]


async def client_ip(request: Request, services: ServicesDep) -> str:
    """The caller's address for rate limits (X-Forwarded-For only from trusted proxies)."""
    return client_address(request.scope, services.trusted_proxies)


@dataclass(frozen=True)
class Caller:
    """A signed-in phone session and its user."""

    session: SessionRecord
    user: UserRecord

    @property
    def enrollment_locked(self) -> bool:
        """R21: may only read /me, log out and register a passkey."""
        return self.user.status == "enrollment-locked" or self.session.enrollment_only


def cookie_session(request: Request, services: Services) -> SessionRecord | None:
    """The live session the request's cookie names, if any."""
    value = request.cookies.get(cookie_name(services))
    if not value:
        return None
    return sessions.resolve_session(
        services.store, value, secret=services.token_secret, now=services.now()
    )


async def current_caller(request: Request, services: ServicesDep) -> Caller:
    """The session behind the cookie; 401 ``unauthenticated`` without a live one."""
    now = services.now()
    record = cookie_session(request, services)
    user = services.store.users.get(record.user_id) if record is not None else None
    if record is None or user is None:
        raise AppError(ErrorCode.UNAUTHENTICATED, "Sign in first.")
    if now - record.last_seen_at >= LAST_SEEN_RESOLUTION:
        record.last_seen_at = now
        services.store.sessions.save(record)
        services.store.touch()
    return Caller(session=record, user=user)


CallerDep = Annotated[Caller, Depends(current_caller)]


async def active_caller(caller: CallerDep) -> Caller:
    """A caller who has finished enrollment (R21); others get 403 ``enrollment-required``."""
    if caller.enrollment_locked:
        raise AppError(
            ErrorCode.ENROLLMENT_REQUIRED, "Register a passkey to finish signing up first."
        )
    return caller


ActiveCallerDep = Annotated[Caller, Depends(active_caller)]
ClientIpDep = Annotated[str, Depends(client_ip)]


def workspace_role(minimum: Role) -> Callable[..., Awaitable[WorkspaceAccess]]:
    """The dependency every ``/workspaces/{wid}/...`` route declares, with its minimum role."""

    async def check(wid: str, caller: ActiveCallerDep, services: ServicesDep) -> WorkspaceAccess:
        return identity.check_workspace_access(
            services.store, user_id=caller.user.id, workspace_id=wid, minimum=minimum
        )

    check.minimum_role = minimum  # type: ignore[attr-defined]  # read by the authz matrix test
    return check


# Routes declare ``access: Annotated[WorkspaceAccess, Viewer]`` (or Member, Admin, Owner).
Viewer = Depends(workspace_role(Role.VIEWER))
Member = Depends(workspace_role(Role.MEMBER))
Admin = Depends(workspace_role(Role.ADMIN))
Owner = Depends(workspace_role(Role.OWNER))
