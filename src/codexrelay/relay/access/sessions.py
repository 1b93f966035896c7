"""Phone sessions (R02) and the bootstrap login (R01).

The cookie value is random (256 bits) plus a tag keyed with ``tokenSecret``, so rotating that
secret ends every session (I3); the relay stores only the SHA-256 of the cookie value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from codexrelay.crypto import (
    TokenSource,
    b64url,
    constant_time_equal,
    keyed_hash,
    new_id,
    new_secret,
    sha256_hex,
)
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, policy
from codexrelay.relay.push import subscriptions as push_subscriptions
from codexrelay.relay.storage.records import SessionRecord, SessionVia, UserRecord
from codexrelay.relay.storage.repositories import Store

SESSION_PREFIX = "crs_"
BOOTSTRAP_PREFIX = "crb_"
RECOVERY_VIAS: frozenset[str] = frozenset({"bootstrap", "recovery-code"})


@dataclass(frozen=True)
class IssuedSession:
    """A new session record and the cookie value, which exists only in this response."""

    record: SessionRecord
    cookie_value: str


def _tag(secret: str, nonce: str) -> str:
    return keyed_hash(secret, "session-cookie", nonce)[:32]


def open_session(
    store: Store,
    *,
    user_id: str,
    via: SessionVia,
    now: datetime,
    ttl_sec: int,
    max_per_user: int,
    secret: str,
    rand: TokenSource,
    enrollment_only: bool = False,
    invite_id: str | None = None,
) -> IssuedSession:
    """Start a session; if the user is at the cap, their oldest sessions end."""
    nonce = b64url(rand(32))
    cookie_value = f"{SESSION_PREFIX}{nonce}.{_tag(secret, nonce)}"
    record = SessionRecord(
        id=new_id("ses", rand),
        token_hash=sha256_hex(cookie_value),
        user_id=user_id,
        via=via,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_sec),
        last_seen_at=now,
        enrollment_only=enrollment_only,
        invite_id=invite_id,
    )
    own = store.sessions.of_user(user_id)
    for old in own[: max(0, len(own) - max_per_user + 1)]:
        _end(store, old)
    store.sessions.add(record)
    return IssuedSession(record=record, cookie_value=cookie_value)


def resolve_session(
    store: Store, cookie_value: str, *, secret: str, now: datetime
) -> SessionRecord | None:
    """The live session a cookie names, or None (bad tag, unknown, expired, user gone)."""
    if not cookie_value.startswith(SESSION_PREFIX) or len(cookie_value) > 200:
        return None
    nonce, _, tag = cookie_value[len(SESSION_PREFIX) :].partition(".")
    if not nonce or not constant_time_equal(tag, _tag(secret, nonce)):
        return None
    record = store.sessions.get(sha256_hex(cookie_value))
    if record is None or record.expires_at <= now:
        return None
    user = store.users.get(record.user_id)
    if user is None or user.status == "disabled":
        return None
    return record


def _end(store: Store, session: SessionRecord) -> None:
    """A session ends, and with it the device's push subscription (it belongs to it)."""
    store.sessions.remove(session)
    push_subscriptions.forget_sessions(store, [session.id])


def end_session(store: Store, session_id: str, *, user_id: str | None = None) -> bool:
    """End one session by its public id (optionally only if ``user_id`` owns it)."""
    record = store.sessions.by_id(session_id)
    if record is None or (
        user_id is not None and not policy.can_manage_own(record.user_id, user_id, "session")
    ):
        return False
    _end(store, record)
    return True


def end_user_sessions(store: Store, user_id: str, *, keep: str | None = None) -> int:
    """End every session of ``user_id`` except the one whose id is ``keep``."""
    doomed = [s for s in store.sessions.of_user(user_id) if s.id != keep]
    for session in doomed:
        _end(store, session)
    return len(doomed)


def user_sessions(store: Store, user_id: str) -> list[SessionRecord]:
    """The user's sessions, newest first."""
    return store.sessions.of_user(user_id)[::-1]


def prune_expired(store: Store, now: datetime) -> int:
    """Drop sessions past their expiry; returns how many went."""
    doomed = store.sessions.expired(now)
    for session in doomed:
        _end(store, session)
    return len(doomed)


def new_bootstrap_token() -> str:
    """A fresh owner recovery token (256 bits, prefixed so scanners recognise it)."""
    return BOOTSTRAP_PREFIX + new_secret()


def check_bootstrap_token(store: Store, token: str, *, expected_hash: str) -> UserRecord:
    """R01: hash the offered token and compare in constant time; the owner on success."""
    offered = sha256_hex(token) if token else ""
    if not token or not constant_time_equal(offered, expected_hash):
        raise AppError(ErrorCode.INVALID_BOOTSTRAP_TOKEN, "That recovery token is not valid.")
    return identity.instance_owner(store)
