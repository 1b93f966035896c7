"""Sealed envelopes (TRUST.md §4.7, §5): HPKE-wrapped task keys, per-sender AES-256-GCM.

``K_t`` (32 random bytes per task) is wrapped with HPKE base mode, single shot, to each
recipient's kex key: DHKEM(X25519) or DHKEM(P-256), HKDF-SHA256, AES-256-GCM, with
``info = tag(taskkey) ‖ ws ‖ 0 ‖ task ‖ 0 ‖ recipientKeyId``. Each sender derives its own
``K_s = HKDF(ikm=K_t, salt=H(tag(salt) ‖ ws ‖ 0 ‖ task), info=tag(k) ‖ senderKeyId ‖ 0 ‖
epoch)``, so no two senders share a nonce space and a restarted sender (new random epoch)
never reuses one. The nonce is 4 zero bytes ‖ ``seq`` (uint64 BE); the AAD is the exact
header bytes. Senders that sign (agents, device-signed kinds) sign ``tag(msg) ‖ hdr ‖ ct``.
``prev`` chains a sender's envelopes: ``H(tag(msghash) ‖ hdr ‖ ct)`` of the one before.

Plaintext is padded with ``0x80`` then zeros to the next 1 KiB below 16 KiB, then to the
next 16 KiB; the padded length is the header's ``pad``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import Field, StringConstraints

from codexrelay.e2e import keys
from codexrelay.e2e.statements import Digest, Id, Seq, StatementError, Strict, Suite, decode_object
from codexrelay.e2e.tags import tag, tagged_hash
from codexrelay.e2e.wire import WireError, b64u, b64u_decode, dumps

MAX_ENVELOPE_BYTES: Final = 1024 * 1024
MAX_PADDED: Final = 44 * 16 * 1024  # ciphertext in base64url stays under the envelope cap
MAX_HEADER_BYTES: Final = 1024
MAX_KEYS: Final = 64
TAG_BYTES: Final = 16
EPOCH_BYTES: Final = 8
FIRST_PREV: Final = b64u(bytes(32))
Kind = Literal[
    "task.submit",
    "task.out",
    "task.done",
    "approval.req",
    "approval.decision",
    "cancel",
    "key.req",
    "key.wrap",
    "catalog",
    "log.push",
    "log.ack",
]
Epoch = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{10}[AEIMQUYcgkosw048]$")]
_KEMS: Final = {"c25519": hpke.KEM.X25519, "p256": hpke.KEM.P256}


class Header(Strict):
    """The relay-visible, authenticated header."""

    v: Literal[1]
    kind: Kind
    ws: Id
    agent: Id
    task: Id
    sender: Annotated[Id, Field(alias="from")]
    epoch: Epoch
    seq: Seq
    prev: Digest
    pad: Annotated[int, Field(ge=1024, le=MAX_PADDED)]


class KeyWrap(Strict):
    """``K_t`` wrapped to one recipient key."""

    to: Id
    enc: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,300}$")]


class Wire(Strict):
    """The envelope as JSON: ``{v, hdr, keys?, ct, sig?}``."""

    v: Literal[1]
    hdr: Annotated[str, StringConstraints(max_length=(MAX_HEADER_BYTES * 4 + 2) // 3)]
    keys: Annotated[list[KeyWrap], Field(min_length=1, max_length=MAX_KEYS)] | None = None
    ct: str
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")] | None = None


class EnvelopeReason(StrEnum):
    """Why an envelope was dropped; each drop increments a visible counter (§8)."""

    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    WRONG_TASK = "wrong-task"
    MISSING_SIGNATURE = "missing-signature"
    BAD_SIGNATURE = "bad-signature"
    DUPLICATE = "duplicate"
    GAP = "gap"
    BAD_PREV = "bad-prev"
    DECRYPT_FAILED = "decrypt-failed"
    BAD_PADDING = "bad-padding"
    NO_KEY = "no-key"


class EnvelopeError(ValueError):
    """A dropped envelope; ``reason`` is the stable code."""

    def __init__(self, reason: EnvelopeReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


# --- task keys (HPKE) ---


def hpke_suite(suite: Suite) -> hpke.Suite:
    """The RFC 9180 suite for a key suite: DHKEM(X25519 or P-256), HKDF-SHA256, AES-256-GCM."""
    return hpke.Suite(_KEMS[suite], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def taskkey_info(ws: str, task: str, recipient_key_id: str) -> bytes:
    """HPKE ``info``: binds the wrap to the workspace, the task and the recipient key."""
    return (
        tag("taskkey") + ws.encode() + b"\x00" + task.encode() + b"\x00" + recipient_key_id.encode()
    )


def wrap_task_key(
    task_key: bytes, recipient: keys.KexPublic, *, ws: str, task: str, recipient_key_id: str
) -> KeyWrap:
    """Seal ``K_t`` to one recipient (``enc ‖ ct`` in one base64url string)."""
    suite: Suite = "p256" if isinstance(recipient, ec.EllipticCurvePublicKey) else "c25519"
    info = taskkey_info(ws, task, recipient_key_id)
    blob = hpke_suite(suite).encrypt(task_key, recipient, info=info)
    return KeyWrap.model_validate({"to": recipient_key_id, "enc": b64u(blob)})


def unwrap_task_key(wrap: KeyWrap, private: keys.KexKey, *, ws: str, task: str) -> bytes:
    """Open ``K_t`` with our kex key; ``NO_KEY`` if it was not for us or does not open."""
    try:
        blob = b64u_decode(wrap.enc, max_bytes=256)
        key = hpke_suite(keys.suite_of(private)).decrypt(
            blob, private, info=taskkey_info(ws, task, wrap.to)
        )
    except (WireError, InvalidTag, ValueError) as exc:
        raise EnvelopeError(EnvelopeReason.NO_KEY, type(exc).__name__) from None
    if len(key) != 32:
        raise EnvelopeError(EnvelopeReason.NO_KEY, "not a 32-byte task key")
    return key


def new_task_key(rand: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """32 random bytes."""
    return rand(32)


# --- per-sender AEAD ---


def sender_key(task_key: bytes, *, ws: str, task: str, sender: str, epoch: bytes) -> bytes:
    """``K_s``: one AES-256-GCM key per (task, sender key, epoch)."""
    salt = tagged_hash("salt", ws.encode() + b"\x00" + task.encode())
    info = tag("k") + sender.encode() + b"\x00" + epoch
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(task_key)


def nonce(seq: int) -> bytes:
    """4 zero bytes ‖ ``seq`` as uint64 big-endian."""
    return bytes(4) + seq.to_bytes(8, "big")


def padded_size(length: int) -> int:
    """The padded size for ``length`` bytes plus the ``0x80`` marker."""
    n = length + 1
    step = 1024 if n <= 16 * 1024 else 16 * 1024
    return -(-n // step) * step


def pad(data: bytes) -> bytes:
    """``data ‖ 0x80 ‖ zeros`` to :func:`padded_size`."""
    size = padded_size(len(data))
    if size > MAX_PADDED:
        msg = f"at most {MAX_PADDED - 1} bytes fit one envelope"
        raise ValueError(msg)
    return data + b"\x80" + bytes(size - len(data) - 1)


def unpad(padded: bytes) -> bytes:
    """Strip the padding; the size must be exactly what :func:`pad` makes."""
    data = padded.rstrip(b"\x00")
    if not data.endswith(b"\x80") or padded_size(len(data) - 1) != len(padded):
        raise EnvelopeError(EnvelopeReason.BAD_PADDING)
    return data[:-1]


def chain_link(hdr: bytes, ct: bytes) -> str:
    """``b64u(H(tag(msghash) ‖ hdr ‖ ct))``: what the sender's next ``prev`` names."""
    digest = hashlib.sha256(tag("msghash"))
    digest.update(hdr)
    digest.update(ct)
    return b64u(digest.digest())


def signed_message(hdr: bytes, ct: bytes) -> bytes:
    """What a sender's signature covers: ``tag(msg) ‖ hdr ‖ ct``."""
    return tag("msg") + hdr + ct


@dataclass
class Sealer:
    """One sender's stream for one task: derives ``K_s`` once, counts ``seq``, chains."""

    task_key: bytes
    ws: str
    agent: str
    task: str
    sender: str
    signing_key: keys.SigningKey | None = None
    epoch: bytes = b""
    seq: int = 0
    prev: str = FIRST_PREV

    def __post_init__(self) -> None:
        if not self.epoch:
            self.epoch = secrets.token_bytes(EPOCH_BYTES)
        key = sender_key(
            self.task_key, ws=self.ws, task=self.task, sender=self.sender, epoch=self.epoch
        )
        self._aead = AESGCM(key)

    def seal(self, kind: Kind, plaintext: bytes, *, wraps: Iterable[KeyWrap] = ()) -> bytes:
        """The next envelope, as JSON bytes."""
        padded = pad(plaintext)
        header = {
            "v": 1,
            "kind": kind,
            "ws": self.ws,
            "agent": self.agent,
            "task": self.task,
            "from": self.sender,
            "epoch": b64u(self.epoch),
            "seq": self.seq,
            "prev": self.prev,
            "pad": len(padded),
        }
        hdr = dumps(header)
        ct = self._aead.encrypt(nonce(self.seq), padded, hdr)
        # Every value is base64url or our own JSON, so the envelope is assembled directly
        # rather than through a JSON encoder that would scan the ciphertext for escapes.
        parts = [b'{"v":1,"hdr":"', b64u(hdr).encode()]
        wrap_list = [w.model_dump() for w in wraps]
        if wrap_list:
            parts += [b'","keys":', dumps(wrap_list), b',"ct":"']
        else:
            parts.append(b'","ct":"')
        parts.append(b64u(ct).encode())
        if self.signing_key is not None:
            sig = keys.sign(self.signing_key, signed_message(hdr, ct))
            parts += [b'","sig":"', b64u(sig).encode()]
        parts.append(b'"}')
        self.seq += 1
        self.prev = chain_link(hdr, ct)
        return b"".join(parts)


# --- receiving ---


@dataclass
class Counters:
    """What the UI shows (§8): drops by kind of failure, duplicates and gaps."""

    accepted: int = 0
    duplicates: int = 0
    gaps: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Opened:
    """An envelope that passed every check."""

    header: Header
    plaintext: bytes
    link: str


def parse_wire(data: bytes) -> tuple[Wire, Header, bytes, bytes]:
    """Strictly parse an envelope: the JSON, its header bytes and its ciphertext bytes."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(EnvelopeReason.TOO_LARGE)
    try:
        wire = decode_object(data, Wire, max_bytes=MAX_ENVELOPE_BYTES)
        hdr = b64u_decode(wire.hdr, max_bytes=MAX_HEADER_BYTES)
        header = decode_object(hdr, Header, max_bytes=MAX_HEADER_BYTES)
        ct = b64u_decode(wire.ct, max_bytes=MAX_PADDED + TAG_BYTES)
    except (StatementError, WireError) as exc:
        raise EnvelopeError(EnvelopeReason.MALFORMED, str(exc)) from None
    if len(ct) != header.pad + TAG_BYTES:
        raise EnvelopeError(EnvelopeReason.MALFORMED, "ciphertext length is not pad + tag")
    return wire, header, hdr, ct


class Receiver:
    """Accepts one task's envelopes in order, per (sender, epoch) (§5 receiver rules).

    ``seq`` must be exactly the last plus one and ``prev`` the last one's link; a repeat is
    a duplicate, a jump a gap (ask the relay to resend). Any failure drops the envelope,
    counts it, and leaves the stream where it was, so nothing unverified is ever shown.
    """

    def __init__(self, *, task_key: bytes, ws: str, agent: str, task: str) -> None:
        self.task_key, self.ws, self.agent, self.task = task_key, ws, agent, task
        self.counters = Counters()
        self._last: dict[tuple[str, str], tuple[int, str]] = {}
        self._aeads: dict[tuple[str, str], AESGCM] = {}

    def open(self, data: bytes, *, sender_key: keys.VerifyKey | None) -> Opened:
        """Check and decrypt; ``sender_key`` given means a signature is required."""
        try:
            opened = self._open(data, sender_key)
        except EnvelopeError as exc:
            if exc.reason is EnvelopeReason.DUPLICATE:
                self.counters.duplicates += 1
            elif exc.reason is EnvelopeReason.GAP:
                self.counters.gaps += 1
            else:
                self.counters.failed += 1
            raise
        self.counters.accepted += 1
        return opened

    def next_seq(self, sender: str, epoch: str) -> int:
        """The seq expected next from that sender and epoch."""
        last = self._last.get((sender, epoch))
        return 0 if last is None else last[0] + 1

    def _open(self, data: bytes, sender_key: keys.VerifyKey | None) -> Opened:
        wire, header, hdr, ct = parse_wire(data)
        if (header.ws, header.agent, header.task) != (self.ws, self.agent, self.task):
            raise EnvelopeError(EnvelopeReason.WRONG_TASK)
        if sender_key is not None:
            if wire.sig is None:
                raise EnvelopeError(EnvelopeReason.MISSING_SIGNATURE)
            sig = b64u_decode(wire.sig, max_bytes=64)
            if not keys.verify(sender_key, sig, signed_message(hdr, ct)):
                raise EnvelopeError(EnvelopeReason.BAD_SIGNATURE)
        stream = (header.sender, header.epoch)
        expected = self.next_seq(*stream)
        if header.seq < expected:
            raise EnvelopeError(EnvelopeReason.DUPLICATE, f"seq {header.seq}")
        if header.seq > expected:
            raise EnvelopeError(EnvelopeReason.GAP, f"expected {expected}, got {header.seq}")
        last = self._last.get(stream)
        if header.prev != (FIRST_PREV if last is None else last[1]):
            raise EnvelopeError(EnvelopeReason.BAD_PREV)
        try:
            padded = self._aead(header).decrypt(nonce(header.seq), ct, hdr)
        except InvalidTag:
            raise EnvelopeError(EnvelopeReason.DECRYPT_FAILED) from None
        plaintext = unpad(padded)
        link = chain_link(hdr, ct)
        self._last[stream] = (header.seq, link)
        return Opened(header=header, plaintext=plaintext, link=link)

    def _aead(self, header: Header) -> AESGCM:
        stream = (header.sender, header.epoch)
        aead = self._aeads.get(stream)
        if aead is None:
            epoch = b64u_decode(header.epoch, max_bytes=EPOCH_BYTES)
            key = sender_key(
                self.task_key, ws=self.ws, task=self.task, sender=header.sender, epoch=epoch
            )
            aead = self._aeads[stream] = AESGCM(key)
        return aead
