"""Tasks in motion: submit and dispatch, agent reports, cancel, and what phones are told.

The glue between the HTTP layer, the agent hub and the event bus. Every status an agent
reports is checked: only the agent a task was sent to may report on it, and only forward
moves count (a finished task never becomes running again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import (
    SignedStop,
    TaskAccepted,
    TaskCancel,
    TaskDispatch,
    TaskFinished,
    TaskProgress,
    TaskRejected,
    TaskStarted,
)
from codexrelay.relay import audit
from codexrelay.relay.access import policy
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.agents.hub import LiveAgent
from codexrelay.relay.push import notify as push
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import TERMINAL_STATUSES, AgentRecord, TaskRecord
from codexrelay.relay.tasks import lifecycle
from codexrelay.relay.views import TaskOut

log = logging.getLogger("codexrelay.tasks")

AGENT_GRACE_SEC = 30.0
COMMIT_TRIES = 10
MAX_DIFF_CHARS = 512 * 1024  # R18: the relay caps diffs again, whatever the agent sent


def publish_task(services: Services, task: TaskRecord) -> None:
    """Tell the workspace's phones the task's new metadata; a task that reached its end is
    also pushed to its creator's devices (finished or failed)."""
    services.events.publish(task.workspace_id, "task", {"task": TaskOut.of(task).json_data()})
    if task.status in TERMINAL_STATUSES:
        push.task_settled(services, task)


async def submit(
    services: Services,
    access: WorkspaceAccess,
    request: lifecycle.TaskRequest,
    *,
    actor: audit.Actor | None = None,
) -> TaskRecord:
    """Check, record and dispatch a task right away over the agent's socket (or, when the
    phone asked to wait for an offline agent, leave it queued until the agent connects)."""
    store = services.store
    agent = lifecycle.check_task_request(
        store,
        request,
        workspace_id=access.workspace.id,
        role=access.role,
        features=services.config.features,
        is_online=services.hub.is_online,
        max_prompt_bytes=services.config.max_prompt_bytes,
    )
    now = services.now()
    task = lifecycle.create_task(
        store, request, agent=agent, created_by=access.user_id, now=now, rand=services.rand
    )
    services.details.start(task.id, request.prompt, request.signed, request.sealed)
    lifecycle.prune_tasks(store.tasks, task.workspace_id, services.config.max_tasks_per_workspace)
    # The audit record and the task are both durable before the agent hears of the task;
    # their two writes run side by side.
    await asyncio.gather(
        audit.task_created(
            services.audit, task, actor or {"type": "user", "userId": access.user_id}, now=now
        ),
        services.store.commit(),
    )
    await _dispatch(services, task, request.prompt)
    return task


async def _dispatch(services: Services, task: TaskRecord, prompt: str | None) -> None:
    """Send once. The status is dispatched before the send so a report can never race it.
    A task allowed to wait for its agent stays queued while the agent is away.

    The new status is saved without waiting: the task is already durable as queued, and a
    relay that stops before this write turns every unfinished task into ``interrupted`` at
    start, so the task is never sent again either way (B4)."""
    live = services.hub.get(task.agent_key)
    now = services.now()
    tasks = services.store.tasks
    if live is None and task.queued_until is not None:
        publish_task(services, task)
        return
    if live is not None and not services.store.spend_once("task-dispatch", task.id):
        # Several instances: another one dispatched it a moment ago (its change is on the
        # way here); a task is handed over once (B4).
        return
    if live is None:
        lifecycle.advance(task, "interrupted", now=now)
        task.reason = "agent-offline"
        tasks.save(task)
    elif task.id in live.holds:
        # The agent already holds it (handed over by a relay instance that stopped before
        # saving so): dispatched, and never sent again (B4).
        lifecycle.advance(task, "dispatched", now=now)
        tasks.save(task)
    else:
        lifecycle.advance(task, "dispatched", now=now)
        tasks.save(task)
        # Shown before the send, so the agent's reports always come after it.
        _publish_when_durable(services, task)
        details = services.details
        spec = lifecycle.task_spec(task, prompt, details.signed(task.id), details.sealed(task.id))
        if await live.send(TaskDispatch(task=spec)):
            return
        log.info("task %s could not be handed over", task.id)
        lifecycle.advance(task, "interrupted", now=services.now())
        task.reason = "agent-offline"
        tasks.save(task)
    if task.status in TERMINAL_STATUSES:
        services.details.mark_finished(task.id, services.now())
        audit.task_finished(services.audit, task, now=services.now())
    _publish_when_durable(services, task)


async def cancel(
    services: Services,
    access: WorkspaceAccess,
    task: TaskRecord,
    *,
    actor: audit.Actor | None = None,
    signed: SignedStop | None = None,
) -> TaskRecord:
    """The creator or an admin stops a task; the agent stops its process group. In a
    protected workspace ``signed`` is the phone's device-signed cancel (TRUST.md §4.9)."""
    is_creator = task.created_by == access.user_id
    policy.enforce(policy.can_cancel_task(access.role, is_creator=is_creator))
    if task.status in TERMINAL_STATUSES:
        raise AppError(ErrorCode.TASK_FINISHED, f"This task is already {task.status}.")
    live = services.hub.get(task.agent_key)
    task.cancel_requested = True
    task.cancelled_by = access.user_id
    task.updated_at = services.now()
    services.store.tasks.save(task)
    actor = actor or {"type": "user", "userId": access.user_id}
    await audit.task_cancel_requested(services.audit, task, actor, now=task.updated_at)
    if task.status == "queued" or live is None:
        lifecycle.advance(task, "cancelled", now=services.now())
        services.store.tasks.save(task)
        services.details.mark_finished(task.id, services.now())
        audit.task_finished(services.audit, task, now=services.now())
    else:
        await live.send(TaskCancel(task_id=task.id, signed=signed))
    await services.store.commit()
    publish_task(services, task)
    return task


# ---- agent reports --------------------------------------------------------------------
# A report changes the task in memory at once, in the order the agent sent them; phones
# are told once the change is durable. The agent's message loop never waits on the disk:
# a socket whose messages are not read stops being read altogether, pongs included, and
# the agent would be dropped under load. A crash before the write leaves the task
# non-terminal on disk, which start-up turns into ``interrupted``: never a wrong "completed".


def _publish_when_durable(services: Services, task: TaskRecord) -> None:
    """Commit in the background; publish the task as it is now once that is durable if it
    has reached its end, or right away if not.

    A status that is not an end (``dispatched``, ``running``) is shown before its write:
    it acknowledges nothing, and should the relay stop before the write, start-up turns
    the task into ``interrupted``, a forward move phones are then told of. An end
    (``completed``, ``rejected``...) is shown only once durable, so a phone never sees a
    result the relay could forget, and not at all if the task moved on meanwhile (another
    instance's change, told by its own path: an older state told after it would leave
    phones behind). This keeps a disk write off the path from submit to the phone seeing
    the task run."""
    workspace_id, payload = task.workspace_id, {"task": TaskOut.of(task).json_data()}
    settled = task.status in TERMINAL_STATUSES
    stamp = (task.status, task.updated_at)
    if not settled:
        services.events.publish(workspace_id, "task", payload)

    async def later() -> None:
        for attempt in range(COMMIT_TRIES):
            try:
                await services.store.commit()
                break
            except AppError:
                # The batch goes back to pending: a later write retries it, and phones
                # hear of it once one succeeded (a lost event would never come back).
                log.warning("task %s: report not saved yet; retrying", task.id)
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            return
        if (task.status, task.updated_at) != stamp:
            return
        if settled:
            services.events.publish(workspace_id, "task", payload)
            push.task_settled(services, task)

    job = asyncio.create_task(later())
    services.background.add(job)
    job.add_done_callback(services.background.discard)


def _own_task(services: Services, agent: AgentRecord, task_id: str) -> TaskRecord | None:
    """The task, if this agent is the one it was sent to (else the report is ignored)."""
    task = services.store.tasks.get(task_id)
    if task is None or task.agent_key != agent.key:
        log.warning("agent %s reported on a task that is not its own", agent.key)
        return None
    return task


async def on_accepted(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: TaskAccepted
) -> None:
    """The agent took the task (its checks passed); nothing changes until it starts."""
    _own_task(services, agent, message.task_id)


async def on_rejected(
    services: Services, agent: AgentRecord, live: LiveAgent, message: TaskRejected
) -> None:
    """The agent refused the task, with its reason code."""
    live.holds.discard(message.task_id)
    task = _own_task(services, agent, message.task_id)
    if task is None or not lifecycle.advance(task, "rejected", now=services.now()):
        return
    task.reason = message.reason
    services.store.tasks.save(task)
    services.details.finish(task.id, services.now(), error=message.message or message.reason)
    audit.task_finished(services.audit, task, audit.agent_actor(agent), now=services.now())
    _publish_when_durable(services, task)


async def on_started(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: TaskStarted
) -> None:
    """The task's process is running."""
    task = _own_task(services, agent, message.task_id)
    if task is None or not lifecycle.advance(task, "running", now=services.now()):
        return
    services.store.tasks.save(task)
    _publish_when_durable(services, task)


async def on_progress(
    services: Services, agent: AgentRecord, _live: LiveAgent, message: TaskProgress
) -> None:
    """A step of a running task: kept in memory and streamed to phones."""
    task = _own_task(services, agent, message.task_id)
    if task is None or task.status in TERMINAL_STATUSES:
        return
    event = {"seq": message.seq, **message.event.model_dump(by_alias=True, exclude_none=True)}
    services.details.add_progress(task.id, event)
    if message.codex_session_id and task.codex_session_id != message.codex_session_id:
        # Known early, so a task cut off before its final report can still be continued.
        task.codex_session_id = message.codex_session_id
        services.store.tasks.save(task)
        services.store.touch()
        publish_task(services, task)
    services.events.publish(
        task.workspace_id, "task-progress", {"taskId": task.id, "progress": event}
    )


async def on_finished(
    services: Services, agent: AgentRecord, live: LiveAgent, message: TaskFinished
) -> None:
    """The agent's final report: status, exit code and the texts (memory only)."""
    live.holds.discard(message.task_id)
    task = _own_task(services, agent, message.task_id)
    if task is None or not lifecycle.settle_final_report(task, message.status, now=services.now()):
        return
    task.exit_code = message.exit_code
    task.codex_session_id = message.codex_session_id or task.codex_session_id
    task.redactions = message.redactions
    services.store.tasks.save(task)
    diff = message.diff_text
    truncated = message.diff_truncated
    if diff is not None and len(diff) > MAX_DIFF_CHARS:
        diff, truncated = diff[:MAX_DIFF_CHARS], True
    services.details.finish(
        task.id,
        services.now(),
        output_tail=message.output_tail,
        final_message=message.final_message,
        diff_text=diff,
        diff_truncated=truncated,
        error=message.error,
    )
    tasks = services.store.tasks
    lifecycle.prune_tasks(tasks, task.workspace_id, services.config.max_tasks_per_workspace)
    audit.task_finished(services.audit, task, audit.agent_actor(agent), now=services.now())
    _publish_when_durable(services, task)


# ---- connections and start-up ---------------------------------------------------------


async def settle(services: Services, changed: list[TaskRecord]) -> None:
    """Tasks the relay ended itself: audited, saved, then told to phones."""
    if not changed:
        return
    now = services.now()
    for task in changed:
        log.info("task %s is now %s (%s)", task.id, task.status, task.reason)
        services.details.mark_finished(task.id, now)
        audit.task_finished(services.audit, task, now=now)
    await services.store.commit()
    for task in changed:
        publish_task(services, task)


async def on_agent_connected(services: Services, agent: AgentRecord, running: list[str]) -> None:
    """After a hello: the agent's in-flight tasks it no longer runs are interrupted."""
    pending = services.agent_grace.pop(agent.key, None)
    if pending is not None:
        pending.cancel()
    tasks = services.store.tasks
    adopted = lifecycle.adopt_held(tasks, agent.key, held=set(running), now=services.now())
    # In flight but unknown to the agent: it restarted, or (several instances) the
    # instance it was connected to stopped with the hand-over.
    moved = services.hub.moved_from_lost_instance(agent.key)
    changed = lifecycle.interrupt_agent_tasks(
        tasks,
        agent.key,
        keep=set(running),
        now=services.now(),
        reason=lifecycle.HANDOVER_LOST if moved else "agent-restarted",
    )
    await settle(services, changed)
    if adopted:
        await services.store.commit()
        for task in adopted:
            publish_task(services, task)
    await send_queued(services, agent)


async def send_queued(services: Services, agent: AgentRecord) -> None:
    """Tasks that waited for this agent go now, oldest first, each at most once (B4); one
    whose wait ran out expires instead."""
    tasks = services.store.tasks
    await settle(services, lifecycle.expire_queued(tasks, now=services.now()))
    for task in tasks.unfinished(agent.key):
        if task.status != "queued":
            continue
        details = services.details.get(task.id, services.now())
        await _dispatch(services, task, details.prompt if details else None)


def expire_waiting(services: Services) -> None:
    """Once a minute: tasks whose agent did not come back in time expire, visibly."""
    now = services.now()
    changed = lifecycle.expire_queued(services.store.tasks, now=now)
    for task in changed:
        services.details.mark_finished(task.id, now)
        audit.task_finished(services.audit, task, now=now)
        publish_task(services, task)
    if changed:
        services.store.touch()


async def on_agent_gone(services: Services, agent: AgentRecord) -> None:
    """The connection ended: unless the agent is back within the grace period, its
    in-flight tasks are interrupted."""
    pending = services.agent_grace.pop(agent.key, None)
    if pending is not None:
        pending.cancel()

    async def after_grace() -> None:
        await asyncio.sleep(AGENT_GRACE_SEC)
        services.agent_grace.pop(agent.key, None)
        if services.hub.is_online(agent.key):
            return
        changed = lifecycle.interrupt_agent_tasks(
            services.store.tasks,
            agent.key,
            keep=set(),
            now=services.now(),
            reason=lifecycle.AGENT_VANISHED,
        )
        await settle(services, changed)

    services.agent_grace[agent.key] = asyncio.create_task(after_grace())


def interrupt_unfinished(services: Services) -> None:
    """At start-up: every task that was in flight when the relay stopped is interrupted."""
    now = services.now()
    changed = lifecycle.interrupt_all(services.store.tasks, now=now, reason="relay-restarted")
    for task in changed:
        audit.task_finished(services.audit, task, now=now)
        push.task_settled(services, task)
    if changed:
        log.info("%d tasks were in flight at the last stop and are now interrupted", len(changed))


async def finish_background(services: Services) -> None:
    """At shutdown: reports still being saved are saved (and published) first."""
    while services.background:
        await asyncio.gather(*services.background, return_exceptions=True)


async def stop_grace_timers(services: Services) -> None:
    """At shutdown: no grace timer outlives the relay."""
    for job in services.agent_grace.values():
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    services.agent_grace.clear()
