"""A passkey signature over a statement, checked by py_webauthn (TRUST.md §4 preamble).

The signer's app ran ``navigator.credentials.get()`` with ``challenge = H(tag ‖ S)``,
``userVerification: "required"`` and its own ``allowCredentials``. The verifier (agent,
phone, offline checker) computes that challenge itself from the exact bytes it received,
takes the rp id, origins and COSE key from the verified membership log, and hands all of
it to ``verify_authentication_response`` with UV required. It also refuses cross-origin and
embedded (``topOrigin``) ceremonies, which py_webauthn lets through.

Guard clauses run first so each refusal has a specific reason; py_webauthn then re-checks
everything and verifies the signature, and stays the authority on what is valid.

Counters follow py_webauthn: each verifier keeps its own count per credential, a count that
does not rise is refused, and 0 after 0 (synced passkeys never count) is accepted. Replay
protection therefore rests on run-once ids and expiry, never on counters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import Field, StringConstraints
from webauthn import verify_authentication_response
from webauthn.helpers import parse_authenticator_data, parse_backup_flags
from webauthn.helpers.exceptions import WebAuthnException

from codexrelay.e2e.statements import Signed, StatementError, Strict, validate
from codexrelay.e2e.tags import TagName, tagged_hash
from codexrelay.e2e.wire import WireError, b64u, b64u_decode, loads_object

MAX_CREDENTIAL_ID_BYTES: Final = 1023  # WebAuthn L3 §5.1
MAX_CLIENT_DATA_BYTES: Final = 4096
MAX_AUTH_DATA_BYTES: Final = 4096
MAX_SIGNATURE_BYTES: Final = 1024
_FAILURES = (WebAuthnException, ValueError, TypeError, KeyError, IndexError)

CredentialIdText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,1364}$")]
_B64Text = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,5462}$")]


class PasskeyReason(StrEnum):
    """Why a passkey signature was refused; stable, recorded in audit logs."""

    MALFORMED = "malformed"
    CREDENTIAL_MISMATCH = "credential-mismatch"
    WRONG_CEREMONY = "wrong-ceremony"
    CHALLENGE_MISMATCH = "challenge-mismatch"
    ORIGIN_MISMATCH = "origin-mismatch"
    CROSS_ORIGIN = "cross-origin"
    TOP_ORIGIN = "top-origin"
    RP_ID_MISMATCH = "rp-id-mismatch"
    USER_NOT_PRESENT = "user-not-present"
    USER_NOT_VERIFIED = "user-not-verified"
    COUNTER_REGRESSED = "counter-regressed"
    BAD_SIGNATURE = "bad-signature"


class PasskeyError(ValueError):
    """A refused passkey signature; ``reason`` is the stable code."""

    def __init__(self, reason: PasskeyReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class AssertionResponse(Strict):
    """``AuthenticatorAssertionResponseJSON``, only the members verification reads."""

    client_data_json: Annotated[_B64Text, Field(alias="clientDataJSON")]
    authenticator_data: _B64Text
    signature: _B64Text
    user_handle: _B64Text | None = None


class Assertion(Strict):
    """``AuthenticationResponseJSON`` as ``credential.toJSON()`` makes it."""

    id: CredentialIdText
    raw_id: CredentialIdText
    type: str
    response: AssertionResponse
    authenticator_attachment: str | None = None
    client_extension_results: dict[str, Any] = Field(default_factory=dict)


class PasskeySignature(Strict):
    """``{credentialId, assertion}``: how a passkey signature travels (§4)."""

    credential_id: CredentialIdText
    assertion: Assertion


@dataclass(frozen=True)
class VerifiedPasskey:
    """A passkey signature that verified; store ``new_sign_count`` for the credential."""

    credential_id: str
    new_sign_count: int
    user_verified: bool
    backed_up: bool
    device_bound: bool


def parse_signature(obj: Any) -> PasskeySignature:
    """Strictly parse ``{credentialId, assertion}``; refusals are ``MALFORMED``."""
    try:
        return validate(PasskeySignature, obj)
    except StatementError as exc:
        raise PasskeyError(PasskeyReason.MALFORMED, str(exc)) from None


def verify_statement_signature(
    signature: PasskeySignature,
    statement: Signed[Any],
    *,
    rp_id: str,
    origins: Sequence[str],
    cose_key: bytes,
    sign_count: int,
) -> VerifiedPasskey:
    """Check a passkey signature over ``statement`` under the statement's own tag."""
    return verify_passkey_signature(
        signature,
        tag=statement.tag,
        message=statement.raw,
        rp_id=rp_id,
        origins=origins,
        cose_key=cose_key,
        sign_count=sign_count,
    )


def verify_passkey_signature(
    signature: PasskeySignature,
    *,
    tag: TagName,
    message: bytes,
    rp_id: str,
    origins: Sequence[str],
    cose_key: bytes,
    sign_count: int,
) -> VerifiedPasskey:
    """The §4 preamble as a flat checklist; raises :class:`PasskeyError` with the reason."""
    challenge = tagged_hash(tag, message)
    assertion = signature.assertion
    if not (signature.credential_id == assertion.id == assertion.raw_id):
        raise PasskeyError(PasskeyReason.CREDENTIAL_MISMATCH)
    client = _client_data(assertion.response.client_data_json)
    _check_client_data(client, challenge=challenge, origins=origins)
    _check_authenticator_data(assertion.response.authenticator_data, rp_id, sign_count)
    try:
        verified = verify_authentication_response(
            credential=assertion.model_dump(by_alias=True, exclude_none=True),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=list(origins),
            credential_public_key=cose_key,
            credential_current_sign_count=sign_count,
            require_user_verification=True,
        )
    except _FAILURES as exc:
        raise PasskeyError(PasskeyReason.BAD_SIGNATURE, type(exc).__name__) from None
    flags = parse_backup_flags(
        parse_authenticator_data(
            _bytes(assertion.response.authenticator_data, MAX_AUTH_DATA_BYTES)
        ).flags
    )
    return VerifiedPasskey(
        credential_id=signature.credential_id,
        new_sign_count=verified.new_sign_count,
        user_verified=verified.user_verified,
        backed_up=flags.credential_backed_up,
        device_bound=str(getattr(flags.credential_device_type, "value", "")) == "single_device",
    )


def _bytes(text: str, cap: int) -> bytes:
    try:
        return b64u_decode(text, max_bytes=cap)
    except WireError as exc:
        raise PasskeyError(PasskeyReason.MALFORMED, exc.reason.value) from None


def _client_data(text: str) -> Mapping[str, Any]:
    try:
        return loads_object(_bytes(text, MAX_CLIENT_DATA_BYTES), max_bytes=MAX_CLIENT_DATA_BYTES)
    except WireError as exc:
        raise PasskeyError(PasskeyReason.MALFORMED, f"clientDataJSON {exc.reason.value}") from None


def _check_client_data(
    client: Mapping[str, Any], *, challenge: bytes, origins: Sequence[str]
) -> None:
    """WebAuthn L3 §7.2 steps 11-14, plus the two refusals py_webauthn does not make."""
    if client.get("type") != "webauthn.get":
        raise PasskeyError(PasskeyReason.WRONG_CEREMONY)
    if client.get("challenge") != b64u(challenge):
        raise PasskeyError(PasskeyReason.CHALLENGE_MISMATCH)
    if client.get("origin") not in origins:
        raise PasskeyError(PasskeyReason.ORIGIN_MISMATCH)
    if client.get("crossOrigin", False) is not False:
        raise PasskeyError(PasskeyReason.CROSS_ORIGIN)
    if "topOrigin" in client:
        raise PasskeyError(PasskeyReason.TOP_ORIGIN)


def _check_authenticator_data(text: str, rp_id: str, sign_count: int) -> None:
    """WebAuthn L3 §7.2 steps 15-17 and 22 (the counter, as py_webauthn applies it)."""
    try:
        data = parse_authenticator_data(_bytes(text, MAX_AUTH_DATA_BYTES))
    except _FAILURES:
        raise PasskeyError(PasskeyReason.MALFORMED, "authenticatorData") from None
    if data.rp_id_hash != rp_id_hash(rp_id):
        raise PasskeyError(PasskeyReason.RP_ID_MISMATCH)
    if not data.flags.up:
        raise PasskeyError(PasskeyReason.USER_NOT_PRESENT)
    if not data.flags.uv:
        raise PasskeyError(PasskeyReason.USER_NOT_VERIFIED)
    if (data.sign_count or sign_count) and data.sign_count <= sign_count:
        raise PasskeyError(PasskeyReason.COUNTER_REGRESSED, f"{data.sign_count} <= {sign_count}")


def rp_id_hash(rp_id: str) -> bytes:
    """``SHA-256(rpId)``, as authenticator data carries it (WebAuthn's own hash, no tag)."""
    return hashlib.sha256(rp_id.encode("utf-8")).digest()


class SignCounters:
    """One verifier's last seen sign count per credential (each verifier keeps its own)."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts = dict(counts or {})

    def get(self, credential_id: str) -> int:
        """The last accepted count, 0 if never seen."""
        return self._counts.get(credential_id, 0)

    def record(self, verified: VerifiedPasskey) -> None:
        """Remember a verified signature's count (never lowers a stored count)."""
        current = self._counts.get(verified.credential_id, 0)
        self._counts[verified.credential_id] = max(current, verified.new_sign_count)

    def snapshot(self) -> dict[str, int]:
        """A copy, for persisting."""
        return dict(self._counts)
