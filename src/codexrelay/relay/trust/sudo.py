"""Sudo mode (TRUST.md §4.13): sensitive changes need a user verification made within the
last five minutes, even on a live session.

The ceremony is a passkey assertion like a login, over a challenge tagged
``codexrelay/webauthn/sudo/v1`` and limited to the caller's own passkeys; the relay notes
its time on the session. A passkey login counts as one. Membership-log entries carry their
own user-verified signature and need only be fresh (``membership.SUDO_WINDOW_SEC``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from webauthn import generate_authentication_options
from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

from codexrelay.crypto import TokenSource, b64url_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import passkeys
from codexrelay.relay.access.passkeys import CeremonyOptions, ChallengeStore, RelyingParty
from codexrelay.relay.storage.records import SessionRecord
from codexrelay.relay.storage.repositories import Store
from codexrelay.relay.trust.membership import SUDO_WINDOW_SEC, is_protected

WINDOW = timedelta(seconds=SUDO_WINDOW_SEC)


def sudo_until(session: SessionRecord) -> datetime | None:
    """When the session's sudo mode ends (None: never verified)."""
    return None if session.reauth_at is None else session.reauth_at + WINDOW


def require(session: SessionRecord, now: datetime, what: str) -> None:
    """403 ``reauth-required`` unless the session verified its user within five minutes."""
    until = sudo_until(session)
    if until is None or until <= now:
        raise AppError(
            ErrorCode.REAUTH_REQUIRED,
            f"Confirm with your passkey first: {what} needs a fresh verification.",
        )


def require_in_protected(
    store: Store, session: SessionRecord, workspace_id: str, now: datetime, what: str
) -> None:
    """Sudo mode, in protected workspaces only (others behave as they always did)."""
    if is_protected(store, workspace_id):
        require(session, now, what)


def in_any_protected(store: Store, user_id: str) -> bool:
    """Whether the user belongs to a protected workspace (adding a passkey needs sudo)."""
    return any(is_protected(store, m.workspace_id) for m in store.memberships.of_user(user_id))


def start(
    store: Store,
    challenges: ChallengeStore,
    *,
    rp: RelyingParty,
    session: SessionRecord,
    now: datetime,
    ttl_sec: int,
    rand: TokenSource,
) -> CeremonyOptions:
    """Request options limited to the caller's passkeys, user verification required."""
    pending = challenges.issue(
        purpose="sudo", now=now, ttl_sec=ttl_sec, rand=rand, session_id=session.id
    )
    own = [
        PublicKeyCredentialDescriptor(id=b64url_decode(p.credential_id))
        for p in store.passkeys.of_user(session.user_id)
    ]
    if not own:
        raise AppError(
            ErrorCode.REAUTH_REQUIRED, "Register a passkey first: only a passkey can confirm."
        )
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=pending.challenge,
        timeout=ttl_sec * 1000,
        user_verification=UserVerificationRequirement.REQUIRED,
        allow_credentials=own,
    )
    return CeremonyOptions(challenge_id=pending.id, public_key=passkeys.as_json(options))


def finish(
    store: Store,
    challenges: ChallengeStore,
    *,
    rp: RelyingParty,
    session: SessionRecord,
    challenge_id: str,
    credential: dict[str, Any],
    now: datetime,
) -> datetime:
    """Verify the ceremony (the passkey must be the caller's own) and open sudo mode."""
    pending = challenges.take(challenge_id, purpose="sudo", now=now, session_id=session.id)
    user = passkeys.verify_assertion(
        store, rp=rp, purpose="sudo", challenge=pending.challenge, credential=credential, now=now
    )
    if user.id != session.user_id:
        raise AppError(ErrorCode.INVALID_PASSKEY, "Confirm with one of your own passkeys.")
    mark(store, session, now)
    return now + WINDOW


def mark(store: Store, session: SessionRecord, now: datetime) -> None:
    """Note a user verification on the session (a sudo ceremony or a passkey login)."""
    session.reauth_at = now
    store.sessions.save(session)
