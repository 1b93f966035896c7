"""A thread's earlier items, read once from the app-server, and which threads to let go.

History comes from ``thread/items/list`` (oldest first, paged), which works on threads the
server has not loaded; it goes through the same redaction and caps as live items. The agent
keeps at most ``conversations.maxThreads`` threads in memory; idle ones go first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from codexrelay.agent.runners.appserver.items import Outbound, map_item
from codexrelay.agent.runners.appserver.state import ThreadState
from codexrelay.agent.runners.base import TaskRefusedError

Json = dict[str, Any]
Call = Callable[[str, Json], Awaitable[Json]]
HISTORY_PAGES = 10
PAGE_ITEMS = 200


async def load_history(call: Call, outbound: Outbound, state: ThreadState) -> None:
    """Fill a thread's items from its history, a few pages at most."""
    cursor: Any = None
    for _ in range(HISTORY_PAGES):
        params: Json = {"threadId": state.id, "limit": PAGE_ITEMS}
        if cursor is not None:
            params["cursor"] = cursor
        try:
            page = await call("thread/items/list", params)
        except TaskRefusedError:
            return
        for entry in page.get("data") or []:
            if isinstance(entry, dict) and isinstance(entry.get("item"), dict):
                fields = map_item(entry["item"], turn_id=entry.get("turnId"), done=True)
                if fields["id"] not in state.items:
                    state.put(outbound.item(fields))
        cursor = page.get("nextCursor")
        if not cursor:
            return


def idle_threads(threads: dict[str, ThreadState], limit: int) -> list[ThreadState]:
    """The threads to forget so a new one fits under ``limit``: idle, oldest first."""
    idle = sorted(
        (s for s in threads.values() if s.active_turn is None and not s.pending_approvals()),
        key=_last_active,
    )
    return idle[: max(1, len(threads) - limit + 1)]


def _last_active(state: ThreadState) -> float:
    stamp = state.updated_at or state.created_at
    return stamp.timestamp() if stamp is not None else 0.0
