"""Content between relay instances: straight from one process's memory to another's.

Task texts (prompts, outputs, diffs), progress and the events phones stream are never
written to the database or to any disk on the way between instances. They travel over
plain HTTP requests from one instance to another (``/internal/cluster/...``, on the
address each instance registered, authenticated with a bearer token derived from the
shared ``tokenSecret``), and land in the receiving process's memory:

- ``send``: a message for an agent whose socket another instance holds (a task with its
  prompt, a cancel); the holder writes it to the socket and answers whether it could.
- ``broadcast``: what every instance must hold in memory for its phones, in order per
  sender (one queue and one request at a time per peer): events for the SSE streams and
  the task texts (``DetailsStore`` operations).

Keep these addresses on a private network (loopback, a VPN, a private subnet): the proxy
in front never routes ``/internal/`` (see docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

log = logging.getLogger("codexrelay.cluster")

INTERNAL = "/internal/cluster"
# Operations buffered per peer before the oldest are dropped (a peer that cannot keep up
# resyncs its phones the way a restarted relay does: they refetch).
QUEUE_LIMIT = 20000
BATCH = 500
# How long an instance that refused a connection counts as gone (its lease expires sooner).
DOWN_SEC = 20.0


class PeerLinks:
    """HTTP links to the other live instances."""

    def __init__(self, node_id: str, token: str) -> None:
        self.node_id = node_id
        self.headers = {"Authorization": f"Bearer {token}", "X-Codexrelay-Node": node_id}
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
        self.peers: dict[str, str] = {}
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._down: dict[str, float] = {}

    def is_down(self, address: str) -> bool:
        """Whether the instance at ``address`` recently refused a connection."""
        since = self._down.get(address)
        return since is not None and time.monotonic() - since < DOWN_SEC

    def set_peers(self, peers: dict[str, str]) -> None:
        """The live peers now (id -> address); links to gone ones stop."""
        self.peers = peers
        for node in list(self._senders):
            if node not in peers:
                self._senders.pop(node).cancel()
                self._queues.pop(node, None)

    def broadcast(self, op: dict[str, Any]) -> None:
        """Queue one operation for every peer (in order, per peer)."""
        for node in self.peers:
            queue = self._queues.get(node)
            if queue is None:
                queue = self._queues[node] = asyncio.Queue()
                self._senders[node] = asyncio.create_task(self._sender(node, queue))
            if queue.qsize() >= QUEUE_LIMIT:
                queue.get_nowait()
            queue.put_nowait(op)

    async def _sender(self, node: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            ops = [await queue.get()]
            while not queue.empty() and len(ops) < BATCH:
                ops.append(queue.get_nowait())
            address = self.peers.get(node)
            if address is None:
                return
            for attempt in range(3):
                try:
                    res = await self.client.post(
                        f"{address}{INTERNAL}/ops", json={"ops": ops}, headers=self.headers
                    )
                    if res.status_code == 200:
                        break
                except httpx.HTTPError as exc:
                    log.warning("peer %s unreachable (%s)", node, type(exc).__name__)
                    self._down[address] = time.monotonic()
                await asyncio.sleep(0.1 * (attempt + 1))

    async def send(self, address: str, agent_key: str, message: dict[str, Any]) -> bool:
        """Hand a message to the instance holding the agent's socket; True if it was
        written to the socket."""
        try:
            res = await self.client.post(
                f"{address}{INTERNAL}/agent-send",
                json={"agentKey": agent_key, "message": message},
                headers=self.headers,
            )
        except httpx.ConnectError as exc:
            log.warning("could not reach the instance holding %s (%s)", agent_key, exc)
            self._down[address] = time.monotonic()
            return False
        except httpx.HTTPError as exc:
            # Sent, but no answer: the holder may have written it to the socket before it
            # stopped. It stays dispatched and is never sent again; the agent's next hello
            # (or the holder's hand-over sweep) tells whether it arrived (see sweep.py).
            log.warning("no answer from the instance holding %s (%s)", agent_key, exc)
            self._down[address] = time.monotonic()
            return True
        self._down.pop(address, None)
        return res.status_code == 200 and bool(res.json().get("delivered"))

    async def disconnect(self, address: str, agent_key: str, code: int, reason: str) -> None:
        """Ask the holder to close an agent's socket (revocation, replacement)."""
        with contextlib.suppress(httpx.HTTPError):
            await self.client.post(
                f"{address}{INTERNAL}/agent-disconnect",
                json={"agentKey": agent_key, "code": code, "reason": reason},
                headers=self.headers,
            )

    async def close(self) -> None:
        """Stop every sender and the HTTP client."""
        for task in self._senders.values():
            task.cancel()
        self._senders.clear()
        await self.client.aclose()
