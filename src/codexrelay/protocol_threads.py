"""Agent <-> relay messages for live Codex conversations (threads, items, approvals).

The relay asks with a ``requestId``; the agent answers each request exactly once, with
``thread.reply`` or ``thread.refused`` (a stable ``reason``). Between requests the agent
streams what happens on its threads: ``thread.update``, ``thread.item``, ``thread.delta``
and ``approval.update``. Every item and delta carries a per-thread ``seq`` that only grows,
so a late reader takes a ``thread.read`` snapshot (which names the ``seq`` it covers) and
then applies only live events with a larger ``seq``: no gap, no duplicate.

Everything textual has passed the agent's redaction (B3) and size caps (R18) before it is
put in one of these messages; the caps here refuse what a broken or hostile peer sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from codexrelay.protocol_base import (
    UUID_PATTERN,
    Message,
    RefusalReason,
    SignedDecision,
    SignedStop,
    SignedTurn,
)

MAX_PROMPT_CHARS = 131072
MAX_TEXT_CHARS = 262144
MAX_OUTPUT_CHARS = 1 << 20
MAX_DELTA_CHARS = 65536
MAX_IMAGES = 4
MAX_IMAGE_CHARS = 700_000  # a base64 data URL; the whole frame is capped at 1 MiB anyway
MAX_PAGE_ITEMS = 500
MAX_REQUEST_CHARS = 1_500_000

ThreadId = Annotated[str, Field(pattern=UUID_PATTERN)]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
OpaqueId = Annotated[str, Field(min_length=1, max_length=200)]
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
ImageUrl = Annotated[
    str,
    Field(
        pattern=r"^data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+$",
        max_length=MAX_IMAGE_CHARS,
    ),
]
FilePath = Annotated[str, Field(max_length=4096)]

ThreadSource = Literal["phone", "terminal", "exec"]
ThreadStatus = Literal["idle", "running", "waitingForApproval", "notLoaded", "error"]
TurnStatus = Literal["inProgress", "completed", "interrupted", "failed"]
Decision = Literal["accept", "acceptForSession", "decline", "cancel"]
ApprovalKind = Literal["command", "fileChange"]
ApprovalStatus = Literal[
    "pending",
    "accepted",
    "acceptedForSession",
    "declined",
    "cancelled",
    "expired",
    "answeredElsewhere",  # the terminal (or another app-server client) answered it
]
DeltaField = Literal["text", "output", "summary"]


# ---- shapes -----------------------------------------------------------------------------


class ThreadInfo(Message):
    """A thread as the phone lists it (the relay adds workspaceId, agentId, createdBy)."""

    id: ThreadId
    source: ThreadSource
    status: ThreadStatus
    cwd: FilePath
    write_access: bool = False
    preview: Annotated[str, Field(max_length=2000)] = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    active_turn_id: OpaqueId | None = None
    model: Annotated[str, Field(max_length=200)] | None = None


class TurnInfo(Message):
    id: OpaqueId
    thread_id: ThreadId
    status: TurnStatus
    error: Annotated[str, Field(max_length=4000)] | None = None


class ItemChange(Message):
    """One file of a ``fileChange`` item; for ``add`` the diff is the new content."""

    path: FilePath
    kind: Annotated[str, Field(max_length=20)]
    diff: Annotated[str, Field(max_length=MAX_OUTPUT_CHARS)] = ""


class ThreadItem(Message):
    """One item of a thread in the API.md "Conversations" shape, with its ``seq``."""

    id: OpaqueId
    turn_id: OpaqueId | None = None
    seq: Annotated[int, Field(ge=0)]
    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,63}$")]
    status: Annotated[str, Field(max_length=32)] | None = None
    text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    summary: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    command: Annotated[str, Field(max_length=16384)] | None = None
    cwd: FilePath | None = None
    output: Annotated[str, Field(max_length=MAX_OUTPUT_CHARS)] | None = None
    exit_code: int | None = None
    duration_ms: int | None = None
    changes: Annotated[list[ItemChange], Field(max_length=200)] | None = None
    message: Annotated[str, Field(max_length=4000)] | None = None
    raw: dict[str, Any] | None = None  # other item types, redacted and capped by the agent


class Approval(Message):
    """A command or file-change approval Codex is waiting for."""

    id: OpaqueId
    thread_id: ThreadId
    turn_id: OpaqueId
    item_id: OpaqueId
    kind: ApprovalKind
    command: Annotated[str, Field(max_length=16384)] | None = None
    cwd: FilePath | None = None
    changes: Annotated[list[ItemChange], Field(max_length=200)] | None = None
    reason: Annotated[str, Field(max_length=4000)] | None = None
    available_decisions: Annotated[list[Decision], Field(min_length=1, max_length=4)]
    status: ApprovalStatus
    requested_at: datetime
    expires_at: datetime
    decision: Decision | None = None
    decided_by: Annotated[str, Field(max_length=64)] | None = None
    decided_at: datetime | None = None
    # b64u of the exact request bytes (``ApprovalRequest``); a signed decision names its hash
    request: Annotated[str, Field(max_length=MAX_REQUEST_CHARS)] | None = None


class ModelOption(Message):
    """A model the agent's Codex offers (``model/list``), with its reasoning efforts."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    display_name: Annotated[str, Field(max_length=200)] = ""
    description: Annotated[str, Field(max_length=1000)] = ""
    is_default: bool = False
    default_effort: Annotated[str, Field(max_length=20)] | None = None
    efforts: Annotated[
        list[Annotated[str, Field(max_length=20)]], Field(default_factory=list, max_length=16)
    ]
    images: bool = True  # whether the model takes image input


# ---- relay -> agent ---------------------------------------------------------------------


class ThreadStart(Message):
    """Start a thread in ``cwd`` (relative to workspaceRoot) and run its first turn."""

    type: Literal["thread.start"] = "thread.start"
    request_id: RequestId
    prompt: Prompt
    cwd: FilePath | None = None
    write_access: bool = False
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    effort: Annotated[str, Field(pattern=r"^[a-z]{1,20}$")] | None = None
    images: Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)] | None = None
    signed: SignedTurn | None = None


class ThreadTurn(Message):
    """A follow-up turn on an idle thread."""

    type: Literal["thread.turn"] = "thread.turn"
    request_id: RequestId
    thread_id: ThreadId
    prompt: Prompt
    images: Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)] | None = None
    signed: SignedTurn | None = None


class ThreadSteer(Message):
    """More input for the running turn."""

    type: Literal["thread.steer"] = "thread.steer"
    request_id: RequestId
    thread_id: ThreadId
    prompt: Prompt
    signed: SignedTurn | None = None


class ThreadInterrupt(Message):
    type: Literal["thread.interrupt"] = "thread.interrupt"
    request_id: RequestId
    thread_id: ThreadId
    signed: SignedStop | None = None


class ThreadResume(Message):
    """Load a listed thread (terminal or exec source) so the phone can drive it."""

    type: Literal["thread.resume"] = "thread.resume"
    request_id: RequestId
    thread_id: ThreadId
    write_access: bool = False


class ThreadRead(Message):
    """Items with ``seq`` > ``afterSeq`` (oldest first), a page at a time."""

    type: Literal["thread.read"] = "thread.read"
    request_id: RequestId
    thread_id: ThreadId
    after_seq: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_ITEMS)] = 200


class ThreadList(Message):
    type: Literal["thread.list"] = "thread.list"
    request_id: RequestId
    cursor: Annotated[str, Field(max_length=1000)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class ApprovalDecide(Message):
    """A person's answer to an approval; the agent passes it to Codex as received."""

    type: Literal["approval.decide"] = "approval.decide"
    request_id: RequestId
    thread_id: ThreadId
    approval_id: OpaqueId
    decision: Decision
    decided_by: Annotated[str, Field(max_length=64)] | None = None
    signed: SignedDecision | None = None


class SealedThreadInput(Message):
    """A sealed thread start, turn or steer (``content: sealed``): the phone's
    ``task.submit`` envelope holds the signed statement, its input and the passkey
    assertion; the relay sees only the kind of turn, the thread and the write mode."""

    type: Literal["thread.sealed"] = "thread.sealed"
    request_id: RequestId
    mode: Literal["new", "start", "steer"]
    thread_id: ThreadId | None = None
    write_access: bool = False
    envelope: Annotated[str, Field(min_length=2, max_length=MAX_REQUEST_CHARS)]


class SealedDecide(Message):
    """A sealed approval answer: the signed decision (bound to the request's bytes) inside
    an ``approval.decision`` envelope; the relay does not see the decision."""

    type: Literal["approval.sealed"] = "approval.sealed"
    request_id: RequestId
    thread_id: ThreadId
    approval_id: OpaqueId
    envelope: Annotated[str, Field(min_length=2, max_length=MAX_REQUEST_CHARS)]


class ModelsList(Message):
    """The models and reasoning efforts the agent's Codex offers, for the phone's picker."""

    type: Literal["models.list"] = "models.list"
    request_id: RequestId


# ---- agent -> relay ---------------------------------------------------------------------


class ThreadReply(Message):
    """The answer to one request; only the fields that request returns are present."""

    type: Literal["thread.reply"] = "thread.reply"
    request_id: RequestId
    thread: ThreadInfo | None = None
    turn: TurnInfo | None = None
    items: Annotated[list[ThreadItem], Field(max_length=MAX_PAGE_ITEMS)] | None = None
    approvals: Annotated[list[Approval], Field(max_length=100)] | None = None
    approval: Approval | None = None
    seq: Annotated[int, Field(ge=0)] | None = None
    more: bool | None = None
    threads: Annotated[list[ThreadInfo], Field(max_length=100)] | None = None
    next_cursor: Annotated[str, Field(max_length=1000)] | None = None
    models: Annotated[list[ModelOption], Field(max_length=100)] | None = None


class ThreadRefused(Message):
    """The request was not carried out; ``reason`` is a stable code (docs/PROTOCOL.md)."""

    type: Literal["thread.refused"] = "thread.refused"
    request_id: RequestId
    reason: RefusalReason
    message: Annotated[str, Field(max_length=500)] = ""


class ThreadUpdate(Message):
    """A thread changed state (started, running, waiting, idle) or a turn began or ended."""

    type: Literal["thread.update"] = "thread.update"
    thread: ThreadInfo
    turn: TurnInfo | None = None


class ThreadItemEvent(Message):
    """An item appeared or changed state; it replaces the earlier state of the same id."""

    type: Literal["thread.item"] = "thread.item"
    thread_id: ThreadId
    item: ThreadItem


class ThreadDelta(Message):
    """Streamed text appended to one field of an item (message text, command output)."""

    type: Literal["thread.delta"] = "thread.delta"
    thread_id: ThreadId
    turn_id: OpaqueId | None = None
    item_id: OpaqueId
    seq: Annotated[int, Field(ge=0)]
    field: DeltaField
    delta: Annotated[str, Field(max_length=MAX_DELTA_CHARS)]


class ApprovalUpdate(Message):
    """An approval was requested, answered, expired or withdrawn."""

    type: Literal["approval.update"] = "approval.update"
    approval: Approval


class ThreadsUpdate(Message):
    """The agent's threads under workspaceRoot, newest first (after connecting)."""

    type: Literal["threads.update"] = "threads.update"
    threads: Annotated[list[ThreadInfo], Field(max_length=100)]


ConversationRelayMessage = (
    ThreadStart
    | ThreadTurn
    | ThreadSteer
    | ThreadInterrupt
    | ThreadResume
    | ThreadRead
    | ThreadList
    | ApprovalDecide
    | ModelsList
    | SealedThreadInput
    | SealedDecide
)
ConversationAgentMessage = (
    ThreadReply
    | ThreadRefused
    | ThreadUpdate
    | ThreadItemEvent
    | ThreadDelta
    | ApprovalUpdate
    | ThreadsUpdate
)
ConversationRequest = ConversationRelayMessage
