"""Child processes in their own process group, stopped as a group: TERM, then KILL.

Every task process is a session leader (``start_new_session``), so a timeout or a cancel
reaches whatever it spawned too (a Codex run's tools, an action's subprocesses), and the
agent's own terminal signals never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from codexrelay.agent.runners.text import TailBuffer, Utf8Chunker

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
READ_CHUNK = 65536
MAX_BATCH_CHARS = 16384  # well under ProgressEvent.text's limit, also after redaction
PARTIAL_LINE_SEC = 0.2
DRAIN_SEC = 1.0


class Ending(enum.Enum):
    """Why supervision of a process ended."""

    EXITED = "exited"
    TIMED_OUT = "timed-out"
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # the runner itself asked to stop (e.g. a wrong Codex session)


def minimal_env(extra: Mapping[str, str]) -> dict[str, str]:
    """PATH, HOME and LANG from the agent plus ``extra``: no agent secrets leak into actions."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": os.environ.get("HOME") or "/",
        "LANG": os.environ.get("LANG") or "C.UTF-8",
    }
    env.update(extra)
    return env


async def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: int,
    stderr: int,
) -> asyncio.subprocess.Process:
    """Start ``argv`` without a shell, as the leader of a new session and process group."""
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )


def signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``proc`` (gone already is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def stop_group(proc: asyncio.subprocess.Process, grace_sec: float) -> None:
    """TERM the group, give it ``grace_sec`` to exit, then KILL the group."""
    signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace_sec)
    signal_group(proc, signal.SIGKILL)  # stragglers that ignored TERM, leader or not
    await proc.wait()


async def supervise(
    proc: asyncio.subprocess.Process,
    *,
    timeout_sec: float,
    cancelled: asyncio.Event,
    grace_sec: float,
    stop: asyncio.Event | None = None,
) -> Ending:
    """Wait for ``proc`` to exit, or stop its group on timeout, cancel or ``stop``."""
    events = [cancelled] + ([stop] if stop is not None else [])
    exited = asyncio.ensure_future(proc.wait())
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait([exited, *waiters], timeout=timeout_sec, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
    if exited.done():
        return Ending.EXITED
    exited.cancel()
    await stop_group(proc, grace_sec)
    if cancelled.is_set():
        return Ending.CANCELLED
    return Ending.STOPPED if stop is not None and stop.is_set() else Ending.TIMED_OUT


async def kill_now(proc: asyncio.subprocess.Process) -> None:
    """KILL the group at once (the agent itself is shutting down or the runner failed)."""
    if proc.returncode is None:
        signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)


async def finish_readers(readers: Sequence[asyncio.Future[None]]) -> None:
    """Let readers drain what is buffered; a grandchild holding the pipe cannot hang us."""
    if not readers:
        return
    _done, pending = await asyncio.wait(readers, timeout=DRAIN_SEC)
    for reader in pending:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


async def stream_output(
    reader: asyncio.StreamReader,
    tail: TailBuffer,
    flush: Callable[[str], Awaitable[None]],
) -> None:
    """Keep a tail of ``reader`` and pass its text on, line-aligned, as it arrives.

    Whole lines go out at once; a partial line waits briefly for its end. Keeping a line in
    one batch lets redaction (which runs per batch) see a secret whole.
    """
    chunker = Utf8Chunker()
    pending = ""
    while True:
        try:
            chunk = await asyncio.wait_for(
                reader.read(READ_CHUNK), PARTIAL_LINE_SEC if pending else None
            )
        except TimeoutError:
            pending = await _flush(pending, len(pending), flush)
            continue
        if not chunk:
            break
        tail.append(chunk)
        pending += chunker.feed(chunk)
        cut = len(pending) if len(pending) >= MAX_BATCH_CHARS else pending.rfind("\n") + 1
        pending = await _flush(pending, cut, flush)
    pending += chunker.flush()
    await _flush(pending, len(pending), flush)


async def _flush(pending: str, cut: int, flush: Callable[[str], Awaitable[None]]) -> str:
    """Send ``pending[:cut]`` in pieces that fit one progress event; return the rest."""
    for start in range(0, cut, MAX_BATCH_CHARS):
        await flush(pending[start : min(cut, start + MAX_BATCH_CHARS)])
    return pending[cut:]
