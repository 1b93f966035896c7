"""Server-Sent Events for one workspace: task, task-progress, agent and pair-request events.

Viewers+ only. Membership and the session are re-checked on every event and heartbeat, so
a removed member or an ended session stops receiving events at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from codexrelay.errors import AppError
from codexrelay.relay.access import identity
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.deps import ActiveCallerDep, ServicesDep, Viewer
from codexrelay.relay.events import Event
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import Role

router = APIRouter(prefix="/api/v1/workspaces/{wid}", tags=["events"])

HEARTBEAT_SEC = 15.0
RETRY_MS = 3000


def _still_allowed(services: Services, session_hash: str, user_id: str, wid: str) -> bool:
    session = services.store.sessions.get(session_hash)
    if session is None or session.expires_at <= services.now():
        return False
    try:
        identity.check_workspace_access(
            services.store, user_id=user_id, workspace_id=wid, minimum=Role.VIEWER
        )
    except AppError:
        return False
    return True


async def _stream(
    request: Request, services: Services, wid: str, session_hash: str, user_id: str
) -> AsyncIterator[str]:
    last_id = request.headers.get("last-event-id")
    with services.events.subscribe(wid) as queue:
        yield f"retry: {RETRY_MS}\n\n"
        for missed in services.events.missed(wid, last_id):
            yield missed.frame()
        while _still_allowed(services, session_hash, user_id, wid):
            try:
                event: Event | None = await asyncio.wait_for(queue.get(), HEARTBEAT_SEC)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if event is None:
                return  # too slow a reader: the client reconnects with Last-Event-ID
            if _still_allowed(services, session_hash, user_id, wid):
                yield event.frame()


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def workspace_events(
    request: Request,
    access: Annotated[WorkspaceAccess, Viewer],
    caller: ActiveCallerDep,
    services: ServicesDep,
) -> StreamingResponse:
    """A text/event-stream of this workspace's changes, with heartbeats and replay."""
    return StreamingResponse(
        _stream(request, services, access.workspace.id, caller.session.token_hash, caller.user.id),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
