"""Which threads this agent started for the phone, remembered across restarts.

The app-server does not tell a phone thread from a terminal one reliably (a thread's
``originator`` can carry the name of whichever client connected first), so the agent keeps
the ids it started in ``<stateDir>/phone-threads.json`` (0600, written atomically).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from codexrelay.fileio import ensure_private_dir, write_private_file

log = logging.getLogger(__name__)

FILE_NAME = "phone-threads.json"
MAX_IDS = 10000


class PhoneThreads:
    """A bounded, durable set of thread ids."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._ids: dict[str, None] = dict.fromkeys(self._load())

    def _load(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [i for i in data if isinstance(i, str)][-MAX_IDS:] if isinstance(data, list) else []

    def __contains__(self, thread_id: object) -> bool:
        return thread_id in self._ids

    def add(self, thread_id: str) -> None:
        """Remember ``thread_id`` (the oldest ids drop out past ``MAX_IDS``)."""
        self._ids[thread_id] = None
        while len(self._ids) > MAX_IDS:
            del self._ids[next(iter(self._ids))]
        try:
            ensure_private_dir(self.path.parent)
            write_private_file(self.path, json.dumps(list(self._ids)).encode())
        except OSError:
            log.warning("could not save %s; the thread will show as a terminal thread", self.path)
