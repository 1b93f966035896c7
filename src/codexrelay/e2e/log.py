"""The membership log: verify from the genesis to a head, detect forks (TRUST.md §4.1, §4.11).

Each entry links to the one before by ``prev``; the chain hash ``H(tag(loghash) ‖ bytes)``
covers the entry bytes and not the signatures (as Tailscale TKA's ``SigHash``). Verifying
walks the chain once: parse strictly, check ``ws``/``seq``/``prev``, check every signature
against the keys the log held *before* the entry (so a revoked or removed signer is stale),
apply the role rules (:mod:`logrules`), then the change. The result is a frozen
:class:`LogView`: the roles, passkeys, devices, agents, policy and head the agent and phones
act on. The relay's own tables are only a cache of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e.logentries import (
    BODIES,
    MAX_ENTRY_BYTES,
    AgentSignature,
    Entry,
    Genesis,
    SignedEntry,
)
from codexrelay.e2e.logrules import may_sign
from codexrelay.e2e.logstate import State, StateError
from codexrelay.e2e.logview import Agent, Change, Device, Head, LogView, Member, Passkey
from codexrelay.e2e.statements import StatementError, decode_object, validate
from codexrelay.e2e.tags import tag, tagged_hash
from codexrelay.e2e.webauthn_verify import PasskeyError, PasskeyReason, verify_passkey_signature
from codexrelay.e2e.wire import WireError, b64u, b64u_decode, loads_object

__all__ = [
    "Agent",
    "Change",
    "Device",
    "Fork",
    "Head",
    "HeadStatus",
    "LogError",
    "LogReason",
    "LogView",
    "Member",
    "Passkey",
    "chain_hash",
    "extend",
    "find_fork",
    "head_status",
    "parse_signed",
    "verify_genesis",
    "verify_log",
]


class LogReason(StrEnum):
    """Why a log (or one entry of it) was refused; stable codes."""

    MALFORMED = "malformed"
    NOT_GENESIS = "not-genesis"
    GENESIS_MISMATCH = "genesis-mismatch"
    WRONG_WORKSPACE = "wrong-workspace"
    BAD_SEQ = "bad-seq"
    BAD_PREV = "bad-prev"
    UNKNOWN_SIGNER = "unknown-signer"
    REVOKED_SIGNER = "revoked-signer"
    FORMER_MEMBER = "former-member"
    BAD_SIGNATURE = "bad-signature"
    NOT_ALLOWED = "not-allowed"
    INVALID_TARGET = "invalid-target"
    WOULD_ORPHAN = "would-orphan"
    FROZEN = "frozen"  # after a fork, until an owner's checkpoint (TRUST.md §4.11)


class LogError(ValueError):
    """A refused entry: ``reason``, the ``seq`` it sits at, and the passkey reason if any."""

    def __init__(
        self,
        reason: LogReason,
        seq: int,
        detail: str = "",
        passkey: PasskeyReason | None = None,
    ) -> None:
        super().__init__(f"seq {seq}: {reason.value}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.seq = seq
        self.passkey = passkey


def chain_hash(entry_bytes: bytes) -> str:
    """``b64u(H(tag(loghash) ‖ bytes))``: the link the next entry's ``prev`` names."""
    return b64u(tagged_hash("loghash", entry_bytes))


def _decode(signed: SignedEntry, seq: int) -> bytes:
    try:
        return b64u_decode(signed.entry, max_bytes=MAX_ENTRY_BYTES)
    except WireError as exc:
        raise LogError(LogReason.MALFORMED, seq, exc.reason.value) from None


def parse_signed(obj: Any, seq: int = 0) -> SignedEntry:
    """``{"entry", "sigs"}`` from JSON, strictly."""
    try:
        return validate(SignedEntry, obj)
    except StatementError as exc:
        raise LogError(LogReason.MALFORMED, seq, str(exc)) from None


def verify_genesis(signed: SignedEntry, *, pinned: str | None = None) -> LogView:
    """Check the genesis and its owner's signature; ``pinned`` is a hash the caller trusts."""
    raw = _decode(signed, 0)
    try:
        if loads_object(raw, max_bytes=MAX_ENTRY_BYTES).get("op") != "genesis":
            raise LogError(LogReason.NOT_GENESIS, 0)
        genesis = decode_object(raw, Genesis, max_bytes=MAX_ENTRY_BYTES)
    except (StatementError, WireError) as exc:
        raise LogError(LogReason.MALFORMED, 0, str(exc)) from None
    digest = chain_hash(raw)
    if pinned is not None and digest != pinned:
        raise LogError(LogReason.GENESIS_MISMATCH, 0)
    state = State.from_genesis(genesis, digest)
    signers = _authenticate(state, raw, signed, seq=0, check=True)
    if not all(u == genesis.owner.user_id for u in signers):
        raise LogError(LogReason.NOT_ALLOWED, 0, "the genesis is signed by its owner")
    state.record(0, "genesis", genesis.owner.user_id, genesis.created_at, digest, signed)
    return _freeze(state)


def verify_log(entries: Sequence[SignedEntry], *, pinned: str | None = None) -> LogView:
    """Verify a whole log, genesis first, and return the view at its last entry."""
    if not entries:
        raise LogError(LogReason.NOT_GENESIS, 0, "empty log")
    view = verify_genesis(entries[0], pinned=pinned)
    return extend(view, entries[1:])


def extend(view: LogView, entries: Iterable[SignedEntry]) -> LogView:
    """Verify ``entries`` on top of ``view`` (each must follow the one before)."""
    state = State.from_view(view)
    for signed in entries:
        apply_entry(state, signed, check=True)
    return _freeze(state)


def apply_entry(state: State, signed: SignedEntry, *, check: bool) -> None:
    """One entry: parse, link, authenticate (``check``: verify signatures), authorise, apply."""
    seq = state.head_seq + 1
    raw = _decode(signed, seq)
    entry = _parse_entry(raw, seq)
    if entry.ws != state.ws:
        raise LogError(LogReason.WRONG_WORKSPACE, seq)
    if entry.seq != seq:
        raise LogError(LogReason.BAD_SEQ, seq, f"got {entry.seq}")
    if entry.prev != state.head_hash:
        raise LogError(LogReason.BAD_PREV, seq)
    body = _parse_body(entry, seq)
    target = getattr(body, "user_id", None)
    if target is not None and entry.op != "member.add" and target not in state.members:
        raise LogError(LogReason.INVALID_TARGET, seq, f"{target} is not a member")
    signers = _authenticate(state, raw, signed, seq=seq, check=check, op=entry.op, body=body)
    if entry.op != "agent.rotate" and not any(_allowed(state, entry.op, body, u) for u in signers):
        raise LogError(LogReason.NOT_ALLOWED, seq, f"{entry.op} by {', '.join(signers)}")
    try:
        state.apply(entry.op, body, seq)
    except StateError as exc:
        reason = LogReason.WOULD_ORPHAN if exc.orphan else LogReason.INVALID_TARGET
        raise LogError(reason, seq, str(exc)) from None
    state.record(seq, entry.op, ",".join(signers), entry.issued_at, chain_hash(raw), signed)


def _parse_entry(raw: bytes, seq: int) -> Entry:
    try:
        return decode_object(raw, Entry, max_bytes=MAX_ENTRY_BYTES)
    except StatementError as exc:
        raise LogError(LogReason.MALFORMED, seq, str(exc)) from None


def _parse_body(entry: Entry, seq: int) -> Any:
    try:
        return validate(BODIES[entry.op], entry.body)
    except StatementError as exc:
        raise LogError(LogReason.MALFORMED, seq, f"body: {exc}") from None


def _allowed(state: State, op: str, body: Any, signer: str) -> bool:
    role = state.members[signer].role
    target_user = getattr(body, "user_id", None)
    if target_user is None:
        return may_sign(op, role)
    if op == "member.add":
        return may_sign(op, role, body.role, own=False)
    target = state.members[target_user]
    new_role = getattr(body, "role", None) if op == "member.role" else None
    return may_sign(op, role, target.role, own=target_user == signer, new_role=new_role)


def _authenticate(
    state: State,
    raw: bytes,
    signed: SignedEntry,
    *,
    seq: int,
    check: bool,
    op: str = "genesis",
    body: Any = None,
) -> list[str]:
    """Every signature must verify with a live key of the log before this entry."""
    if op == "agent.rotate":
        return [_agent_signer(state, raw, signed, seq, body.agent_id, check=check)]
    signers: list[str] = []
    for sig in signed.sigs:
        if isinstance(sig, AgentSignature):
            raise LogError(LogReason.NOT_ALLOWED, seq, "agent signatures are for agent.rotate")
        passkey = _live_passkey(state, sig.credential_id, seq)
        if check:
            _check_passkey(state, passkey, sig, raw, seq)
        signers.append(passkey.user_id)
    return signers


def _live_passkey(state: State, credential_id: str, seq: int) -> Passkey:
    passkey = state.passkeys.get(credential_id)
    if passkey is None:
        raise LogError(LogReason.UNKNOWN_SIGNER, seq)
    if not passkey.active:
        raise LogError(LogReason.REVOKED_SIGNER, seq)
    if passkey.user_id not in state.members:
        raise LogError(LogReason.FORMER_MEMBER, seq)
    return passkey


def _check_passkey(state: State, passkey: Passkey, sig: Any, raw: bytes, seq: int) -> None:
    try:
        verified = verify_passkey_signature(
            sig,
            tag="log",
            message=raw,
            rp_id=state.rp_id,
            origins=state.origins,
            cose_key=passkey.cose,
            sign_count=state.counters.get(passkey.cred_id, 0),
        )
    except PasskeyError as exc:
        raise LogError(LogReason.BAD_SIGNATURE, seq, passkey=exc.reason) from None
    state.counters[passkey.cred_id] = verified.new_sign_count


def _agent_signer(
    state: State, raw: bytes, signed: SignedEntry, seq: int, agent_id: str, *, check: bool
) -> str:
    agent = state.agents.get(agent_id)
    sigs = signed.sigs
    if agent is None or not agent.active:
        raise LogError(LogReason.UNKNOWN_SIGNER, seq, "no such live agent")
    if len(sigs) != 1 or not isinstance(sigs[0], AgentSignature) or sigs[0].agent_key != agent_id:
        raise LogError(LogReason.NOT_ALLOWED, seq, "agent.rotate is signed by that agent alone")
    if check:
        key = keys.load_verify_key(agent.suite, agent.sig_pub)
        sig = b64u_decode(sigs[0].sig, max_bytes=64)
        if not keys.verify(key, sig, tag("log") + raw):
            raise LogError(LogReason.BAD_SIGNATURE, seq)
    return f"agent:{agent_id}"


def _freeze(state: State) -> LogView:
    return LogView(
        ws=state.ws,
        name=state.name,
        rp_id=state.rp_id,
        origins=tuple(state.origins),
        genesis_hash=state.hashes[0],
        members=MappingProxyType(dict(state.members)),
        passkeys=MappingProxyType(dict(state.passkeys)),
        devices=MappingProxyType(dict(state.devices)),
        agents=MappingProxyType(dict(state.agents)),
        policy=state.policy,
        head=Head(state.head_seq, state.head_hash),
        hashes=tuple(state.hashes),
        counters=MappingProxyType(dict(state.counters)),
        history=tuple(state.history),
        entries=tuple(state.entries),
    )


# --- heads and forks (§4.11) ---


class HeadStatus(StrEnum):
    """Where a head someone reports sits relative to a verified view."""

    ON_CHAIN = "on-chain"
    AHEAD = "ahead"
    FORKED = "forked"


def head_status(view: LogView, head: Head) -> HeadStatus:
    """ON_CHAIN if ``head`` is one of ours, AHEAD if past our head (fetch and verify), else a
    fork: the same ``seq`` with another hash."""
    if head.seq > view.head.seq:
        return HeadStatus.AHEAD
    if head.seq >= 0 and view.hashes[head.seq] == head.hash:
        return HeadStatus.ON_CHAIN
    return HeadStatus.FORKED


@dataclass(frozen=True)
class Fork:
    """Two valid entries with the same ``prev``: ours and theirs, at ``seq``."""

    seq: int
    ours: str
    theirs: str


def find_fork(view: LogView, signed: SignedEntry) -> Fork | None:
    """A fork if ``signed`` is a *valid* entry at a seq we hold, on the same ``prev`` as
    ours, with different bytes. Junk that does not verify is not evidence of anything."""
    raw = _decode(signed, 0)
    try:
        entry = _parse_entry(raw, 0)
    except LogError:
        return None
    seq = entry.seq
    if seq > view.head.seq or entry.prev != view.hashes[seq - 1]:
        return None
    theirs = chain_hash(raw)
    if theirs == view.hashes[seq]:
        return None
    # Replay our prefix without re-checking signatures (it verified already) and without
    # counters (a twin may carry lower counts than our later entries), then check theirs.
    prefix = _replay(view, seq)
    try:
        apply_entry(prefix, signed, check=True)
    except LogError:
        return None
    return Fork(seq=seq, ours=view.hashes[seq], theirs=theirs)


def _replay(view: LogView, upto: int) -> State:
    genesis_raw = _decode(view.entries[0], 0)
    genesis = decode_object(genesis_raw, Genesis, max_bytes=MAX_ENTRY_BYTES)
    state = State.from_genesis(genesis, view.hashes[0])
    state.record(
        0, "genesis", genesis.owner.user_id, genesis.created_at, view.hashes[0], view.entries[0]
    )
    for earlier in view.entries[1:upto]:
        apply_entry(state, earlier, check=False)
    return state
