"""Signed statements as exact bytes (TRUST.md §4, §4.5, §4.8, §4.9, §4.13, §5).

A statement is UTF-8 JSON made by its signer. It travels as ``b64u(bytes)``; the receiver
decodes the bytes, hashes *those* bytes, and parses them strictly (duplicate keys, unknown
fields and loose types refused, size capped). It never re-serialises them. Passkey-signed
kinds are signed with ``challenge = H(tag(kind) ‖ bytes)``; cancel and interrupt are signed
by the device key over ``tag(kind) ‖ bytes`` (they can only stop work, §4.9).

Times are whole Unix seconds. Field names are camelCase on the wire.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Generic, Literal, Self, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic import model_validator as _model_validator
from pydantic.alias_generators import to_camel

from codexrelay.e2e.tags import TagName, tagged_hash
from codexrelay.e2e.wire import WireError, b64u, b64u_decode, loads_object

VERSION: Final = 1
MAX_STATEMENT_BYTES: Final = 8 * 1024
MAX_BODY_BYTES: Final = 256 * 1024
MAX_SKEW_SEC: Final = 300  # §4.6 step 4: issuedAt may be this far in the future
MAX_SAFE_INT: Final = 2**53 - 1  # JSON numbers both Python and JavaScript read exactly

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:#-]{0,127}$")]
AnyUuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
Uuid4 = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
    ),
]
Digest = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
"""Canonical unpadded base64url of a 32-byte SHA-256 digest."""
Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Path = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
UnixTime = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
Seq = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
Suite = Literal["c25519", "p256"]
"""Device and agent key suites: Ed25519 + X25519, or the ECDSA/ECDH P-256 fallback (§3)."""
PublicKeyText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43,88}$")]
TaskType = Literal["codex_exec", "run_action", "read_log"]
Decision = Literal["accept", "acceptForSession", "decline", "cancel"]


class Strict(BaseModel):
    """A wire object: camelCase names only, no extra fields, no coercion, immutable."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=to_camel, validate_by_name=False
    )


class LogHead(Strict):
    """A position in the membership log the signer had verified (§4.11)."""

    seq: Seq
    hash: Digest


class _Expiring(Strict):
    issued_at: UnixTime
    expires_at: UnixTime

    @_model_validator(mode="after")
    def _window(self) -> Self:
        if self.expires_at <= self.issued_at:
            msg = "expiresAt must be after issuedAt"
            raise ValueError(msg)
        return self


class TaskStatement(_Expiring):
    """§4.5: what a member asks one agent to run, once."""

    v: Literal[1]
    kind: Literal["task"]
    ws: Id
    agent: Id
    task: Uuid4
    type: TaskType
    write_access: bool
    cwd: Path | None
    resume_session_id: Id | None
    action_id: Id | None
    log_source_id: Id | None
    body_hash: Digest
    device: Id
    log_head: LogHead

    @_model_validator(mode="after")
    def _fields_for_type(self) -> Self:
        wants = {"codex_exec": (None, None), "run_action": ("action", None)}
        action, source = wants.get(self.type, (None, "source"))
        if (self.action_id is not None) != (action is not None):
            msg = "actionId must be set exactly for run_action"
            raise ValueError(msg)
        if (self.log_source_id is not None) != (source is not None):
            msg = "logSourceId must be set exactly for read_log"
            raise ValueError(msg)
        if self.type != "codex_exec" and (self.write_access or self.resume_session_id):
            msg = "writeAccess and resumeSessionId are for codex_exec only"
            raise ValueError(msg)
        return self


class TaskBody(Strict):
    """The task's content, committed to by ``bodyHash`` (sealed in phase 2)."""

    prompt: Annotated[str, StringConstraints(max_length=MAX_BODY_BYTES)]
    salt: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{21}[AQgw]$")]


class TurnStatement(_Expiring):
    """§4.13: a new thread (``mode: "new"``; ``thread`` is then a fresh uuid4 the phone made,
    since Codex names the thread only once it starts), a follow-up turn, or a steer into a
    running turn of the thread the agent advertised."""

    v: Literal[1]
    kind: Literal["turn"]
    ws: Id
    agent: Id
    thread: Id
    turn: Uuid4
    mode: Literal["new", "start", "steer"]
    input_hash: Digest
    write_access: bool
    device: Id
    log_head: LogHead


ImageUrl = Annotated[
    str, StringConstraints(pattern=r"^data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+$")
]


class TurnInput(Strict):
    """What a turn sends Codex, committed to by ``inputHash``. ``cwd``, ``model`` and
    ``effort`` only start a thread (``mode: "new"``); a steer carries no photos."""

    prompt: Annotated[str, StringConstraints(min_length=1, max_length=MAX_BODY_BYTES)]
    images: Annotated[list[ImageUrl], Field(max_length=4)] | None
    cwd: Path | None
    model: Label | None
    effort: Annotated[str, StringConstraints(pattern=r"^[a-z]{1,20}$")] | None
    salt: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{21}[AQgw]$")]


class ApprovalRequest(Strict):
    """§4.8: the exact question the agent asks; ``reqHash = b64u(H(bytes))``. The phone
    shows these bytes (decoded by itself), never the relay's wording of them."""

    v: Literal[1]
    kind: Literal["approval.req"]
    agent: Id
    thread: Id
    turn: Label
    request_id: Id
    type: Literal["command", "fileChange"]
    command: str | None
    cwd: str | None
    changes: list[dict[str, str]] | None
    reason: str | None
    decisions: list[Decision]
    expires_at: UnixTime


class DecisionStatement(_Expiring):
    """§4.8: one person's answer to the exact approval request the agent sent."""

    v: Literal[1]
    kind: Literal["decision"]
    ws: Id
    agent: Id
    task: Id
    request_id: Id
    req_hash: Digest
    decision: Decision
    device: Id
    log_head: LogHead


class CancelStatement(Strict):
    """§4.9: stop a task; device-key signed, no UV (it can only stop work)."""

    v: Literal[1]
    kind: Literal["cancel"]
    ws: Id
    agent: Id
    task: Uuid4
    device: Id
    issued_at: UnixTime


class InterruptStatement(Strict):
    """§4.13: stop a running turn; device-key signed like cancel."""

    v: Literal[1]
    kind: Literal["interrupt"]
    ws: Id
    agent: Id
    thread: Id
    turn: Label
    device: Id
    issued_at: UnixTime


class KeyRequestStatement(Strict):
    """§4.7: a reader device asks the agent to wrap a task's (or a sealed thread's) key to
    it again (it joined or re-enrolled later); device-key signed under ``tag(keyreq)``.
    ``kexPub`` names the key to wrap to, and must be the one the log certified for that
    device. ``task`` is a task id (uuid4) or a Codex thread id (a UUID of another version)."""

    v: Literal[1]
    kind: Literal["key.req"]
    ws: Id
    agent: Id
    task: AnyUuid
    device: Id
    kex_pub: PublicKeyText
    issued_at: UnixTime


class DeviceCertificate(Strict):
    """§3, §4.4: a device's keys certified by one of its user's passkeys (``tag(devcert)``)."""

    v: Literal[1]
    kind: Literal["devcert"]
    ws: Id
    user_id: Id
    device_id: Id
    label: Label
    sig_pub: PublicKeyText
    kex_pub: PublicKeyText
    suite: Suite
    issued_at: UnixTime


AnyStatement = (
    TaskStatement
    | TurnStatement
    | DecisionStatement
    | CancelStatement
    | InterruptStatement
    | KeyRequestStatement
    | DeviceCertificate
)
S = TypeVar("S", bound=Strict)

TAG_OF_KIND: Final[dict[str, TagName]] = {
    "task": "task",
    "turn": "turn",
    "decision": "decision",
    "cancel": "cancel",
    "interrupt": "interrupt",
    "devcert": "devcert",
    "key.req": "keyreq",
}
PASSKEY_SIGNED: Final = frozenset({"task", "turn", "decision", "devcert"})
DEVICE_SIGNED: Final = frozenset({"cancel", "interrupt", "key.req"})


class StatementReason(StrEnum):
    """Why a statement's bytes were refused; stable, recorded in the agent's audit log."""

    NOT_BASE64URL = "not-base64url"
    TOO_LARGE = "too-large"
    NOT_UTF8 = "not-utf8"
    NOT_JSON = "not-json"
    DUPLICATE_KEY = "duplicate-key"
    NOT_AN_OBJECT = "not-an-object"
    UNSUPPORTED_VERSION = "unsupported-version"
    WRONG_KIND = "wrong-kind"
    UNKNOWN_FIELD = "unknown-field"
    MISSING_FIELD = "missing-field"
    WRONG_TYPE = "wrong-type"
    BAD_VALUE = "bad-value"
    INCONSISTENT = "inconsistent"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    TTL_TOO_LONG = "ttl-too-long"
    BODY_MISMATCH = "body-mismatch"


class StatementError(ValueError):
    """A refused statement; ``reason`` is the stable code."""

    def __init__(self, reason: StatementReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


@dataclass(frozen=True)
class Signed(Generic[S]):
    """A parsed statement together with the exact bytes it was parsed from."""

    raw: bytes
    value: S
    tag: TagName

    @property
    def challenge(self) -> bytes:
        """``H(tag ‖ raw)``: the WebAuthn challenge (or the device-signed digest's preimage)."""
        return tagged_hash(self.tag, self.raw)

    @property
    def text(self) -> str:
        """The bytes as they travel: unpadded base64url."""
        return b64u(self.raw)


def parse_statement(
    text: str, model: type[S], *, max_bytes: int = MAX_STATEMENT_BYTES
) -> Signed[S]:
    """Decode ``b64u(bytes)`` and parse it strictly as ``model`` (see :func:`decode_statement`)."""
    try:
        raw = b64u_decode(text, max_bytes=max_bytes)
    except WireError as exc:
        raise StatementError(StatementReason(exc.reason.value)) from None
    return decode_statement(raw, model, max_bytes=max_bytes)


def decode_statement(
    raw: bytes, model: type[S], *, max_bytes: int = MAX_STATEMENT_BYTES
) -> Signed[S]:
    """Parse exact bytes as the statement ``model``: version and kind first, then each field."""
    kind = _expected_kind(model)
    value = decode_object(raw, model, max_bytes=max_bytes, kind=kind)
    return Signed(raw=raw, value=value, tag=TAG_OF_KIND[kind])


def decode_object(raw: bytes, model: type[S], *, max_bytes: int, kind: str | None = None) -> S:
    """Strict JSON bytes to ``model``; a ``v`` field, where the model has one, must be 1."""
    try:
        obj = loads_object(raw, max_bytes=max_bytes)
    except WireError as exc:
        raise StatementError(StatementReason(exc.reason.value)) from None
    if "v" in model.model_fields:
        version = obj.get("v")
        # Literal[1] would also take True and 1.0; the wire version is exactly the integer 1.
        if type(version) is not int or version != VERSION:
            raise StatementError(StatementReason.UNSUPPORTED_VERSION, repr(version)[:20])
    if kind is not None and obj.get("kind") != kind:
        raise StatementError(StatementReason.WRONG_KIND, f"expected {kind}")
    return validate(model, obj)


def _expected_kind(model: type[Strict]) -> str:
    return str(get_args(model.model_fields["kind"].annotation)[0])


def validate(model: type[S], obj: Any) -> S:
    """``model.model_validate`` with pydantic's errors turned into one stable reason."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StatementError(_reason(first["type"]), _where(first["loc"])) from None


def _reason(error_type: str) -> StatementReason:
    if error_type == "extra_forbidden":
        return StatementReason.UNKNOWN_FIELD
    if error_type == "missing":
        return StatementReason.MISSING_FIELD
    if error_type == "value_error":
        return StatementReason.INCONSISTENT
    if error_type.endswith("_type") or error_type in {"model_type", "dict_type", "is_instance_of"}:
        return StatementReason.WRONG_TYPE
    return StatementReason.BAD_VALUE


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)[:80]


def check_window(
    issued_at: int, expires_at: int, *, now: int, max_ttl: int, skew: int = MAX_SKEW_SEC
) -> None:
    """§4.6 step 4: ``issuedAt - skew <= now <= expiresAt`` and a lifetime within policy."""
    if expires_at - issued_at > max_ttl:
        raise StatementError(StatementReason.TTL_TOO_LONG, f"{expires_at - issued_at}s")
    if now < issued_at - skew:
        raise StatementError(StatementReason.NOT_YET_VALID)
    if now > expires_at:
        raise StatementError(StatementReason.EXPIRED)


def check_recent(issued_at: int, *, now: int, max_age: int, skew: int = MAX_SKEW_SEC) -> None:
    """Freshness for kinds without ``expiresAt`` (cancel, interrupt, certificates)."""
    if now < issued_at - skew:
        raise StatementError(StatementReason.NOT_YET_VALID)
    if now > issued_at + max_age:
        raise StatementError(StatementReason.EXPIRED)


def digest(data: bytes) -> str:
    """``b64u(H(data))``: how ``bodyHash``, ``inputHash`` and ``reqHash`` commit to content."""
    return b64u(hashlib.sha256(data).digest())


def check_input(statement: TurnStatement, raw: bytes) -> TurnInput:
    """§4.6 step 3 for a turn: the input is the one signed, and fits the turn's mode."""
    if digest(raw) != statement.input_hash:
        raise StatementError(StatementReason.BODY_MISMATCH)
    given = decode_object(raw, TurnInput, max_bytes=MAX_BODY_BYTES * 4)
    new_only = (given.cwd, given.model, given.effort)
    if statement.mode != "new" and any(x is not None for x in new_only):
        raise StatementError(StatementReason.INCONSISTENT, "cwd/model/effort start a thread")
    if statement.mode == "steer" and given.images is not None:
        raise StatementError(StatementReason.INCONSISTENT, "a steer carries no photos")
    return given


def check_body(statement: TaskStatement, body: bytes) -> TaskBody:
    """§4.6 step 3: the body is the one the statement committed to, then parse it."""
    if digest(body) != statement.body_hash:
        raise StatementError(StatementReason.BODY_MISMATCH)
    return decode_object(body, TaskBody, max_bytes=MAX_BODY_BYTES + 1024)
