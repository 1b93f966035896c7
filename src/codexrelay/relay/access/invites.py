"""Invites (R21, O5) and recovery codes for lost passkeys: plain functions over the ``Store``.

Both kinds of code are one-time, expire, and are stored only as an HMAC keyed with
``tokenSecret`` (so rotating it kills them, I3); the code itself exists only in the response
that created it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from codexrelay.crypto import (
    TokenSource,
    keyed_hash,
    new_code,
    new_id,
    normalize_code,
)
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, policy, sessions
from codexrelay.relay.access.identity import WorkspaceAccess, clean_text, grant_membership
from codexrelay.relay.storage.records import (
    InviteRecord,
    InviteStatus,
    RecoveryCodeRecord,
    Role,
    SessionRecord,
    UserRecord,
)
from codexrelay.relay.storage.repositories import Store

INVITE_PURPOSE = "invite-code"
RECOVERY_PURPOSE = "recovery-code"
CODE_GROUPS = 3  # 60 bits: these codes live for days, not minutes
RECOVERY_CODE_TTL_SEC = 86400
SPENT_CODE_KEEP = timedelta(days=7)  # used/expired/cancelled codes stay listed this long
NAME_MAX = 60


@dataclass(frozen=True)
class IssuedInvite:
    """A new invite and its code, which exists only in this response."""

    invite: InviteRecord
    code: str


@dataclass(frozen=True)
class IssuedRecoveryCode:
    """A new recovery code record and the code, which exists only in this response."""

    record: RecoveryCodeRecord
    code: str


@dataclass(frozen=True)
class AcceptedInvite:
    """Who accepted an invite, and whether that made a new (enrollment-locked) user."""

    user: UserRecord
    invite: InviteRecord
    new_user: bool


def _code_hash(secret: str, purpose: str, code: str) -> str:
    return keyed_hash(secret, purpose, normalize_code(code))


def _not_found(what: str) -> AppError:
    return AppError(ErrorCode.NOT_FOUND, f"No such {what}.")


def retire_invites(store: Store, *, user_id: str, workspace_id: str, now: datetime) -> None:
    """A person's pending invites die with their power to invite in that workspace."""
    for invite in store.invites.of_workspace(workspace_id):
        if invite.created_by == user_id and invite_status(invite, now) == "pending":
            invite.cancelled_at = now
            store.invites.save(invite)


# --- invites (R21, O5) ---


def invite_status(invite: InviteRecord, now: datetime) -> InviteStatus:
    """Where an invite stands."""
    if invite.cancelled_at is not None:
        return "cancelled"
    if invite.accepted_by is not None:
        return "accepted"
    return "expired" if invite.expires_at <= now else "pending"


def _is_stale(record: InviteRecord | RecoveryCodeRecord, cutoff: datetime) -> bool:
    if isinstance(record, InviteRecord):
        spent = record.cancelled_at or record.accepted_at
    else:
        spent = record.used_at
    return record.expires_at <= cutoff or (spent is not None and spent <= cutoff)


def prune_codes(store: Store, now: datetime) -> None:
    """Forget invites and recovery codes spent or expired more than a week ago."""
    cutoff = now - SPENT_CODE_KEEP
    for invite in store.invites.all():
        if _is_stale(invite, cutoff):
            store.invites.remove(invite)
    for record in store.recovery_codes.all():
        if _is_stale(record, cutoff):
            store.recovery_codes.remove(record)


def create_invite(
    store: Store,
    *,
    access: WorkspaceAccess,
    role: Role,
    note: str | None,
    ttl_sec: int,
    now: datetime,
    secret: str,
    rand: TokenSource,
) -> IssuedInvite:
    """A one-time invite code for ``role`` in the caller's workspace (O5)."""
    policy.enforce(policy.can_grant_role(access.role, role))
    prune_codes(store, now)
    code = new_code(rand, groups=CODE_GROUPS)
    invite = InviteRecord(
        id=new_id("inv", rand),
        code_hash=_code_hash(secret, INVITE_PURPOSE, code),
        workspace_id=access.workspace.id,
        role=role,
        note=clean_text(note, 200),
        created_by=access.user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_sec),
    )
    store.invites.add(invite)
    return IssuedInvite(invite=invite, code=code)


def workspace_invites(store: Store, workspace_id: str) -> list[InviteRecord]:
    """The workspace's invites, newest first."""
    return store.invites.of_workspace(workspace_id)[::-1]


def cancel_invite(store: Store, *, workspace_id: str, invite_id: str, now: datetime) -> None:
    """Cancel an invite. If someone accepted it but has not enrolled a passkey yet, that
    not-yet-enrolled account is disabled too, so the invite can no longer grant anything."""
    invite = store.invites.get(invite_id)
    if invite is None or invite.workspace_id != workspace_id:
        raise _not_found("invite")
    if invite.cancelled_at is not None:
        return
    pending_user = store.users.get(invite.accepted_by or "")
    if invite.accepted_by is not None:
        if pending_user is None or pending_user.status != "enrollment-locked":
            raise AppError(
                ErrorCode.CONFLICT, "That invite was already used; remove the member instead."
            )
        pending_user.status = "disabled"
        store.users.save(pending_user)
        sessions.end_user_sessions(store, pending_user.id)
    invite.cancelled_at = now
    store.invites.save(invite)


def _invalid_code() -> AppError:
    return AppError(ErrorCode.INVALID_OR_EXPIRED_CODE, "That code is not valid or has expired.")


def accept_invite(
    store: Store,
    *,
    code: str,
    name: str | None,
    member: UserRecord | None,
    now: datetime,
    secret: str,
    rand: TokenSource,
) -> AcceptedInvite:
    """Spend an invite code (R21).

    A signed-in active ``member`` just gains the membership. Anyone else becomes a new
    ``enrollment-locked`` user, who gets the membership only once a passkey is registered.
    """
    clean_name = clean_text(name, NAME_MAX)
    if member is None and not clean_name:
        raise AppError(ErrorCode.INVALID_REQUEST, "Give your name (1 to 60 characters).")
    # The lookup key is an HMAC of the code under tokenSecret: a guess reveals nothing.
    invite = store.invites.by_code_hash(_code_hash(secret, INVITE_PURPOSE, code))
    if (
        invite is None
        or invite_status(invite, now) != "pending"
        or store.workspaces.get(invite.workspace_id) is None
    ):
        raise _invalid_code()
    if not store.spend_once("invite", invite.id):
        raise _invalid_code()  # another relay instance took it a moment ago
    invite.accepted_at = now
    if member is not None:
        grant_membership(
            store, user_id=member.id, workspace_id=invite.workspace_id, role=invite.role, now=now
        )
        invite.accepted_by = member.id
        store.invites.save(invite)
        return AcceptedInvite(user=member, invite=invite, new_user=False)
    user = identity.create_user(
        store, name=clean_name, now=now, rand=rand, status="enrollment-locked"
    )
    invite.accepted_by = user.id
    store.invites.save(invite)
    return AcceptedInvite(user=user, invite=invite, new_user=True)


def finish_enrollment(store: Store, *, session: SessionRecord, now: datetime) -> None:
    """A passkey was registered: the user is active, the session a full one, and an invite
    session's membership is granted (once; the session forgets the invite)."""
    user = _existing_user(store, session.user_id)
    invite = store.invites.get(session.invite_id or "")
    if (
        session.enrollment_only
        and invite is not None
        and invite.cancelled_at is None
        and invite.accepted_by == user.id
        and store.workspaces.get(invite.workspace_id) is not None
    ):
        grant_membership(
            store, user_id=user.id, workspace_id=invite.workspace_id, role=invite.role, now=now
        )
    session.invite_id = None
    session.enrollment_only = False
    store.sessions.save(session)
    if user.status == "enrollment-locked":
        user.status = "active"
        store.users.save(user)


def _existing_user(store: Store, user_id: str) -> UserRecord:
    user = store.users.get(user_id)
    if user is None:
        raise _not_found("user")
    return user


# --- recovery codes (lost passkeys) ---


def check_recovery_authority(store: Store, *, access: WorkspaceAccess, user_id: str) -> None:
    """A workspace admin may recover a member only where they outrank them everywhere.

    A recovery code signs in as the person, so an admin of one workspace must not gain a
    higher-placed account in another one through it (R03).
    """
    target = store.memberships.find(user_id, access.workspace.id)
    user = store.users.get(user_id)
    if target is None or user is None:
        raise _not_found("member in this workspace")
    decision = policy.can_issue_recovery_code(
        is_self=user_id == access.user_id,
        target_is_relay_owner=user.is_owner,
        actor_roles={m.workspace_id: m.role for m in store.memberships.of_user(access.user_id)},
        target_roles={m.workspace_id: m.role for m in store.memberships.of_user(user_id)},
    )
    policy.enforce(decision)


def issue_recovery_code(
    store: Store,
    *,
    user_id: str,
    issued_by: str,
    ttl_sec: int,
    now: datetime,
    secret: str,
    rand: TokenSource,
) -> IssuedRecoveryCode:
    """A one-time code that opens an enrollment-only session for ``user_id``.

    Earlier unused codes for the same person stop working: one live code at a time.
    """
    user = _existing_user(store, user_id)
    if user.status == "disabled":
        raise AppError(ErrorCode.CONFLICT, "That account is disabled.")
    prune_codes(store, now)
    for earlier in store.recovery_codes.of_user(user_id):
        if earlier.used_at is None:
            store.recovery_codes.remove(earlier)
    code = new_code(rand, groups=CODE_GROUPS)
    record = RecoveryCodeRecord(
        id=new_id("rec", rand),
        code_hash=_code_hash(secret, RECOVERY_PURPOSE, code),
        user_id=user_id,
        created_by=issued_by,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_sec),
    )
    store.recovery_codes.add(record)
    return IssuedRecoveryCode(record=record, code=code)


def redeem_recovery_code(store: Store, *, code: str, now: datetime, secret: str) -> UserRecord:
    """Spend a recovery code; the person it was issued for."""
    record = store.recovery_codes.by_code_hash(_code_hash(secret, RECOVERY_PURPOSE, code))
    user = store.users.get(record.user_id) if record is not None else None
    if record is None or record.used_at is not None or record.expires_at <= now or user is None:
        raise _invalid_code()
    if user.status == "disabled":
        raise _invalid_code()
    if not store.spend_once("recovery-code", record.id):
        raise _invalid_code()  # another relay instance took it a moment ago
    record.used_at = now
    store.recovery_codes.save(record)
    return user
