"""The relay's end of an agent's WebSocket: authenticate, hello/welcome, message loop.

The token is checked before the upgrade is accepted; a bad one gets an HTTP 401 denial so
the agent knows retrying cannot help (as does close code 4401 after revocation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from codexrelay import protocol
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import (
    CLOSE_PROTOCOL,
    CLOSE_REPLACED,
    CLOSE_SEQUENCE,
    AgentFeatures,
    Frame,
    Hello,
    Message,
    ProtocolError,
    SequenceError,
    SessionsUpdate,
    TokenRenew,
    TokenRenewed,
    Welcome,
)
from codexrelay.relay import audit
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.services import AgentCatalog, Services
from codexrelay.relay.storage.records import AgentRecord, CatalogEntry
from codexrelay.relay.views import AgentOut

log = logging.getLogger("codexrelay.agentlink")

HELLO_TIMEOUT_SEC = 10.0

Handler = Callable[[Services, AgentRecord, LiveAgent, Any], Awaitable[None]]


@dataclass(frozen=True)
class AgentWiring:
    """Who handles what an agent sends, given to the socket by the app factory.

    ``handlers`` maps each report type to its handler; ``on_connect`` runs after a hello
    with the task ids the agent still runs, ``on_disconnect`` when its connection ends.
    """

    handlers: Mapping[type[Message], Handler]
    on_connect: Callable[[Services, AgentRecord, list[str]], Awaitable[None]]
    on_disconnect: Callable[[Services, AgentRecord], Awaitable[None]]


def agent_out(services: Services, agent: AgentRecord) -> AgentOut:
    """The agent as API.md shows it (also the payload of ``agent`` events)."""
    online = agent.revoked_at is None and services.hub.is_online(agent.key)
    return AgentOut.of(agent, online=online)


def publish_agent(services: Services, agent: AgentRecord) -> None:
    """Tell the workspace's phones about an agent's change (online, offline, revoked)."""
    payload = {"agent": agent_out(services, agent).json_data()}
    services.events.publish(agent.workspace_id, "agent", payload)


def _bearer(websocket: WebSocket) -> str:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def _deny(websocket: WebSocket, status: int, error: AppError) -> None:
    await websocket.send_denial_response(JSONResponse(error.body(), status_code=status))


def _record_hello(agent: AgentRecord, hello: Hello) -> None:
    """Keep what the agent advertises: flags, ids and labels; never paths or argv."""
    agent.features = hello.features.model_dump(by_alias=True)
    agent.actions = [CatalogEntry(id=a.id, label=a.label) for a in hello.actions]
    agent.log_sources = [CatalogEntry(id=s.id, label=s.label) for s in hello.log_sources]
    agent.workspace_root_name = hello.workspace_root_name
    agent.hostname = hello.hostname or agent.hostname
    agent.version = hello.version


async def _receive(websocket: WebSocket) -> Frame:
    raw = await websocket.receive_text()
    return protocol.parse_agent_frame(raw)


async def serve_agent(websocket: WebSocket, services: Services, wiring: AgentWiring) -> None:
    """Run one agent connection until it ends."""
    origin = websocket.headers.get("origin")
    if origin is not None and origin != services.config.public_origin:
        await _deny(websocket, 403, AppError(ErrorCode.FORBIDDEN, "Cross-origin agent socket."))
        return
    try:
        agent = pairing.authenticate_agent(
            services.store, _bearer(websocket), secret=services.token_secret, now=services.now()
        )
    except AppError as exc:
        await _deny(websocket, 401, exc)
        return
    await websocket.accept()
    try:
        first = await asyncio.wait_for(_receive(websocket), HELLO_TIMEOUT_SEC)
    except (ProtocolError, TimeoutError, WebSocketDisconnect) as exc:
        log.info("agent %s: no valid hello (%s)", agent.key, type(exc).__name__)
        await websocket.close(CLOSE_PROTOCOL, "expected hello")
        return
    hello = first.message
    if first.seq not in {None, 1}:
        await websocket.close(CLOSE_SEQUENCE, "numbering starts at 1 with hello")
        return
    if not isinstance(hello, Hello) or hello.protocol != protocol.PROTOCOL_VERSION:
        await websocket.close(CLOSE_PROTOCOL, "expected hello with protocol 1")
        return
    if hello.agent_id != agent.agent_id:
        await websocket.close(CLOSE_PROTOCOL, "agent id does not match its token")
        return
    live = LiveAgent(
        key=agent.key,
        workspace_id=agent.workspace_id,
        websocket=websocket,
        numbered=first.seq is not None,
    )
    if live.numbered:
        live.inbound.accept(first.seq)
    await _open(services, agent, live, hello, wiring)
    try:
        await _message_loop(services, agent, live, wiring)
    finally:
        await _close(services, agent, live, wiring)


async def _open(
    services: Services, agent: AgentRecord, live: LiveAgent, hello: Hello, wiring: AgentWiring
) -> None:
    _record_hello(agent, hello)
    agent.last_seen_at = services.now()
    services.store.agents.save(agent)
    await services.store.commit()
    live.holds.update(hello.running_task_ids)
    previous = services.hub.attach(live)
    if previous is not None:
        await previous.close(CLOSE_REPLACED, "replaced by a newer connection")
    features = services.config.features
    await live.send(
        Welcome(
            workspace_id=agent.workspace_id,
            token_expires_at=agent.token_expires_at,
            features=AgentFeatures(
                codex_exec=features.codex_exec,
                codex_exec_write=features.codex_exec_write,
                run_action=features.run_action,
                read_log=features.read_log,
                conversations=features.conversations,
            ),
        )
    )
    log.info("agent %s connected", agent.key)
    publish_agent(services, agent)
    await wiring.on_connect(services, agent, list(hello.running_task_ids))


async def _message_loop(
    services: Services, agent: AgentRecord, live: LiveAgent, wiring: AgentWiring
) -> None:
    while not live.closed.is_set():
        try:
            frame = await _receive(live.websocket)
            _check_sequence(live, frame)
        except WebSocketDisconnect:
            return
        except SequenceError as exc:
            log.warning("agent %s: message out of sequence (%s); resetting", agent.key, exc)
            await live.close(CLOSE_SEQUENCE, f"linkSeq {exc.kind}")
            return
        except ProtocolError as exc:
            log.info("agent %s sent a bad message: %s", agent.key, exc)
            await live.close(CLOSE_PROTOCOL, "bad message")
            return
        message = frame.message
        now = services.now()
        if agent.last_seen_at is None or (now - agent.last_seen_at).total_seconds() >= 60:
            agent.last_seen_at = now
            services.store.agents.save(agent)
            services.store.touch()
        await _dispatch(services, agent, live, message, wiring)


def _check_sequence(live: LiveAgent, frame: Frame) -> None:
    """B4: a numbered connection takes only the next number; an unnumbered one none."""
    if live.numbered:
        live.inbound.accept(frame.seq)
    elif frame.seq is not None:
        msg = "linkSeq on a connection whose hello was not numbered"
        raise ProtocolError(msg)


async def _dispatch(
    services: Services, agent: AgentRecord, live: LiveAgent, message: Message, wiring: AgentWiring
) -> None:
    if isinstance(message, SessionsUpdate):
        services.catalogs[agent.key] = AgentCatalog(
            sessions=list(message.sessions), received_at=services.now()
        )
        return
    if isinstance(message, TokenRenew):
        token = pairing.issue_agent_token(
            agent,
            now=services.now(),
            secret=services.token_secret,
            rand=services.rand,
            ttl_sec=services.config.agent_token_ttl_sec,
        )
        services.store.agents.save(agent)
        await services.audit.record(
            "agent.token-renewed",
            now=services.now(),
            workspace=agent.workspace_id,
            actor=audit.agent_actor(agent),
            target={"agentKey": agent.key, "agentId": agent.agent_id},
        )
        await services.store.commit()
        await live.send(TokenRenewed(agent_token=token, expires_at=agent.token_expires_at))
        return
    handler = wiring.handlers.get(type(message))
    if handler is None:
        await live.close(CLOSE_PROTOCOL, f"unexpected {getattr(message, 'type', 'message')}")
        return
    await handler(services, agent, live, message)


async def _close(
    services: Services, agent: AgentRecord, live: LiveAgent, wiring: AgentWiring
) -> None:
    await live.close(1000)
    if not services.hub.detach(live):
        return  # a newer connection of the same agent is live
    agent.last_seen_at = services.now()
    services.store.agents.save(agent)
    services.store.touch()
    log.info("agent %s disconnected", agent.key)
    publish_agent(services, agent)
    await wiring.on_disconnect(services, agent)
