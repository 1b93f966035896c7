"""``codex exec --json`` as a task runner (one process per task, JSONL events on stdout).

The prompt goes on stdin, never in argv (argv is visible to every local user). The sandbox
is ``read-only`` unless the executor allowed write mode (A4, R14, R17). The CLI never exits
while the model server is unreachable, so every run has a deadline after which its whole
process group is stopped. A resume is checked against the ``thread_id`` the CLI reports,
because an unknown session name silently starts a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path

from codexrelay.agent.config import AgentConfig, CodexSettings, resolve_inside
from codexrelay.agent.runners.base import Emit, TaskOutcome
from codexrelay.agent.runners.codex_events import CodexEventParser
from codexrelay.agent.runners.process import (
    Ending,
    finish_readers,
    kill_now,
    minimal_env,
    spawn,
    supervise,
)
from codexrelay.agent.runners.text import TailBuffer, head_bytes
from codexrelay.protocol import TaskSpec

READ_ONLY = "read-only"
WORKSPACE_WRITE = "workspace-write"
DEFAULT_GRACE_SEC = 5.0
STDERR_TAIL_BYTES = 8192
MAX_LINE_BYTES = 8 << 20
GIT_TIMEOUT_SEC = 30.0
MAX_UNTRACKED = 200
GIT_DIFF = ("-c", "core.quotepath=off", "--no-pager", "diff", "--no-color", "--no-ext-diff")
INSTALL_HINT = (
    "install it with `npm install -g @openai/codex` or set codex.command in the agent config"
)


def codex_environment(config: AgentConfig) -> dict[str, str]:
    """The environment every Codex CLI process of the agent gets (exec, app-server, TUI):
    the agent's own, with ``CODEX_HOME`` from the config (the CLI's login and sessions)."""
    return {**os.environ, "CODEX_HOME": str(config.codex_home)}


def build_exec_argv(
    settings: CodexSettings, *, cwd: Path, write: bool, resume_session_id: str | None
) -> list[str]:
    """The full argv: exec options first (they apply to a resumed turn too), prompt on stdin."""
    argv = [
        *settings.command,
        "exec",
        "--json",
        "--sandbox",
        WORKSPACE_WRITE if write else READ_ONLY,
        "--skip-git-repo-check",
        "-C",
        str(cwd),
    ]
    if settings.model:
        argv += ["-m", settings.model]
    argv += settings.extra_args
    if resume_session_id:
        argv += ["resume", resume_session_id]
    return [*argv, "-"]


async def _read_lines(reader: asyncio.StreamReader, parser: CodexEventParser, emit: Emit) -> None:
    """Feed complete stdout lines to the parser as they arrive; drop absurdly long ones."""
    buffer = bytearray()
    skipping = False
    while chunk := await reader.read(65536):
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = bytes(buffer[:end]), buffer[end + 1 :]
            if not skipping:
                for event in parser.feed(line.decode("utf-8", "replace")):
                    await emit(event, codex_session_id=parser.session_id)
            skipping = False
        if len(buffer) > MAX_LINE_BYTES:
            buffer.clear()
            skipping = True
    if buffer and not skipping:
        for event in parser.feed(buffer.decode("utf-8", "replace")):
            await emit(event, codex_session_id=parser.session_id)


async def _collect(reader: asyncio.StreamReader, tail: TailBuffer) -> None:
    while chunk := await reader.read(65536):
        tail.append(chunk)


async def _send_prompt(stdin: asyncio.StreamWriter, prompt: str) -> None:
    """Write the prompt and close stdin: the CLI waits for EOF before it starts."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(prompt.encode("utf-8"))
        await stdin.drain()
    stdin.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stdin.wait_closed()


async def _git(cwd: Path, args: list[str], cap: int) -> tuple[int | None, bytes]:
    """Run git (argv, no shell) and keep at most ``cap`` bytes of its stdout."""
    env = minimal_env({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    try:
        proc = await spawn(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None, b""  # no git on PATH: no diff
    out = bytearray()
    try:
        async with asyncio.timeout(GIT_TIMEOUT_SEC):
            while len(out) <= cap and (chunk := await proc.stdout.read(65536)):  # type: ignore[union-attr]
                out += chunk
            if len(out) <= cap:  # git closed its output: let it report its exit code
                return await proc.wait(), bytes(out)
    except TimeoutError:
        pass
    finally:
        await kill_now(proc)  # over the cap, too slow or cancelled: the rest is not needed
    return None, bytes(out)


async def git_diff(cwd: Path, max_bytes: int) -> tuple[str | None, bool]:
    """What changed under ``cwd`` (tracked changes, then new files), capped (R18).

    Returns ``(None, False)`` when ``cwd`` is not inside a git work tree.
    """
    code, inside = await _git(cwd, ["rev-parse", "--is-inside-work-tree"], 64)
    if code != 0 or inside.strip() != b"true":
        return None, False
    has_head, _ = await _git(cwd, ["rev-parse", "--verify", "-q", "HEAD"], 128)
    base = ["HEAD"] if has_head == 0 else []
    _, diff = await _git(cwd, [*GIT_DIFF, *base, "--", "."], max_bytes + 1)
    collected = bytearray(diff)
    _, listing = await _git(
        cwd, ["ls-files", "--others", "--exclude-standard", "-z", "--", "."], 1 << 20
    )
    for name in listing.split(b"\0")[:MAX_UNTRACKED]:
        if not name or len(collected) > max_bytes:
            break
        path = name.decode("utf-8", "surrogateescape")
        _, added = await _git(cwd, [*GIT_DIFF, "--no-index", "--", os.devnull, path], max_bytes + 1)
        collected += added
    data, cut = head_bytes(collected, max_bytes)
    return data.decode("utf-8", "replace"), cut


class CodexExecRunner:
    """Runs ``codex_exec`` tasks through ``codex exec --json``."""

    def __init__(self, config: AgentConfig, *, grace_sec: float = DEFAULT_GRACE_SEC) -> None:
        self.config = config
        self.grace_sec = grace_sec

    async def run(self, spec: TaskSpec, *, emit: Emit, cancelled: asyncio.Event) -> TaskOutcome:
        """Run one Codex turn (new or resumed) and report how it ended."""
        try:
            cwd = resolve_inside(self.config.root, spec.cwd or ".", strict=True)
        except (ValueError, OSError, RuntimeError) as exc:
            return TaskOutcome(status="failed", error=f"cwd: {exc}")
        write = spec.write_access and self._write_allowed(spec)
        argv = build_exec_argv(
            self.config.codex, cwd=cwd, write=write, resume_session_id=spec.resume_session_id
        )
        env = codex_environment(self.config)
        try:
            proc = await spawn(
                argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            error = f"the Codex CLI ({self.config.codex.command[0]}) was not found; {INSTALL_HINT}"
            return TaskOutcome(status="failed", error=error)
        except OSError as exc:
            error = f"cannot start the Codex CLI ({self.config.codex.command[0]}): {exc.strerror}"
            return TaskOutcome(status="failed", error=error)
        parser = CodexEventParser(
            expected_session_id=spec.resume_session_id,
            max_output_bytes=self.config.max_task_log_bytes,
        )
        stderr = TailBuffer(STDERR_TAIL_BYTES)
        try:
            ending = await self._watch(proc, spec.prompt or "", parser, stderr, emit, cancelled)
        finally:
            await kill_now(proc)
        outcome = self._outcome(ending, proc.returncode, parser, stderr)
        if not write:
            return outcome
        diff, truncated = await git_diff(cwd, self.config.max_diff_bytes)
        return dataclasses.replace(outcome, diff_text=diff, diff_truncated=truncated)

    def _write_allowed(self, spec: TaskSpec) -> bool:
        """Defence in depth: the executor checks this too (A4, R14, R17)."""
        codex = self.config.codex
        if not self.config.features.codex_exec_write:
            return False
        return spec.resume_session_id is None or codex.allow_write_on_resume

    async def _watch(
        self,
        proc: asyncio.subprocess.Process,
        prompt: str,
        parser: CodexEventParser,
        stderr: TailBuffer,
        emit: Emit,
        cancelled: asyncio.Event,
    ) -> Ending:
        if proc.stdin is None or proc.stdout is None or proc.stderr is None:
            msg = "the Codex CLI was started without pipes"
            raise RuntimeError(msg)
        readers = [
            asyncio.ensure_future(_send_prompt(proc.stdin, prompt)),
            asyncio.ensure_future(_read_lines(proc.stdout, parser, emit)),
            asyncio.ensure_future(_collect(proc.stderr, stderr)),
        ]
        try:
            return await supervise(
                proc,
                timeout_sec=self.config.codex.timeout_sec,
                cancelled=cancelled,
                grace_sec=self.grace_sec,
                stop=parser.wrong_session,
            )
        finally:
            await finish_readers(readers)

    def _outcome(
        self,
        ending: Ending,
        code: int | None,
        parser: CodexEventParser,
        stderr: TailBuffer,
    ) -> TaskOutcome:
        common = {
            "exit_code": code,
            "output_tail": parser.output_tail(),
            "final_message": parser.final_message,
            "codex_session_id": parser.session_id,
        }
        error = self._error(ending, code, parser, stderr)
        if ending is Ending.CANCELLED:
            return TaskOutcome(status="cancelled", **common)  # type: ignore[arg-type]
        if error is not None:
            return TaskOutcome(status="failed", error=error, **common)  # type: ignore[arg-type]
        return TaskOutcome(status="completed", **common)  # type: ignore[arg-type]

    def _error(
        self, ending: Ending, code: int | None, parser: CodexEventParser, stderr: TailBuffer
    ) -> str | None:
        """Why the run failed, checked in order of how much each explains; None if it did not."""
        if parser.wrong_session.is_set():
            return (
                "the Codex CLI started a new session instead of resuming "
                f"{parser.expected_session_id}; it was stopped"
            )
        if ending is Ending.TIMED_OUT:
            return (
                f"Codex did not finish within {self.config.codex.timeout_sec}s (is the model "
                "server reachable?); it was stopped"
            )
        if parser.failure is not None:
            return parser.failure
        if code != 0:
            detail = _last_line(stderr.text()) or parser.last_error or "no error message"
            return f"the Codex CLI exited with code {code}: {detail}"
        if not parser.completed:
            return "the Codex CLI exited without finishing the turn"
        return None


def _last_line(text: str) -> str:
    """The last non-empty line of stderr, which is where the CLI puts its error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or [""])[-1][:1000]
