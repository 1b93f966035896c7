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
from codexrelay.e2e.wire import WireError, b64u_decode
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


RUN_ONCE_KINDS = frozenset({"task", "turn", "decision"})


def sign_counts(path: Path) -> dict[str, int]:
    """The highest passkey counter of every credential in accepted records.

    The audit record of an accepted statement holds its assertions, counters included, and
    is durable before the work starts; so it is where this verifier's counters persist
    (one write per statement, not two).
    """
    counts: dict[str, int] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return counts
    for line in lines:
        try:
            record = json.loads(line)
            sigs = record["auth"]["sigs"] if record["outcome"] == "accepted" else []
        except (ValueError, KeyError, TypeError):
            continue
        for sig in sigs if isinstance(sigs, list) else []:
            _note_count(counts, sig)
    return counts


def _note_count(counts: dict[str, int], sig: Any) -> None:
    try:
        data = b64u_decode(sig["assertion"]["response"]["authenticatorData"], max_bytes=4096)
        credential = str(sig["credentialId"])
    except (WireError, KeyError, TypeError):
        return
    if len(data) >= 37:
        counts[credential] = max(counts.get(credential, 0), int.from_bytes(data[33:37], "big"))


def run_once_id(stmt: dict[str, Any]) -> str:
    """The run-once key of an accepted statement: the task id, the turn id, or for a
    decision the request it answers (one answer per request and hash, TRUST.md §4.8)."""
    if stmt.get("kind") == "decision":
        return f"{stmt['requestId']}:{stmt['reqHash']}"
    return str(stmt["turn"] if stmt.get("kind") == "turn" else stmt["task"])


def accepted_tasks(path: Path, now: int, skew: int) -> list[tuple[str, int]]:
    """Run-once ids of accepted statements (tasks, turns, decisions) that have not expired
    yet, with their keep-until: the run-once store of signed work, restored at start-up."""
    found: list[tuple[str, int]] = []
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        try:
            record = json.loads(line)
            if record["kind"] not in RUN_ONCE_KINDS or record["outcome"] != "accepted":
                continue
            stmt = json.loads(b64u_decode(record["stmt"], max_bytes=1 << 16))
            until = int(stmt["expiresAt"]) + skew
            key = run_once_id(stmt)
        except (ValueError, KeyError, TypeError, WireError):
            continue
        if until >= now:
            found.append((key, until))
    return found
