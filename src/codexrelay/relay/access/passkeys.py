"""WebAuthn ceremonies (py_webauthn) and the in-memory challenge store (R05, R08).

The relay sends random bytes ``C`` as ``publicKey.challenge``; the client has the
authenticator sign ``SHA-256(TAG || 0x00 || C)`` instead, with ``TAG`` naming the purpose
(API.md, purpose-tagged challenges), and the relay verifies against that tagged value. A login
the relay asks for can therefore never double as a signature over anything else.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from codexrelay.crypto import TokenSource, b64url, b64url_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import invites, people
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.storage.records import PasskeyRecord, SessionRecord, UserRecord
from codexrelay.relay.storage.repositories import Store

log = logging.getLogger("codexrelay.passkeys")

Purpose = Literal["register", "login", "sudo"]
TAGS: dict[Purpose, bytes] = {
    "register": b"codexrelay/webauthn/register/v1",
    "login": b"codexrelay/webauthn/login/v1",
    # Sudo mode (TRUST.md §4.13): a fresh user verification on a live session.
    "sudo": b"codexrelay/webauthn/sudo/v1",
}
CHALLENGE_BYTES = 32
MAX_PENDING_CHALLENGES = 10_000
MAX_PENDING_PER_SESSION = 5
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn L2 §5.1: credential ids are at most 1023 bytes
MAX_TRANSPORTS = 8
_KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
# Third-party failures a hostile or broken credential can provoke inside py_webauthn.
_WEBAUTHN_FAILURES = (WebAuthnException, ValueError, TypeError, KeyError, IndexError)


def tagged_challenge(purpose: Purpose, challenge: bytes) -> bytes:
    """What the authenticator must have signed for ``challenge`` (API.md clarification)."""
    return hashlib.sha256(TAGS[purpose] + b"\x00" + challenge).digest()


@dataclass(frozen=True)
class RelyingParty:
    """Who the relay is to WebAuthn: the page that runs the ceremonies is the app, so rp id =
    the app's host and origin = the app's origin (``web.appOrigin``, else ``publicOrigin``)."""

    rp_id: str
    origin: str
    name: str

    @classmethod
    def from_config(cls, config: RelayConfig) -> RelyingParty:
        """The relying party for this relay's public origin."""
        return cls(rp_id=config.rp_host, origin=config.app_url, name=config.web.app_name)


@dataclass(frozen=True)
class PendingChallenge:
    """One outstanding ceremony: memory only, single use, expiring (R05)."""

    id: str
    purpose: Purpose
    challenge: bytes
    expires_at: datetime
    session_id: str | None = None
    label: str = ""


def _bad(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_PASSKEY, message)


class ChallengeStore:
    """Outstanding challenges, held in relay memory only (R05); a restart forgets them all."""

    def __init__(self, *, max_pending: int = MAX_PENDING_CHALLENGES) -> None:
        self._pending: dict[str, PendingChallenge] = {}
        self._max_pending = max_pending

    def __len__(self) -> int:
        return len(self._pending)

    def issue(
        self,
        *,
        purpose: Purpose,
        now: datetime,
        ttl_sec: int,
        rand: TokenSource,
        session_id: str | None = None,
        label: str = "",
    ) -> PendingChallenge:
        """A fresh challenge; the oldest are dropped past the caps so memory stays bounded
        and one session cannot crowd out everyone else's logins."""
        self._prune(now)
        if session_id is not None:
            own = [k for k, p in self._pending.items() if p.session_id == session_id]
            for key in own[: max(0, len(own) - MAX_PENDING_PER_SESSION + 1)]:
                del self._pending[key]
        while len(self._pending) >= self._max_pending:
            del self._pending[next(iter(self._pending))]
        pending = PendingChallenge(
            id=b64url(rand(16)),
            purpose=purpose,
            challenge=rand(CHALLENGE_BYTES),
            expires_at=now + timedelta(seconds=ttl_sec),
            session_id=session_id,
            label=label,
        )
        self._pending[pending.id] = pending
        return pending

    def take(
        self, challenge_id: str, *, purpose: Purpose, now: datetime, session_id: str | None = None
    ) -> PendingChallenge:
        """Consume a challenge (R05: single use). Raises 400 ``invalid-passkey``.

        A registration challenge is bound to the session that asked for it; another session
        cannot use it (nor burn it).
        """
        pending = self._pending.get(challenge_id)
        if pending is None or pending.purpose != purpose or pending.session_id != session_id:
            raise _bad("This passkey request is unknown or was already used; start again.")
        del self._pending[challenge_id]
        if pending.expires_at <= now:
            raise _bad("This passkey request expired; start again.")
        return pending

    def _prune(self, now: datetime) -> None:
        for key in [k for k, p in self._pending.items() if p.expires_at <= now]:
            del self._pending[key]


@dataclass(frozen=True)
class CeremonyOptions:
    """What the phone passes to ``navigator.credentials`` (after tagging the challenge)."""

    challenge_id: str
    public_key: dict[str, Any]


def as_json(options: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def start_registration(
    store: Store,
    challenges: ChallengeStore,
    *,
    rp: RelyingParty,
    user: UserRecord,
    session_id: str,
    label: str,
    now: datetime,
    ttl_sec: int,
    rand: TokenSource,
) -> CeremonyOptions:
    """Creation options for a discoverable, user-verified credential bound to this session."""
    pending = challenges.issue(
        purpose="register", now=now, ttl_sec=ttl_sec, rand=rand, session_id=session_id, label=label
    )
    existing = [
        PublicKeyCredentialDescriptor(id=b64url_decode(p.credential_id))
        for p in people.user_passkeys(store, user.id)
    ]
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_name=user.name,
        user_id=user.id.encode("utf-8"),
        user_display_name=user.name,
        challenge=pending.challenge,
        timeout=ttl_sec * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=existing,
    )
    return CeremonyOptions(challenge_id=pending.id, public_key=as_json(options))


def start_login(
    challenges: ChallengeStore, *, rp: RelyingParty, now: datetime, ttl_sec: int, rand: TokenSource
) -> CeremonyOptions:
    """Request options for a discoverable login: no ``allowCredentials``, so nothing about
    which accounts exist is revealed to an anonymous caller."""
    pending = challenges.issue(purpose="login", now=now, ttl_sec=ttl_sec, rand=rand)
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=pending.challenge,
        timeout=ttl_sec * 1000,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    public_key = as_json(options)
    public_key.pop("allowCredentials", None)
    return CeremonyOptions(challenge_id=pending.id, public_key=public_key)


def finish_registration(
    store: Store,
    challenges: ChallengeStore,
    *,
    rp: RelyingParty,
    session: SessionRecord,
    challenge_id: str,
    credential: dict[str, Any],
    label: str | None,
    now: datetime,
) -> PasskeyRecord:
    """Verify a new passkey, store only what R08 allows, and finish enrollment (R21)."""
    pending = challenges.take(challenge_id, purpose="register", now=now, session_id=session.id)
    try:
        parsed = parse_registration_credential_json(credential)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=tagged_challenge("register", pending.challenge),
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except _WEBAUTHN_FAILURES as exc:
        raise _refusal("registration", exc) from None
    credential_id = b64url(verified.credential_id)
    if parsed.raw_id != verified.credential_id:
        raise _bad("The passkey response names a different credential than it attests.")
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise _bad("That passkey's credential id is too long.")
    if store.passkeys.get(credential_id) is not None:
        raise _bad("That passkey is already registered.")
    record = PasskeyRecord(
        credential_id=credential_id,
        public_key=b64url(verified.credential_public_key),
        transports=_transports(parsed),
        sign_count=verified.sign_count,
        user_id=session.user_id,
        label=people.clean_label(label or pending.label)
        or people.default_label(store, session.user_id),
        created_at=now,
    )
    store.passkeys.add(record)
    invites.finish_enrollment(store, session=session, now=now)
    return record


def finish_login(
    store: Store,
    challenges: ChallengeStore,
    *,
    rp: RelyingParty,
    challenge_id: str,
    credential: dict[str, Any],
    now: datetime,
) -> UserRecord:
    """Verify a discoverable login; the signed-in user on success."""
    pending = challenges.take(challenge_id, purpose="login", now=now)
    return verify_assertion(
        store, rp=rp, purpose="login", challenge=pending.challenge, credential=credential, now=now
    )


def verify_assertion(
    store: Store,
    *,
    rp: RelyingParty,
    purpose: Purpose,
    challenge: bytes,
    credential: dict[str, Any],
    now: datetime,
) -> UserRecord:
    """A passkey assertion over the tagged ``challenge``; the passkey's user on success.

    Checklist: known credential -> owner may sign in -> user handle matches -> py_webauthn
    (origin, rp id hash, UP, UV, signature) -> sign counter never goes backwards (possible
    clone). The caller has already taken the challenge (single use, unexpired, purpose).
    """
    try:
        parsed = parse_authentication_credential_json(credential)
    except _WEBAUTHN_FAILURES as exc:
        raise _refusal(purpose, exc) from None
    passkey = store.passkeys.get(b64url(parsed.raw_id))
    user = store.users.get(passkey.user_id) if passkey else None
    if passkey is None or user is None or user.status == "disabled":
        raise _bad("That passkey is not registered here (it may have been removed).")
    if parsed.response.user_handle not in (None, user.id.encode("utf-8")):
        raise _bad("That passkey belongs to a different account.")
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=tagged_challenge(purpose, challenge),
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origin,
            credential_public_key=b64url_decode(passkey.public_key),
            # The counter is checked below, after the signature, so a clone is logged.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except _WEBAUTHN_FAILURES as exc:
        raise _refusal(purpose, exc) from None
    _check_sign_count(passkey, verified.new_sign_count)
    passkey.sign_count = verified.new_sign_count
    passkey.last_used_at = now
    store.passkeys.save(passkey)
    return user


def _check_sign_count(passkey: PasskeyRecord, offered: int) -> None:
    """WebAuthn L2 §7.2 step 21: a counter that does not rise may mean a cloned authenticator.

    Authenticators that never count (synced passkeys) report 0 every time, which is fine.
    """
    if (offered or passkey.sign_count) and offered <= passkey.sign_count:
        log.warning(
            "passkey sign count did not rise for user %s (credential %s...): stored %d, "
            "offered %d; possible cloned authenticator, login refused",
            passkey.user_id,
            passkey.credential_id[:12],
            passkey.sign_count,
            offered,
        )
        raise _bad(
            "This passkey's use counter went backwards, which can mean it was copied; "
            "sign in with another passkey and tell the relay owner."
        )


def _transports(parsed: RegistrationCredential) -> list[str]:
    found = [str(getattr(t, "value", t)) for t in parsed.response.transports or []]
    return [t for t in found if t in _KNOWN_TRANSPORTS][:MAX_TRANSPORTS]


# py_webauthn's messages may quote client-supplied values (origin, type); they are mapped to
# fixed sentences and only the exception type reaches the log.
_REASONS: tuple[tuple[str, str], ...] = (
    ("challenge", "The passkey answered a different request; start again."),
    ("origin", "The passkey was used on a different site than this relay."),
    ("RP ID", "The passkey belongs to a different site than this relay."),
    ("signature", "The passkey's signature does not match."),
    ("verification", "The authenticator did not verify you (PIN, fingerprint or face)."),
    ("presen", "The authenticator did not confirm you were present."),
    ("client data type", "The passkey response is for a different kind of request."),
    ("alg", "That passkey uses an algorithm this relay does not accept."),
)


def _refusal(ceremony: str, exc: Exception) -> AppError:
    text = str(exc)
    log.info("passkey %s refused: %s", ceremony, type(exc).__name__)
    for needle, sentence in _REASONS:
        if needle.lower() in text.lower():
            return _bad(sentence)
    return _bad(f"The passkey {ceremony} response could not be verified.")
