"""The HTTP layer's side of the audit trail: who is calling, and refusals worth a record.

Routes take ``audit: AuditDep`` and call ``await audit.record(event, ...)`` once their
domain call succeeded and before they commit, so the answer waits for the record (B2).
The caller is resolved when the request arrives, so a logout is still attributed to the
session it ends. Refusals (a wrong recovery token, a flag that says no, a rate limit) are
raised as ``AppError`` deep inside routes; the app's error handler passes them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.routing import BaseRoute

from codexrelay.auditverify import INSTANCE
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity
from codexrelay.relay.api.deps import ClientIpDep, ServicesDep, cookie_session
from codexrelay.relay.audit.actors import ANONYMOUS, Actor, session_actor
from codexrelay.relay.audit.log import Scalar
from codexrelay.relay.http.ratelimit import client_address
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import Role

# Refusals that are security events whatever the route.
REFUSALS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_BOOTSTRAP_TOKEN: "auth.bootstrap.failed",
    ErrorCode.FEATURE_DISABLED: "feature.refused",
    ErrorCode.WRITE_MODE_DISABLED: "feature.refused",
    ErrorCode.RATE_LIMITED: "ratelimit.tripped",
}
# Failed attempts at a code or credential, by route (each is rate-limited, R20).
ROUTE_REFUSALS: dict[tuple[str, ErrorCode], str] = {
    ("/api/v1/auth/passkeys/login/verify", ErrorCode.INVALID_PASSKEY): "auth.passkey.failed",
    ("/api/v1/invites/accept", ErrorCode.INVALID_OR_EXPIRED_CODE): "invite.accept-failed",
    ("/api/v1/auth/recovery/redeem", ErrorCode.INVALID_OR_EXPIRED_CODE): "recovery.redeem-failed",
    ("/api/v1/agent/pair", ErrorCode.INVALID_OR_EXPIRED_CODE): "pairing.claim-failed",
}


def request_actor(request: Request, services: Services) -> Actor:
    """The signed-in session behind the request's cookie, else ``anonymous``."""
    record = cookie_session(request, services)
    return session_actor(record) if record is not None else dict(ANONYMOUS)


@dataclass(frozen=True)
class AuditContext:
    """One request's actor and address, ready to record events."""

    services: Services
    actor: Actor
    client: str

    async def record(
        self,
        event: str,
        /,
        *,
        workspace: str = INSTANCE,
        actor: Actor | None = None,
        **target: Scalar,
    ) -> None:
        """Append one record and wait until it is durable."""
        await self.services.audit.record(
            event,
            now=self.services.now(),
            workspace=workspace,
            actor=actor if actor is not None else self.actor,
            client=self.client,
            target=target,
        )

    async def memberships_changed(self, user_id: str, before: dict[str, Role]) -> None:
        """A ``member.added`` / ``member.role-changed`` record for each membership of
        ``user_id`` that differs from ``before`` (see ``memberships``)."""
        after = memberships(self.services, user_id)
        for workspace_id, role in after.items():
            if before.get(workspace_id) == role:
                continue
            event = "member.added" if workspace_id not in before else "member.role-changed"
            previous = before.get(workspace_id)
            await self.record(
                event,
                workspace=workspace_id,
                userId=user_id,
                role=role.value,
                previousRole=previous.value if previous else None,
            )


def memberships(services: Services, user_id: str) -> dict[str, Role]:
    """The user's roles by workspace, to compare before and after a change."""
    return {ws.id: role for ws, role in identity.user_workspaces(services.store, user_id)}


async def audit_context(
    request: Request, services: ServicesDep, client: ClientIpDep
) -> AuditContext:
    """The dependency routes declare as ``audit: AuditDep``."""
    return AuditContext(services=services, actor=request_actor(request, services), client=client)


AuditDep = Annotated[AuditContext, Depends(audit_context)]


def _route_path(request: Request) -> str:
    route = request.scope.get("route")
    return route.path if isinstance(route, BaseRoute) and hasattr(route, "path") else ""


async def audit_refusal(request: Request, error: AppError) -> AppError:
    """Record ``error`` if it is a security event; returns the error to answer with
    (a storage failure instead, if the record could not be made durable)."""
    path = _route_path(request)
    event = ROUTE_REFUSALS.get((path, error.code)) or REFUSALS.get(error.code)
    services: Services | None = getattr(request.app.state, "services", None)
    if event is None or services is None:
        return error
    now = services.now()
    client = client_address(request.scope, services.trusted_proxies)
    if error.code == ErrorCode.RATE_LIMITED and not services.audit.first_trip(
        f"{path}|{client}", now
    ):
        return error
    wid = request.path_params.get("wid")
    target: dict[str, Scalar] = {"route": path, "code": error.code.value}
    try:
        await services.audit.record(
            event,
            now=now,
            workspace=wid if wid and services.store.workspaces.get(wid) else INSTANCE,
            actor=request_actor(request, services),
            client=client,
            target=target,
        )
    except AppError as failure:
        return failure
    return error
