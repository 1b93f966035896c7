"""WebAuthn ceremonies and the challenge store, driven by a real software authenticator."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, passkeys, sessions
from codexrelay.relay.access.passkeys import ChallengeStore, RelyingParty
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.records import PasskeyRecord, SessionRecord, UserRecord
from tests.softauthn import LOGIN_TAG, REGISTER_TAG, SoftAuthenticator, tag_challenge

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TTL = 300
RP = RelyingParty(rp_id="localhost", origin="http://localhost:8787", name="codexrelay")


def _state() -> tuple[MemoryStore, UserRecord, SessionRecord]:
    db = MemoryStore("inst_test", NOW, check_saves=True)
    user = identity.create_user(db, name="Ada", now=NOW, rand=secrets.token_bytes)
    issued = sessions.open_session(
        db,
        user_id=user.id,
        via="bootstrap",
        now=NOW,
        ttl_sec=3600,
        max_per_user=20,
        secret="s" * 32,
        rand=secrets.token_bytes,
    )
    return db, user, issued.record


def _register(
    db: MemoryStore,
    store: ChallengeStore,
    user: UserRecord,
    session: SessionRecord,
    auth: SoftAuthenticator,
    *,
    now: datetime = NOW,
    **knobs: object,
) -> PasskeyRecord:
    options = passkeys.start_registration(
        db,
        store,
        rp=RP,
        user=user,
        session_id=session.id,
        label="",
        now=now,
        ttl_sec=TTL,
        rand=secrets.token_bytes,
    )
    origin = str(knobs.pop("origin", RP.origin))
    credential = auth.create(options.public_key, origin=origin, **knobs)  # type: ignore[arg-type]
    return passkeys.finish_registration(
        db,
        store,
        rp=RP,
        session=session,
        challenge_id=options.challenge_id,
        credential=credential,
        label=None,
        now=now,
    )


def _login(
    db: MemoryStore,
    store: ChallengeStore,
    auth: SoftAuthenticator,
    *,
    now: datetime = NOW,
    **knobs: object,
) -> UserRecord:
    options = passkeys.start_login(store, rp=RP, now=now, ttl_sec=TTL, rand=secrets.token_bytes)
    origin = str(knobs.pop("origin", RP.origin))
    credential = auth.get(options.public_key, origin=origin, **knobs)  # type: ignore[arg-type]
    return passkeys.finish_login(
        db, store, rp=RP, challenge_id=options.challenge_id, credential=credential, now=now
    )


@pytest.fixture
def setup() -> Iterator[
    tuple[MemoryStore, ChallengeStore, UserRecord, SessionRecord, SoftAuthenticator]
]:
    db, user, session = _state()
    yield db, ChallengeStore(), user, session, SoftAuthenticator()
    db.check_unsaved()  # every change was saved, so a row backend would keep it too


def _refused(excinfo: pytest.ExceptionInfo[AppError]) -> str:
    assert excinfo.value.code == ErrorCode.INVALID_PASSKEY
    assert excinfo.value.status == 400
    return excinfo.value.message


# --- purpose tags ---


def test_tagged_challenge_is_sha256_of_tag_nul_challenge():
    """API.md: the signed value is SHA-256(TAG || 0x00 || C), with a tag per purpose."""
    challenge = bytes(range(32))
    expected = hashlib.sha256(b"codexrelay/webauthn/login/v1\x00" + challenge).digest()
    assert passkeys.tagged_challenge("login", challenge) == expected
    assert passkeys.tagged_challenge("register", challenge) == tag_challenge(
        REGISTER_TAG, challenge
    )
    assert passkeys.tagged_challenge("register", challenge) != expected


# --- the challenge store (R05) ---


def test_challenge_store_is_single_use():
    """R05: a challenge can be taken once."""
    store = ChallengeStore()
    pending = store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    assert store.take(pending.id, purpose="login", now=NOW).challenge == pending.challenge
    with pytest.raises(AppError) as excinfo:
        store.take(pending.id, purpose="login", now=NOW)
    assert "already used" in _refused(excinfo)


def test_challenge_store_expires():
    """R05: a challenge older than its lifetime is refused (and gone)."""
    store = ChallengeStore()
    pending = store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    with pytest.raises(AppError) as excinfo:
        store.take(pending.id, purpose="login", now=NOW + timedelta(seconds=TTL))
    assert "expired" in _refused(excinfo)
    assert len(store) == 0


def test_challenge_store_accepts_just_before_expiry():
    """A challenge is good until its lifetime ends."""
    store = ChallengeStore()
    pending = store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    store.take(pending.id, purpose="login", now=NOW + timedelta(seconds=TTL - 1))


def test_challenge_store_binds_registration_to_session():
    """R05: another session can neither use nor burn a registration challenge."""
    store = ChallengeStore()
    pending = store.issue(
        purpose="register", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes, session_id="ses_a"
    )
    with pytest.raises(AppError):
        store.take(pending.id, purpose="register", now=NOW, session_id="ses_b")
    assert store.take(pending.id, purpose="register", now=NOW, session_id="ses_a")


def test_challenge_store_keeps_purposes_apart():
    """A login challenge cannot be spent on a registration, nor the reverse."""
    store = ChallengeStore()
    pending = store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    with pytest.raises(AppError):
        store.take(pending.id, purpose="register", now=NOW)


def test_challenge_store_is_bounded():
    """A flood of login options cannot grow relay memory without bound (A1)."""
    store = ChallengeStore(max_pending=5)
    first = store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    for _ in range(10):
        store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    assert len(store) == 5
    with pytest.raises(AppError):
        store.take(first.id, purpose="login", now=NOW)


def test_challenge_store_caps_each_session():
    """One session's registration attempts cannot push out other people's challenges."""
    store = ChallengeStore()
    login = store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    made = [
        store.issue(
            purpose="register", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes, session_id="s"
        )
        for _ in range(passkeys.MAX_PENDING_PER_SESSION + 3)
    ]
    assert len(store) == passkeys.MAX_PENDING_PER_SESSION + 1
    store.take(made[-1].id, purpose="register", now=NOW, session_id="s")
    with pytest.raises(AppError):
        store.take(made[0].id, purpose="register", now=NOW, session_id="s")
    assert store.take(login.id, purpose="login", now=NOW)


def test_challenge_store_prunes_expired_on_issue():
    """Expired challenges are dropped when new ones are made."""
    store = ChallengeStore()
    store.issue(purpose="login", now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    store.issue(
        purpose="login", now=NOW + timedelta(seconds=TTL), ttl_sec=TTL, rand=secrets.token_bytes
    )
    assert len(store) == 1


# --- options ---


def test_registration_options_require_resident_key_and_user_verification(setup):
    """R05: discoverable, user-verified credentials only; existing ones excluded."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    options = passkeys.start_registration(
        db,
        store,
        rp=RP,
        user=user,
        session_id=session.id,
        label="",
        now=NOW,
        ttl_sec=TTL,
        rand=secrets.token_bytes,
    ).public_key
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "required"
    assert selection["userVerification"] == "required"
    assert options["rp"]["id"] == "localhost"
    assert options["attestation"] == "none"
    assert [c["id"] for c in options["excludeCredentials"]] == [
        p.credential_id for p in db.passkeys.all()
    ]
    assert options["timeout"] == TTL * 1000


def test_login_options_carry_no_allow_credentials():
    """A discoverable login names no credentials, so it reveals no accounts."""
    options = passkeys.start_login(
        ChallengeStore(), rp=RP, now=NOW, ttl_sec=TTL, rand=secrets.token_bytes
    ).public_key
    assert "allowCredentials" not in options
    assert options["userVerification"] == "required"
    assert options["rpId"] == "localhost"


# --- registration ---


def test_register_and_login_succeed(setup):
    """A real ES256 credential registers and then signs in."""
    db, store, user, session, auth = setup
    record = _register(db, store, user, session, auth)
    assert record.user_id == user.id
    assert record.label == "Passkey 1"
    assert record.transports == ["internal", "hybrid"]
    assert _login(db, store, auth).id == user.id
    assert db.passkeys.get(record.credential_id).last_used_at == NOW
    assert db.passkeys.get(record.credential_id).sign_count == 1


def test_passkey_record_holds_only_r08_fields(setup):
    """R08: public key, credential id, transports, counter, owner, label and times only."""
    db, store, user, session, auth = setup
    record = _register(db, store, user, session, auth)
    assert set(record.model_dump()) == {
        "credential_id",
        "public_key",
        "transports",
        "sign_count",
        "user_id",
        "label",
        "created_at",
        "last_used_at",
    }


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"origin": "https://evil.example"}, "different site than"),
        ({"rp_id": "evil.example"}, "belongs to a different site"),
        ({"tag": None}, "different request"),
        ({"tag": LOGIN_TAG}, "different request"),
        ({"challenge": b"\x00" * 32}, "different request"),
        ({"user_verified": False}, "did not verify you"),
        ({"client_type": "webauthn.get"}, "different kind of request"),
    ],
)
def test_registration_refuses_bad_responses(setup, knobs, reason):
    """R05: origin, rp id, tagged challenge, user verification and type are all checked."""
    db, store, user, session, auth = setup
    with pytest.raises(AppError) as excinfo:
        _register(db, store, user, session, auth, **knobs)
    assert reason in _refused(excinfo)
    assert db.passkeys.count() == 0


def test_registration_refuses_a_known_credential(setup):
    """A credential id already registered (to anyone) is never overwritten."""
    db, store, user, session, auth = setup
    record = _register(db, store, user, session, auth)
    taken = auth.credentials[0].credential_id
    with pytest.raises(AppError) as excinfo:
        _register(db, store, user, session, SoftAuthenticator(), credential_id=taken)
    assert "already registered" in _refused(excinfo)
    assert db.passkeys.get(record.credential_id).public_key == record.public_key


def test_registration_refuses_an_id_that_differs_from_the_attested_one(setup):
    """The JSON id must name the credential the authenticator data attests."""
    db, store, user, session, auth = setup
    options = passkeys.start_registration(
        db,
        store,
        rp=RP,
        user=user,
        session_id=session.id,
        label="",
        now=NOW,
        ttl_sec=TTL,
        rand=secrets.token_bytes,
    )
    credential = auth.create(options.public_key, origin=RP.origin)
    credential["id"] = credential["rawId"] = "b3RoZXI"
    with pytest.raises(AppError) as excinfo:
        passkeys.finish_registration(
            db,
            store,
            rp=RP,
            session=session,
            challenge_id=options.challenge_id,
            credential=credential,
            label=None,
            now=NOW,
        )
    assert "different credential" in _refused(excinfo)
    assert db.passkeys.count() == 0


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {}},
        {"id": "!!", "rawId": "!!", "type": "public-key", "response": {"clientDataJSON": "!!"}},
        {
            "id": "AA",
            "rawId": "AA",
            "type": "public-key",
            "response": {"clientDataJSON": "e30", "attestationObject": "oWNmbXQ"},
        },
    ],
)
def test_registration_garbage_is_invalid_passkey(setup, credential):
    """Malformed credentials become 400 invalid-passkey, never an unexpected error."""
    db, store, user, session, _ = setup
    options = passkeys.start_registration(
        db,
        store,
        rp=RP,
        user=user,
        session_id=session.id,
        label="",
        now=NOW,
        ttl_sec=TTL,
        rand=secrets.token_bytes,
    )
    with pytest.raises(AppError) as excinfo:
        passkeys.finish_registration(
            db,
            store,
            rp=RP,
            session=session,
            challenge_id=options.challenge_id,
            credential=credential,
            label=None,
            now=NOW,
        )
    _refused(excinfo)


def test_registration_activates_enrollment_locked_user(setup):
    """R21: the first passkey ends the enrollment lock for user and session."""
    db, store, user, session, auth = setup
    user.status = "enrollment-locked"
    session.enrollment_only = True
    _register(db, store, user, session, auth)
    assert user.status == "active"
    assert session.enrollment_only is False


# --- login ---


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"origin": "http://localhost:9999"}, "different site than"),
        ({"rp_id": "evil.example"}, "belongs to a different site"),
        ({"tag": None}, "different request"),
        ({"tag": REGISTER_TAG}, "different request"),
        ({"user_verified": False}, "did not verify you"),
        ({"client_type": "webauthn.create"}, "different kind of request"),
    ],
)
def test_login_refuses_bad_responses(setup, knobs, reason):
    """R05: a login signed untagged, for another purpose, origin or rp id is refused."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    with pytest.raises(AppError) as excinfo:
        _login(db, store, auth, **knobs)
    assert reason in _refused(excinfo)


def test_login_refuses_a_bad_signature(setup):
    """A response signed by another key for the same credential id is refused."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    impostor = SoftAuthenticator()
    _register(db, store, user, session, impostor)
    stolen_id = auth.credentials[0].credential_id
    impostor.credentials[0].credential_id = stolen_id
    with pytest.raises(AppError) as excinfo:
        _login(db, store, impostor)
    assert "signature" in _refused(excinfo)


def test_login_with_unknown_credential_is_refused(setup):
    """A credential the relay never registered cannot sign in."""
    db, store, _, _, _ = setup
    stranger = SoftAuthenticator()
    stranger.create(
        {"rp": {"id": "localhost"}, "user": {"id": "dXNy"}, "challenge": "AA"}, origin=RP.origin
    )
    with pytest.raises(AppError) as excinfo:
        _login(db, store, stranger)
    assert "not registered" in _refused(excinfo)


def test_login_with_revoked_credential_is_refused(setup):
    """I2: once the record is gone the credential signs in no more."""
    db, store, user, session, auth = setup
    record = _register(db, store, user, session, auth)
    db.passkeys.remove(record)
    with pytest.raises(AppError):
        _login(db, store, auth)


def test_login_refuses_a_disabled_user(setup):
    """A disabled account cannot sign in with its passkey."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    user.status = "disabled"
    with pytest.raises(AppError):
        _login(db, store, auth)


def test_login_refuses_a_foreign_user_handle(setup):
    """The user handle the authenticator returns must be the credential's owner."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    auth.credentials[0].user_handle = b"usr_someone_else"
    with pytest.raises(AppError) as excinfo:
        _login(db, store, auth)
    assert "different account" in _refused(excinfo)


def test_login_replayed_response_is_refused(setup):
    """R05: the same signed response cannot be used twice."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    options = passkeys.start_login(store, rp=RP, now=NOW, ttl_sec=TTL, rand=secrets.token_bytes)
    credential = auth.get(options.public_key, origin=RP.origin)
    kwargs = {"rp": RP, "challenge_id": options.challenge_id, "credential": credential, "now": NOW}
    passkeys.finish_login(db, store, **kwargs)
    with pytest.raises(AppError):
        passkeys.finish_login(db, store, **kwargs)


def test_sign_count_regression_is_refused_and_logged(setup, caplog):
    """A counter that goes backwards may be a cloned authenticator: refused and logged."""
    db, store, user, session, auth = setup
    record = _register(db, store, user, session, auth)
    _login(db, store, auth)
    _login(db, store, auth)
    assert record.sign_count == 2
    with (
        caplog.at_level(logging.WARNING, logger="codexrelay.passkeys"),
        pytest.raises(AppError) as excinfo,
    ):
        _login(db, store, auth, sign_count=1)
    assert "went backwards" in _refused(excinfo)
    assert record.sign_count == 2
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "possible cloned authenticator" in warning
    assert record.public_key not in warning


def test_sign_count_equal_is_refused(setup):
    """A non-zero counter that does not rise is refused too (WebAuthn §7.2 step 21)."""
    db, store, user, session, auth = setup
    _register(db, store, user, session, auth)
    _login(db, store, auth)
    with pytest.raises(AppError):
        _login(db, store, auth, sign_count=1)


def test_sign_count_zero_is_accepted_for_synced_passkeys(setup):
    """Authenticators that never count (synced passkeys) keep working."""
    db, store, user, session, _ = setup
    synced = SoftAuthenticator(counter_step=0)
    _register(db, store, user, session, synced)
    assert _login(db, store, synced).id == user.id
    assert _login(db, store, synced).id == user.id
