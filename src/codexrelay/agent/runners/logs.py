"""Predefined log reads (R15): the last lines of a configured file, read from the end.

Logs grow without bound, so the file is read backwards in blocks and reading stops as soon
as enough lines (or enough bytes for the output cap) are in hand: a 1 GB log costs about
one cap's worth of reads, never the whole file.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from dataclasses import dataclass

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.runners.base import Emit, TaskOutcome
from codexrelay.agent.runners.text import tail_bytes
from codexrelay.protocol import TaskSpec

BLOCK_BYTES = 65536


class LogReadError(Exception):
    """The configured log cannot be read; the message is safe to show on the phone."""


@dataclass(frozen=True)
class LogTail:
    """The end of a log file as read, and whether the byte cap cut it."""

    data: bytes
    truncated: bool


def _open_regular(path: str) -> int:
    """Open ``path`` read-only, refusing anything but a regular file (a FIFO would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise LogReadError(f"the log file {path} does not exist") from None
    except PermissionError:
        raise LogReadError(f"the agent may not read the log file {path}") from None
    except OSError as exc:
        raise LogReadError(f"cannot open the log file {path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise LogReadError(f"the log path {path} is {kind}")
    return fd


def read_last_lines(path: str, *, max_lines: int, max_bytes: int) -> LogTail:
    """The last ``max_lines`` lines of ``path``, at most ``max_bytes``, read from the end."""
    fd = _open_regular(path)
    try:
        data, reached_start = _read_backwards(fd, max_lines=max_lines, max_bytes=max_bytes)
    except OSError as exc:
        raise LogReadError(f"cannot read the log file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    body = data[:-1] if data.endswith(b"\n") else data
    lines = body.split(b"\n")
    if not reached_start:
        lines = lines[1:]  # the first piece may be the end of a longer line
    kept = b"\n".join(lines[-max_lines:]) + (b"\n" if data else b"")
    capped, cut = tail_bytes(kept, max_bytes)
    return LogTail(data=capped, truncated=cut or len(lines) > max_lines or not reached_start)


def _read_backwards(fd: int, *, max_lines: int, max_bytes: int) -> tuple[bytes, bool]:
    """Blocks from the end until ``max_lines`` full lines or ``max_bytes`` are collected."""
    position = os.fstat(fd).st_size
    blocks: list[bytes] = []
    collected = newlines = 0
    while position > 0 and collected <= max_bytes and newlines <= max_lines:
        size = min(BLOCK_BYTES, position)
        position -= size
        block = os.pread(fd, size, position)
        if len(block) != size:  # the file shrank (rotated) while we read it
            raise OSError(errno.EIO, "the file changed while it was read")
        blocks.append(block)
        collected += size
        newlines += block.count(b"\n")
    return b"".join(reversed(blocks)), position == 0


class LogRunner:
    """Runs ``read_log`` tasks against the log sources listed in the config."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def run(self, spec: TaskSpec, *, emit: Emit, cancelled: asyncio.Event) -> TaskOutcome:
        """Read the configured log's tail in a worker thread."""
        source = self.config.log_sources.get(spec.log_source_id or "")
        if source is None:
            return TaskOutcome(status="failed", error=f"unknown log source {spec.log_source_id!r}")
        try:
            tail = await asyncio.to_thread(
                read_last_lines,
                source.path,
                max_lines=source.max_lines,
                max_bytes=self.config.max_task_log_bytes,
            )
        except LogReadError as exc:
            return TaskOutcome(status="failed", error=str(exc))
        text = tail.data.decode("utf-8", "replace")
        return TaskOutcome(status="completed", output_tail=text)
