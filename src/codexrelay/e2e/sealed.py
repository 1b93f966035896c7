"""What travels inside a sealed task's envelopes, and how a reader reads the whole stream
(TRUST.md §4.5, §4.7, §5).

- ``task.submit`` (the phone, under its device's sender key, unsigned: the passkey signature
  is inside): ``{stmt, body, auth}``, the signed statement and body as ``b64u`` of their
  exact bytes and the passkey signatures, exactly what a signed task carries in the clear.
- ``task.out`` (the agent, signed): ``{"progress": {...}}`` for one step of the task, or
  ``{"text": {"field", "chunk"}}`` for a piece of a long final text (the output tail, the
  diff, the final message), so no envelope outgrows the cap.
- ``task.done`` (the agent, signed): ``{status, exitCode, error, diffTruncated,
  codexSessionId, redactions, count, chainHead}``; ``count`` is how many ``task.out``
  envelopes came before it and ``chainHead`` the link of the last one, so a reader proves
  it saw every one.
- ``key.wrap`` (the agent, signed, a fresh epoch): ``{"device"}``, the answer to a reader
  device's key request, with every key the task ran under wrapped to that device in
  ``keys`` (oldest first; sealed under the newest).
- ``catalog`` (the agent, signed): ``{"sessions": [...]}``, the Codex session catalog and
  its previews, under a fresh key per update (its ``task`` is a fresh id too).

The agent wraps the task key to every live reader device of the log it verified, and only
to those: a device the relay adds is in nobody's verified log and gets nothing. When a
device holding the key leaves the log while the task runs (revoked, or its member removed),
the agent goes on under a fresh key in a new epoch, wrapped to the current readers only; the
first ``task.out`` or ``task.done`` of that epoch carries ``"after"``, the link of the last
``task.out`` before it, so the epochs are chained under the agent's signature too.

Key wraps travel beside the ciphertext, outside the signature (§5), so whoever adds them
also puts ``"wraps": b64u(H(keys))`` in the plaintext; a reader drops an envelope whose
wraps differ from that, so no wrap can be changed, added or removed on the way unseen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import (
    EnvelopeError,
    EnvelopeReason,
    Header,
    KeyWrap,
    Kind,
    Opened,
    Receiver,
    Sealer,
    parse_wire,
    unwrap_task_key,
    wrap_task_key,
)
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.statements import Digest, StatementError, Strict, decode_object, digest
from codexrelay.e2e.wire import b64u_decode

TEXT_CHUNK: Final = 64 * 1024  # characters: at most 384 KiB of escaped JSON per envelope
TEXT_FIELDS: Final = ("outputTail", "diffText", "finalMessage")
AGENT_KINDS: Final = frozenset({"task.out", "task.done", "key.wrap"})
OUTPUT_KINDS: Final = frozenset({"task.out", "task.done"})
B64Text = Annotated[
    str, StringConstraints(min_length=1, max_length=400_000, pattern=r"^[A-Za-z0-9_-]+$")
]


class SubmitInner(Strict):
    """The plaintext of ``task.submit``."""

    stmt: B64Text
    body: B64Text
    auth: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=5)]
    wraps: Digest | None = None


class DoneRecord(Strict):
    """The plaintext of ``task.done``."""

    status: Literal["completed", "failed", "cancelled"]
    exit_code: int | None = None
    error: Annotated[str, StringConstraints(max_length=4000)] | None = None
    diff_truncated: bool = False
    codex_session_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    redactions: Annotated[int, Field(ge=0)] = 0
    count: Annotated[int, Field(ge=0)]
    chain_head: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]


def encode(obj: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (the agent's own plaintext; nobody signs it re-serialised)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def wraps_digest(wraps: Sequence[KeyWrap]) -> str:
    """``b64u(H(keys))`` over the wraps as they travel (recipient id and blob, in order)."""
    return digest(encode({"keys": [{"to": w.to, "enc": w.enc} for w in wraps]}))


def seal_record(
    sealer: Sealer, kind: Kind, record: dict[str, Any], wraps: Sequence[KeyWrap] = ()
) -> bytes:
    """Seal a JSON record; with wraps, the record names their digest."""
    if wraps:
        record = {**record, "wraps": wraps_digest(wraps)}
    return sealer.seal(kind, encode(record), wraps=wraps)


def check_wraps(data: bytes, record: dict[str, Any]) -> None:
    """The envelope's wraps are exactly the ones its sender named (or there are none)."""
    wire, _, _, _ = parse_wire(data)
    named = record.get("wraps")
    if wire.keys is None and named is None:
        return
    if wire.keys is None or named != wraps_digest(wire.keys):
        raise EnvelopeError(EnvelopeReason.MALFORMED, "the key wraps are not the sender's")


def text_pieces(name: str, text: str | None) -> list[dict[str, Any]]:
    """A long text as ``task.out`` plaintexts of at most :data:`TEXT_CHUNK` characters."""
    if not text:
        return []
    return [
        {"text": {"field": name, "chunk": text[i : i + TEXT_CHUNK]}}
        for i in range(0, len(text), TEXT_CHUNK)
    ]


def reader_wraps(
    view: LogView, task_key: bytes, *, ws: str, task: str, skip: Iterable[str] = ()
) -> list[KeyWrap]:
    """``K_t`` wrapped to every live reader device in ``view`` (viewer and up)."""
    skipped = set(skip)
    wraps = []
    for device in view.reader_devices():
        if device.device_id in skipped:
            continue
        public = keys.load_kex_public(device.suite, device.kex_pub)
        wraps.append(
            wrap_task_key(task_key, public, ws=ws, task=task, recipient_key_id=device.device_id)
        )
    return wraps


def read_catalog(
    data: bytes, private: keys.KexKey, *, me: str, view: LogView, agent: str
) -> list[dict[str, Any]]:
    """Open an agent's sealed catalog as a reader device (signature by the agent's key in
    the reader's own verified log)."""
    _, header, _, _ = parse_wire(data)
    if (header.kind, header.sender, header.ws) != ("catalog", agent, view.ws):
        raise EnvelopeError(EnvelopeReason.WRONG_TASK, "not this agent's catalog")
    key = find_task_key([data], private, me=me, ws=view.ws, task=header.task)
    receiver = Receiver(task_key=key, ws=view.ws, agent=agent, task=header.task)
    member = view.agents[agent]
    opened = receiver.open(data, sender_key=keys.load_verify_key(member.suite, member.sig_pub))
    record = json.loads(opened.plaintext)
    check_wraps(data, record)
    sessions = record["sessions"]
    if not isinstance(sessions, list):
        raise EnvelopeError(EnvelopeReason.MALFORMED, "sessions is not a list")
    return sessions


def find_task_key(
    envelopes: Iterable[bytes], private: keys.KexKey, *, me: str, ws: str, task: str
) -> bytes:
    """The task key from the first envelope that wraps it to ``me``; ``NO_KEY`` if none."""
    for data in envelopes:
        wire, _, _, _ = parse_wire(data)
        for wrap in wire.keys or ():
            if wrap.to == me:
                return unwrap_task_key(wrap, private, ws=ws, task=task)
    raise EnvelopeError(EnvelopeReason.NO_KEY, f"nothing is wrapped to {me}")


def task_keys(
    envelopes: Iterable[bytes], private: keys.KexKey, *, me: str, ws: str, task: str
) -> list[bytes]:
    """Every task key wrapped to ``me`` in these envelopes (one more per re-keying)."""
    found: list[bytes] = []
    for data in envelopes:
        try:
            wire, _, _, _ = parse_wire(data)
            for wrap in wire.keys or ():
                if wrap.to == me:
                    key = unwrap_task_key(wrap, private, ws=ws, task=task)
                    if key not in found:
                        found.append(key)
        except EnvelopeError:
            continue  # not for this device, or malformed: its envelope is dropped anyway
    return found


def first_of_epoch(
    known: Sequence[bytes], data: bytes, sender_key: keys.VerifyKey | None, *, header: Header
) -> tuple[Receiver, Opened]:
    """A (sender, epoch)'s first envelope: a fresh receiver under the key that opens it."""
    last: EnvelopeError | None = None
    for task_key in known:
        receiver = Receiver(task_key=task_key, ws=header.ws, agent=header.agent, task=header.task)
        try:
            return receiver, receiver.open(data, sender_key=sender_key)
        except EnvelopeError as exc:
            if exc.reason is not EnvelopeReason.DECRYPT_FAILED:
                raise
            last = exc
    raise last or EnvelopeError(EnvelopeReason.NO_KEY, "no key of this device opens it")


@dataclass
class TaskView:
    """What a reader device shows for a sealed task, and how complete it is."""

    prompt: str | None = None
    statement: dict[str, Any] | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    done: DoneRecord | None = None
    outs: int = 0
    last_link: str | None = None
    epoch: str | None = None  # the agent's output epoch read last (one per task key)
    epochs: int = 0
    dropped: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """``task.done`` arrived and vouches for exactly the ``task.out`` envelopes seen."""
        return (
            self.done is not None
            and self.done.count == self.outs
            and (self.outs == 0 or self.done.chain_head == self.last_link)
        )


def read_task(
    envelopes: Iterable[bytes],
    private: keys.KexKey,
    *,
    me: str,
    view: LogView,
    agent: str,
    task: str,
) -> TaskView:
    """Open a sealed task's envelopes as a reader device (in the order the relay gave).

    The submit envelope comes from a device of the log (no signature: its passkey
    assertion is inside); every other envelope must be signed by the agent's key in the
    reader's own verified log. Each (sender, epoch) opens under one of the task keys
    wrapped to this device and runs strictly in sequence and chain. When the agent
    re-keyed (a reader left), the new epoch's first output names the link of the last
    ``task.out`` before it (``after``): a reader who read that far must match it, one who
    holds only the newer key reads from there and is told the output is incomplete.
    Whatever fails is dropped and named in ``dropped``.
    """
    items = list(envelopes)
    ws = view.ws
    known = task_keys(items, private, me=me, ws=ws, task=task)
    if not known:
        raise EnvelopeError(EnvelopeReason.NO_KEY, f"nothing is wrapped to {me}")
    agent_key = keys.load_verify_key(view.agents[agent].suite, view.agents[agent].sig_pub)
    out = TaskView()
    streams: dict[tuple[str, str], Receiver] = {}
    for data in items:
        try:
            _take(out, known, streams, data, agent, agent_key)
        except (EnvelopeError, StatementError, ValueError, KeyError, TypeError) as exc:
            out.dropped.append(str(exc))
    return out


def _take(
    out: TaskView,
    known: list[bytes],
    streams: dict[tuple[str, str], Receiver],
    data: bytes,
    agent: str,
    agent_key: keys.VerifyKey,
) -> None:
    _, header, _, _ = parse_wire(data)
    from_agent = header.kind in AGENT_KINDS
    if from_agent and header.sender != agent:
        raise EnvelopeError(EnvelopeReason.BAD_SIGNATURE, "not from the task's agent")
    if not from_agent and header.kind != "task.submit":
        raise EnvelopeError(EnvelopeReason.MALFORMED, f"unexpected {header.kind}")
    sender_key = agent_key if from_agent else None
    stream = (header.sender, header.epoch)
    receiver = streams.get(stream)
    if receiver is None:
        streams[stream], opened = first_of_epoch(known, data, sender_key, header=header)
    else:
        opened = receiver.open(data, sender_key=sender_key)
    record = json.loads(opened.plaintext)
    if not isinstance(record, dict):
        raise EnvelopeError(EnvelopeReason.MALFORMED, "the plaintext is not an object")
    check_wraps(data, record)
    if header.kind in OUTPUT_KINDS:
        _follow(out, header.epoch, record.pop("after", None))
    if header.kind == "task.submit":
        _submitted(out, opened.plaintext)
    elif header.kind == "task.out":
        _output(out, record)
        out.outs += 1
        out.last_link = opened.link
    elif header.kind == "task.done":
        record.pop("wraps", None)
        out.done = DoneRecord.model_validate(record)


def _follow(out: TaskView, epoch: str, after: object) -> None:
    """An output envelope's epoch: the current one, or a new key's that follows it."""
    if epoch == out.epoch:
        if after is not None:
            raise EnvelopeError(EnvelopeReason.MALFORMED, "'after' inside an epoch")
        return
    if out.epoch is not None and (after is None or after != out.last_link):
        raise EnvelopeError(EnvelopeReason.BAD_PREV, "a new key's output does not follow")
    out.epoch = epoch
    out.epochs += 1


def _submitted(out: TaskView, plaintext: bytes) -> None:
    inner = decode_object(plaintext, SubmitInner, max_bytes=1 << 20)
    out.statement = json.loads(b64u_decode(inner.stmt, max_bytes=1 << 16))
    body = json.loads(b64u_decode(inner.body, max_bytes=1 << 19))
    out.prompt = body.get("prompt") or None


def _output(out: TaskView, record: dict[str, Any]) -> None:
    if "progress" in record:
        out.progress.append(record["progress"])
    elif "text" in record:
        piece = record["text"]
        if piece["field"] not in TEXT_FIELDS:
            raise ValueError("unknown text field")
        out.texts[piece["field"]] = out.texts.get(piece["field"], "") + piece["chunk"]
