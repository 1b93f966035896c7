"""One ``codex app-server --listen unix://<stateDir>/codex.sock``, kept running for the agent.

The socket lives in the agent's 0700 state directory, so only the agent's user can reach it
(the CLI makes the path a symlink to its own 0600 socket under ``/tmp/codex-daemon-<uid>``;
the agent connects through the resolved target, which is short enough for ``sun_path``).
The process gets the same environment as ``codex exec`` (``codex_environment``) and runs as
the leader of its own process group, so stopping it stops every command Codex started. If it
dies it is started again after a backoff that doubles up to a cap; a run that stayed up for a
while resets the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.runners.codex import codex_environment
from codexrelay.agent.runners.process import spawn, stop_group
from codexrelay.agent.runners.text import TailBuffer
from codexrelay.fileio import ensure_private_dir

log = logging.getLogger(__name__)

SOCKET_NAME = "codex.sock"
BACKOFF_START_SEC = 0.5
BACKOFF_CAP_SEC = 30.0
STABLE_RUN_SEC = 30.0
READY_TIMEOUT_SEC = 30.0
STOP_GRACE_SEC = 5.0
STDERR_TAIL_BYTES = 8192


def socket_path(config: AgentConfig) -> Path:
    """Where the agent's app-server listens (``codexrelay agent terminal`` attaches here)."""
    return config.state_path / SOCKET_NAME


def connect_path(path: Path) -> Path:
    """The socket to connect to: the symlink's target when the CLI made one."""
    return Path(os.path.realpath(path))


class AppServerSupervisor:
    """Starts, watches and restarts the app-server; ``generation`` counts its starts."""

    def __init__(self, config: AgentConfig, *, backoff_start: float = BACKOFF_START_SEC) -> None:
        self.config = config
        self.path = socket_path(config)
        self.generation = 0
        self.ready = asyncio.Event()
        self._backoff_start = backoff_start
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._job: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def pid(self) -> int | None:
        """The running app-server's process id (tests kill it to prove a restart)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def start(self) -> None:
        """Begin supervising in the background."""
        if self._job is None:
            self._job = asyncio.create_task(self._supervise(), name="codex-app-server")

    async def stop(self) -> None:
        """Stop the app-server's whole process group and stop restarting it."""
        self._stopping.set()
        self.ready.clear()
        if self._proc is not None and self._proc.returncode is None:
            await stop_group(self._proc, STOP_GRACE_SEC)
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
            self._job = None

    async def _supervise(self) -> None:
        backoff = self._backoff_start
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            await self._run_once()
            if self._stopping.is_set():
                return
            if loop.time() - started >= STABLE_RUN_SEC:
                backoff = self._backoff_start
            log.warning(
                "codex app-server exited (%s); restarting in %.1fs", self.last_error, backoff
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_CAP_SEC)

    async def _run_once(self) -> None:
        ensure_private_dir(self.config.state_path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale symlink from an earlier run
        argv = [*self.config.codex.command, "app-server", "--listen", f"unix://{self.path}"]
        try:
            proc = await spawn(
                argv,
                cwd=self.config.root,
                env=codex_environment(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self.last_error = f"cannot start {argv[0]}: {exc.strerror}"
            return
        self._proc = proc
        stderr = TailBuffer(STDERR_TAIL_BYTES)
        drains = [
            asyncio.create_task(_drain(proc.stdout, None)),
            asyncio.create_task(_drain(proc.stderr, stderr)),
        ]
        try:
            if await self._wait_ready(proc):
                self.generation += 1
                self.ready.set()
            await proc.wait()
        finally:
            self.ready.clear()
            if proc.returncode is None:
                await stop_group(proc, STOP_GRACE_SEC)
            await asyncio.gather(*drains, return_exceptions=True)
        self.last_error = f"exit code {proc.returncode}: {_last_line(stderr.text())}"

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> bool:
        """Poll for the socket; make sure it is ours and private before anyone uses it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_SEC
        while loop.time() < deadline and proc.returncode is None:
            target = connect_path(self.path)
            with contextlib.suppress(FileNotFoundError):
                info = target.stat()
                if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                    if stat.S_IMODE(info.st_mode) & 0o077:
                        target.chmod(0o600)
                    return True
                if stat.S_ISSOCK(info.st_mode):
                    log.error("%s belongs to another user; not using it", target)
                    break
            await asyncio.sleep(0.05)
        if proc.returncode is None:
            log.error("codex app-server did not open %s in time; stopping it", self.path)
            await stop_group(proc, STOP_GRACE_SEC)
        return False


async def _drain(reader: asyncio.StreamReader | None, tail: TailBuffer | None) -> None:
    """Read a pipe to its end so the child never blocks on a full pipe."""
    if reader is None:
        return
    while chunk := await reader.read(65536):
        if tail is not None:
            tail.append(chunk)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no error output"
