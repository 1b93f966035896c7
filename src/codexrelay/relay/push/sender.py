"""Sending, off the request path: a bounded queue, a few workers, retries with backoff, and
subscriptions the push service reports gone (404, 410) removed.

``submit`` never waits and never raises: a request that triggers a notification only
puts it in the queue (or, when the queue is full, drops and counts it), so a slow or
dead push service can neither slow nor fail that request. Each message is encrypted for
its subscription just before it is sent, and a subscription deleted meanwhile (sign-out,
revocation) gets nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import httpx

from codexrelay.errors import AppError
from codexrelay.relay.config import PushSettings
from codexrelay.relay.push.coalesce import Coalescer
from codexrelay.relay.push.endpoints import check_endpoint
from codexrelay.relay.push.vapid import VapidKey, ensure_vapid_key
from codexrelay.relay.push.webpush import audience, build_request, encrypt
from codexrelay.relay.storage.records import PushSubscriptionRecord
from codexrelay.relay.storage.repositories import Store

log = logging.getLogger("codexrelay.push")

MAX_RETRY_DELAY_SEC = 300.0
DELIVERED = frozenset({200, 201, 202})
GONE = frozenset({404, 410})


@dataclass(frozen=True)
class Outgoing:
    """One notification for one subscription; ``payload`` is the padded plaintext."""

    subscription_id: str
    payload: bytes
    urgency: str
    attempt: int = 1


@dataclass
class PushStats:
    """Counts since start, for tests, the benchmark and the operator's log."""

    queued: int = 0
    sent: int = 0
    gone: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    coalesced: int = 0
    skipped: int = 0


@dataclass
class PushSender:
    """The per-process sender; ``open`` at start-up, ``start`` once the loop runs."""

    settings: PushSettings
    store: Store
    contact: str
    clock: Callable[[], datetime]
    wall: Callable[[], float] = time.time
    transport: httpx.AsyncBaseTransport | None = None
    key: VapidKey | None = None
    stats: PushStats = field(default_factory=PushStats)
    # When each subscription last had a notification accepted (memory only: a write of the
    # state per delivery would cost more than the delivery).
    delivered_at: dict[str, datetime] = field(default_factory=dict)
    _queue: asyncio.Queue[Outgoing] = field(init=False)
    _coalescer: Coalescer[Outgoing] = field(init=False)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)
    _timers: set[asyncio.TimerHandle] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.settings.queue_size)
        self._coalescer = Coalescer(self.settings.coalesce_sec)

    @property
    def enabled(self) -> bool:
        """Push is on in the config and the key is loaded."""
        return self.settings.enabled and self.key is not None

    def open(self, data_dir: Path) -> bool:
        """Load (or make) the VAPID key and drop subscriptions made for another key;
        returns whether the key was made now."""
        self.key, created = ensure_vapid_key(data_dir)
        for sub in self.store.push_subscriptions.all():
            if sub.vapid_key_id != self.key.key_id:
                self.store.push_subscriptions.remove(sub)
        return created

    def pending(self) -> int:
        """Messages in the queue now."""
        return self._queue.qsize()

    # --- the request side: never waits ---

    def submit(self, message: Outgoing, coalesce_key: Hashable | None) -> None:
        """Queue ``message`` now, or hold it while its task or thread had one recently."""
        loop = _running_loop()
        if coalesce_key is None or loop is None:
            self._enqueue(message)
            return
        hold = self._coalescer.offer(coalesce_key, message, loop.time())
        if hold is None:
            self._enqueue(message)
            return
        self.stats.coalesced += 1
        if hold.schedule:
            self._later(loop, hold.due - loop.time(), self._release, coalesce_key)

    def _release(self, key: Hashable) -> None:
        loop = _running_loop()
        message = self._coalescer.release(key, loop.time() if loop else 0.0)
        if message is not None:
            self._enqueue(message)

    def _enqueue(self, message: Outgoing) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if self.stats.dropped % 100 == 1:
                log.warning("push queue full: %d notifications dropped", self.stats.dropped)
            return
        self.stats.queued += 1

    def _later(
        self,
        loop: asyncio.AbstractEventLoop,
        delay: float,
        call: Callable[..., None],
        *args: object,
    ) -> None:
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            if handle is not None:
                self._timers.discard(handle)
            call(*args)

        handle = loop.call_later(max(0.0, delay), run)
        self._timers.add(handle)

    def sweep(self) -> None:
        """Forget coalescing windows that closed and subscriptions that went (once a
        minute)."""
        loop = _running_loop()
        if loop is not None:
            self._coalescer.forget(loop.time())
        for sub_id in [s for s in self.delivered_at if not self.store.push_subscriptions.get(s)]:
            del self.delivered_at[sub_id]

    # --- the sending side ---

    async def start(self) -> None:
        """Open the HTTP client and the workers."""
        self._client = httpx.AsyncClient(
            timeout=self.settings.request_timeout_sec,
            follow_redirects=False,  # a redirect could point anywhere: never followed
            limits=httpx.Limits(
                max_connections=self.settings.concurrency,
                max_keepalive_connections=self.settings.concurrency,
            ),
            transport=self.transport,
        )
        self._workers = [
            asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)
        ]

    async def close(self) -> None:
        """Stop: held and queued notifications are not sent (they are not worth delaying
        a shutdown for; the phone fetches the state when opened)."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _work(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._deliver(message)
            except Exception:  # noqa: BLE001 - one bad message must not stop a worker
                self.stats.failed += 1
                log.warning("a push notification could not be sent (unexpected error)")
            finally:
                self._queue.task_done()

    async def _deliver(self, message: Outgoing) -> None:
        sub = self.store.push_subscriptions.get(message.subscription_id)
        if sub is None or self.key is None or self._client is None:
            self.stats.skipped += 1
            return
        try:
            check_endpoint(sub.endpoint, self.settings.allowed_hosts)
        except AppError:
            # push.allowedHosts no longer lists its service: it is never sent to again.
            await self._remove(sub)
            self.stats.skipped += 1
            return
        request = build_request(
            sub.endpoint,
            encrypt(message.payload, p256dh=sub.p256dh, auth=sub.auth),
            authorization=self.key.authorization(
                audience(sub.endpoint), contact=self.contact, now=self.wall()
            ),
            ttl_sec=self.settings.ttl_sec,
            urgency=message.urgency,
        )
        try:
            response = await self._client.post(
                request.url, content=request.body, headers=request.headers
            )
        except httpx.HTTPError:
            self._retry(message, None)
            return
        await self._settle(message, response)

    async def _settle(self, message: Outgoing, response: httpx.Response) -> None:
        status = response.status_code
        sub = self.store.push_subscriptions.get(message.subscription_id)
        if status in DELIVERED:
            self.stats.sent += 1
            if sub is not None:
                self.delivered_at[sub.id] = self.clock()
        elif status in GONE:
            self.stats.gone += 1
            if sub is not None:
                await self._remove(sub)
        elif status == 429 or status >= 500:
            self._retry(message, response.headers.get("retry-after"))
        else:
            self.stats.failed += 1
            log.warning("a push service refused a notification with status %d", status)

    async def _remove(self, sub: PushSubscriptionRecord) -> None:
        self.store.push_subscriptions.remove(sub)
        await self.store.commit()

    def _retry(self, message: Outgoing, retry_after: str | None) -> None:
        loop = _running_loop()
        if message.attempt >= self.settings.max_attempts or loop is None:
            self.stats.failed += 1
            return
        self.stats.retried += 1
        delay = retry_delay(self.settings.retry_base_sec, message.attempt, retry_after)
        self._later(loop, delay, self._enqueue, replace(message, attempt=message.attempt + 1))


def retry_delay(base: float, attempt: int, retry_after: str | None) -> float:
    """Exponential backoff (x4 a try, jittered, capped), or the service's ``Retry-After``
    seconds when it asks for longer (also capped)."""
    jitter = random.uniform(0.8, 1.2)  # noqa: S311 - spreading retries, not a secret
    delay = min(MAX_RETRY_DELAY_SEC, base * 4.0 ** (attempt - 1) * jitter)
    if retry_after is not None and retry_after.strip().isdigit():
        delay = max(delay, min(MAX_RETRY_DELAY_SEC, float(retry_after.strip())))
    return delay


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
