"""The agent's own audit log (TRUST.md §4.6 step 10, B2): every statement it accepted or
refused, hash-chained and signed with its key, in ``stateDir/audit.jsonl``.

Each record is written and fsynced before the work it allows starts, so a task that ran
always has its record. The statement travels as its exact signed bytes with its passkey
assertions: anyone holding this file and the membership log can check who authorised
what, offline (``codexrelay audit verify --agent-log``). The chain's head (``SEQ:HASH``) is
reported to the phones, so a person can note it off the host and later detect records cut
from the end (``--expect-head``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e.audit import AuditWriter, Outcome
from codexrelay.e2e.log import Head
from codexrelay.fileio import PRIVATE_FILE, ensure_private_dir

AUDIT_FILE = "audit.jsonl"


class AuditLog:
    """Appends durable records; resumes the chain from the file's last complete line."""

    def __init__(self, state_dir: Path, key: keys.SigningKey, *, agent: str, ws: str) -> None:
        ensure_private_dir(state_dir)
        self.path = state_dir / AUDIT_FILE
        self.ws = ws
        self._writer = AuditWriter(key, agent=agent, ws=ws, head=self._last_head())

    @property
    def head(self) -> Head:
        """The last record's ``seq`` and hash (0 and zeros before the first)."""
        return self._writer.head

    def _last_head(self) -> Head | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if data and not data.endswith(b"\n"):
            # A crash mid-write: the torn tail never became a record (nothing ran on it).
            data = data[: data.rfind(b"\n") + 1]
            os.truncate(self.path, len(data))
        for line in reversed(data.split(b"\n")):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line never became a record
            if isinstance(record, dict) and {"seq", "hash"} <= record.keys():
                return Head(int(record["seq"]), str(record["hash"]))
        return None

    def append(
        self,
        *,
        outcome: Outcome,
        kind: str,
        now: int,
        reason: str | None = None,
        statement: bytes | None = None,
        auth: Mapping[str, Any] | None = None,
        result: str | None = None,
    ) -> Head:
        """Write one record durably (raises ``OSError`` if it cannot: callers fail closed)."""
        before = self._writer.head
        line = self._writer.append(
            outcome=outcome,
            kind=kind,
            now=now,
            reason=reason,
            statement=statement,
            auth=auth,
            result=result,
        )
        try:
            self._write(line)
        except OSError:
            self._writer.head = before  # the next record links to the last one on disk
            raise
        return self._writer.head

    def _write(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
