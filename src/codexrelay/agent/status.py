"""The running agent's status file in ``stateDir``: what `agent status` and `agent stop` read."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codexrelay.fileio import ensure_private_dir, write_private_file

STATUS_FILE = "agent-status.json"


class StatusFile:
    """Atomically rewritten on every connection state change."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATUS_FILE

    def write(self, state: str, **details: Any) -> None:
        """Record the current state with this process's pid."""
        ensure_private_dir(self.state_dir)
        data = {
            "pid": os.getpid(),
            "state": state,
            "since": datetime.now(UTC).isoformat(),
            **details,
        }
        write_private_file(self.path, (json.dumps(data, default=str) + "\n").encode("utf-8"))

    def read(self) -> dict[str, Any] | None:
        """The last recorded status, or None."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def running_pid(self) -> int | None:
        """The pid of a live agent process recorded here, if it is still running."""
        data = self.read()
        if not data or data.get("state") == "stopped":
            return None
        pid = data.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"codexrelay" not in cmdline:
                return None  # the pid was reused by something else
        return pid
