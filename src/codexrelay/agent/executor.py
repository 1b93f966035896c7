"""Accepting, queueing, running and reporting tasks, under the agent's own rules.

The relay is not trusted to have checked anything (R09, R15, A4): every task is checked
again here against this machine's config before it is accepted — feature flags, action
and log ids, the working directory (after resolving symlinks), write-mode rules (R14,
R17), resume ids against the local session catalog, and the ledger of task ids already
accepted (B4). Everything sent back passes through the redaction hook first (B3).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from codexrelay.agent.config import AgentConfig, resolve_inside
from codexrelay.agent.gate import TrustGate
from codexrelay.agent.ledger import TaskLedger
from codexrelay.agent.redaction import Redactor, StreamRedactor
from codexrelay.agent.runners.actions import ActionRunner
from codexrelay.agent.runners.base import Runner, TaskOutcome, TaskRefusedError
from codexrelay.agent.runners.codex import CodexExecRunner
from codexrelay.agent.runners.logs import LogRunner
from codexrelay.agent.sealing import OutputSealer
from codexrelay.agent.verify import Accepted
from codexrelay.e2e.sealed import TEXT_FIELDS, text_pieces
from codexrelay.protocol import (
    UUID_PATTERN,
    FileChangeInfo,
    Message,
    ProgressEvent,
    RefusalReason,
    TaskAccepted,
    TaskFinished,
    TaskKind,
    TaskProgress,
    TaskRejected,
    TaskSpec,
    TaskStarted,
)
from codexrelay.protocol_sealed import SealedEnvelope

log = logging.getLogger(__name__)

Send = Callable[[Message], Awaitable[None]]
SessionIds = Callable[[], Container[str]]
Redact = Callable[[str], tuple[str, int]]
UUID_RE = re.compile(UUID_PATTERN)
DEFAULT_MAX_QUEUED = 100
# Protocol field limits (characters); redaction may lengthen text, so clip after it.
TEXT_LIMIT, COMMAND_LIMIT, ERROR_LIMIT = 65536, 4096, 4000
FINAL_LIMIT, TAIL_LIMIT = 262144, 1 << 20


def no_sessions() -> Container[str]:
    """The default catalog: nothing can be resumed."""
    return frozenset()


def no_redaction(text: str) -> tuple[str, int]:
    """The default redaction hook: text unchanged, nothing counted."""
    return text, 0


def default_runners(config: AgentConfig, *, grace_sec: float = 5.0) -> dict[TaskKind, Runner]:
    """One runner per task type; a second Codex runner (app-server) can replace codex_exec."""
    return {
        "codex_exec": CodexExecRunner(config, grace_sec=grace_sec),
        "run_action": ActionRunner(config, grace_sec=grace_sec),
        "read_log": LogRunner(config),
    }


def check_cwd(root: Path, cwd: str | None) -> Path:
    """The directory ``cwd`` names inside ``root`` (symlinks resolved), or a refusal."""
    try:
        resolved = resolve_inside(root, cwd or ".", strict=True)
        usable = resolved.is_dir()
    except ValueError:
        raise TaskRefusedError(
            RefusalReason.CWD_OUTSIDE_WORKSPACE, "the working directory is outside workspaceRoot"
        ) from None
    except (OSError, RuntimeError):
        # A name too long, or a symlink loop (pathlib raises RuntimeError): a refusal,
        # never an error that drops the connection or stops the agent (R15).
        usable = False
    if not usable:
        raise TaskRefusedError(RefusalReason.CWD_NOT_FOUND, "the working directory does not exist")
    return resolved


@dataclass
class _Task:
    """One accepted task while it waits or runs."""

    spec: TaskSpec
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    seq: int = 0
    redactions: int = 0
    job: asyncio.Task[None] | None = None
    # Streamed output passes through one stream redactor per task, so a secret split
    # across two chunks is still caught (B3).
    stream: StreamRedactor | None = None
    # The Codex session, sent once with the next progress event after it becomes known.
    codex_session_id: str | None = None
    session_unsent: bool = False
    # A sealed task's reports leave as envelopes only the readers can open (TRUST.md §4.7).
    sealer: OutputSealer | None = None
    keeping: asyncio.Task[None] | None = None  # the last key keep scheduled for this task

    def progress(self, event: ProgressEvent) -> TaskProgress:
        """The next progress message, carrying the Codex session id the first time."""
        self.seq += 1
        session, self.session_unsent = (
            (self.codex_session_id if self.session_unsent else None),
            False,
        )
        return TaskProgress(
            task_id=self.spec.id, seq=self.seq, event=event, codex_session_id=session
        )


class Executor:
    """Checks, queues (``maxConcurrentTasks`` at once), runs and reports tasks."""

    def __init__(
        self,
        config: AgentConfig,
        send: Send,
        *,
        session_ids: SessionIds = no_sessions,
        redact: Redact = no_redaction,
        redactor: Redactor | None = None,
        ledger: TaskLedger | None = None,
        runners: Mapping[TaskKind, Runner] | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        gate: TrustGate | None = None,
    ) -> None:
        self.config = config
        self._send_raw = send
        self._session_ids = session_ids
        self._redactor = redactor
        self._redact = redactor.redact if redactor is not None else redact
        self.ledger = ledger or TaskLedger.open(config.state_path)
        self.runners = dict(runners or default_runners(config))
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(config.max_concurrent_tasks)
        self._tasks: dict[str, _Task] = {}
        self._keeping: set[asyncio.Task[None]] = set()
        # A protected workspace's checks (TRUST.md §4.6) run before this agent's own.
        self.gate = gate

    # ---- public API -------------------------------------------------------------------

    async def handle(self, spec: TaskSpec) -> bool:
        """Check ``spec``; reject it, or accept it and start it in the background. Returns
        once it is accepted (its id durable) or rejected."""
        return await (await self.take(spec))

    async def take(self, spec: TaskSpec) -> asyncio.Future[bool]:
        """Check ``spec`` and, unless refused, hold it as this agent's task at once (a cancel
        or a repeat that follows finds it). Does not wait for the ledger's fsync: the task's
        own job does, before it is reported accepted and before it runs, so the message
        loop goes on to the next message and ids arriving together share one fsync. The
        future says whether it was accepted."""
        accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        try:
            admitted = await self.gate.admit(spec) if self.gate is not None else None
            if admitted is not None and admitted.sealed is not None:
                spec = admitted.sealed.spec  # the task as signed inside the envelope
            try:
                self.check(spec)
            except TaskRefusedError as exc:
                if self.gate is not None:
                    self.gate.refused(spec, exc)
                raise
        except TaskRefusedError as exc:
            log.info("rejected task %s: %s", spec.id, exc.reason)
            await self._send(TaskRejected(task_id=spec.id, reason=exc.reason, message=exc.message))
            accepted.set_result(False)
            return accepted
        durable: asyncio.Future[None] | None = None
        if admitted is None:
            durable = self.ledger.reserve(spec.id)  # never None: check() refused repeats
            refusal = None
        else:
            refusal = self._record_start(spec, admitted)
        if refusal is not None:
            reason, message = refusal
            await self._send(TaskRejected(task_id=spec.id, reason=reason, message=message))
            accepted.set_result(False)
            return accepted
        task = _Task(spec)
        if admitted is not None and self.gate is not None:
            task.sealer = self.gate.output_sealer(admitted)
        self._tasks[spec.id] = task
        task.job = asyncio.create_task(self._run(task, durable, accepted), name=f"task-{spec.id}")
        if task.sealer is not None and self.gate is not None and admitted is not None:
            # Kept for later readers off the loop and off the dispatch path (one fsync).
            gate = self.gate
            self._keep(task, lambda: gate.keep_key(admitted))
        return accepted

    def _keep(self, task: _Task, keep: Callable[[], None]) -> None:
        """Run a blocking key keep off the loop, after the task's earlier ones (the newest
        key must be the one kept last)."""
        before = task.keeping

        async def run() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            await asyncio.to_thread(keep)

        keeping = task.keeping = asyncio.create_task(run())
        self._keeping.add(keeping)
        keeping.add_done_callback(self._keeping.discard)

    def _record_start(self, spec: TaskSpec, admitted: Accepted) -> tuple[RefusalReason, str] | None:
        """What must be durable before a signed task starts: its id in the ledger (B4, its
        line need not be fsynced) and its counters and audit record (fsynced). A refusal
        if either cannot be written."""
        try:
            self.ledger.record(spec.id, admitted.keep_until, sync=False)
        except OSError:
            log.exception("cannot record task %s in the ledger", spec.id)
            return RefusalReason.LEDGER_UNAVAILABLE, "the agent cannot record this task id"
        if self.gate is None:
            return None
        try:
            self.gate.accepted(spec, admitted)
        except OSError:
            log.exception("cannot record task %s in the audit log", spec.id)
            return RefusalReason.AUDIT_UNAVAILABLE, "the agent cannot write its audit log"
        return None

    async def _accept(self, task: _Task, durable: asyncio.Future[None] | None) -> bool:
        """Wait until the task's id is durable (B4), then report it accepted; a task whose
        id cannot be written is refused and never runs."""
        if durable is not None:
            try:
                await durable
            except OSError:
                log.exception("cannot record task %s in the ledger", task.spec.id)
                await self._send(
                    TaskRejected(
                        task_id=task.spec.id,
                        reason=RefusalReason.LEDGER_UNAVAILABLE,
                        message="the agent cannot record this task id",
                    )
                )
                return False
        await self._send(TaskAccepted(task_id=task.spec.id))
        return True

    def cancel(self, task_id: str) -> bool:
        """Stop a queued or running task; it finishes as ``cancelled``. False if unknown."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        task.cancelled.set()
        return True

    def running_ids(self) -> list[str]:
        """Ids of accepted tasks not finished yet (queued or running), for ``hello``."""
        return list(self._tasks)

    async def join(self) -> None:
        """Wait until every accepted task has finished and been reported."""
        while jobs := [task.job for task in self._tasks.values() if task.job is not None]:
            await asyncio.gather(*jobs, return_exceptions=True)

    async def shutdown(self) -> None:
        """Cancel everything (processes are stopped as groups) and wait for the reports."""
        for task in self._tasks.values():
            task.cancelled.set()
        await self.join()

    # ---- the checklist (R09, R14, R15, R17, A4, B4) -------------------------------------

    def check(self, spec: TaskSpec) -> None:
        """Raise ``TaskRefusedError`` unless this agent's config allows ``spec`` right now."""
        if spec.id in self._tasks or spec.id in self.ledger:
            raise TaskRefusedError(
                RefusalReason.DUPLICATE_TASK, "this task id was already accepted"
            )
        if len(self._tasks) >= self.config.max_concurrent_tasks + self.max_queued:
            raise TaskRefusedError(
                RefusalReason.AGENT_BUSY, "too many tasks are waiting on this agent"
            )
        if spec.type == "codex_exec":
            self._check_codex(spec)
        elif spec.type == "run_action":
            self._check_action(spec)
        else:
            self._check_log(spec)

    def _check_codex(self, spec: TaskSpec) -> None:
        features, codex = self.config.features, self.config.codex
        if not features.codex_exec:
            raise TaskRefusedError(
                RefusalReason.FEATURE_DISABLED, "codexExec is disabled on this agent"
            )
        if not (spec.prompt or "").strip():
            raise TaskRefusedError(RefusalReason.INVALID_TASK, "a Codex task needs a prompt")
        self._check_cwd(spec.cwd)
        if spec.write_access and not features.codex_exec_write:  # R17, A4
            raise TaskRefusedError(
                RefusalReason.WRITE_MODE_DISABLED, "write mode is off on this agent"
            )
        if spec.write_access and spec.resume_session_id and not codex.allow_write_on_resume:
            raise TaskRefusedError(  # R14
                RefusalReason.WRITE_ON_RESUME_DISABLED,
                "this agent does not allow write mode on resume",
            )
        if spec.resume_session_id is not None:
            session = spec.resume_session_id
            if not UUID_RE.match(session) or session not in self._session_ids():
                raise TaskRefusedError(
                    RefusalReason.UNKNOWN_SESSION, "no such Codex session under this workspace"
                )

    def _check_cwd(self, cwd: str | None) -> None:
        check_cwd(self.config.root, cwd)

    def _check_action(self, spec: TaskSpec) -> None:
        if not self.config.features.run_action:
            raise TaskRefusedError(
                RefusalReason.FEATURE_DISABLED, "runAction is disabled on this agent"
            )
        if spec.action_id not in self.config.actions:  # only listed ids exist (O6, R15)
            raise TaskRefusedError(RefusalReason.UNKNOWN_ACTION, "this agent has no such action")

    def _check_log(self, spec: TaskSpec) -> None:
        if not self.config.features.read_log:
            raise TaskRefusedError(
                RefusalReason.FEATURE_DISABLED, "readLog is disabled on this agent"
            )
        if spec.log_source_id not in self.config.log_sources:
            raise TaskRefusedError(
                RefusalReason.UNKNOWN_LOG_SOURCE, "this agent has no such log source"
            )

    # ---- running ------------------------------------------------------------------------

    async def _run(
        self, task: _Task, durable: asyncio.Future[None] | None, accepted: asyncio.Future[bool]
    ) -> None:
        try:
            ok = await self._accept(task, durable)
            if not accepted.done():
                accepted.set_result(ok)
            if not ok:
                return
            if await self._wait_for_slot(task):
                try:
                    outcome = await self._execute(task)
                finally:
                    self._slots.release()
            else:
                outcome = TaskOutcome(status="cancelled", error="cancelled before it started")
            await self._finish(task, outcome)
        finally:
            self._tasks.pop(task.spec.id, None)
            if not accepted.done():
                accepted.set_result(False)

    async def _wait_for_slot(self, task: _Task) -> bool:
        """Queue for a slot; False if the task is cancelled while it waits."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        cancelled = asyncio.ensure_future(task.cancelled.wait())
        try:
            await asyncio.wait({acquire, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            acquire.cancel()
            await asyncio.gather(acquire, cancelled, return_exceptions=True)
        holding = acquire.done() and not acquire.cancelled()
        if holding and task.cancelled.is_set():
            self._slots.release()
            return False
        return holding

    async def _execute(self, task: _Task) -> TaskOutcome:
        spec = task.spec
        await self._send(TaskStarted(task_id=spec.id))

        async def emit(event: ProgressEvent, *, codex_session_id: str | None = None) -> None:
            if codex_session_id and codex_session_id != task.codex_session_id:
                task.codex_session_id, task.session_unsent = codex_session_id, True
            await self._progress(task, event)

        try:
            return await self.runners[spec.type].run(spec, emit=emit, cancelled=task.cancelled)
        except TaskRefusedError as exc:
            return TaskOutcome(status="failed", error=exc.message)
        except Exception:
            log.exception("task %s failed inside the agent", spec.id)
            return TaskOutcome(status="failed", error="the agent failed to run this task")

    async def _progress(self, task: _Task, event: ProgressEvent) -> None:
        if event.kind == "output" and self._redactor is not None:
            await self._stream_output(task, event.text)
            return
        text = self._clean(task, event.text, TEXT_LIMIT)
        command = None if event.command is None else self._clean(task, event.command, COMMAND_LIMIT)
        changes = [
            FileChangeInfo(path=self._clean(task, change.path, 4096), kind=change.kind)
            for change in event.changes
        ]
        clean = ProgressEvent(
            kind=event.kind,
            text=text,
            command=command,
            exit_code=event.exit_code,
            status=event.status,
            changes=changes,
        )
        await self._report(task, task.progress(clean))

    async def _stream_output(self, task: _Task, chunk: str, *, final: bool = False) -> None:
        """Feed streamed output through the task's stream redactor and send what is safe."""
        if task.stream is None:
            if self._redactor is None or final:
                return
            task.stream = self._redactor.stream()
        text, count = task.stream.flush() if final else task.stream.feed(chunk)
        task.redactions += count
        if not text:
            return
        for start in range(0, len(text), TEXT_LIMIT):
            piece = ProgressEvent(kind="output", text=text[start : start + TEXT_LIMIT])
            await self._report(task, task.progress(piece))

    async def _finish(self, task: _Task, outcome: TaskOutcome) -> None:
        await self._stream_output(task, "", final=True)
        diff = None
        truncated = outcome.diff_truncated
        if outcome.diff_text is not None:
            diff = self._clean(task, outcome.diff_text, TAIL_LIMIT)
            truncated = truncated or len(diff) < len(outcome.diff_text)
        final = outcome.final_message
        error = outcome.error
        message = TaskFinished(
            task_id=task.spec.id,
            status=outcome.status,
            exit_code=outcome.exit_code,
            final_message=None if final is None else self._clean(task, final, FINAL_LIMIT),
            output_tail=self._clean(task, outcome.output_tail, TAIL_LIMIT, keep_tail=True),
            diff_text=diff,
            diff_truncated=truncated,
            error=None if error is None else self._clean(task, error, ERROR_LIMIT),
            codex_session_id=outcome.codex_session_id,
            redactions=task.redactions,
        )
        log.info("task %s finished: %s", task.spec.id, outcome.status)
        if self.gate is not None:
            self.gate.finished(message)
        await self._report_final(task, message)

    async def _report(self, task: _Task, message: TaskProgress) -> None:
        """A progress step: in the clear, or sealed as a ``task.out`` envelope."""
        if task.sealer is None:
            await self._send(message)
            return
        step = {"seq": message.seq, **message.event.model_dump(by_alias=True, exclude_none=True)}
        if message.codex_session_id:
            step["codexSessionId"] = message.codex_session_id
        await self._sealed(task, task.sealer.out({"progress": step}))

    async def _report_final(self, task: _Task, message: TaskFinished) -> None:
        """The final report; a sealed task's texts, exit code and error go sealed, and the
        relay hears only the status."""
        sealer = task.sealer
        if sealer is None:
            await self._send(message)
            return
        report = message.model_dump(by_alias=True, exclude_none=True)
        for name in TEXT_FIELDS:
            for piece in text_pieces(name, report.get(name)):
                await self._sealed(task, sealer.out(piece))
        kept = ("status", "exitCode", "error", "diffTruncated", "codexSessionId", "redactions")
        await self._sealed(task, sealer.done({k: report[k] for k in kept if k in report}))
        await self._send(TaskFinished(task_id=message.task_id, status=message.status))

    async def _sealed(self, task: _Task, envelope: str) -> None:
        sealer, gate = task.sealer, self.gate
        if sealer is not None and gate is not None and sealer.fresh_keys:
            # A reader left while the task ran: its new key is kept for later readers.
            fresh, sealer.fresh_keys = sealer.fresh_keys, []
            for key in fresh:
                self._keep(task, functools.partial(gate.keep_task_key, task.spec.id, key))
        await self._send(SealedEnvelope(task_id=task.spec.id, envelope=envelope))

    def _clean(self, task: _Task, text: str, limit: int, *, keep_tail: bool = False) -> str:
        """Redact ``text`` (counting what was hidden) and clip it to a protocol limit."""
        clean, count = self._redact(text)
        task.redactions += count
        if len(clean) <= limit:
            return clean
        return clean[-limit:] if keep_tail else clean[:limit]

    async def _send(self, message: Message) -> None:
        """Send, never letting a dropped connection take a running task down with it."""
        try:
            await self._send_raw(message)
        except Exception:  # noqa: BLE001 - any send failure: the connection layer reconnects
            log.warning("could not send %s to the relay", type(message).__name__)
