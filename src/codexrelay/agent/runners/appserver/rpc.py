"""The agent's JSON-RPC client for ``codex app-server``, one WebSocket on its unix socket.

Framing as observed (codex-app-server.md sections 1 and 7): one JSON object per text frame,
no ``"jsonrpc"`` field. The three kinds are told apart by shape, never by id, because the
server numbers its own requests from 0 and they collide with ours: ``method`` + ``id`` is a
request to us, ``id`` alone a response, ``method`` alone a notification. One connection
serves every thread; when it drops (the server restarted, or the link broke) every waiting
request fails with ``AppServerUnavailableError`` and the client connects again, then calls
``on_connected`` so the owner can resubscribe its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from codexrelay import __version__
from codexrelay.agent.runners.appserver.supervisor import AppServerSupervisor, connect_path

log = logging.getLogger(__name__)

CLIENT_NAME = "codexrelay"  # becomes a thread's `originator`: how phone threads are known
REQUEST_TIMEOUT_SEC = 60.0
MAX_FRAME_BYTES = 64 << 20  # thread/items/list pages and aggregated output can be large
# Chatter a phone never needs; the server stops sending it (section 2).
OPT_OUT = [
    "account/rateLimits/updated",
    "thread/tokenUsage/updated",
    "remoteControl/status/changed",
    "configWarning",
    "deprecationNotice",
]

Json = dict[str, Any]
OnNotification = Callable[[str, Json], Awaitable[None]]
OnServerRequest = Callable[[int, int | str, str, Json], Awaitable[None]]
OnConnected = Callable[[int], Awaitable[None]]


class AppServerUnavailableError(Exception):
    """The app-server is not reachable right now (starting, restarting or gone)."""


class RpcError(Exception):
    """The app-server answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AppServerClient:
    """Requests matched by id; server requests and notifications handed to the owner."""

    def __init__(
        self,
        supervisor: AppServerSupervisor,
        *,
        on_notification: OnNotification,
        on_server_request: OnServerRequest,
        on_connected: OnConnected,
        trace: Callable[[Json], None] | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._trace = trace  # sees every frame sent (tests check them against the schema)
        self._on_notification = on_notification
        self._on_server_request = on_server_request
        self._on_connected = on_connected
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Json]] = {}
        self.connected = asyncio.Event()
        self.connection = 0  # counts connections; server request ids are per connection

    # ---- requests -----------------------------------------------------------------------

    async def request(
        self, method: str, params: Json, *, wait_sec: float = REQUEST_TIMEOUT_SEC
    ) -> Json:
        """Send one request and wait for its result (raises ``RpcError`` on an error)."""
        ws = self._ws
        if ws is None or not self.connected.is_set():
            raise AppServerUnavailableError("the Codex app-server is not connected")
        return await self._call(ws, method, params, wait_sec)

    async def _call(self, ws: ClientConnection, method: str, params: Json, wait_sec: float) -> Json:
        request_id = next(self._ids)
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await self._frame(ws, {"id": request_id, "method": method, "params": params})
            return await asyncio.wait_for(future, wait_sec)
        except ConnectionClosed:
            raise AppServerUnavailableError("the Codex app-server connection closed") from None
        except TimeoutError:
            raise AppServerUnavailableError(
                f"the Codex app-server did not answer {method}"
            ) from None
        finally:
            self._waiting.pop(request_id, None)

    async def respond(self, connection: int, request_id: int | str, result: Json) -> bool:
        """Answer a server request made on ``connection``; False if that link is gone."""
        return await self._send_answer(connection, {"id": request_id, "result": result})

    async def respond_error(self, connection: int, request_id: int | str, message: str) -> bool:
        """Refuse a server request we do not handle, so the turn does not wait forever."""
        error = {"code": -32601, "message": message}
        return await self._send_answer(connection, {"id": request_id, "error": error})

    async def _send_answer(self, connection: int, frame: Json) -> bool:
        ws = self._ws
        if ws is None or connection != self.connection:
            return False  # the request died with its connection; the server replays it
        try:
            await self._frame(ws, frame)
        except ConnectionClosed:
            return False
        return True

    async def _frame(self, ws: ClientConnection, frame: Json) -> None:
        if self._trace is not None:
            self._trace(frame)
        await ws.send(json.dumps(frame))

    # ---- the connection -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect whenever the app-server is ready; serve until cancelled."""
        while True:
            await self._supervisor.ready.wait()
            try:
                await self._serve_once()
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                log.info("app-server link ended (%s)", type(exc).__name__)
            except RpcError as exc:
                log.warning("app-server refused the handshake: %s", exc.message)
            await asyncio.sleep(0.2)

    async def _serve_once(self) -> None:
        path = connect_path(self._supervisor.path)
        async with unix_connect(
            str(path), uri="ws://localhost/", max_size=MAX_FRAME_BYTES, open_timeout=10
        ) as ws:
            self._ws = ws
            self.connection += 1
            reader = asyncio.create_task(self._read(ws))
            try:
                await self._handshake(ws)
                self.connected.set()
                await self._on_connected(self.connection)
                await reader
            finally:
                self.connected.clear()
                self._ws = None
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                self._fail_waiting()

    async def _handshake(self, ws: ClientConnection) -> None:
        client = {"name": CLIENT_NAME, "title": "codexrelay agent", "version": __version__}
        params = {"clientInfo": client, "capabilities": {"optOutNotificationMethods": OPT_OUT}}
        await self._call(ws, "initialize", params, 30)
        await self._frame(ws, {"method": "initialized"})

    def _fail_waiting(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(AppServerUnavailableError("the Codex app-server went away"))

    async def _read(self, ws: ClientConnection) -> None:
        connection = self.connection
        async for raw in ws:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                await self._dispatch(connection, message)

    async def _dispatch(self, connection: int, message: Json) -> None:
        method, has_id = message.get("method"), "id" in message
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if isinstance(method, str) and has_id:
            await self._guard(self._on_server_request(connection, message["id"], method, params))
        elif isinstance(method, str):
            await self._guard(self._on_notification(method, params))
        elif has_id:
            self._resolve(message)

    def _resolve(self, message: Json) -> None:
        future = self._waiting.get(message["id"]) if isinstance(message["id"], int) else None
        if future is None or future.done():
            return
        error = message.get("error")
        if isinstance(error, dict):
            future.set_exception(RpcError(int(error.get("code") or 0), str(error.get("message"))))
        else:
            result = message.get("result")
            future.set_result(result if isinstance(result, dict) else {})

    @staticmethod
    async def _guard(job: Awaitable[None]) -> None:
        """A bug in one handler must not end the shared connection."""
        try:
            await job
        except Exception:
            log.exception("handling an app-server message failed")

    async def close(self) -> None:
        """Close the link (the agent is stopping)."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
