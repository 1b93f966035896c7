"""Sealed conversation input (TRUST.md §4.13 under ``content: sealed``): a thread start,
turn, steer or approval answer whose content the relay cannot read.

The relay applies what it can see: the caller's role and the thread's owner, the visible
kind of turn and write mode, the flags, the agent online; it forwards the phone's envelope
and records the agent's answer exactly as for a plain request. The agent opens the
envelope and checks the signed statement inside against its own pinned log.
"""

from __future__ import annotations

from typing import Literal

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol_threads import SealedDecide, SealedThreadInput
from codexrelay.relay import audit
from codexrelay.relay.access import policy
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.conversations import flow
from codexrelay.relay.conversations.sync import ask
from codexrelay.relay.conversations.threads import (
    find_approval,
    is_owner,
    prune,
    publish_approval,
    publish_thread,
    remember,
    upsert_approval,
    upsert_thread,
    upsert_turn,
)
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import ApprovalRecord, ThreadRecord, TurnRecord


async def start(
    services: Services,
    access: WorkspaceAccess,
    *,
    agent_id: str,
    write_access: bool,
    envelope: str,
    actor: audit.Actor | None = None,
) -> tuple[ThreadRecord, TurnRecord]:
    """A new sealed thread; recorded from the agent's answer (ids and states only)."""
    policy.enforce(policy.can_start_thread(access.role, write_access=write_access))
    agent = flow.find_agent(services, access.workspace.id, agent_id)
    flow.check_enabled(services, agent)
    flow.check_write(services, agent, write_access)
    message = SealedThreadInput(
        request_id=services.conversations.requests.new_id(),
        mode="new",
        write_access=write_access,
        envelope=envelope,
    )
    reply = await ask(services, flow.live(services, agent.key), message)
    if reply.thread is None or reply.turn is None:
        raise AppError(ErrorCode.AGENT_ERROR, "The agent's answer named no thread.")
    now = services.now()
    thread = upsert_thread(services.store, agent, reply.thread, now)
    remember(services, thread, reply.thread)
    thread.created_by = thread.created_by or access.user_id
    services.store.threads.save(thread)
    turn = upsert_turn(services.store, thread, reply.turn, now, started_by=access.user_id)
    prune(services, thread.workspace_id)
    await audit.thread_started(services.audit, thread, flow.actor_of(access, actor), now=now)
    await services.store.commit()
    publish_thread(services, thread, turn)
    return thread, turn


async def turn(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    *,
    mode: Literal["start", "steer"],
    write_access: bool,
    envelope: str,
) -> TurnRecord:
    """A sealed follow-up turn or steer on a thread the caller may drive."""
    flow.check_drive(services, access, thread)
    if write_access != thread.write_access:
        raise AppError(ErrorCode.INVALID_REQUEST, "Sign the turn in the thread's write mode.")
    message = SealedThreadInput(
        request_id=services.conversations.requests.new_id(),
        mode=mode,
        thread_id=thread.id,
        write_access=write_access,
        envelope=envelope,
    )
    reply = await ask(services, flow.live(services, thread.agent_key), message)
    return await flow.record_turn(services, access, thread, reply.turn, started=mode == "start")


async def decide(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    approval_id: str,
    envelope: str,
    actor: audit.Actor | None = None,
) -> ApprovalRecord:
    """A sealed answer; the relay learns the outcome from the agent's answer only."""
    approval = find_approval(services.store, thread, approval_id)
    # The decision is sealed: the relay applies the rule every answer passes (declining);
    # the agent applies the one for the decision inside (TRUST.md §4.8).
    policy.enforce(
        policy.can_answer_approval(
            access.role,
            is_owner=is_owner(thread, access.user_id),
            thread_writes=thread.write_access,
            relay_allows_write=services.config.features.codex_exec_write,
            decision="decline",
        )
    )
    deciding = services.conversations.deciding
    if approval.status != "pending" or approval.key in deciding:
        raise AppError(ErrorCode.APPROVAL_RESOLVED, "This approval is already answered.")
    live = flow.live(services, thread.agent_key)
    deciding.add(approval.key)
    try:
        message = SealedDecide(
            request_id=services.conversations.requests.new_id(),
            thread_id=thread.id,
            approval_id=approval.id,
            envelope=envelope,
        )
        reply = await ask(services, live, message)
    finally:
        deciding.discard(approval.key)
    if reply.approval is not None and reply.approval.id == approval.id:
        upsert_approval(services.store, thread, reply.approval)
    answered = reply.approval.decision if reply.approval is not None else None
    decision = answered or "sealed"
    await audit.approval_decided(
        services.audit, approval, decision, flow.actor_of(access, actor), now=services.now()
    )
    await services.store.commit()
    publish_approval(services, approval)
    return approval
