"""The demo's child processes (relay, agent, proxy): started in their own sessions, stopped
in order, and never left behind (on Linux the kernel sends them SIGTERM if the demo dies)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

READY_TIMEOUT_SEC = 30.0
PR_SET_PDEATHSIG = 1
T = TypeVar("T")


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel send SIGTERM to this child when the demo process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """A relay or agent process the demo started and must stop."""

    name: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start in a new session, output to the log file; ``env`` adds to the environment."""
        self.argv = argv
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - prctl only, no locks taken
            )

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, timeout: float) -> None:
        """SIGTERM, wait, and SIGKILL the whole process group if it does not go."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def poll(check: Callable[[], T | None], *, what: str, children: list[Child]) -> T:
    """Poll ``check`` until it returns a value; fail if a child dies or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT_SEC
    while time.monotonic() < deadline:
        for child in children:
            if child.exited():
                msg = f"the {child.name} stopped while waiting for {what}:\n{child.log_tail()}"
                raise DemoError(msg)
        with contextlib.suppress(httpx.TransportError):
            value = check()
            if value is not None:
                return value
        time.sleep(0.1)
    msg = f"timed out after {READY_TIMEOUT_SEC:.0f}s waiting for {what}"
    raise DemoError(msg)
