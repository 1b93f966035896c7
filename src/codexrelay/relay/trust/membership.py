"""Each workspace's membership log on the relay (TRUST.md §4.1, §4.10, §4.11).

The relay stores the log and serves it; it cannot add to it, because every entry needs a
passkey signature of the right role. Before storing an entry it checks what it can as a
first filter (chain, signatures against the log it has, the role rules of
``codexrelay.e2e.logrules``) and refuses an entry built on an old head with 409
``stale-log-head`` so the phone re-signs. A workspace with a genesis is *protected*. After
an entry is stored the relay brings its own membership table (a cache of the log) in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from codexrelay.crypto import b64url
from codexrelay.e2e import logentries as le
from codexrelay.e2e.log import LogError, LogView, chain_hash, extend, parse_signed, verify_genesis
from codexrelay.e2e.statements import StatementError, decode_object
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, invites
from codexrelay.relay.storage.memory import log_key
from codexrelay.relay.storage.records import LogEntryRecord, Role
from codexrelay.relay.storage.repositories import Store
from codexrelay.relay.trust.state import TrustState

SUDO_WINDOW_SEC = 300  # an entry must be signed this recently (it is its own UV ceremony)


@dataclass(frozen=True)
class Signer:
    """Who posts an entry: the relay's view of the caller."""

    user_id: str
    role: Role
    passkeys: dict[str, str]  # credential id -> b64url COSE key, as registered here


@dataclass(frozen=True)
class Appended:
    """A stored entry and the view it leads to."""

    record: LogEntryRecord
    view: LogView
    body: Any


def is_protected(store: Store, workspace_id: str) -> bool:
    """A workspace is protected from its genesis on."""
    return store.log_entries.head(workspace_id) is not None


def refuse_unsigned(store: Store, workspace_id: str, what: str) -> None:
    """409 ``signature-required``: a protected workspace takes only signed requests."""
    if is_protected(store, workspace_id):
        raise AppError(
            ErrorCode.SIGNATURE_REQUIRED,
            f"This workspace is protected: {what} must be signed with your passkey or device.",
        )


def signed_form(record: LogEntryRecord) -> dict[str, Any]:
    """The entry as it travels: ``{"entry", "sigs"}``, exactly as it was posted."""
    return {"entry": record.entry, "sigs": record.sigs}


def current_view(store: Store, state: TrustState, workspace_id: str) -> LogView | None:
    """The verified view at the stored head (cached per head), or None if unprotected."""
    head = store.log_entries.head(workspace_id)
    if head is None:
        state.views.pop(workspace_id, None)
        return None
    cached = state.views.get(workspace_id)
    if cached is not None and cached.head.hash == head.hash:
        return cached
    records = store.log_entries.of_workspace(workspace_id)
    try:
        view = verify_genesis(parse_signed(signed_form(records[0])))
        view = extend(view, [parse_signed(signed_form(r), r.seq) for r in records[1:]])
    except LogError as exc:
        raise AppError(
            ErrorCode.INTERNAL_ERROR, "The stored membership log does not verify."
        ) from exc
    state.views[workspace_id] = view
    return view


def _refused(exc: LogError) -> AppError:
    detail = f" ({exc.passkey.value})" if exc.passkey is not None else ""
    return AppError(
        ErrorCode.INVALID_LOG_ENTRY,
        f"The membership log refused this entry: {exc.reason.value}{detail}.",
    )


def _stale(view: LogView) -> AppError:
    return AppError(
        ErrorCode.STALE_LOG_HEAD,
        f"The log moved on (head {view.head}); sign the change again on the new head.",
    )


def _check_fresh(issued_at: int, now: datetime) -> None:
    if abs(now.timestamp() - issued_at) > SUDO_WINDOW_SEC:
        raise AppError(
            ErrorCode.REAUTH_REQUIRED,
            "This change was signed more than 5 minutes ago (or the phone's clock is off); "
            "sign it again.",
        )


def append_entry(
    store: Store,
    state: TrustState,
    *,
    workspace_id: str,
    posted: Any,
    signer: Signer,
    rp_id: str,
    origin: str,
    now: datetime,
) -> Appended:
    """Check ``posted`` (``{"entry", "sigs"}``) against the stored log and store it."""
    try:
        signed = parse_signed(posted)
    except LogError as exc:
        raise _refused(exc) from None
    view = current_view(store, state, workspace_id)
    if view is None:
        view, body = _genesis(signed, workspace_id, signer, rp_id, origin, now), None
    else:
        entry = _entry(signed)
        if entry.seq != view.head.seq + 1 or entry.prev != view.head.hash:
            raise _stale(view)
        _check_fresh(entry.issued_at, now)
        try:
            view = extend(view, [signed])
        except LogError as exc:
            raise _refused(exc) from None
        body = le.BODIES[entry.op].model_validate(entry.body)
    record = LogEntryRecord(
        key=log_key(workspace_id, view.head.seq),
        workspace_id=workspace_id,
        seq=view.head.seq,
        hash=view.head.hash,
        op=view.history[-1].op,
        entry=signed.entry,
        sigs=[s.model_dump(by_alias=True, exclude_none=True) for s in signed.sigs],
        created_at=now,
    )
    store.log_entries.add(record)
    state.views[workspace_id] = view
    return Appended(record=record, view=view, body=body)


def entry_op(posted: Any) -> tuple[str, str | None]:
    """``(op, agentId)`` of a posted entry (for the agent's own endpoint), or refuse it."""
    try:
        entry = _entry(parse_signed(posted))
    except LogError as exc:
        raise _refused(exc) from None
    agent_id = entry.body.get("agentId")
    return entry.op, agent_id if isinstance(agent_id, str) else None


def _raw(signed: le.SignedEntry) -> bytes:
    try:
        return b64u_decode(signed.entry, max_bytes=le.MAX_ENTRY_BYTES)
    except WireError as exc:
        raise AppError(ErrorCode.INVALID_LOG_ENTRY, f"The entry is {exc.reason.value}.") from None


def _entry(signed: le.SignedEntry) -> le.Entry:
    try:
        return decode_object(_raw(signed), le.Entry, max_bytes=le.MAX_ENTRY_BYTES)
    except StatementError as exc:
        raise AppError(ErrorCode.INVALID_LOG_ENTRY, f"The entry is {exc.reason.value}.") from None


def _genesis(
    signed: le.SignedEntry,
    workspace_id: str,
    signer: Signer,
    rp_id: str,
    origin: str,
    now: datetime,
) -> LogView:
    """A genesis is the workspace owner's, for this relay, over their own passkeys."""
    if signer.role != Role.OWNER:
        raise AppError(ErrorCode.FORBIDDEN, "Only a workspace owner can turn protection on.")
    try:
        view = verify_genesis(signed)
    except LogError as exc:
        raise _refused(exc) from None
    genesis = decode_object(_raw(signed), le.Genesis, max_bytes=le.MAX_ENTRY_BYTES)
    problem = _genesis_problem(genesis, workspace_id, signer, rp_id, origin)
    if problem:
        raise AppError(ErrorCode.INVALID_LOG_ENTRY, problem)
    _check_fresh(genesis.created_at, now)
    assert view.genesis_hash == chain_hash(_raw(signed))  # noqa: S101 - verify_genesis's own
    return view


def _genesis_problem(
    genesis: le.Genesis, workspace_id: str, signer: Signer, rp_id: str, origin: str
) -> str:
    if genesis.ws != workspace_id:
        return "The genesis names another workspace."
    if genesis.owner.user_id != signer.user_id:
        return "The genesis must name you as its owner."
    if genesis.rp_id != rp_id or origin not in genesis.origins:
        return "The genesis must name this relay's rp id and origin."
    for passkey in genesis.owner.passkeys:
        if signer.passkeys.get(passkey.cred_id) != passkey.cose:
            return "The genesis names a passkey that is not one of yours here."
    return ""


def log_page(
    store: Store, workspace_id: str, start: int, limit: int
) -> tuple[list[LogEntryRecord], LogEntryRecord | None]:
    """Entries from ``start`` (at most ``limit``) and the head."""
    entries = store.log_entries.of_workspace(workspace_id, start)[:limit]
    return entries, store.log_entries.head(workspace_id)


def mirror(store: Store, workspace_id: str, op: str, body: Any, now: datetime) -> None:
    """Bring the relay's membership table in step with a stored entry (its cache)."""
    if op in {"member.add", "member.role"}:
        member = store.memberships.find(body.user_id, workspace_id)
        user = store.users.get(body.user_id)
        if user is not None and (member is not None or op == "member.add"):
            identity.set_membership(
                store, user_id=user.id, workspace_id=workspace_id, role=Role(body.role), now=now
            )
    elif op == "member.remove":
        member = store.memberships.find(body.user_id, workspace_id)
        if member is not None:
            store.memberships.remove(member)
            invites.retire_invites(store, user_id=body.user_id, workspace_id=workspace_id, now=now)


def relay_passkeys(store: Store, user_id: str) -> dict[str, str]:
    """The caller's passkeys as the relay registered them (credential id -> COSE key)."""
    return {p.credential_id: p.public_key for p in store.passkeys.of_user(user_id)}


def cose_text(cose: bytes) -> str:
    """A COSE key as the relay and the log both write it."""
    return b64url(cose)
