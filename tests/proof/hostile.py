"""A hostile relay: the real relay app, served on loopback, with an attack hook at every
boundary it controls (TRUST.md §10 "Malicious-relay harness").

- ``http``: rewrite any HTTP response (the agent's pairing poll and log fetch, the phone's
  pair-request list) before it leaves;
- ``to_agent``: rewrite, drop or duplicate every message the relay sends an agent, and
  ``inject`` new ones; the attacker renumbers frames (``linkSeq``) itself, as a relay
  would, so the agent's sequence checks see a well-formed stream;
- ``store``: the relay's own repositories, to change anything it persists.

The relay code is untouched: the hooks sit where a compromised relay process sits, in front
of every byte it sends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from codexrelay.relay.app import create_app
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.services import Services
from codexrelay.relay.storage.jsonfile import JsonFileStore
from tests.helpers import RelaySetup, wait_until, write_relay_config

Scope = dict[str, Any]
HttpHook = Callable[[str, dict[str, Any]], dict[str, Any]]
AgentHook = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass
class Attack:
    """What the attacker does right now (tests set and clear these)."""

    http: dict[str, HttpHook] = field(default_factory=dict)  # path prefix -> rewrite
    to_agent: AgentHook | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)  # what the agent was sent
    received: list[dict[str, Any]] = field(default_factory=list)  # what the agent sent


class _AgentLink:
    """One agent socket as the attacker holds it: the raw ASGI send and its own numbering."""

    def __init__(self, send: Callable[[dict[str, Any]], Any], loop: asyncio.AbstractEventLoop):
        self.send = send
        self.loop = loop
        self.seq = 0
        self.numbered = False

    async def emit(self, message: dict[str, Any], attack: Attack) -> None:
        attack.sent.append(message)
        if self.numbered:
            self.seq += 1
            message = {"linkSeq": self.seq, **message}
        await self.send({"type": "websocket.send", "text": json.dumps(message)})


class AttackMiddleware:
    """ASGI middleware applying the attack hooks to everything the relay sends."""

    def __init__(self, app: Any, attack: Attack) -> None:
        self.app = app
        self.attack = attack
        self.links: list[_AgentLink] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
        elif scope["type"] == "http":
            await self.app(scope, receive, self._http_send(scope["path"], send))
        else:
            await self.app(scope, receive, send)

    def _http_send(self, path: str, send: Any) -> Any:
        hook = next((h for p, h in self.attack.http.items() if path.startswith(p)), None)
        if hook is None:
            return send
        held: dict[str, Any] = {}

        async def rewrite(event: dict[str, Any]) -> None:
            if event["type"] == "http.response.start":
                held["start"] = event
                return
            if event["type"] == "http.response.body" and "start" in held:
                body = json.dumps(hook(path, json.loads(event["body"] or b"{}"))).encode()
                start = held.pop("start")
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(event)

        return rewrite

    async def _socket(self, scope: Scope, receive: Any, send: Any) -> None:
        link = _AgentLink(send, asyncio.get_running_loop())
        self.links.append(link)

        async def hooked(event: dict[str, Any]) -> None:
            if event["type"] != "websocket.send" or "text" not in event:
                await send(event)
                return
            message = json.loads(event["text"])
            link.numbered = link.numbered or "linkSeq" in message
            message.pop("linkSeq", None)
            hook = self.attack.to_agent
            for out in hook(message) if hook is not None else [message]:
                await link.emit(out, self.attack)

        async def recorded() -> dict[str, Any]:
            event: dict[str, Any] = await receive()
            if event.get("type") == "websocket.receive" and event.get("text"):
                self.attack.received.append(json.loads(event["text"]))
            return event

        await self.app(scope, recorded, hooked)


class HostileRelay:
    """The real relay app under uvicorn on a thread, wrapped in the attack middleware."""

    def __init__(self, directory: Path) -> None:
        self.setup: RelaySetup = write_relay_config(directory)
        config = load_relay_config(self.setup.config_path)
        self.store = JsonFileStore.open(config.state_path, now=_now)
        self.app = create_app(config, self.store)
        self.attack = Attack()
        self.middleware = AttackMiddleware(self.app, self.attack)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.middleware,
                host="127.0.0.1",
                port=self.setup.port,
                log_level="warning",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    @property
    def url(self) -> str:
        return self.setup.base_url

    def start(self) -> HostileRelay:
        self.thread.start()
        wait_until(
            lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200,
            timeout=20,
            what="hostile relay /healthz",
        )
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Origin": self.setup.origin}, timeout=15)

    def inject(self, message: dict[str, Any]) -> None:
        """Send the newest agent connection a message of the attacker's own making."""
        link = wait_until(lambda: self.middleware.links and self.middleware.links[-1])
        future = asyncio.run_coroutine_threadsafe(link.emit(message, self.attack), link.loop)
        future.result(10)


def _now() -> Any:
    from codexrelay.relay.services import utc_now  # noqa: PLC0415 - the real clock

    return utc_now()
