"""Predefined actions (R15): an argv list from the agent's config, never a shell.

The relay names an action id and nothing else; argv, working directory, environment and
timeout all come from this machine's config. The process gets a minimal environment, so
the agent's own secrets (API keys, tokens) never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from codexrelay.agent.config import ActionConfig, AgentConfig, resolve_inside
from codexrelay.agent.runners.base import Emit, TaskOutcome
from codexrelay.agent.runners.process import (
    Ending,
    finish_readers,
    kill_now,
    minimal_env,
    spawn,
    stream_output,
    supervise,
)
from codexrelay.agent.runners.text import TailBuffer
from codexrelay.protocol import ProgressEvent, TaskSpec

DEFAULT_GRACE_SEC = 5.0


class ActionRunner:
    """Runs ``run_action`` tasks; output streams as ``output`` progress events."""

    def __init__(self, config: AgentConfig, *, grace_sec: float = DEFAULT_GRACE_SEC) -> None:
        self.config = config
        self.grace_sec = grace_sec

    async def run(self, spec: TaskSpec, *, emit: Emit, cancelled: asyncio.Event) -> TaskOutcome:
        """Run the configured action to completion, timeout or cancel."""
        action = self.config.actions.get(spec.action_id or "")
        if action is None:
            return TaskOutcome(status="failed", error=f"unknown action {spec.action_id!r}")
        try:
            cwd = self._cwd(action)
        except ValueError as exc:
            return TaskOutcome(status="failed", error=f"action cwd: {exc}")
        try:
            proc = await spawn(
                action.argv,
                cwd=cwd,
                env=minimal_env(action.env),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            return TaskOutcome(
                status="failed", error=f"cannot start {action.argv[0]}: {exc.strerror}"
            )
        tail = TailBuffer(self.config.max_task_log_bytes)
        try:
            ending = await self._watch(proc, action, tail, emit, cancelled)
        finally:
            await kill_now(proc)
        return self._outcome(ending, proc.returncode, action, tail)

    def _cwd(self, action: ActionConfig) -> Path:
        """The action's directory, re-checked now: a symlink may have moved since start-up."""
        msg = f"{action.cwd!r} is not an existing directory under workspaceRoot"
        try:
            cwd = resolve_inside(self.config.root, action.cwd, strict=True)
        except (OSError, RuntimeError):  # missing, too long, or a symlink loop
            raise ValueError(msg) from None
        if not cwd.is_dir():
            raise ValueError(msg)
        return cwd

    async def _watch(
        self,
        proc: asyncio.subprocess.Process,
        action: ActionConfig,
        tail: TailBuffer,
        emit: Emit,
        cancelled: asyncio.Event,
    ) -> Ending:
        async def forward(text: str) -> None:
            await emit(ProgressEvent(kind="output", text=text))

        if proc.stdout is None:  # spawn always pipes stdout; this keeps the types honest
            msg = "no stdout pipe"
            raise RuntimeError(msg)
        reader = asyncio.ensure_future(stream_output(proc.stdout, tail, forward))
        try:
            ending = await supervise(
                proc, timeout_sec=action.timeout_sec, cancelled=cancelled, grace_sec=self.grace_sec
            )
        finally:
            await finish_readers([reader])
        with contextlib.suppress(asyncio.CancelledError):
            reader.result()  # surface a failed emit (e.g. a broken connection) to the executor
        return ending

    @staticmethod
    def _outcome(
        ending: Ending, code: int | None, action: ActionConfig, tail: TailBuffer
    ) -> TaskOutcome:
        output = tail.text()
        if ending is Ending.CANCELLED:
            return TaskOutcome(status="cancelled", exit_code=code, output_tail=output)
        if ending is not Ending.EXITED:
            error = f"the action did not finish within {action.timeout_sec}s; it was stopped"
            return TaskOutcome(status="failed", exit_code=code, output_tail=output, error=error)
        if code == 0:
            return TaskOutcome(status="completed", exit_code=0, output_tail=output)
        error = f"the action exited with code {code}"
        return TaskOutcome(status="failed", exit_code=code, output_tail=output, error=error)
