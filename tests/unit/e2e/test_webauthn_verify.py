"""Passkey signatures over statements, verified with py_webauthn (TRUST.md §4, §10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from codexrelay.e2e import statements as s
from codexrelay.e2e.tags import tagged_hash
from codexrelay.e2e.webauthn_verify import (
    PasskeyError,
    PasskeyReason,
    SignCounters,
    parse_signature,
    verify_statement_signature,
)
from codexrelay.e2e.wire import b64u
from tests.softauthn import FLAG_BE, FLAG_BS, SoftAuthenticator, b64url_decode
from tests.unit.e2e import builders as b


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    """A platform authenticator holding one ES256 passkey for the rp id."""
    device = SoftAuthenticator()
    device.new_credential(b.RP_ID)
    return device


def stmt(**changes: Any) -> s.Signed[s.TaskStatement]:
    """A parsed task statement."""
    return s.decode_statement(b.raw(b.task(**changes)), s.TaskStatement)


def sign(device: SoftAuthenticator, signed: s.Signed[Any], **knobs: Any) -> dict[str, Any]:
    """The app's get(): challenge = H(tag ‖ S), UV on unless a knob says otherwise."""
    knobs.setdefault("origin", b.ORIGIN)
    challenge = knobs.pop("challenge", signed.challenge)
    return device.sign_statement(challenge, rp_id=knobs.pop("rp_id", b.RP_ID), **knobs)


def verify(
    device: SoftAuthenticator, auth: dict[str, Any], signed: s.Signed[Any], count: int = 0
) -> Any:
    """Verify as an agent would, with the COSE key and origins from the log."""
    return verify_statement_signature(
        parse_signature(auth),
        signed,
        rp_id=b.RP_ID,
        origins=[b.ORIGIN, "https://app.relay.example"],
        cose_key=device.credentials[0].cose_public_key(),
        sign_count=count,
    )


def reason_of(
    device: SoftAuthenticator, auth: dict[str, Any], signed: s.Signed[Any], count: int = 0
) -> PasskeyReason:
    """The refusal reason (fails if accepted)."""
    with pytest.raises(PasskeyError) as caught:
        verify(device, auth, signed, count)
    return caught.value.reason


def test_passkey_uv_signature_over_statement_verifies(authenticator: SoftAuthenticator) -> None:
    """A UV assertion over H(tag(task) ‖ S) verifies and reports the new count."""
    signed = stmt()
    result = verify(authenticator, sign(authenticator, signed), signed)
    assert result.user_verified
    assert result.new_sign_count == 1
    assert result.credential_id == b64u(authenticator.credentials[0].credential_id)
    assert result.device_bound
    assert not result.backed_up


def test_passkey_synced_flags_reported(authenticator: SoftAuthenticator) -> None:
    """BE|BS (a synced passkey) is reported so policy can demand device-bound keys."""
    signed = stmt()
    result = verify(
        authenticator, sign(authenticator, signed, backup_flags=FLAG_BE | FLAG_BS), signed
    )
    assert result.backed_up
    assert not result.device_bound


def test_passkey_without_uv_refused(authenticator: SoftAuthenticator) -> None:
    """UP alone is not enough: execution needs user verification."""
    signed = stmt()
    auth = sign(authenticator, signed, user_verified=False)
    assert reason_of(authenticator, auth, signed) is PasskeyReason.USER_NOT_VERIFIED


def test_passkey_without_up_refused(authenticator: SoftAuthenticator) -> None:
    """No user presence, no signature."""
    signed = stmt()
    auth = sign(authenticator, signed, user_present=False)
    assert reason_of(authenticator, auth, signed) is PasskeyReason.USER_NOT_PRESENT


def test_passkey_counter_regressed_refused(authenticator: SoftAuthenticator) -> None:
    """A count not above this verifier's last one is refused (possible clone)."""
    signed = stmt()
    counters = SignCounters()
    first = verify(authenticator, sign(authenticator, signed, sign_count=5), signed)
    counters.record(first)
    assert counters.get(first.credential_id) == 5
    again = sign(authenticator, signed, sign_count=5)
    assert reason_of(authenticator, again, signed, counters.get(first.credential_id)) is (
        PasskeyReason.COUNTER_REGRESSED
    )
    lower = sign(authenticator, signed, sign_count=3)
    assert reason_of(authenticator, lower, signed, 5) is PasskeyReason.COUNTER_REGRESSED
    assert reason_of(authenticator, sign(authenticator, signed, sign_count=0), signed, 5) is (
        PasskeyReason.COUNTER_REGRESSED
    )


def test_passkey_counter_stuck_at_zero_accepted_as_py_webauthn_does() -> None:
    """Synced passkeys report 0 every time: accepted, so replay protection is run-once ids."""
    device = SoftAuthenticator(counter_step=0)
    device.new_credential(b.RP_ID)
    signed = stmt()
    counters = SignCounters()
    for _ in range(3):
        result = verify(
            device,
            sign(device, signed),
            signed,
            counters.get(b64u(device.credentials[0].credential_id)),
        )
        counters.record(result)
        assert result.new_sign_count == 0


def test_passkey_counters_are_per_verifier(authenticator: SoftAuthenticator) -> None:
    """Each verifier sees an increasing subsequence: relay at 6, agent at 3, both accept."""
    signed = stmt()
    auth = sign(authenticator, signed, sign_count=7)
    assert verify(authenticator, auth, signed, count=6).new_sign_count == 7
    assert verify(authenticator, auth, signed, count=3).new_sign_count == 7


def test_passkey_cross_origin_refused(authenticator: SoftAuthenticator) -> None:
    """An assertion made inside a foreign frame is refused, though py_webauthn allows it."""
    signed = stmt()
    assert reason_of(authenticator, sign(authenticator, signed, cross_origin=True), signed) is (
        PasskeyReason.CROSS_ORIGIN
    )


def test_passkey_top_origin_refused(authenticator: SoftAuthenticator) -> None:
    """Any topOrigin (an embedded ceremony) is refused."""
    signed = stmt()
    auth = sign(authenticator, signed, top_origin="https://evil.example")
    assert reason_of(authenticator, auth, signed) is PasskeyReason.TOP_ORIGIN


def test_passkey_wrong_origin_and_rp_refused(authenticator: SoftAuthenticator) -> None:
    """Origins and rp id come from the log; others are refused."""
    signed = stmt()
    auth = sign(authenticator, signed, origin="https://relay.example.evil")
    assert reason_of(authenticator, auth, signed) is PasskeyReason.ORIGIN_MISMATCH
    auth = sign(authenticator, signed, rp_id="example", credential=authenticator.credentials[0])
    assert reason_of(authenticator, auth, signed) is PasskeyReason.RP_ID_MISMATCH


def test_passkey_other_app_origin_from_the_log_accepted(authenticator: SoftAuthenticator) -> None:
    """A second origin listed in the log (a separate app origin) is accepted."""
    signed = stmt()
    assert verify(
        authenticator, sign(authenticator, signed, origin="https://app.relay.example"), signed
    )


def test_passkey_registration_ceremony_refused(authenticator: SoftAuthenticator) -> None:
    """A webauthn.create clientData is not a signature (§10 item 4)."""
    signed = stmt()
    auth = sign(authenticator, signed, client_type="webauthn.create")
    assert reason_of(authenticator, auth, signed) is PasskeyReason.WRONG_CEREMONY


def test_passkey_login_assertion_is_not_a_task_signature(authenticator: SoftAuthenticator) -> None:
    """A login over the same bytes (tag(login)) never verifies as a task (§4.12)."""
    signed = stmt()
    login = sign(authenticator, signed, challenge=tagged_hash("login", signed.raw))
    assert reason_of(authenticator, login, signed) is PasskeyReason.CHALLENGE_MISMATCH
    raw_relay = sign(authenticator, signed, challenge=signed.raw[:32])
    assert reason_of(authenticator, raw_relay, signed) is PasskeyReason.CHALLENGE_MISMATCH


def test_passkey_signature_for_another_statement_refused(authenticator: SoftAuthenticator) -> None:
    """A signature over one statement does not verify another (writeAccess flipped)."""
    signed = stmt()
    auth = sign(authenticator, signed)
    other = stmt(writeAccess=True)
    assert reason_of(authenticator, auth, other) is PasskeyReason.CHALLENGE_MISMATCH


def test_passkey_wrong_key_refused(authenticator: SoftAuthenticator) -> None:
    """A valid assertion from a credential not in the log fails the signature check."""
    signed = stmt()
    other = SoftAuthenticator()
    other.new_credential(b.RP_ID)
    auth = sign(other, signed)
    auth["credentialId"] = auth["assertion"]["id"]
    assert reason_of(authenticator, auth, signed) is PasskeyReason.BAD_SIGNATURE


def test_passkey_tampered_client_data_refused(authenticator: SoftAuthenticator) -> None:
    """Changing clientDataJSON after signing breaks the signature."""
    signed = stmt()
    auth = sign(authenticator, signed)
    client = json.loads(b64url_decode(auth["assertion"]["response"]["clientDataJSON"]))
    client["extra"] = 1
    auth["assertion"]["response"]["clientDataJSON"] = b64u(json.dumps(client).encode())
    assert reason_of(authenticator, auth, signed) is PasskeyReason.BAD_SIGNATURE


def test_passkey_credential_id_mismatch_refused(authenticator: SoftAuthenticator) -> None:
    """credentialId must name the credential that signed."""
    signed = stmt()
    auth = sign(authenticator, signed)
    auth["credentialId"] = b64u(b"someone else")
    assert reason_of(authenticator, auth, signed) is PasskeyReason.CREDENTIAL_MISMATCH


@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: a.pop("assertion"),
        lambda a: a["assertion"].pop("response"),
        lambda a: a["assertion"]["response"].update(clientDataJSON="!!"),
        lambda a: a["assertion"]["response"].update(clientDataJSON=b64u(b'{"type":1,"type":2}')),
        lambda a: a["assertion"]["response"].update(authenticatorData=b64u(b"short")),
        lambda a: a["assertion"].update(extra=1),
        lambda a: a.update(credentialId=7),
    ],
)
def test_passkey_malformed_refused(authenticator: SoftAuthenticator, mutate: Any) -> None:
    """Missing parts, bad base64url, duplicate keys and short authenticator data are malformed."""
    signed = stmt()
    auth = sign(authenticator, signed)
    mutate(auth)
    assert reason_of(authenticator, auth, signed) is PasskeyReason.MALFORMED
