"""What an agent reports about its conversations, applied and passed on to phones.

Answers (``thread.reply``, ``thread.refused``) go to the request waiting for them. Thread,
turn and approval changes update the metadata records (saved with ``touch()``: the writer
coalesces them and the agent's socket never waits on the disk). Items and streamed text
stay in memory (R10) and go out on the workspace's event stream as ``item`` and
``item-delta`` events; a phone applies them by the same ``seq`` rule as the relay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from codexrelay.protocol_threads import (
    ApprovalUpdate,
    ThreadDelta,
    ThreadInfo,
    ThreadItemEvent,
    ThreadRefused,
    ThreadReply,
    ThreadsUpdate,
    ThreadUpdate,
)
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.conversations import sync
from codexrelay.relay.conversations.threads import (
    FINAL_TURNS,
    key_of,
    prune,
    publish_approval,
    publish_thread,
    remember,
    upsert_approval,
    upsert_thread,
    upsert_turn,
)
from codexrelay.relay.push import notify as push
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord, ThreadRecord

log = logging.getLogger("codexrelay.conversations")


def dump(message: Any) -> dict[str, Any]:
    """A protocol model as the JSON the phone reads (camelCase, no nulls)."""
    data: dict[str, Any] = message.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def _thread(services: Services, agent: AgentRecord, thread_id: str) -> ThreadRecord | None:
    return services.store.threads.get(key_of(agent.key, thread_id))


async def on_reply(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ThreadReply
) -> None:
    """An answer to one of the relay's requests."""
    if not services.conversations.requests.resolve(agent.key, message):
        log.info("agent %s answered a request the relay no longer waits for", agent.key)


async def on_refused(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ThreadRefused
) -> None:
    """A refusal of one of the relay's requests."""
    services.conversations.requests.resolve(agent.key, message)


def apply_thread(services: Services, agent: AgentRecord, info: ThreadInfo) -> ThreadRecord:
    """Record a thread the agent reports, and remember its content."""
    known = services.store.threads.get(key_of(agent.key, info.id)) is not None
    record = upsert_thread(services.store, agent, info, services.now())
    remember(services, record, info)
    if not known:
        prune(services, agent.workspace_id)
    return record


async def on_thread_update(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ThreadUpdate
) -> None:
    """A thread started or changed state, or a turn began or ended."""
    thread = apply_thread(services, agent, message.thread)
    turn = None
    if message.turn is not None and message.turn.thread_id == thread.id:
        before = services.store.turns.get(key_of(agent.key, message.turn.id))
        was_final = before is not None and before.status in FINAL_TURNS
        turn = upsert_turn(services.store, thread, message.turn, services.now())
        if not was_final and turn.status in FINAL_TURNS:
            push.turn_settled(services, thread, turn)
    services.store.touch()
    publish_thread(services, thread, turn, message.turn.error if message.turn else None)


async def on_threads_update(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ThreadsUpdate
) -> None:
    """The agent's newest threads, after it connected."""
    for info in message.threads:
        publish_thread(services, apply_thread(services, agent, info))
    services.conversations.listed_at[agent.key] = services.now()
    services.store.touch()


async def on_item(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ThreadItemEvent
) -> None:
    """An item appeared or changed: held in memory, sent to phones."""
    thread = _thread(services, agent, message.thread_id)
    if thread is None:
        return  # not a thread the relay knows (yet): a read brings it
    item = dump(message.item)
    store = services.conversations.content
    store.get(thread.key).apply_item(item)
    store.trim()
    services.events.publish(thread.workspace_id, "item", {"threadId": thread.id, "item": item})


async def on_delta(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ThreadDelta
) -> None:
    """Streamed text for an item: appended in memory, sent to phones."""
    thread = _thread(services, agent, message.thread_id)
    if thread is None:
        return
    content = services.conversations.content.get(thread.key)
    content.apply_delta(message.item_id, message.seq, message.field, message.delta)
    payload = {
        "threadId": thread.id,
        "turnId": message.turn_id,
        "itemId": message.item_id,
        "seq": message.seq,
        "field": message.field,
        "delta": message.delta,
    }
    services.events.publish(thread.workspace_id, "item-delta", payload)


async def on_approval(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: ApprovalUpdate
) -> None:
    """Codex asks, or an approval was answered, expired or withdrawn."""
    approval = message.approval
    thread = _thread(services, agent, approval.thread_id)
    if thread is None:
        return
    services.conversations.content.get(thread.key).keep_approval(approval.id, dump(approval))
    is_new = services.store.approvals.get(key_of(agent.key, approval.id)) is None
    record = upsert_approval(services.store, thread, approval)
    if record is None:
        return  # already final here: a late or replayed report changes nothing
    services.store.touch()
    publish_approval(services, record)
    if is_new and record.status == "pending":
        push.approval_waits(services, thread)


async def on_connected(services: Services, agent: AgentRecord) -> None:
    """After a hello: read again what may have changed while the link was down."""
    if agent.features.get("conversations") and services.config.features.conversations:
        sync.refresh_soon(services, agent)


async def on_gone(services: Services, agent: AgentRecord) -> None:
    """The link ended: requests to it fail now; its threads are read again later."""
    services.conversations.requests.fail_agent(agent.key)
    services.conversations.content.unsync(f"{agent.key}/")
    await asyncio.sleep(0)
