"""Conversation records: threads, turns and approvals as metadata (R10), kept up to date
from what the agent reports, and what phones are told about them.

Records are keyed ``<agentKey>/<id>``: an agent speaks only for its own threads, so one in
another workspace can never touch these. States move forward only where they are final:
a finished turn never runs again, an answered approval is never pending again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol_threads import Approval, ThreadInfo, TurnInfo
from codexrelay.relay.agents import pairing
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import (
    AgentRecord,
    ApprovalRecord,
    ApprovalRecordStatus,
    ThreadRecord,
    ThreadRecordStatus,
    TurnRecord,
)
from codexrelay.relay.storage.repositories import Store
from codexrelay.relay.trust import membership
from codexrelay.relay.views import ApprovalOut, ThreadOut, TurnOut

FINAL_TURNS = frozenset({"completed", "interrupted", "failed"})
STATUS_FROM_AGENT: dict[str, ApprovalRecordStatus] = {
    "pending": "pending",
    "accepted": "accepted",
    "acceptedForSession": "acceptedForSession",
    "declined": "declined",
    "cancelled": "cancelled",
    "expired": "expired",
    "answeredElsewhere": "cancelled",  # with resolvedElsewhere: the terminal answered it
}
APPROVALS_SHOWN = 50


def key_of(agent_key: str, some_id: str) -> str:
    """The relay key of a thread, turn or approval of an agent."""
    return f"{agent_key}/{some_id}"


def is_owner(thread: ThreadRecord, user_id: str) -> bool:
    """Whether the thread is this person's (started it, or took it over first)."""
    return user_id in {thread.created_by, thread.taken_over_by}


# ---- lookups ----------------------------------------------------------------------------


def find_thread(store: Store, workspace_id: str, thread_id: str) -> ThreadRecord:
    """A thread of this workspace (404 otherwise, also for another workspace's thread);
    of two agents that report the same id, the one currently paired wins."""
    found = store.threads.find(workspace_id, thread_id)
    if not found:
        raise AppError(ErrorCode.NOT_FOUND, "No such thread.")
    for record in found:
        agent = pairing.find_agent(store, workspace_id, record.agent_id)
        if agent is not None and agent.key == record.agent_key:
            return record
    return found[0]


def find_approval(store: Store, thread: ThreadRecord, approval_id: str) -> ApprovalRecord:
    """An approval of this thread (404 otherwise)."""
    record = store.approvals.get(key_of(thread.agent_key, approval_id))
    if record is None or record.thread_key != thread.key:
        raise AppError(ErrorCode.NOT_FOUND, "No such approval on this thread.")
    return record


def running_turn(store: Store, thread: ThreadRecord) -> TurnRecord | None:
    """The thread's running turn, if the relay knows of one."""
    if thread.active_turn_id is None:
        return None
    return store.turns.get(key_of(thread.agent_key, thread.active_turn_id))


# ---- what the agent reports -------------------------------------------------------------


def _status(info: ThreadInfo) -> ThreadRecordStatus:
    """Codex says ``idle`` a moment before a turn starts and after it ends: while the agent
    names an active turn, the thread is running."""
    if info.status == "idle" and info.active_turn_id is not None:
        return "running"
    return info.status


def upsert_thread(
    store: Store, agent: AgentRecord, info: ThreadInfo, now: datetime
) -> ThreadRecord:
    """The thread's record, created or brought up to date from the agent's report."""
    key = key_of(agent.key, info.id)
    record = store.threads.get(key)
    if record is None:
        record = ThreadRecord(
            key=key,
            id=info.id,
            workspace_id=agent.workspace_id,
            agent_id=agent.agent_id,
            agent_key=agent.key,
            source=info.source,
            status=_status(info),
            write_access=info.write_access,
            created_at=info.created_at or now,
            updated_at=info.updated_at or now,
            active_turn_id=info.active_turn_id,
        )
        store.threads.add(record)
        return record
    record.status, record.write_access = _status(info), info.write_access
    record.active_turn_id = info.active_turn_id
    record.updated_at = max(record.updated_at, info.updated_at or now)
    store.threads.save(record)
    return record


def upsert_turn(
    store: Store,
    thread: ThreadRecord,
    turn: TurnInfo,
    now: datetime,
    *,
    started_by: str | None = None,
) -> TurnRecord:
    """A turn's record; a finished turn keeps its end, a starter once known is kept."""
    key = key_of(thread.agent_key, turn.id)
    record = store.turns.get(key)
    if record is None:
        record = TurnRecord(
            key=key,
            id=turn.id,
            thread_key=thread.key,
            thread_id=thread.id,
            workspace_id=thread.workspace_id,
            started_by=started_by,
            started_at=now,
        )
        store.turns.add(record)
    if record.status not in FINAL_TURNS and turn.status != record.status:
        record.status = turn.status
        record.finished_at = now if turn.status in FINAL_TURNS else None
    record.started_by = record.started_by or started_by
    store.turns.save(record)
    return record


def upsert_approval(
    store: Store, thread: ThreadRecord, approval: Approval
) -> ApprovalRecord | None:
    """An approval's record; None if the report would move it backwards."""
    key = key_of(thread.agent_key, approval.id)
    record = store.approvals.get(key)
    status = STATUS_FROM_AGENT[approval.status]
    if record is None:
        record = ApprovalRecord(
            key=key,
            id=approval.id,
            thread_key=thread.key,
            thread_id=thread.id,
            workspace_id=thread.workspace_id,
            turn_id=approval.turn_id,
            item_id=approval.item_id,
            kind=approval.kind,
            requested_at=approval.requested_at,
            expires_at=approval.expires_at,
        )
        store.approvals.add(record)
    elif record.status != "pending":
        return None
    record.status = status
    record.resolved_elsewhere = approval.status == "answeredElsewhere"
    record.decision = approval.decision
    record.decided_by = approval.decided_by
    record.decided_at = approval.decided_at
    store.approvals.save(record)
    return record


def settle_approval(
    store: Store, record: ApprovalRecord, status: ApprovalRecordStatus, now: datetime
) -> None:
    """Close a pending approval the agent no longer holds (it restarted)."""
    record.status, record.decided_at = status, now
    store.approvals.save(record)


OVERDUE_GRACE = timedelta(minutes=2)


def expire_overdue(services: Services) -> None:
    """Once a minute: an approval still pending well past its deadline (its agent went
    away and never said) is shown as expired; the agent declines it on its own."""
    now = services.now()
    for record in services.store.approvals.pending():
        if record.expires_at + OVERDUE_GRACE < now:
            settle_approval(services.store, record, "expired", now)
            publish_approval(services, record)
            services.store.touch()


def prune(services: Services, workspace_id: str) -> None:
    """Keep at most ``maxThreadsPerWorkspace`` threads: the least recently active go,
    with their turns, approvals and content."""
    store = services.store
    threads = store.threads.of_workspace(workspace_id)
    for thread in threads[services.config.max_threads_per_workspace :]:
        for turn in store.turns.of_thread(thread.key):
            store.turns.remove(turn)
        for approval in store.approvals.of_thread(thread.key):
            store.approvals.remove(approval)
        store.threads.remove(thread)
        services.conversations.content.drop(thread.key)
        services.conversations.envelopes.drop(thread.key)


def remember(services: Services, thread: ThreadRecord, info: ThreadInfo) -> None:
    """A thread's cwd, preview and model: content, so memory only (API.md)."""
    content = services.conversations.content.get(thread.key)
    content.info = {"cwd": info.cwd, "preview": info.preview, "model": info.model}


# ---- what phones see --------------------------------------------------------------------


def thread_out(services: Services, thread: ThreadRecord) -> ThreadOut:
    """The thread as API.md shows it; cwd, preview and model from memory."""
    content = services.conversations.content.peek(thread.key)
    info = content.info if content is not None else {}
    pending = sum(
        1 for a in services.store.approvals.of_thread(thread.key) if a.status == "pending"
    )
    return ThreadOut.of(
        thread,
        cwd=info.get("cwd", ""),
        preview=info.get("preview", ""),
        model=info.get("model"),
        agent_online=services.hub.is_online(thread.agent_key),
        pending_approvals=pending,
        sealed=sealed_content(services, thread.workspace_id),
    )


def sealed_content(services: Services, workspace_id: str) -> bool:
    """Whether the workspace's verified log seals content (TRUST.md §4.7)."""
    view = membership.current_view(services.store, services.trust, workspace_id)
    return view is not None and view.policy.content == "sealed"


def approval_out(services: Services, approval: ApprovalRecord) -> ApprovalOut:
    """The approval as API.md shows it; what it asks from memory."""
    content = services.conversations.content.peek(approval.thread_key)
    asks = content.approvals.get(approval.id, {}) if content is not None else {}
    return ApprovalOut.of(
        approval,
        command=asks.get("command"),
        cwd=asks.get("cwd"),
        changes=asks.get("changes"),
        reason=asks.get("reason"),
        available_decisions=asks.get("availableDecisions", []),
        request=asks.get("request"),
    )


def approval_request(services: Services, thread: ThreadRecord, approval_id: str) -> str | None:
    """The agent's exact request bytes (b64u) of an approval, from memory."""
    content = services.conversations.content.peek(thread.key)
    asks = content.approvals.get(approval_id, {}) if content is not None else {}
    request = asks.get("request")
    return request if isinstance(request, str) else None


def thread_approvals(services: Services, thread: ThreadRecord) -> list[ApprovalOut]:
    """The thread's newest approvals (pending ones always), oldest first."""
    records = services.store.approvals.of_thread(thread.key)
    shown = [a for a in records[:-APPROVALS_SHOWN] if a.status == "pending"]
    shown += records[-APPROVALS_SHOWN:]
    return [approval_out(services, a) for a in shown]


def publish_thread(
    services: Services,
    thread: ThreadRecord,
    turn: TurnRecord | None = None,
    error: str | None = None,
) -> None:
    """``thread`` event; with the turn that started or ended, when one did."""
    payload = {"thread": thread_out(services, thread).json_data()}
    if turn is not None:
        payload["turn"] = TurnOut.of(turn, error=error).json_data()
    services.events.publish(thread.workspace_id, "thread", payload)


def publish_approval(services: Services, approval: ApprovalRecord) -> None:
    """``approval`` event."""
    payload = {"approval": approval_out(services, approval).json_data()}
    services.events.publish(approval.workspace_id, "approval", payload)
