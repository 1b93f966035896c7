"""The agent's own audit log of statements it accepted or refused (TRUST.md §4.6 step 10, B2).

One record per line, canonical JSON (sorted keys, no spaces, UTF-8)::

    {"agent":"ag_3","auth":{...},"hash":"…","kind":"task","outcome":"accepted","prev":"…",
     "reason":null,"result":"…","seq":7,"sig":"…","stmt":"<b64u exact bytes>","time":…,
     "v":1,"ws":"ws_7"}

- ``hash`` = ``b64u(H(tag(audithash) ‖ canonical(record without hash and sig)))``;
- ``prev`` = the previous record's ``hash`` (32 zero bytes for ``seq`` 1);
- ``sig`` = the agent's signature over ``tag(audit) ‖ hash bytes``.

The statement is kept as its exact signed bytes with its passkey assertion, so anyone holding
the log and the membership log can re-verify who authorised what. A chain cannot show
records cut from its end; :func:`verify_audit` with ``expect_head`` (a ``SEQ:HASH`` noted off
the host, for example on the phone) does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from codexrelay.e2e import keys
from codexrelay.e2e.log import Head
from codexrelay.e2e.tags import tag, tagged_hash
from codexrelay.e2e.wire import WireError, b64u, b64u_decode

FIRST_PREV: Final = b64u(bytes(32))
FIELDS: Final = frozenset(
    {"v", "seq", "prev", "time", "agent", "ws", "outcome", "reason", "kind", "stmt", "auth"}
    | {"result", "hash", "sig"}
)
Outcome = Literal["accepted", "refused"]


def canonical(value: Any) -> bytes:
    """The one byte form records are hashed and written in."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """The record's hash over everything but ``hash`` and ``sig``."""
    body = {k: v for k, v in record.items() if k not in {"hash", "sig"}}
    return b64u(tagged_hash("audithash", canonical(body)))


class AuditWriter:
    """Appends signed, chained records; the caller writes each returned line durably."""

    def __init__(
        self, key: keys.SigningKey, *, agent: str, ws: str, head: Head | None = None
    ) -> None:
        self._key, self.agent, self.ws = key, agent, ws
        self.head = head or Head(0, FIRST_PREV)

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
    ) -> bytes:
        """The next record as one line (with its newline)."""
        record: dict[str, Any] = {
            "v": 1,
            "seq": self.head.seq + 1,
            "prev": self.head.hash,
            "time": now,
            "agent": self.agent,
            "ws": self.ws,
            "outcome": outcome,
            "reason": reason,
            "kind": kind,
            "stmt": None if statement is None else b64u(statement),
            "auth": None if auth is None else dict(auth),
            "result": result,
        }
        record["hash"] = record_hash(record)
        digest = b64u_decode(record["hash"], max_bytes=32)
        record["sig"] = b64u(keys.sign(self._key, tag("audit") + digest))
        self.head = Head(record["seq"], record["hash"])
        return canonical(record) + b"\n"


class AuditReason(StrEnum):
    """Why an audit log failed verification."""

    MALFORMED = "malformed"
    NOT_CANONICAL = "not-canonical"
    BAD_HASH = "bad-hash"
    BAD_SIGNATURE = "bad-signature"
    BAD_SEQ = "bad-seq"
    BAD_PREV = "bad-prev"
    TRUNCATED = "truncated"
    HEAD_MISMATCH = "head-mismatch"


@dataclass(frozen=True)
class AuditReport:
    """The outcome: records verified, the head reached, and the first problem if any."""

    records: int
    head: Head
    reason: AuditReason | None = None
    line: int | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is broken."""
        return self.reason is None


def parse_head(text: str) -> Head:
    """``SEQ:HASH`` as the phone shows it."""
    seq, colon, digest = text.strip().partition(":")
    if not colon or not seq.isdigit() or len(digest) != 43:
        msg = "a head is SEQ:HASH"
        raise ValueError(msg)
    return Head(int(seq), digest)


def _check_line(line: bytes, key: keys.VerifyKey) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Broken(AuditReason.MALFORMED) from None
    if not isinstance(record, dict) or set(record) != FIELDS or record.get("v") != 1:
        raise _Broken(AuditReason.MALFORMED)
    if not isinstance(record["seq"], int) or not isinstance(record["hash"], str):
        raise _Broken(AuditReason.MALFORMED)
    if canonical(record) != line:
        raise _Broken(AuditReason.NOT_CANONICAL)
    if record_hash(record) != record["hash"]:
        raise _Broken(AuditReason.BAD_HASH)
    try:
        digest = b64u_decode(record["hash"], max_bytes=32)
        sig = b64u_decode(str(record["sig"]), max_bytes=64)
    except WireError:
        raise _Broken(AuditReason.MALFORMED) from None
    if not keys.verify(key, sig, tag("audit") + digest):
        raise _Broken(AuditReason.BAD_SIGNATURE)
    return record


class _Broken(Exception):  # noqa: N818 - an outcome, not a program error
    def __init__(self, reason: AuditReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


ROTATE_KIND: Final = "key.rotate"


def _rotated(record: Mapping[str, Any]) -> keys.VerifyKey | None:
    """After a ``key.rotate`` record (signed by the old key, holding the ``agent.rotate``
    log entry), the records that follow are signed by the key that entry names."""
    if record["kind"] != ROTATE_KIND or record["outcome"] != "accepted":
        return None
    try:
        entry = json.loads(b64u_decode(str(record["stmt"]), max_bytes=1 << 16))
        body = entry["body"]
        if entry["op"] != "agent.rotate":
            return None
        return keys.load_verify_key(body["suite"], body["sigPub"])
    except (WireError, ValueError, KeyError, TypeError):
        return None


def verify_audit(
    lines: Iterable[bytes], key: keys.VerifyKey, *, expect_head: Head | None = None
) -> AuditReport:
    """Check every record, every link, and (with ``expect_head``) that the chain still
    contains that head: records cut from the end, or rewritten, are detected."""
    head, count, seen = Head(0, FIRST_PREV), 0, False
    for number, line in enumerate(lines, start=1):
        try:
            record = _check_line(line.rstrip(b"\n"), key)
        except _Broken as exc:
            return AuditReport(count, head, exc.reason, number)
        if record["seq"] != head.seq + 1:
            return AuditReport(count, head, AuditReason.BAD_SEQ, number)
        if record["prev"] != head.hash:
            return AuditReport(count, head, AuditReason.BAD_PREV, number)
        head, count = Head(record["seq"], record["hash"]), count + 1
        key = _rotated(record) or key
        if expect_head is not None and head.seq == expect_head.seq:
            if head.hash != expect_head.hash:
                return AuditReport(count, head, AuditReason.HEAD_MISMATCH, number)
            seen = True
    if expect_head is not None and not seen and expect_head.seq > 0:
        return AuditReport(count, head, AuditReason.TRUNCATED, None)
    return AuditReport(count, head)
