"""A loopback TCP proxy that injects network faults between an agent and its relay.

``FaultProxy`` forwards every connection it accepts to one upstream address, chunk by chunk,
and has knobs for what real networks do:

- ``delay``: seconds added before each forwarded chunk (latency, both directions);
- ``cut_chance``: the chance, per forwarded chunk, that the connection is reset (RST);
- ``cut_all()``: reset every live connection now (a NAT or Wi-Fi drop);
- ``blackhole(True)``: stop forwarding without closing anything (packets vanish; TCP keeps
  the connections open until a keepalive or ping timeout notices); new connections are
  accepted but get nowhere. ``blackhole(False)`` lets the held bytes flow again;
- ``refuse``: reset new connections at once (the relay host is down).

``ProxyThread`` runs one on its own event loop thread so synchronous tests can turn the
knobs while real processes talk through it. Loopback only; every loop ends with the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

CHUNK = 65536


@dataclass(eq=False)
class Link:
    """One proxied connection: the client's side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        """Drop both sides at once, as a reset would."""
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class FaultProxy:
    """Forward ``listen`` -> ``upstream`` with injectable faults (see the module docstring)."""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = 0.0
        self.cut_chance = 0.0
        self.refuse = False
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._links: set[Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port the proxy listens on (after ``start``)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FaultProxy:
        """Listen on ``host:port`` (0: a free port)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        return self

    async def stop(self) -> None:
        """Stop listening and reset every live connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut_all()

    def cut_all(self) -> int:
        """Reset every live connection now; returns how many were cut."""
        links = list(self._links)
        for link in links:
            link.reset()
        self.stats["cut"] += len(links)
        return len(links)

    def blackhole(self, on: bool) -> None:
        """Hold every byte (on) or let them flow again (off)."""
        if on:
            self._flowing.clear()
            self.stats["blackholes"] += 1
        else:
            self._flowing.set()

    def live(self) -> int:
        """How many connections are open through the proxy."""
        return len(self._links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["accepted"] += 1
        if self.refuse:
            self.stats["refused"] += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.stats["upstream-down"] += 1
            writer.transport.abort()
            return
        link = Link(client=writer, upstream=up_writer)
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]
        try:
            await asyncio.gather(*link.pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            for side in (writer, up_writer):
                side.transport.abort()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: Link
    ) -> None:
        try:
            while chunk := await source.read(CHUNK):
                await self._flowing.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.cut_chance and self._rng.random() < self.cut_chance:
                    self.stats["cut"] += 1
                    link.reset()
                    return
                sink.write(chunk)
                await sink.drain()
                self.stats["bytes"] += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            for pump in link.pumps:
                if pump is not asyncio.current_task():
                    pump.cancel()


class ProxyThread:
    """A ``FaultProxy`` on its own event loop thread, with synchronous knobs."""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int = 0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._upstream = (upstream_host, upstream_port)
        self._seed = seed
        self.proxy: FaultProxy | None = None

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _run(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._call(call())

    def start(self) -> ProxyThread:
        """Start the loop thread and the proxy; returns self."""
        self._thread.start()

        async def make() -> FaultProxy:
            return await FaultProxy(*self._upstream, seed=self._seed).start()

        self.proxy = self._call(make())
        return self

    @property
    def port(self) -> int:
        assert self.proxy is not None
        return self.proxy.port

    def set(self, **knobs: Any) -> None:
        """Set ``delay``, ``cut_chance`` or ``refuse`` on the loop thread."""
        assert self.proxy is not None
        proxy = self.proxy

        def apply() -> None:
            for name, value in knobs.items():
                if name not in {"delay", "cut_chance", "refuse"}:
                    raise ValueError(f"no such knob: {name}")
                setattr(proxy, name, value)

        self._run(apply)

    def cut_all(self) -> int:
        """Reset every live connection now."""
        assert self.proxy is not None
        return int(self._run(self.proxy.cut_all))

    def blackhole(self, on: bool) -> None:
        """Hold (on) or release (off) every byte."""
        assert self.proxy is not None
        self._run(self.proxy.blackhole, on)

    def live(self) -> int:
        """Open connections through the proxy."""
        assert self.proxy is not None
        return int(self._run(self.proxy.live))

    def stats(self) -> dict[str, int]:
        """A copy of the proxy's counters."""
        assert self.proxy is not None
        return dict(self._run(lambda: dict(self.proxy.stats)))  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop the proxy and its thread."""
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.blackhole(False)
                self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
