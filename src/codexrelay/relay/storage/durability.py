"""Requests waiting for their change to reach the disk: shared by state.json and the audit log.

A request registers the sequence number its change needs and waits; the single writer
settles every waiter its write covered, with success or with ``storage-unavailable``.
"""

from __future__ import annotations

import asyncio

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
