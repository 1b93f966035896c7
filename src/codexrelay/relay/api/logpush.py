"""Pushing the membership log to an agent directly (TRUST.md §4.10, §10 item 6).

A relay that withholds a removal from an agent's log fetches cannot withhold it from a
push the phone makes: the phone sends the entries it verified, the relay passes them to
the agent, and the agent answers with an acknowledgement signed by its own key. The relay
can still drop the push; then no acknowledgement comes back and the phone shows the agent
as pending, which is the point.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import LogAck, LogPush
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.api.deps import Member, ServicesDep
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord
from codexrelay.relay.trust import membership
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces/{wid}", tags=["trust"])
ACK_WAIT_SEC = 10


class LogPushBody(CamelModel):
    """Entries the phone verified, from ``start`` (their ``seq``) on, as stored."""

    start: Annotated[int, Field(ge=0)]
    entries: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]


class LogAckOut(CamelModel):
    """The agent's answer: a signed acknowledgement, or why it refused the entries."""

    ack: str | None
    sig: str | None
    reason: str | None


@router.post("/agents/{agent_id}/log-push", response_model=LogAckOut)
async def push_log(
    agent_id: str,
    body: LogPushBody,
    access: Annotated[WorkspaceAccess, Member],
    services: ServicesDep,
) -> LogAckOut:
    """Send the entries to the agent and wait for its signed acknowledgement."""
    if not membership.is_protected(services.store, access.workspace.id):
        raise AppError(ErrorCode.NOT_PROTECTED, "This workspace is not protected.")
    agent = pairing.find_agent(services.store, access.workspace.id, agent_id)
    if agent is None:
        raise AppError(ErrorCode.AGENT_NOT_AVAILABLE, "That agent is revoked or unknown.")
    live = services.hub.get(agent.key)
    if live is None:
        raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
    push_id = secrets.token_urlsafe(12)
    waiting: asyncio.Future[LogAck] = asyncio.get_running_loop().create_future()
    services.trust.pushes[push_id] = (agent.key, waiting)
    try:
        message = LogPush(push_id=push_id, start=body.start, entries=body.entries)
        if not await live.send(message):
            raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
        ack = await asyncio.wait_for(waiting, ACK_WAIT_SEC)
    except TimeoutError:
        raise AppError(
            ErrorCode.AGENT_TIMEOUT, "The agent did not acknowledge the entries in time."
        ) from None
    finally:
        services.trust.pushes.pop(push_id, None)
    reason = None if ack.reason is None else ack.reason.value
    return LogAckOut(ack=ack.ack, sig=ack.sig, reason=reason)


async def on_log_ack(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: LogAck
) -> None:
    """Hand the agent's answer to the request waiting for it (from that agent only)."""
    found = services.trust.pushes.get(message.push_id)
    if found is None or found[0] != agent.key or found[1].done():
        return
    found[1].set_result(message)
