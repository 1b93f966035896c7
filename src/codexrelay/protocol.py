"""Typed agent <-> relay messages over the agent's WebSocket, with one parse/dump pair.

Every message is a JSON object with a ``type``. Unknown types, unknown fields and wrong
shapes are refused (``ProtocolError``), so neither side acts on a message it misreads.

Numbered connections (B4): when the agent's ``hello`` carries ``linkSeq: 1``, every message
in both directions carries ``linkSeq``, counting 1, 2, 3 ... per direction and connection
(the relay's ``welcome`` is its 1). A gap, a repeat or a step back is a
:class:`SequenceError`; the receiver logs it and closes with :data:`CLOSE_SEQUENCE`, and the
agent reconnects with fresh counters. ``linkSeq`` is framing: the typed models never see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

# Re-exported (every module imports these from here); the base lives apart so that the
# conversation messages in protocol_threads can derive from it without an import cycle.
from codexrelay.protocol_base import (
    ID_PATTERN,
    UUID_PATTERN,
    Message,
    ProtocolError,
    RefusalReason,
    SignedDecision,
    SignedStop,
    SignedTask,
    SignedTurn,
)
from codexrelay.protocol_sealed import (
    KeyRequest,
    SealedCatalog,
    SealedEnvelope,
    SealedTask,
    SealedThreadEnvelope,
)
from codexrelay.protocol_threads import ConversationAgentMessage, ConversationRelayMessage

__all__ = [  # the re-exported names; every name defined here is public as well
    "ID_PATTERN",
    "UUID_PATTERN",
    "Message",
    "ProtocolError",
    "RefusalReason",
    "SignedDecision",
    "SignedStop",
    "SignedTask",
    "SignedTurn",
]

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20

# Close codes (4000-4999 are application-defined). A "stop" code tells the agent that
# retrying cannot help, so `agent start` exits instead of reconnecting.
CLOSE_REVOKED = 4401  # token unknown, revoked, expired or signed with an old tokenSecret
CLOSE_PROTOCOL = 4400  # malformed or unexpected message, or unsupported protocol version
CLOSE_REPLACED = 4409  # a newer connection of the same agent took over
CLOSE_SHUTDOWN = 4503  # relay shutting down; reconnect with backoff
CLOSE_SEQUENCE = 4412  # a message arrived out of sequence (gap, repeat, reorder); reconnect
STOP_CLOSE_CODES = frozenset({CLOSE_REVOKED})

TaskKind = Literal["codex_exec", "run_action", "read_log"]
FinishStatus = Literal["completed", "failed", "cancelled"]


class SequenceError(ProtocolError):
    """A numbered message out of order: ``gap``, ``repeat`` or ``reorder`` (B4)."""

    def __init__(
        self, kind: Literal["gap", "repeat", "reorder", "missing"], got: int | None, want: int
    ) -> None:
        super().__init__(f"linkSeq {kind}: got {got}, expected {want}")
        self.kind = kind


LINK_SEQ = "linkSeq"


class LinkCounter:
    """One direction of a numbered connection: the last number sent or received."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        """The number of the next message to send."""
        self.last += 1
        return self.last

    def accept(self, seq: int | None) -> None:
        """Take the number of a received message, or raise :class:`SequenceError`."""
        want = self.last + 1
        if seq is None:
            raise SequenceError("missing", None, want)
        if seq != want:
            kind: Literal["gap", "repeat", "reorder"] = (
                "gap" if seq > want else "repeat" if seq == self.last else "reorder"
            )
            raise SequenceError(kind, seq, want)
        self.last = seq


class CatalogItem(Message):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    label: Annotated[str, Field(max_length=120)]


class AgentFeatures(Message):
    codex_exec: bool = False
    codex_exec_write: bool = False
    run_action: bool = False
    read_log: bool = False
    conversations: bool = False  # live Codex threads (app-server); see conversation.py


# ---- agent -> relay -------------------------------------------------------------------


class ChainHead(Message):
    """A position in a hash chain: the membership log, or the agent's audit log."""

    seq: Annotated[int, Field(ge=0)]
    hash: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]


class AgentTrust(Message):
    """What a protected agent reports about itself (TRUST.md §8): the workspace it pinned,
    the log head it verified, its audit log head and its signing key. Phones show it so a
    person can note the heads off the host and compare the safety number."""

    workspace_id: Annotated[str, Field(max_length=128)]
    genesis_hash: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
    log_head: ChainHead
    audit_head: ChainHead
    sig_pub: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43,88}$")]


class Hello(Message):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    version: Annotated[str, Field(max_length=40)]
    agent_id: Annotated[str, Field(pattern=ID_PATTERN)]
    hostname: Annotated[str, Field(max_length=255)] = ""
    workspace_root_name: Annotated[str, Field(max_length=255)] = ""
    features: AgentFeatures
    actions: Annotated[list[CatalogItem], Field(default_factory=list, max_length=200)]
    log_sources: Annotated[list[CatalogItem], Field(default_factory=list, max_length=200)]
    running_task_ids: Annotated[list[str], Field(default_factory=list, max_length=1000)]
    trust: AgentTrust | None = None


class TrustStatus(Message):
    """Sent after ``hello`` and whenever the agent's pinned log or audit head moves."""

    type: Literal["trust.status"] = "trust.status"
    trust: AgentTrust


class LogPush(Message):
    """Membership log entries a phone pushes to an agent (TRUST.md §4.10): a removal reaches
    the agent even when the relay's log endpoint withholds it. ``start`` is the first
    entry's ``seq``; the agent verifies them on its pinned chain."""

    type: Literal["log.push"] = "log.push"
    push_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    start: Annotated[int, Field(ge=0)]
    entries: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]


class LogAck(Message):
    """The agent's answer to a push: ``ack`` is ``b64u`` of ``{"v":1,"kind":"log.ack","ws",
    "agent","pushId","head":{"seq","hash"}}`` and ``sig`` its Ed25519 signature under
    ``tag(logack)``, which the relay cannot make; or ``reason`` when the push was refused."""

    type: Literal["log.ack"] = "log.ack"
    push_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    ack: Annotated[str, Field(max_length=1000)] | None = None
    sig: Annotated[str, Field(max_length=200)] | None = None
    reason: RefusalReason | None = None


class FileChangeInfo(Message):
    path: Annotated[str, Field(max_length=4096)]
    kind: Annotated[str, Field(max_length=20)]


class ProgressEvent(Message):
    """One step of a running task, already capped (and redacted) by the agent."""

    kind: Literal["message", "reasoning", "command", "file_change", "web_search", "error", "output"]
    text: Annotated[str, Field(max_length=65536)] = ""
    command: Annotated[str, Field(max_length=4096)] | None = None
    exit_code: int | None = None
    status: Annotated[str, Field(max_length=20)] | None = None
    changes: Annotated[list[FileChangeInfo], Field(default_factory=list, max_length=200)]


class TaskAccepted(Message):
    type: Literal["task.accepted"] = "task.accepted"
    task_id: str


class TaskRejected(Message):
    type: Literal["task.rejected"] = "task.rejected"
    task_id: str
    reason: RefusalReason
    message: Annotated[str, Field(max_length=500)] = ""


class TaskStarted(Message):
    type: Literal["task.started"] = "task.started"
    task_id: str


class TaskProgress(Message):
    type: Literal["task.progress"] = "task.progress"
    task_id: str
    seq: int = 0
    event: ProgressEvent
    codex_session_id: Annotated[str, Field(pattern=UUID_PATTERN)] | None = None


class TaskFinished(Message):
    type: Literal["task.finished"] = "task.finished"
    task_id: str
    status: FinishStatus
    exit_code: int | None = None
    final_message: Annotated[str, Field(max_length=262144)] | None = None
    output_tail: Annotated[str, Field(max_length=1 << 20)] = ""
    diff_text: Annotated[str, Field(max_length=1 << 20)] | None = None
    diff_truncated: bool = False
    error: Annotated[str, Field(max_length=4000)] | None = None
    codex_session_id: Annotated[str, Field(pattern=UUID_PATTERN)] | None = None
    redactions: int = 0


class SessionPreview(Message):
    role: Literal["user", "assistant"]
    text: Annotated[str, Field(max_length=320)]


class SessionSummary(Message):
    session_id: Annotated[str, Field(pattern=UUID_PATTERN)]
    title: Annotated[str, Field(max_length=180)]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    cwd: Annotated[str, Field(max_length=4096)]
    preview: Annotated[list[SessionPreview], Field(default_factory=list, max_length=10)]


class SessionsUpdate(Message):
    type: Literal["sessions"] = "sessions"
    sessions: Annotated[list[SessionSummary], Field(max_length=500)]


class TokenRenew(Message):
    type: Literal["token.renew"] = "token.renew"


# ---- relay -> agent -------------------------------------------------------------------


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    workspace_id: str
    token_expires_at: datetime | None = None
    features: AgentFeatures


class TaskSpec(Message):
    """What the relay asks the agent to run; the agent re-checks all of it (R09, R15)."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    type: TaskKind
    prompt: Annotated[str, Field(max_length=1 << 20)] | None = None
    cwd: Annotated[str, Field(max_length=4096)] | None = None
    write_access: bool = False
    resume_session_id: Annotated[str, Field(pattern=UUID_PATTERN)] | None = None
    action_id: Annotated[str, Field(max_length=64)] | None = None
    log_source_id: Annotated[str, Field(max_length=64)] | None = None
    signed: SignedTask | None = None
    sealed: SealedTask | None = None  # a protected workspace's sealed task (no content here)


class TaskDispatch(Message):
    type: Literal["task"] = "task"
    task: TaskSpec


class TaskCancel(Message):
    type: Literal["task.cancel"] = "task.cancel"
    task_id: str
    signed: SignedStop | None = None


class TokenRenewed(Message):
    type: Literal["token.renewed"] = "token.renewed"
    agent_token: str
    expires_at: datetime | None = None


AgentMessage = Annotated[
    Hello
    | TaskAccepted
    | TaskRejected
    | TaskStarted
    | TaskProgress
    | TaskFinished
    | SessionsUpdate
    | TokenRenew
    | TrustStatus
    | LogAck
    | SealedEnvelope
    | SealedCatalog
    | SealedThreadEnvelope
    | ConversationAgentMessage,
    Field(discriminator="type"),
]
RelayMessage = Annotated[
    Welcome
    | TaskDispatch
    | TaskCancel
    | TokenRenewed
    | LogPush
    | KeyRequest
    | ConversationRelayMessage,
    Field(discriminator="type"),
]

_AGENT = TypeAdapter(AgentMessage)
_RELAY = TypeAdapter(RelayMessage)


@dataclass(frozen=True)
class Frame:
    """A received message and its ``linkSeq`` (None on an unnumbered connection)."""

    seq: int | None
    message: Message


def _load(raw: str | bytes) -> Any:
    if len(raw) > MAX_MESSAGE_BYTES:
        msg = "message too large"
        raise ProtocolError(msg)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        msg = "message is not JSON"
        raise ProtocolError(msg) from None


def _split_seq(data: Any) -> tuple[int | None, Any]:
    """Take ``linkSeq`` off a message object; a present one must be a positive integer."""
    if not isinstance(data, dict) or LINK_SEQ not in data:
        return None, data
    seq = data.pop(LINK_SEQ)
    if type(seq) is not int or seq < 1:
        msg = "linkSeq must be a positive integer"
        raise ProtocolError(msg)
    return seq, data


def _parse(adapter: TypeAdapter[Message], raw: str | bytes) -> Message:
    return _validate(adapter, _split_seq(_load(raw))[1])


def _parse_frame(adapter: TypeAdapter[Message], raw: str | bytes) -> Frame:
    """The frame's number first (so a bad message still counts), then the message."""
    seq, data = _split_seq(_load(raw))
    return Frame(seq, _validate(adapter, data))


def read_seq(raw: str | bytes) -> int | None:
    """The ``linkSeq`` of raw bytes that did not parse as a message, if it has one."""
    try:
        return _split_seq(_load(raw))[0]
    except ProtocolError:
        return None


def _validate(adapter: TypeAdapter[Message], data: Any) -> Message:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = f"bad message at {where or 'top'}: {first['msg']}"
        raise ProtocolError(msg) from None


def parse_agent_message(raw: str | bytes) -> Message:
    """Parse what an agent sent (used by the relay)."""
    return _parse(_AGENT, raw)  # type: ignore[arg-type]


def parse_relay_message(raw: str | bytes) -> Message:
    """Parse what the relay sent (used by the agent)."""
    return _parse(_RELAY, raw)  # type: ignore[arg-type]


def parse_agent_frame(raw: str | bytes) -> Frame:
    """What an agent sent, with its ``linkSeq`` (used by the relay)."""
    return _parse_frame(_AGENT, raw)  # type: ignore[arg-type]


def parse_relay_frame(raw: str | bytes) -> Frame:
    """What the relay sent, with its ``linkSeq`` (used by the agent)."""
    return _parse_frame(_RELAY, raw)  # type: ignore[arg-type]


def dump_message(message: Message, seq: int | None = None) -> str:
    """Serialize any message as compact camelCase JSON, numbered when ``seq`` is given."""
    data = message.model_dump_json(by_alias=True, exclude_none=True)
    if seq is None:
        return data
    return f'{{"{LINK_SEQ}":{seq},{data[1:]}'  # every message is a non-empty object
