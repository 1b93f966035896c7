"""A loopback TCP proxy that keeps every byte both ways, and reads it back as content.

``CaptureProxy`` forwards each connection it accepts to one upstream address and records
what the client sent and what the server answered, byte for byte. :meth:`readable` turns
the record into what a person at the relay could read: HTTP/1.1 as it went (the relay
compresses nothing), and after a ``101 Switching Protocols`` the WebSocket frames decoded
both ways, client frames unmasked and ``permessage-deflate`` inflated with the parameters
the server accepted (wsproto does the frame work). Runs on its own event loop thread so
synchronous tests can use it while real processes talk through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode

CHUNK = 65536


@dataclass(eq=False)
class Captured:
    """One connection: what the client sent (``up``) and what it got back (``down``)."""

    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)


class CaptureProxy:
    """Forward and record; start() returns once it listens on ``port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connections: list[Captured] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> CaptureProxy:
        self._thread.start()

        async def listen() -> int:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            return int(self._server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = Captured()
        self.connections.append(record)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, record.up),
                self._pump(up_reader, writer, record.down),
            )
        finally:
            for end in (writer, up_writer):
                end.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, into: bytearray
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                into += data
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    # --- reading it back ---

    def readable(self) -> dict[str, bytes]:
        """Every connection both ways as readable bytes, labelled ``http-up``, ``http-down``,
        ``ws-up`` and ``ws-down`` with the connection's number."""
        out: dict[str, bytes] = {}
        for n, record in enumerate(list(self.connections)):
            up, down = bytes(record.up), bytes(record.down)
            split = _upgrade(down)
            if split is None:
                out[f"http-up {n}"], out[f"http-down {n}"] = up, down
                continue
            head_down, offer = split
            head_up = up.index(b"\r\n\r\n") + 4
            out[f"http-up {n}"], out[f"http-down {n}"] = up[:head_up], down[:head_down]
            out[f"ws-up {n}"] = _frames(up[head_up:], offer, client=False)
            out[f"ws-down {n}"] = _frames(down[head_down:], offer, client=True)
        return out


def _upgrade(down: bytes) -> tuple[int, str | None] | None:
    """Where the 101 response's head ends and the extension it accepted, or None."""
    if not down.startswith(b"HTTP/1.1 101"):
        return None
    end = down.index(b"\r\n\r\n") + 4
    offer = None
    for line in down[:end].decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            offer = value.strip()
    return end, offer


def _frames(data: bytes, offer: str | None, *, client: bool) -> bytes:
    """The messages in one direction's frames (``client``: we read as the client does,
    i.e. the server's unmasked frames)."""
    extensions = []
    if offer and offer.startswith("permessage-deflate"):
        deflate = PerMessageDeflate()
        deflate.finalize(offer)
        extensions.append(deflate)
    proto = FrameProtocol(client=client, extensions=extensions)
    proto.receive_bytes(data)
    out = bytearray()
    for frame in proto.received_frames():
        if frame.opcode in {Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION}:
            payload = frame.payload
            out += payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
            if frame.frame_finished and frame.message_finished:
                out += b"\n"
    return bytes(out)
