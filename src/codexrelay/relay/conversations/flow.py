"""What a phone asks of a conversation: start, follow up, steer, interrupt, take over,
answer an approval. Each is checked here (shape, policy, flags, agent online), sent to the
agent as one request, and recorded from the agent's answer; the agent checks it all again
(R09, R15, R17, A4). Nothing a person typed is recorded, only who did what (R10).
"""

from __future__ import annotations

from dataclasses import dataclass

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import SignedDecision, SignedStop, SignedTurn
from codexrelay.protocol_threads import (
    ApprovalDecide,
    Decision,
    ThreadInterrupt,
    ThreadResume,
    ThreadStart,
    ThreadSteer,
    ThreadTurn,
    TurnInfo,
)
from codexrelay.relay import audit
from codexrelay.relay.access import policy
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.conversations.sync import ask
from codexrelay.relay.conversations.threads import (
    find_approval,
    is_owner,
    prune,
    publish_approval,
    publish_thread,
    remember,
    running_turn,
    upsert_approval,
    upsert_thread,
    upsert_turn,
)
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import AgentRecord, ApprovalRecord, ThreadRecord, TurnRecord
from codexrelay.relay.tasks.lifecycle import check_cwd

# A request frame to the agent is capped at 1 MiB; a prompt with photos must fit in it.
MAX_INPUT_CHARS = 960_000


@dataclass(frozen=True)
class Input:
    """What a person sends Codex: a prompt and up to four photos (data URLs)."""

    prompt: str
    images: list[str] | None = None


def check_input(services: Services, given: Input) -> None:
    """Size first (413), then a prompt that says something (422)."""
    limit = services.config.max_prompt_bytes
    if len(given.prompt.encode("utf-8")) > limit:
        raise AppError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"The prompt is larger than {limit // 1024} KiB."
        )
    if len(given.prompt) + sum(len(i) for i in given.images or []) > MAX_INPUT_CHARS:
        raise AppError(
            ErrorCode.PAYLOAD_TOO_LARGE, "The photos are too large; send fewer or smaller ones."
        )
    if not given.prompt.strip():
        raise AppError(ErrorCode.INVALID_REQUEST, "Write something for Codex first.", status=422)


def check_enabled(services: Services, agent: AgentRecord) -> None:
    if not services.config.features.conversations:
        raise AppError(ErrorCode.FEATURE_DISABLED, "Conversations are turned off on the relay.")
    if not agent.features.get("conversations"):
        raise AppError(ErrorCode.FEATURE_DISABLED, "This agent does not run conversations.")


def check_write(services: Services, agent: AgentRecord, write_access: bool) -> None:
    if write_access:
        decision = policy.can_use_write_mode(
            relay_allows=services.config.features.codex_exec_write,
            agent_allows=bool(agent.features.get("codexExecWrite")),
        )
        policy.enforce(decision)


def find_agent(services: Services, workspace_id: str, agent_id: str) -> AgentRecord:
    agent = pairing.find_agent(services.store, workspace_id, agent_id)
    if agent is None:
        raise AppError(ErrorCode.AGENT_NOT_AVAILABLE, "That agent is revoked or unknown.")
    return agent


def live(services: Services, agent_key: str) -> LiveAgent:
    live = services.hub.get(agent_key)
    if live is None:
        raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
    return live


def actor_of(access: WorkspaceAccess, actor: audit.Actor | None) -> audit.Actor:
    return actor or {"type": "user", "userId": access.user_id}


@dataclass(frozen=True)
class StartRequest:
    agent_id: str
    input: Input
    cwd: str | None = None
    write_access: bool = False
    model: str | None = None
    effort: str | None = None
    signed: SignedTurn | None = None


async def start(
    services: Services,
    access: WorkspaceAccess,
    request: StartRequest,
    actor: audit.Actor | None = None,
) -> tuple[ThreadRecord, TurnRecord]:
    """A new thread on an agent, running its first turn."""
    policy.enforce(policy.can_start_thread(access.role, write_access=request.write_access))
    check_input(services, request.input)
    cwd = check_cwd(request.cwd)
    agent = find_agent(services, access.workspace.id, request.agent_id)
    check_enabled(services, agent)
    check_write(services, agent, request.write_access)
    message = ThreadStart(
        request_id=services.conversations.requests.new_id(),
        prompt=request.input.prompt,
        cwd=cwd,
        write_access=request.write_access,
        model=request.model,
        effort=request.effort,
        images=request.input.images,
        signed=request.signed,
    )
    reply = await ask(services, live(services, agent.key), message)
    if reply.thread is None or reply.turn is None:
        raise AppError(ErrorCode.AGENT_ERROR, "The agent's answer named no thread.")
    now = services.now()
    followed = services.store.threads.get(f"{agent.key}/{reply.thread.id}") is not None
    thread = upsert_thread(services.store, agent, reply.thread, now)
    remember(services, thread, reply.thread)
    if followed and services.hub.get(agent.key) is not None:
        # Its thread.update came before any item on this link: the relay holds it all.
        services.conversations.content.get(thread.key).synced = True
    thread.created_by = thread.created_by or access.user_id
    services.store.threads.save(thread)
    turn = upsert_turn(services.store, thread, reply.turn, now, started_by=access.user_id)
    prune(services, thread.workspace_id)
    await audit.thread_started(services.audit, thread, actor_of(access, actor), now=now)
    await services.store.commit()
    publish_thread(services, thread, turn)
    return thread, turn


async def send_turn(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    given: Input,
    *,
    signed: SignedTurn | None = None,
) -> TurnRecord:
    """A follow-up turn (409 ``turn-running`` while one runs)."""
    check_drive(services, access, thread)
    check_input(services, given)
    message = ThreadTurn(
        request_id=services.conversations.requests.new_id(),
        thread_id=thread.id,
        prompt=given.prompt,
        images=given.images,
        signed=signed,
    )
    reply = await ask(services, live(services, thread.agent_key), message)
    return await record_turn(services, access, thread, reply.turn, started=True)


async def steer(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    given: Input,
    *,
    signed: SignedTurn | None = None,
) -> TurnRecord:
    """More input for the running turn (409 ``no-running-turn`` without one)."""
    check_drive(services, access, thread)
    check_input(services, Input(given.prompt))
    message = ThreadSteer(
        request_id=services.conversations.requests.new_id(),
        thread_id=thread.id,
        prompt=given.prompt,
        signed=signed,
    )
    reply = await ask(services, live(services, thread.agent_key), message)
    return await record_turn(services, access, thread, reply.turn, started=False)


def check_drive(services: Services, access: WorkspaceAccess, thread: ThreadRecord) -> None:
    decision = policy.can_drive_thread(
        access.role, is_owner=is_owner(thread, access.user_id), thread_writes=thread.write_access
    )
    policy.enforce(decision)
    agent = find_agent(services, thread.workspace_id, thread.agent_id)
    check_enabled(services, agent)


async def record_turn(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    turn: TurnInfo | None,
    *,
    started: bool,
) -> TurnRecord:
    if turn is None:
        raise AppError(ErrorCode.AGENT_ERROR, "The agent's answer named no turn.")
    now = services.now()
    record = upsert_turn(
        services.store, thread, turn, now, started_by=access.user_id if started else None
    )
    if turn.status == "inProgress":
        thread.active_turn_id, thread.updated_at = turn.id, now
        services.store.threads.save(thread)
    await services.store.commit()
    publish_thread(services, thread, record)
    return record


async def interrupt(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    actor: audit.Actor | None = None,
    *,
    signed: SignedStop | None = None,
) -> TurnRecord:
    """Stop the running turn; a pending approval is cancelled first, so it never runs."""
    turn = running_turn(services.store, thread)
    decision = policy.can_interrupt_turn(
        access.role,
        is_starter=turn is not None and turn.started_by == access.user_id,
        is_owner=is_owner(thread, access.user_id),
        starter=turn is not None and turn.started_by is not None,
    )
    policy.enforce(decision)
    message = ThreadInterrupt(
        request_id=services.conversations.requests.new_id(), thread_id=thread.id, signed=signed
    )
    reply = await ask(services, live(services, thread.agent_key), message)
    record = await record_turn(services, access, thread, reply.turn, started=False)
    await audit.turn_interrupted(
        services.audit, thread, record.id, actor_of(access, actor), now=services.now()
    )
    await services.store.commit()
    return record


async def resume(
    services: Services,
    access: WorkspaceAccess,
    agent_id: str,
    thread_id: str,
    *,
    write_access: bool = False,
    actor: audit.Actor | None = None,
) -> ThreadRecord:
    """Take over a thread the agent lists (terminal or exec source) so the phone drives it;
    the first person to take it over becomes its owner."""
    policy.enforce(policy.can_start_thread(access.role, write_access=write_access))
    agent = find_agent(services, access.workspace.id, agent_id)
    check_enabled(services, agent)
    check_write(services, agent, write_access)
    message = ThreadResume(
        request_id=services.conversations.requests.new_id(),
        thread_id=thread_id,
        write_access=write_access,
    )
    reply = await ask(services, live(services, agent.key), message)
    if reply.thread is None or reply.thread.id != thread_id:
        raise AppError(ErrorCode.AGENT_ERROR, "The agent's answer named another thread.")
    thread = upsert_thread(services.store, agent, reply.thread, services.now())
    remember(services, thread, reply.thread)
    if thread.created_by is None and thread.taken_over_by is None:
        thread.taken_over_by = access.user_id
        services.store.threads.save(thread)
    prune(services, thread.workspace_id)
    await audit.thread_taken_over(
        services.audit, thread, actor_of(access, actor), now=services.now()
    )
    await services.store.commit()
    publish_thread(services, thread)
    return thread


async def decide(
    services: Services,
    access: WorkspaceAccess,
    thread: ThreadRecord,
    approval_id: str,
    decision: Decision,
    actor: audit.Actor | None = None,
    *,
    signed: SignedDecision | None = None,
) -> ApprovalRecord:
    """A person's answer to an approval; the first valid answer wins (409 for the rest)."""
    approval = find_approval(services.store, thread, approval_id)
    policy.enforce(
        policy.can_answer_approval(
            access.role,
            is_owner=is_owner(thread, access.user_id),
            thread_writes=thread.write_access,
            relay_allows_write=services.config.features.codex_exec_write,
            decision=decision,
        )
    )
    deciding = services.conversations.deciding
    if approval.status != "pending" or approval.key in deciding:
        raise AppError(ErrorCode.APPROVAL_RESOLVED, f"This approval is already {_word(approval)}.")
    _check_offered(services, approval, decision)
    link = live(services, thread.agent_key)
    deciding.add(approval.key)
    try:
        message = ApprovalDecide(
            request_id=services.conversations.requests.new_id(),
            thread_id=thread.id,
            approval_id=approval.id,
            decision=decision,
            decided_by=access.user_id,
            signed=signed,
        )
        reply = await ask(services, link, message)
    finally:
        deciding.discard(approval.key)
    if reply.approval is not None and reply.approval.id == approval.id:
        upsert_approval(services.store, thread, reply.approval)
    await audit.approval_decided(
        services.audit, approval, decision, actor_of(access, actor), now=services.now()
    )
    await services.store.commit()
    publish_approval(services, approval)
    return approval


def _word(approval: ApprovalRecord) -> str:
    return "being answered" if approval.status == "pending" else approval.status


def _check_offered(services: Services, approval: ApprovalRecord, decision: str) -> None:
    content = services.conversations.content.peek(approval.thread_key)
    asks = content.approvals.get(approval.id) if content is not None else None
    offered = (asks or {}).get("availableDecisions")
    if offered is not None and decision not in offered:  # unknown here: the agent checks
        raise AppError(
            ErrorCode.DECISION_NOT_OFFERED, "That answer is not offered for this approval."
        )
