"""The agent's end of sealed tasks (TRUST.md §4.6 steps 1-3, §4.7).

:func:`open_submit` opens the phone's ``task.submit`` envelope with the agent's kex key
and rebuilds the task from the signed statement inside, so the usual checks (§4.6 steps
3-9) run on what the phone signed, never on the relay's copy. :class:`OutputSealer` then
seals everything the task sends back under the agent's own sender key, signed, with the
task key wrapped to every reader device of the agent's verified log on the first envelope.
:class:`TaskKeys` keeps task keys (0600, for ``taskKeyRetentionDays``) so a reader device
certified later can ask for a key again (:func:`answer_key_request`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.e2e import keys
from codexrelay.e2e.envelope import (
    FIRST_PREV,
    MAX_PADDED,
    EnvelopeError,
    KeyWrap,
    Receiver,
    Sealer,
    new_task_key,
    padded_size,
    parse_wire,
    unwrap_task_key,
    wrap_task_key,
)
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import SubmitInner, check_wraps, encode, reader_wraps, seal_record
from codexrelay.e2e.statements import (
    MAX_BODY_BYTES,
    KeyRequestStatement,
    StatementError,
    StatementReason,
    TaskStatement,
    check_body,
    check_recent,
    decode_object,
    parse_statement,
)
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import WireError, b64u, b64u_decode
from codexrelay.fileio import write_private_file
from codexrelay.protocol import RefusalReason, SignedTask, TaskSpec

R = RefusalReason
TASK_KEYS_FILE = "task-keys.jsonl"
LEGACY_TASK_KEYS_FILE = "task-keys.json"  # one JSON object rewritten per key (before 0.x)
KEY_REQUEST_MAX_AGE_SEC = 600
DAY_SEC = 86_400


def _refuse(reason: RefusalReason, message: str) -> TaskRefusedError:
    return TaskRefusedError(reason, message)


@dataclass(frozen=True)
class OpenedTask:
    """A sealed task opened by this agent: the task as signed, its key, the submitting
    device and every other device the submission wrapped the key to."""

    spec: TaskSpec
    task_key: bytes
    device: str
    wrapped: frozenset[str] = frozenset()


def open_submit(spec: TaskSpec, *, ws: str, agent_id: str, kex: keys.KexKey) -> OpenedTask:
    """§4.6 steps 1-3 for a sealed task; a specific refusal for anything that is off."""
    assert spec.sealed is not None  # noqa: S101 - the caller checked
    data = spec.sealed.envelope.encode("utf-8")
    try:
        wire, header, _, _ = parse_wire(data)
    except EnvelopeError as exc:
        raise _refuse(R.SEALED_INVALID, f"the envelope is {exc.reason.value}") from None
    if header.kind != "task.submit" or header.seq != 0:
        raise _refuse(R.SEALED_INVALID, "the envelope is not a task submission")
    if header.ws != ws:
        raise _refuse(R.WRONG_WORKSPACE, "the envelope names another workspace")
    if header.agent != agent_id:
        raise _refuse(R.WRONG_AGENT, "the envelope names another agent")
    if header.task != spec.id:
        raise _refuse(R.STATEMENT_MISMATCH, "the relay's task id differs from the envelope's")
    wrap = next((w for w in wire.keys or () if w.to == agent_id), None)
    if wrap is None:
        raise _refuse(R.SEALED_INVALID, "the task key is not wrapped to this agent")
    try:
        task_key = unwrap_task_key(wrap, kex, ws=ws, task=spec.id)
        receiver = Receiver(task_key=task_key, ws=ws, agent=agent_id, task=spec.id)
        plaintext = receiver.open(data, sender_key=None).plaintext
        inner = decode_object(plaintext, SubmitInner, max_bytes=1 << 20)
        check_wraps(data, inner.model_dump(exclude_none=True))
    except (EnvelopeError, StatementError) as exc:
        raise _refuse(R.SEALED_INVALID, f"the envelope does not open: {exc}") from None
    wrapped = frozenset(w.to for w in wire.keys or () if w.to != agent_id)
    signed = _signed_spec(spec, inner, header.sender)
    return OpenedTask(signed, task_key, header.sender, wrapped)


def _signed_spec(spec: TaskSpec, inner: SubmitInner, sender: str) -> TaskSpec:
    """The task as the statement says, with the relay-visible type and write mode kept, so
    the usual check compares them with what was signed."""
    try:
        stmt = parse_statement(inner.stmt, TaskStatement).value
        body = check_body(stmt, b64u_decode(inner.body, max_bytes=MAX_BODY_BYTES + 1024))
    except WireError as exc:
        raise _refuse(R.STATEMENT_INVALID, f"the body is {exc.reason.value}") from None
    except StatementError as exc:
        reason = R.BODY_MISMATCH if exc.reason == StatementReason.BODY_MISMATCH else None
        raise _refuse(reason or R.STATEMENT_INVALID, f"the statement is {exc}") from None
    if stmt.device != sender:
        raise _refuse(R.STATEMENT_MISMATCH, "the envelope's sender is not the signing device")
    try:
        return TaskSpec(
            id=spec.id,
            type=spec.type,
            write_access=spec.write_access,
            prompt=body.prompt if stmt.type == "codex_exec" else None,
            cwd=stmt.cwd,
            resume_session_id=stmt.resume_session_id,
            action_id=stmt.action_id,
            log_source_id=stmt.log_source_id,
            signed=SignedTask(stmt=inner.stmt, body=inner.body, auth=inner.auth),
        )
    except ValidationError:
        raise _refuse(R.STATEMENT_INVALID, "the sealed task does not fit a task") from None


class OutputSealer:
    """Everything one task sends back, as signed envelopes of the agent's stream.

    Before each envelope the verified log (``view``) is checked for devices that hold the
    current key (the submitting device, every device the submission or this agent wrapped
    it to) and have left: revoked, or their member removed. Then the task switches to a
    fresh key in a new epoch wrapped only to the current readers, so the leaver can open
    nothing sent from then on (before any output, the first key goes along to the current
    readers too: it opens the submission). The new epoch's first envelope names the
    link of the last ``task.out`` before it (``after``), signed like the rest, so a reader
    holding both keys proves the epochs follow each other. New keys wait in
    :attr:`fresh_keys` for the caller to keep (off the event loop). A view that cannot be
    read counts as no readers at all: nothing new is wrapped to anyone.
    """

    def __init__(
        self,
        opened: OpenedTask,
        *,
        ws: str,
        agent_id: str,
        signing: keys.SigningKey,
        wraps: list[KeyWrap],
        view: Callable[[], LogView | None] | None = None,
    ) -> None:
        self._ws, self._agent, self._task, self._signing = ws, agent_id, opened.spec.id, signing
        self._sealer = Sealer(opened.task_key, ws, agent_id, self._task, agent_id, signing)
        self._wraps = wraps
        self._holders = {opened.device, *opened.wrapped}
        self._view = view
        self._head = FIRST_PREV
        self.outs = 0
        self.fresh_keys: list[bytes] = []

    @property
    def task_key(self) -> bytes:
        """The key the next envelope is sealed under."""
        return self._sealer.task_key

    def _next(self, record: dict[str, Any]) -> tuple[dict[str, Any], list[KeyWrap]]:
        """The record and wraps for the next envelope, re-keying first if a holder left."""
        if self._view is not None:
            view = self._view()
            live = set() if view is None else {d.device_id for d in view.reader_devices()}
            self._wraps = [w for w in self._wraps if w.to in live]
            known = self._holders if view is None else self._holders & view.devices.keys()
            if known - live:
                kept = self._wraps  # the first key, for the submission, if nothing came yet
                if self._sealer.seq > 0:
                    record, kept = {**record, "after": self._sealer.prev}, []
                key = new_task_key()
                self._sealer = Sealer(
                    key, self._ws, self._agent, self._task, self._agent, self._signing
                )
                self._holders = set()
                if view is not None:
                    kept += reader_wraps(view, key, ws=self._ws, task=self._task)
                self._wraps = kept
                self.fresh_keys.append(key)
        wraps, self._wraps = self._wraps, []
        self._holders |= {w.to for w in wraps}
        return record, wraps

    def out(self, record: dict[str, Any]) -> str:
        """One ``task.out`` envelope (the first one of each key carries its wraps)."""
        record, wraps = self._next(record)
        data = seal_record(self._sealer, "task.out", record, wraps)
        self.outs += 1
        self._head = self._sealer.prev
        return data.decode("ascii")

    def done(self, record: dict[str, Any]) -> str:
        """The ``task.done`` envelope: the result, and the count of ``task.out`` envelopes
        (over every key) and the link of the last one, which it vouches for."""
        final = {**record, "count": self.outs, "chainHead": self._head}
        final, wraps = self._next(final)
        return seal_record(self._sealer, "task.done", final, wraps).decode("ascii")


def seal_catalog(
    view: LogView, *, agent_id: str, signing: keys.SigningKey, sessions: list[dict[str, Any]]
) -> str:
    """The session catalog as one signed ``catalog`` envelope under a fresh key, wrapped to
    every reader device; the oldest sessions are left out if the whole would not fit."""
    catalog_id = str(uuid.uuid4())
    key = new_task_key()
    wraps = reader_wraps(view, key, ws=view.ws, task=catalog_id)
    kept = list(sessions)
    while padded_size(len(encode({"sessions": kept})) + 80) > MAX_PADDED and kept:
        kept = kept[: len(kept) * 3 // 4]
    sealer = Sealer(key, view.ws, agent_id, catalog_id, agent_id, signing)
    return seal_record(sealer, "catalog", {"sessions": kept}, wraps).decode("ascii")


class TaskKeys:
    """Task keys kept for readers who come later (``stateDir/task-keys.jsonl``, 0600).

    One appended line per key, read once into memory: keeping a key costs one short append
    and fsync whatever the history, never a rewrite of every key kept (the file is compacted
    when expired lines are most of it). The executor keeps a task's key after telling the
    relay it accepted the task, off the event loop, so sealing adds no disk wait to dispatch.
    """

    def __init__(
        self, state_dir: Path, *, keep_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = state_dir / TASK_KEYS_FILE
        self.keep_sec = keep_days * DAY_SEC
        self.clock = clock
        self._keys: dict[str, dict[str, Any]] | None = None
        self._lines = 0
        self._torn = False
        self._lock = threading.Lock()

    def _loaded(self) -> dict[str, dict[str, Any]]:
        if self._keys is None:
            self._keys, self._lines = {}, 0
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            # A crash in the middle of an append leaves a line without its end: the next
            # append starts on a line of its own, so only the cut key is lost.
            self._torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash: that key is lost, nothing else
                if isinstance(item, dict) and isinstance(item.get("task"), str):
                    self._keys[item["task"]] = item
                    self._lines += 1
            self._take_legacy()
        return self._keys

    def _take_legacy(self) -> None:
        """Keys an earlier agent kept in ``task-keys.json`` move to the line file once."""
        legacy = self.path.with_name(LEGACY_TASK_KEYS_FILE)
        try:
            data = json.loads(legacy.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return
        assert self._keys is not None  # noqa: S101 - called from _loaded only
        if isinstance(data, dict):
            for task, item in data.items():
                if isinstance(item, dict) and task not in self._keys:
                    self._keys[task] = {"task": task, **item}
        text = "".join(json.dumps(v) + "\n" for v in self._keys.values())
        write_private_file(self.path, text.encode("utf-8"))
        self._lines = len(self._keys)
        legacy.unlink()

    def keep(self, ws: str, task: str, key: bytes, *, after: bool = False) -> None:
        """Remember a key until the retention runs out (nothing kept with 0 days). With
        ``after`` it is the task's newest key and the ones kept before stay with it (a task
        re-keyed while it ran: a later reader gets every key)."""
        if self.keep_sec <= 0:
            return
        item: dict[str, Any] = {
            "task": task,
            "ws": ws,
            "key": b64u(key),
            "until": int(self.clock()) + self.keep_sec,
        }
        with self._lock:
            keys = self._loaded()
            held = keys.get(task)
            if after and held is not None and held.get("ws") == ws:
                item["older"] = [*held.get("older", []), held["key"]]
            keys[task] = item
            now = self.clock()
            live = {k: v for k, v in keys.items() if v.get("until", 0) > now}
            if self._lines >= 256 and len(live) * 2 < self._lines:
                text = "".join(json.dumps(v) + "\n" for v in live.values())
                write_private_file(self.path, text.encode("utf-8"))
                self._keys, self._lines, self._torn = live, len(live), False
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                line = ("\n" if self._torn else "") + json.dumps(item) + "\n"
                os.write(fd, line.encode("utf-8"))
                self._torn = False
                os.fsync(fd)
            finally:
                os.close(fd)
            self._lines += 1

    def get(self, ws: str, task: str) -> bytes | None:
        """The (newest) key of ``task`` in ``ws`` while it is kept."""
        found = self.get_all(ws, task)
        return found[-1] if found else None

    def get_all(self, ws: str, task: str) -> list[bytes]:
        """Every key of ``task`` in ``ws`` while kept, oldest first, newest last."""
        with self._lock:
            item = self._loaded().get(task)
        if item is None or item.get("ws") != ws or item.get("until", 0) <= self.clock():
            return []
        older = item.get("older", [])
        texts = [*older, item["key"]] if isinstance(older, list) else [item["key"]]
        return [b64u_decode(str(t), max_bytes=32) for t in texts]


def answer_key_request(
    stmt_text: str,
    sig_text: str,
    *,
    view: LogView,
    agent_id: str,
    signing: keys.SigningKey,
    task_keys: TaskKeys,
    now: int,
) -> tuple[str, str, str]:
    """A ``key.wrap`` envelope for a live reader device that signed this request, as
    ``(task, device, envelope)``; a refusal reason for anything else."""
    try:
        signed = parse_statement(stmt_text, KeyRequestStatement)
        check_recent(signed.value.issued_at, now=now, max_age=KEY_REQUEST_MAX_AGE_SEC)
        sig = b64u_decode(sig_text, max_bytes=64)
    except (StatementError, WireError):
        raise _refuse(R.STATEMENT_INVALID, "the key request does not parse") from None
    stmt = signed.value
    if (stmt.ws, stmt.agent) != (view.ws, agent_id):
        raise _refuse(R.STATEMENT_MISMATCH, "the key request names another workspace or agent")
    device = view.devices.get(stmt.device)
    if device is None or device.user_id not in view.members:
        raise _refuse(R.UNKNOWN_SIGNER, "the device is not a reader in this agent's log")
    if not device.active:
        raise _refuse(R.REVOKED_SIGNER, "the device was revoked")
    verify_key = keys.load_verify_key(device.suite, device.sig_pub)
    if stmt.kex_pub != device.kex_pub or not keys.verify(
        verify_key, sig, tag("keyreq") + signed.raw
    ):
        raise _refuse(R.SIGNATURE_INVALID, "the key request's signature does not verify")
    kept = task_keys.get_all(view.ws, stmt.task)
    if not kept:
        raise _refuse(R.TASK_KEY_GONE, "this agent no longer keeps that task's key")
    public = keys.load_kex_public(device.suite, device.kex_pub)
    # Every key the task ran under (more than one if a reader left while it ran).
    wraps = [
        wrap_task_key(key, public, ws=view.ws, task=stmt.task, recipient_key_id=device.device_id)
        for key in kept
    ]
    sealer = Sealer(kept[-1], view.ws, agent_id, stmt.task, agent_id, signing)
    envelope = seal_record(sealer, "key.wrap", {"device": device.device_id}, wraps)
    return stmt.task, device.device_id, envelope.decode("ascii")
