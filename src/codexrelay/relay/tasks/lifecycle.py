"""Task rules on the relay (R09, R10, R14, R17, B4): validation, transitions, pruning.

Plain functions over the ``Store``. Only metadata lives here; prompt and results are held by
``taskdetails.DetailsStore`` in memory and never reach the relay's disk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from codexrelay.crypto import TokenSource, new_id
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import UUID_PATTERN, SignedTask, TaskKind, TaskSpec
from codexrelay.protocol_sealed import SealedTask
from codexrelay.relay.access import policy
from codexrelay.relay.agents import pairing
from codexrelay.relay.config import RelayFeatures
from codexrelay.relay.storage.records import (
    TERMINAL_STATUSES,
    AgentRecord,
    Role,
    TaskRecord,
    TaskStatus,
)
from codexrelay.relay.storage.repositories import Store, Tasks

MAX_CWD_CHARS = 1024
AGENT_VANISHED = "agent-vanished"
AGENT_DID_NOT_RETURN = "agent-did-not-return"
# Several relay instances: the instance that held a task's hand-over stopped before the
# agent received it (the task never ran; its prompt may have been only in that process).
HANDOVER_LOST = "relay-instance-lost"
MAX_QUEUED_PER_AGENT = 50
QUEUE_TTL_MIN_SEC, QUEUE_TTL_MAX_SEC = 60, 86400

# Forward moves only: a finished task never runs again (B4) and never changes state.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"dispatched", "cancelled", "interrupted", "failed", "expired"}),
    "dispatched": frozenset(
        {"running", "rejected", "completed", "failed", "cancelled", "interrupted"}
    ),
    "running": frozenset({"completed", "failed", "cancelled", "interrupted"}),
}

FEATURE_OF: dict[str, str] = {
    "codex_exec": "codex_exec",
    "run_action": "run_action",
    "read_log": "read_log",
}
AGENT_FLAG_OF: dict[str, str] = {
    "codex_exec": "codexExec",
    "run_action": "runAction",
    "read_log": "readLog",
}
TYPE_WORDS = {"codex_exec": "Codex tasks", "run_action": "actions", "read_log": "log reads"}


@dataclass(frozen=True)
class TaskRequest:
    """What a phone asked for, already shape-checked by the API model."""

    agent_id: str
    type: TaskKind
    prompt: str | None = None
    cwd: str | None = None
    write_access: bool = False
    resume_session_id: str | None = None
    action_id: str | None = None
    log_source_id: str | None = None
    # A protected workspace's signed task (TRUST.md §4.5): its id is the statement's, the
    # signed request travels to the agent unchanged, and the role rule is the log's policy,
    # which the caller has applied already (``codexrelay.relay.trust.signed``).
    task_id: str | None = None
    signed: SignedTask | None = None
    # A sealed task (TRUST.md §4.5): the content is in the envelope, out of the relay's sight.
    sealed: SealedTask | None = None
    role_checked: bool = False
    # Wait this long for an offline agent instead of refusing with agent-offline.
    queue_ttl_sec: int | None = None


def _invalid(message: str, status: int = 400) -> AppError:
    return AppError(ErrorCode.INVALID_REQUEST, message, status=status)


def check_cwd(cwd: str | None) -> str | None:
    """A relative path without ``..`` (the agent re-checks after resolving symlinks)."""
    if cwd is None or cwd in {"", "."}:
        return None
    bad = (
        cwd.startswith(("/", "~"))
        or "\x00" in cwd
        or "\\" in cwd
        or len(cwd) > MAX_CWD_CHARS
        or any(part == ".." for part in cwd.split("/"))
    )
    if bad:
        raise AppError(
            ErrorCode.INVALID_CWD,
            "The working directory must be a path inside the agent's workspace, like src/app.",
        )
    return cwd.strip("/")


def _check_shape(request: TaskRequest, max_prompt_bytes: int) -> None:
    """Each type takes its own fields and nothing else (a sealed task's are sealed)."""
    if request.sealed is not None:
        if request.write_access and request.type != "codex_exec":
            raise _invalid("Only Codex tasks have a write mode.", 422)
        return
    if request.type == "codex_exec":
        if not request.prompt or not request.prompt.strip():
            raise _invalid("A Codex task needs a prompt.", 422)
        if len(request.prompt.encode("utf-8")) > max_prompt_bytes:
            raise AppError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"The prompt is larger than {max_prompt_bytes // 1024} KiB.",
            )
        if request.resume_session_id is not None and not re.fullmatch(
            UUID_PATTERN, request.resume_session_id
        ):
            raise _invalid("resumeSessionId must be a canonical lower-case UUID.")
        if request.action_id or request.log_source_id:
            raise _invalid("A Codex task takes no actionId or logSourceId.", 422)
        return
    if request.prompt is not None or request.resume_session_id is not None:
        raise _invalid("Only Codex tasks take a prompt or resumeSessionId.", 422)
    if request.write_access:
        raise _invalid("Only Codex tasks have a write mode.", 422)
    if request.type == "run_action" and (not request.action_id or request.log_source_id):
        raise _invalid("An action task needs an actionId (and no logSourceId).", 422)
    if request.type == "read_log" and (not request.log_source_id or request.action_id):
        raise _invalid("A log task needs a logSourceId (and no actionId).", 422)


def check_task_request(
    store: Store,
    request: TaskRequest,
    *,
    workspace_id: str,
    role: Role,
    features: RelayFeatures,
    is_online: Callable[[str], bool],
    max_prompt_bytes: int,
) -> AgentRecord:
    """Every relay-side check, each with its API.md error; returns the target agent.

    ``is_online`` answers for an agent key whether its socket is connected.
    """
    _check_shape(request, max_prompt_bytes)
    if not request.role_checked:
        policy.enforce(policy.can_submit_task(role, write_access=request.write_access))
    if not getattr(features, FEATURE_OF[request.type]):
        raise AppError(
            ErrorCode.FEATURE_DISABLED, f"{TYPE_WORDS[request.type]} are turned off on the relay."
        )
    agent = pairing.find_agent(store, workspace_id, request.agent_id)
    if agent is None:
        raise AppError(ErrorCode.AGENT_NOT_AVAILABLE, "That agent is revoked or unknown.")
    if not agent.features.get(AGENT_FLAG_OF[request.type]):
        raise AppError(
            ErrorCode.FEATURE_DISABLED, f"This agent does not allow {TYPE_WORDS[request.type]}."
        )
    if request.write_access:
        decision = policy.can_use_write_mode(
            relay_allows=features.codex_exec_write,
            agent_allows=bool(agent.features.get("codexExecWrite")),
        )
        policy.enforce(decision)
    if not is_online(agent.key):
        _check_can_wait(store, agent, request)
    if request.action_id is not None and request.action_id not in {a.id for a in agent.actions}:
        raise AppError(ErrorCode.UNKNOWN_ACTION, "That agent has no such action.")
    if request.log_source_id is not None and request.log_source_id not in {
        s.id for s in agent.log_sources
    }:
        raise AppError(ErrorCode.UNKNOWN_LOG_SOURCE, "That agent has no such log source.")
    return agent


def _check_can_wait(store: Store, agent: AgentRecord, request: TaskRequest) -> None:
    """An offline agent: refuse, unless the phone asked to wait and the queue has room."""
    if request.queue_ttl_sec is None:
        raise AppError(ErrorCode.AGENT_OFFLINE, "That agent is not connected right now.")
    waiting = sum(1 for t in store.tasks.unfinished(agent.key) if t.status == "queued")
    if waiting >= MAX_QUEUED_PER_AGENT:
        raise AppError(
            ErrorCode.QUEUE_FULL,
            f"{MAX_QUEUED_PER_AGENT} tasks are already waiting for that agent.",
        )


def create_task(
    store: Store,
    request: TaskRequest,
    *,
    agent: AgentRecord,
    created_by: str,
    now: datetime,
    rand: TokenSource,
) -> TaskRecord:
    """Record a queued task (metadata only, R10)."""
    task = TaskRecord(
        id=request.task_id or new_id("tsk", rand),
        workspace_id=agent.workspace_id,
        agent_id=agent.agent_id,
        agent_key=agent.key,
        type=request.type,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        write_access=request.write_access,
        resume_session_id=request.resume_session_id,
        action_id=request.action_id,
        log_source_id=request.log_source_id,
        cwd=check_cwd(request.cwd),
        sealed=request.sealed is not None,
        queued_until=(
            now + timedelta(seconds=request.queue_ttl_sec)
            if request.queue_ttl_sec is not None
            else None
        ),
    )
    store.tasks.add(task)
    return task


def task_spec(
    task: TaskRecord,
    prompt: str | None,
    signed: SignedTask | None = None,
    sealed: SealedTask | None = None,
) -> TaskSpec:
    """What the agent receives for ``task`` (with the phone's signed request or sealed
    envelope, if any)."""
    return TaskSpec(
        signed=signed,
        sealed=sealed,
        id=task.id,
        type=task.type,
        prompt=prompt,
        cwd=task.cwd,
        write_access=task.write_access,
        resume_session_id=task.resume_session_id,
        action_id=task.action_id,
        log_source_id=task.log_source_id,
    )


def advance(task: TaskRecord, status: TaskStatus, *, now: datetime) -> bool:
    """Move ``task`` forward to ``status``; False (and no change) for any other move."""
    if status not in TRANSITIONS.get(task.status, frozenset()):
        return False
    task.status = status
    task.updated_at = now
    if status == "running" and task.started_at is None:
        task.started_at = now
    if status in TERMINAL_STATUSES:
        task.finished_at = now
    return True


def settle_final_report(task: TaskRecord, status: TaskStatus, *, now: datetime) -> bool:
    """Apply an agent's own final report on its task.

    A forward move as usual; and one correction: a task the relay marked ``interrupted``
    only because its agent stayed away past the grace period takes the status the agent
    reports when it comes back (the agent ran it, so its word is the truth). Never a
    non-terminal status, so a finished task still never runs again (B4).
    """
    late = task.status == "interrupted" and task.reason == AGENT_VANISHED
    if late and status in TERMINAL_STATUSES and status != "interrupted":
        task.status = status
        task.reason = None
        task.updated_at = now
        task.finished_at = now
        return True
    return advance(task, status, now=now)


def interrupt_all(tasks: Tasks, *, now: datetime, reason: str) -> list[TaskRecord]:
    """Every non-terminal task becomes ``interrupted`` (relay start-up)."""
    changed = []
    for task in tasks.unfinished():
        if advance(task, "interrupted", now=now):
            task.reason = reason
            tasks.save(task)
            changed.append(task)
    return changed


def interrupt_agent_tasks(
    tasks: Tasks, agent_key: str, *, keep: set[str], now: datetime, reason: str
) -> list[TaskRecord]:
    """An agent's in-flight tasks it no longer knows about become ``interrupted``."""
    changed = []
    for task in tasks.unfinished(agent_key):
        if (
            task.status in {"dispatched", "running"}
            and task.id not in keep
            and advance(task, "interrupted", now=now)
        ):
            task.reason = reason
            tasks.save(task)
            changed.append(task)
    return changed


def adopt_held(tasks: Tasks, agent_key: str, *, held: set[str], now: datetime) -> list[TaskRecord]:
    """Queued tasks the agent says it holds were handed over by a relay instance that
    stopped before it saved ``dispatched``: they are dispatched (never sent again), so the
    agent's reports on them count."""
    adopted = []
    for task_id in held:
        task = tasks.get(task_id)  # the database's answer if this instance has no copy yet
        if (
            task is not None
            and task.agent_key == agent_key
            and task.status == "queued"
            and advance(task, "dispatched", now=now)
        ):
            tasks.save(task)
            adopted.append(task)
    return adopted


def expire_queued(tasks: Tasks, *, now: datetime) -> list[TaskRecord]:
    """Queued tasks whose wait is over become ``expired`` (their agent did not return)."""
    changed = []
    for task in tasks.unfinished():
        if (
            task.status == "queued"
            and task.queued_until is not None
            and task.queued_until <= now
            and advance(task, "expired", now=now)
        ):
            task.reason = AGENT_DID_NOT_RETURN
            tasks.save(task)
            changed.append(task)
    return changed


def get_task(tasks: Tasks, workspace_id: str, task_id: str) -> TaskRecord:
    """A task of this workspace, or 404 (R04)."""
    task = tasks.get(task_id)
    if task is None or task.workspace_id != workspace_id:
        raise AppError(ErrorCode.NOT_FOUND, "No such task.")
    return task


def prune_tasks(tasks: Tasks, workspace_id: str, keep: int) -> list[str]:
    """Drop the oldest finished tasks beyond ``keep`` per workspace (0: no count limit)."""
    excess = tasks.count_of_workspace(workspace_id) - keep if keep else 0
    if excess <= 0:
        return []
    doomed = tasks.oldest_finished(workspace_id, excess)
    for task in doomed:
        tasks.remove(task)
    return [t.id for t in doomed]


def prune_finished_before(tasks: Tasks, cutoff: datetime, limit: int) -> list[str]:
    """Retention: drop up to ``limit`` tasks that finished before ``cutoff``, oldest first."""
    doomed = tasks.finished_before(cutoff, limit)
    for task in doomed:
        tasks.remove(task)
    return [t.id for t in doomed]
