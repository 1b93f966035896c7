"""Reading threads from the agent: the whole thread for a late reader, the thread list,
and what changed while the agent's link was down.

A late reader gets the thread from relay memory once a full ``thread.read`` was merged
while the link stayed up; until then the relay reads it (page by page, ``afterSeq`` = the
last item's ``seq``) while it keeps applying live events by the ``seq`` rule, so the two
meet without a gap or a duplicate (docs/PROTOCOL.md, "Driving a thread").
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from codexrelay.errors import AppError
from codexrelay.protocol_threads import (
    MAX_PAGE_ITEMS,
    ModelOption,
    ModelsList,
    ThreadList,
    ThreadRead,
    ThreadReply,
)
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.conversations.content import ThreadContent
from codexrelay.relay.conversations.state import ModelCatalog
from codexrelay.relay.conversations.threads import (
    key_of,
    publish_approval,
    publish_thread,
    remember,
    settle_approval,
    upsert_approval,
    upsert_thread,
)
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord, ThreadRecord

log = logging.getLogger("codexrelay.conversations")

MAX_PAGES = 40
LIST_EVERY = timedelta(seconds=15)
LIST_WAIT_SEC = 3.0
MODELS_EVERY = timedelta(minutes=10)


def _dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


async def ask(
    services: Services, live: LiveAgent, request: Any, wait_sec: float | None = None
) -> ThreadReply:
    """One request to an agent with the relay's deadline."""
    limit = wait_sec if wait_sec is not None else services.config.agent_request_timeout_sec
    return await services.conversations.requests.ask(live, request, limit)


def _new_id(services: Services) -> str:
    return services.conversations.requests.new_id()


async def ensure_synced(services: Services, thread: ThreadRecord) -> ThreadContent:
    """The thread's content, read from the agent first if the relay does not hold all of it
    (the agent offline: whatever is held)."""
    content = services.conversations.content.get(thread.key)
    live = services.hub.get(thread.agent_key)
    if content.synced or live is None:
        return content
    async with content.lock:
        if not content.synced:
            await _read_all(services, live, thread, content)
    return content


async def _read_all(
    services: Services, live: LiveAgent, thread: ThreadRecord, content: ThreadContent
) -> None:
    pending_before = {
        a.id for a in services.store.approvals.of_thread(thread.key) if a.status == "pending"
    }
    held: set[str] = set()
    after = 0
    for _ in range(MAX_PAGES):
        request = ThreadRead(
            request_id=_new_id(services), thread_id=thread.id, after_seq=after, limit=MAX_PAGE_ITEMS
        )
        reply = await ask(services, live, request)
        _merge(services, thread, content, reply, held)
        if not reply.more or not reply.items:
            break
        after = reply.items[-1].seq
    if live.closed.is_set() or services.hub.get(thread.agent_key) is not live:
        return  # the link dropped meanwhile: read again next time
    content.synced = True
    now = services.now()
    for approval_id in pending_before - held:  # the agent no longer holds it: it restarted
        record = services.store.approvals.get(key_of(thread.agent_key, approval_id))
        if record is not None and record.status == "pending":
            settle_approval(services.store, record, "cancelled", now)
            publish_approval(services, record)
    services.store.touch()


def _merge(
    services: Services,
    thread: ThreadRecord,
    content: ThreadContent,
    reply: ThreadReply,
    held: set[str],
) -> None:
    for item in reply.items or []:
        content.apply_item(_dump(item))
    content.seq = max(content.seq, reply.seq or 0)
    if reply.thread is not None and reply.thread.id == thread.id:
        remember(services, thread, reply.thread)
    for approval in reply.approvals or []:
        if approval.thread_id != thread.id:
            continue
        held.add(approval.id)
        content.keep_approval(approval.id, _dump(approval))
        record = upsert_approval(services.store, thread, approval)
        if record is not None:
            publish_approval(services, record)


async def refresh_list(services: Services, agent: AgentRecord) -> None:
    """Ask an online agent for its thread list, at most every 15 s (terminal and exec
    threads show up on the phone without waiting for the next reconnect)."""
    live = services.hub.get(agent.key)
    last = services.conversations.listed_at.get(agent.key)
    if live is None or (last is not None and services.now() - last < LIST_EVERY):
        return
    services.conversations.listed_at[agent.key] = services.now()
    try:
        reply = await ask(
            services, live, ThreadList(request_id=_new_id(services), limit=100), LIST_WAIT_SEC
        )
    except AppError as exc:
        log.info("agent %s did not list its threads: %s", agent.key, exc.code)
        return
    for info in reply.threads or []:
        record = upsert_thread(services.store, agent, info, services.now())
        remember(services, record, info)
    services.store.touch()


async def models(services: Services, agent: AgentRecord) -> list[ModelOption]:
    """The models the agent's Codex offers (asked at most every 10 minutes)."""
    held = services.conversations.models.get(agent.key)
    if held is not None and services.now() - held.fetched_at < MODELS_EVERY:
        return held.models
    live = services.hub.get(agent.key)
    if live is None:
        return held.models if held is not None else []
    reply = await ask(services, live, ModelsList(request_id=_new_id(services)))
    catalog = ModelCatalog(models=list(reply.models or []), fetched_at=services.now())
    services.conversations.models[agent.key] = catalog
    return catalog.models


def refresh_soon(services: Services, agent: AgentRecord) -> None:
    """After a reconnect, in the background: threads with a pending approval or a running
    turn are read again, so their state (and approvals the agent no longer holds) is right."""
    jobs = services.conversations.jobs
    job = asyncio.create_task(_refresh(services, agent))
    jobs.add(job)
    job.add_done_callback(jobs.discard)


async def _refresh(services: Services, agent: AgentRecord) -> None:
    busy = {
        a.thread_key
        for a in services.store.approvals.pending()
        if a.thread_key.startswith(f"{agent.key}/")
    }
    busy |= {
        t.key
        for t in services.store.threads.of_agent(agent.key)
        if t.status in {"running", "waitingForApproval"}
    }
    for key in sorted(busy):
        thread = services.store.threads.get(key)
        if thread is None:
            continue
        try:
            await ensure_synced(services, thread)
        except AppError as exc:
            log.info("could not read thread %s again: %s", thread.id, exc.code)
            continue
        publish_thread(services, thread)


async def stop_background(services: Services) -> None:
    """At shutdown: no refresh outlives the relay."""
    jobs = list(services.conversations.jobs)
    for job in jobs:
        job.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
