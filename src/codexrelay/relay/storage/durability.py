"""Requests waiting for their change to reach the disk: shared by the stores and the audit log.

A request registers the sequence number its change needs and waits; the single writer
settles every waiter its write covered, with success or with ``storage-unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from codexrelay.errors import AppError, ErrorCode


class DurableWaiters:
    """Futures keyed by the sequence number that must be durable before they resolve."""

    def __init__(self) -> None:
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def wait_for(self, target: int) -> asyncio.Future[None]:
        """Register now; the result resolves once ``settle`` has covered ``target``. The
        writer owns the write, so a client that goes away does not cancel it (shielded)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        return asyncio.shield(future)

    def settle(self, reached: int, *, failed: bool) -> None:
        """Resolve every waiter up to ``reached``: done, or failed with 503."""
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._waiters:
            if target > reached:
                keep.append((target, future))
            elif not future.done():
                if failed:
                    future.set_exception(
                        AppError(ErrorCode.STORAGE_UNAVAILABLE, "The relay could not save.")
                    )
                else:
                    future.set_result(None)
        self._waiters = keep


# How long ``touch()`` waits before writing, so a stream of low-value changes costs a few
# writes, not one each.
LAZY_WRITE_DELAY_SEC = 0.25


class GroupWriter:
    """One writer task per store: every commit that arrives while a write is in flight joins
    the next write (group commit), and each ``commit()`` returns once a write that covers it
    succeeded.

    ``write`` performs one write of everything pending and returns whether it succeeded; it
    runs on the event loop and must hand its slow part (encoding big documents, disk I/O)
    to a thread.
    """

    def __init__(self, write: Callable[[], Awaitable[bool]]) -> None:
        self._write = write
        self._version = 0
        self._attempted = 0
        self.durable = 0
        self._waiters = DurableWaiters()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lazy: asyncio.Task[None] | None = None
        self._closing = False
        self.writes = 0

    @property
    def pending(self) -> bool:
        """Whether a change has been made that no successful write covers yet."""
        return self._version != self.durable

    async def commit(self) -> None:
        """Return once a write that includes every change made so far is durable."""
        self._version += 1
        waiting = self._waiters.wait_for(self._version)
        self._kick()
        await waiting

    def touch(self) -> None:
        """Schedule a write without waiting for it, batched over ``LAZY_WRITE_DELAY_SEC``."""
        self._version += 1
        if self._lazy is None or self._lazy.done():
            self._lazy = asyncio.get_running_loop().create_task(self._lazy_kick())

    async def _lazy_kick(self) -> None:
        await asyncio.sleep(LAZY_WRITE_DELAY_SEC)
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            if self._version == self._attempted:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            version = self._attempted = self._version
            ok = await self._write()
            if ok:
                self.writes += 1
                self.durable = version
            self._waiters.settle(version, failed=not ok)

    async def close(self) -> None:
        """Stop the writer after a last write of anything pending (one attempt)."""
        self._closing = True
        if self._lazy is not None:
            self._lazy.cancel()
        if self._version != self._attempted:
            self._kick()
        if self._task is not None and not self._task.done():
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._task
