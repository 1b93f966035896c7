"""The audit trail over HTTP: workspace admins read and export their workspace's records,
the instance owner the relay-wide ones (B2, O4, R03). Every read is itself recorded."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator, Field
from starlette.concurrency import run_in_threadpool

from codexrelay.auditverify import INSTANCE
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditContext, AuditDep
from codexrelay.relay.api.deps import ActiveCallerDep, Admin, ServicesDep
from codexrelay.relay.api.people import InstanceOwnerDep
from codexrelay.relay.audit import reading
from codexrelay.relay.audit.log import iso
from codexrelay.relay.services import Services
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["audit"])

MAX_PAGE = 500
EventFilter = Annotated[
    str | None, Query(max_length=64, description="an event type, or a prefix ending in *")
]
ActorFilter = Annotated[
    str | None, Query(max_length=64, description="a user id, agent id or key, or actor type")
]
# ISO 8601 only: pydantic would also read "0.0" or "1700000000" as Unix times, which the
# published schema (a date-time string) does not allow and a person never means.
ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}"  # date
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"  # time
    r"(Z|[+-]\d{2}:?\d{2})?"  # zone
)


def _iso_time(value: object) -> object:
    if isinstance(value, str) and not ISO_TIME.fullmatch(value):
        msg = "must be an ISO 8601 time such as 2026-11-01T00:00:00Z"
        raise ValueError(msg)
    return value


Since = Annotated[
    datetime | None,
    BeforeValidator(_iso_time),
    Query(description="records at or after this time (ISO 8601)"),
]
Until = Annotated[
    datetime | None,
    BeforeValidator(_iso_time),
    Query(description="records at or before this time (ISO 8601)"),
]
Before = Annotated[int | None, Query(ge=1, description="records with a smaller seq (paging)")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
BUNDLE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The bundle: one record per line, then the signed manifest line",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


def _utc(moment: datetime | None) -> datetime | None:
    """A filter time in UTC (a time without a zone is taken as UTC)."""
    if moment is None:
        return None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise AppError(ErrorCode.INVALID_REQUEST, "That time is out of range.") from None


class AuditPageOut(CamelModel):
    records: list[dict[str, Any]]
    next_before: int | None = Field(
        None, description="pass as `before` for the next (older) page; null at the end"
    )


class PublicKeyOut(CamelModel):
    algorithm: str
    key_id: str
    public_key: str
    public_key_pem: str


async def _page(services: Services, audit: AuditContext, query: reading.Query) -> AuditPageOut:
    upto = services.audit.log.durable_seq
    records, next_before = await run_in_threadpool(
        reading.find, services.audit.directory, query, upto=upto
    )
    await audit.record(
        "audit.read",
        workspace=query.workspace,
        eventFilter=query.event,
        actorFilter=query.actor,
        since=iso(query.since) if query.since else None,
        until=iso(query.until) if query.until else None,
        count=len(records),
    )
    return AuditPageOut(records=records, next_before=next_before)


async def _export(
    services: Services, audit: AuditContext, scope: reading.ExportScope
) -> StreamingResponse:
    workspace = scope.workspace or INSTANCE
    filters = scope.filters()
    await audit.record(
        "audit.exported", workspace=workspace, since=filters["since"], until=filters["until"]
    )
    now = services.now()
    lines = reading.bundle(
        services.audit.directory,
        services.audit.signer,
        scope,
        upto=services.audit.log.durable_seq,
        now=now,
    )
    name = f"codexrelay-audit-{workspace}-{now.strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/workspaces/{wid}/audit", response_model=AuditPageOut)
async def workspace_audit(
    access: Annotated[WorkspaceAccess, Admin],
    services: ServicesDep,
    audit: AuditDep,
    event: EventFilter = None,
    actor: ActorFilter = None,
    since: Since = None,
    until: Until = None,
    before: Before = None,
    limit: Limit = 100,
) -> AuditPageOut:
    """This workspace's records, newest first (admin+; R03: never another workspace's)."""
    query = reading.Query(
        access.workspace.id, event, actor, _utc(since), _utc(until), before, limit
    )
    return await _page(services, audit, query)


@router.get(
    "/workspaces/{wid}/audit/export",
    response_class=StreamingResponse,
    responses=BUNDLE_RESPONSE,
)
async def workspace_audit_export(
    access: Annotated[WorkspaceAccess, Admin],
    services: ServicesDep,
    audit: AuditDep,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """A signed bundle of this workspace's chain (verify with ``codexrelay audit verify``)."""
    scope = reading.ExportScope(access.workspace.id, _utc(since), _utc(until))
    return await _export(services, audit, scope)


@router.get("/audit", response_model=AuditPageOut)
async def instance_audit(
    _: InstanceOwnerDep,
    services: ServicesDep,
    audit: AuditDep,
    event: EventFilter = None,
    actor: ActorFilter = None,
    since: Since = None,
    until: Until = None,
    before: Before = None,
    limit: Limit = 100,
) -> AuditPageOut:
    """Relay-wide records (sign-ins, sessions, start-ups, rate limits): the owner only."""
    query = reading.Query(INSTANCE, event, actor, _utc(since), _utc(until), before, limit)
    return await _page(services, audit, query)


@router.get("/audit/export", response_class=StreamingResponse, responses=BUNDLE_RESPONSE)
async def instance_audit_export(
    _: InstanceOwnerDep,
    services: ServicesDep,
    audit: AuditDep,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """A signed bundle of the relay-wide chain (the owner only)."""
    scope = reading.ExportScope(INSTANCE, _utc(since), _utc(until))
    return await _export(services, audit, scope)


@router.get("/audit/public-key", response_model=PublicKeyOut)
async def public_key(_: ActiveCallerDep, services: ServicesDep) -> PublicKeyOut:
    """The key that signs every record and export, to check them offline."""
    return PublicKeyOut.model_validate(services.audit.public_key_view())
