"""In-memory tables of conversation metadata: threads, turns and approvals (R10: no
content; finders as documented on ``repositories.Threads``, ``Turns`` and ``Approvals``)."""

from __future__ import annotations

from codexrelay.relay.storage.records import ApprovalRecord, ThreadRecord, TurnRecord
from codexrelay.relay.storage.table import Table, oldest_first


class MemoryThreads(Table[ThreadRecord]):
    def __init__(self) -> None:
        super().__init__(
            lambda t: t.key,
            {
                "workspace": lambda t: t.workspace_id,
                "agent": lambda t: t.agent_key,
                "id": lambda t: f"{t.workspace_id}/{t.id}",
            },
        )

    def find(self, workspace_id: str, thread_id: str) -> list[ThreadRecord]:
        return self._recent("id", f"{workspace_id}/{thread_id}")

    def of_workspace(self, workspace_id: str) -> list[ThreadRecord]:
        return self._recent("workspace", workspace_id)

    def of_agent(self, agent_key: str) -> list[ThreadRecord]:
        return self._recent("agent", agent_key)

    def _recent(self, index: str, value: str) -> list[ThreadRecord]:
        return sorted(self.where(index, value), key=lambda t: (t.updated_at, t.key), reverse=True)


class MemoryTurns(Table[TurnRecord]):
    def __init__(self) -> None:
        super().__init__(lambda t: t.key, {"thread": lambda t: t.thread_key})

    def of_thread(self, thread_key: str) -> list[TurnRecord]:
        return oldest_first(self.where("thread", thread_key), lambda t: t.started_at)


class MemoryApprovals(Table[ApprovalRecord]):
    def __init__(self) -> None:
        super().__init__(lambda a: a.key, {"thread": lambda a: a.thread_key})

    def of_thread(self, thread_key: str) -> list[ApprovalRecord]:
        return oldest_first(self.where("thread", thread_key), lambda a: a.requested_at)

    def pending(self) -> list[ApprovalRecord]:
        found = [a for a in self.all() if a.status == "pending"]
        return oldest_first(found, lambda a: a.requested_at)
