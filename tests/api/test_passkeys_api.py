"""Passkey endpoints over HTTP, in-process, with a real software authenticator."""

from __future__ import annotations

import pytest

from tests.helpers import FakeClock, both_backends
from tests.softauthn import Phone, SoftAuthenticator, join_by_invite

REGISTER_VERIFY = "/api/v1/auth/passkeys/register/verify"
LOGIN_VERIFY = "/api/v1/auth/passkeys/login/verify"


@pytest.fixture
def owner(app_client, relay_setup) -> Phone:
    """The instance owner, signed in with the recovery token."""
    return Phone(app_client).bootstrap(relay_setup.token)


def _workspace_id(phone: Phone) -> str:
    return phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]


def _assert_invalid_passkey(res) -> None:
    assert res.status_code == 400, res.text
    body = res.json()
    assert body["error"] == "invalid-passkey"
    assert body["message"].endswith(".")
    assert "Traceback" not in res.text
    assert "set-cookie" not in res.headers


# --- success ---


def test_register_and_login_round_trip(owner, app_client):
    """R05: register a passkey, then a fresh phone signs in with it and gets a session."""
    res = owner.register("Pixel")
    assert res.status_code == 201, res.text
    passkey = res.json()["passkey"]
    assert set(passkey) == {"credentialId", "label", "transports", "createdAt", "lastUsedAt"}
    assert passkey["label"] == "Pixel"

    phone = Phone(app_client, authenticator=owner.authenticator)
    res = phone.login()
    assert res.status_code == 200, res.text
    assert res.json()["user"]["isOwner"] is True
    assert phone.cookie
    me = phone.get("/api/v1/me").json()
    assert me["session"]["via"] == "passkey"
    assert me["session"]["isRecovery"] is False
    assert me["user"]["hasPasskey"] is True


def test_me_has_passkey_after_recovery_login(owner):
    """O4: a recovery-token session reports isRecovery and whether passkeys exist."""
    before = owner.get("/api/v1/me").json()
    assert before["session"]["isRecovery"] is True
    assert before["user"]["hasPasskey"] is False
    owner.enroll()
    assert owner.get("/api/v1/me").json()["user"]["hasPasskey"] is True


def test_login_updates_counter_and_last_used(owner, app_client, clock: FakeClock):
    """Each login records the sign count and time of use."""
    owner.enroll()
    clock.advance(60)
    phone = Phone(app_client, authenticator=owner.authenticator)
    assert phone.login().status_code == 200
    (listed,) = owner.get("/api/v1/me/passkeys").json()["passkeys"]
    assert listed["lastUsedAt"] == clock.now.isoformat().replace("+00:00", "Z")


@both_backends
def test_state_file_holds_no_attestation_or_private_material(owner, relay_setup):
    """R08: the stored passkey has only the allowed fields."""
    owner.enroll()
    (record,) = relay_setup.stored_docs("passkeys")
    assert set(record) == {
        "credentialId",
        "publicKey",
        "transports",
        "signCount",
        "userId",
        "label",
        "createdAt",
        "lastUsedAt",
    }


def test_login_options_have_no_allow_credentials(owner, app_client):
    """A discoverable login: the options name no credentials, even when passkeys exist."""
    owner.enroll()
    options = Phone(app_client).login_options()
    assert "allowCredentials" not in options["publicKey"]
    assert options["publicKey"]["userVerification"] == "required"
    assert options["publicKey"]["rpId"] == "localhost"


def test_register_options_are_user_verified_resident_keys(owner):
    """R05: registration requires a discoverable credential and user verification."""
    public_key = owner.register_options()["publicKey"]
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    assert public_key["rp"]["id"] == "localhost"
    assert public_key["timeout"] == 300_000


# --- refusals ---


def test_register_options_need_a_session(app_client):
    """Registration needs a signed-in session."""
    res = Phone(app_client).post("/api/v1/auth/passkeys/register/options", json={})
    assert res.status_code == 401
    assert res.json()["error"] == "unauthenticated"


@pytest.mark.parametrize(
    "knobs",
    [
        {"origin": "https://evil.example"},
        {"rp_id": "evil.example"},
        {"tag": None},
        {"user_verified": False},
    ],
)
def test_register_refusals_are_invalid_passkey(owner, knobs):
    """Wrong origin, rp id, untagged challenge or no UV: 400 invalid-passkey, nothing stored."""
    _assert_invalid_passkey(owner.register(**knobs))
    assert owner.get("/api/v1/me/passkeys").json()["passkeys"] == []


@pytest.mark.parametrize(
    "knobs",
    [
        {"origin": "http://127.0.0.1:1"},
        {"rp_id": "127.0.0.1"},
        {"tag": None},
        {"user_verified": False},
    ],
)
def test_login_refusals_are_invalid_passkey(owner, app_client, knobs):
    """R05: wrong origin, rp id, an untagged challenge or no UV never opens a session."""
    owner.enroll()
    phone = Phone(app_client, authenticator=owner.authenticator)
    _assert_invalid_passkey(phone.login(**knobs))
    assert phone.cookie is None


def test_replayed_registration_challenge_is_refused(owner):
    """R05: a registration challenge is single use."""
    options = owner.register_options()
    credential = owner.authenticator.create(options["publicKey"], origin=owner.origin)
    body = {"challengeId": options["challengeId"], "credential": credential}
    assert owner.post(REGISTER_VERIFY, json=body).status_code == 201
    _assert_invalid_passkey(owner.post(REGISTER_VERIFY, json=body))


def test_replayed_login_is_refused(owner, app_client):
    """R05: a login challenge (and its signed response) works once."""
    owner.enroll()
    phone = Phone(app_client, authenticator=owner.authenticator)
    options = phone.login_options()
    credential = owner.authenticator.get(options["publicKey"], origin=owner.origin)
    body = {"challengeId": options["challengeId"], "credential": credential}
    assert phone.post(LOGIN_VERIFY, json=body).status_code == 200
    _assert_invalid_passkey(Phone(app_client).post(LOGIN_VERIFY, json=body))


def test_expired_challenges_are_refused(owner, app_client, clock: FakeClock):
    """R05: challenges die after passkeyChallengeTtlSec."""
    options = owner.register_options()
    credential = owner.authenticator.create(options["publicKey"], origin=owner.origin)
    clock.advance(300)
    body = {"challengeId": options["challengeId"], "credential": credential}
    res = owner.post(REGISTER_VERIFY, json=body)
    _assert_invalid_passkey(res)
    assert "expired" in res.json()["message"]


def test_expired_login_challenge_is_refused(owner, app_client, clock: FakeClock):
    """R05: a login challenge past its lifetime is refused."""
    owner.enroll()
    phone = Phone(app_client, authenticator=owner.authenticator)
    options = phone.login_options()
    credential = owner.authenticator.get(options["publicKey"], origin=owner.origin)
    clock.advance(301)
    res = phone.post(
        LOGIN_VERIFY, json={"challengeId": options["challengeId"], "credential": credential}
    )
    _assert_invalid_passkey(res)


def test_registration_challenge_from_another_session_is_refused(owner, app_client, relay_setup):
    """R05: a registration challenge is bound to the session that asked for it."""
    other = Phone(app_client).bootstrap(relay_setup.token)
    options = owner.register_options()
    credential = other.authenticator.create(options["publicKey"], origin=owner.origin)
    body = {"challengeId": options["challengeId"], "credential": credential}
    _assert_invalid_passkey(other.post(REGISTER_VERIFY, json=body))
    # ...and the rightful session can still finish its own ceremony.
    assert owner.post(REGISTER_VERIFY, json=body).status_code == 201


def test_login_challenge_cannot_register(owner, app_client):
    """A login challenge id is useless to the registration endpoint."""
    options = Phone(app_client).login_options()
    credential = owner.authenticator.create(
        {**owner.register_options()["publicKey"], "challenge": options["publicKey"]["challenge"]},
        origin=owner.origin,
    )
    body = {"challengeId": options["challengeId"], "credential": credential}
    _assert_invalid_passkey(owner.post(REGISTER_VERIFY, json=body))


def test_sign_count_regression_is_refused(owner, app_client):
    """A counter that went backwards (a cloned authenticator?) does not sign in."""
    owner.enroll()
    phone = Phone(app_client, authenticator=owner.authenticator)
    assert phone.login().status_code == 200
    assert phone.login().status_code == 200
    res = Phone(app_client, authenticator=owner.authenticator).login(sign_count=1)
    _assert_invalid_passkey(res)
    assert "went backwards" in res.json()["message"]


def test_unknown_credential_is_refused(owner, app_client):
    """A credential the relay never saw cannot sign in."""
    stranger = SoftAuthenticator()
    stranger.create(owner.register_options()["publicKey"], origin=owner.origin)
    _assert_invalid_passkey(Phone(app_client, authenticator=stranger).login())


def test_revoked_credential_is_refused(owner, app_client):
    """I2: a revoked passkey signs in no more."""
    owner.enroll()
    (listed,) = owner.get("/api/v1/me/passkeys").json()["passkeys"]
    assert owner.delete(f"/api/v1/me/passkeys/{listed['credentialId']}").status_code == 204
    _assert_invalid_passkey(Phone(app_client, authenticator=owner.authenticator).login())


@pytest.mark.parametrize(
    "credential",
    [{}, {"id": 1}, {"id": "AA", "rawId": "AA", "type": "public-key", "response": "x"}],
)
def test_malformed_credentials_are_invalid_passkey(owner, app_client, credential):
    """Garbage in a credential is a 400 with a sentence, never a 500."""
    options = Phone(app_client).login_options()
    body = {"challengeId": options["challengeId"], "credential": credential}
    _assert_invalid_passkey(Phone(app_client).post(LOGIN_VERIFY, json=body))
    options = owner.register_options()
    body = {"challengeId": options["challengeId"], "credential": credential}
    _assert_invalid_passkey(owner.post(REGISTER_VERIFY, json=body))


def test_unknown_challenge_id_is_invalid_passkey(app_client):
    """A challenge id the relay never issued is refused."""
    body = {"challengeId": "nope", "credential": {}}
    _assert_invalid_passkey(Phone(app_client).post(LOGIN_VERIFY, json=body))


def test_unknown_body_fields_are_refused(app_client):
    """Request bodies forbid unknown fields (422)."""
    res = Phone(app_client).post("/api/v1/auth/passkeys/login/options", json={"user": "x"})
    assert res.status_code == 422
    assert res.json()["error"] == "invalid-request"


def test_ceremonies_refuse_foreign_origin(owner, app_client):
    """Cross-site requests cannot drive the ceremonies (API.md origin check)."""
    headers = {"Origin": "https://evil.example"}
    res = Phone(app_client).post("/api/v1/auth/passkeys/login/options", json={}, headers=headers)
    assert res.status_code == 403
    res = owner.post("/api/v1/auth/passkeys/register/options", json={}, headers=headers)
    assert res.status_code == 403


def test_login_endpoints_are_rate_limited(make_client):
    """R20: passkey login options and verify count against the login limit."""
    with make_client(maxLoginAttemptsPerMinute=3) as client:
        phone = Phone(client)
        for _ in range(2):
            assert phone.post("/api/v1/auth/passkeys/login/options", json={}).status_code == 200
        body = {"challengeId": "x", "credential": {}}
        assert phone.post(LOGIN_VERIFY, json=body).status_code == 400
        res = phone.post("/api/v1/auth/passkeys/login/options", json={})
        assert res.status_code == 429
        assert res.json()["error"] == "rate-limited"
        assert int(res.headers["Retry-After"]) >= 1
        assert phone.post(LOGIN_VERIFY, json=body).status_code == 429


# --- enrollment (R21) ---


def test_invitee_registers_passkey_and_becomes_active_member(owner, app_client):
    """R21: an invite session may register; that activates the user and grants the role."""
    wid = _workspace_id(owner)
    code = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "viewer"}).json()["code"]
    phone = Phone(app_client)
    assert (
        phone.post("/api/v1/invites/accept", json={"code": code, "name": "Vi"}).status_code == 200
    )
    me = phone.get("/api/v1/me").json()
    assert me["user"]["status"] == "enrollment-locked"
    assert me["session"]["enrollmentLocked"] is True
    assert me["memberships"] == []
    assert phone.register().status_code == 201
    me = phone.get("/api/v1/me").json()
    assert me["user"]["status"] == "active"
    assert me["session"] == {**me["session"], "via": "invite", "enrollmentLocked": False}
    assert [(m["workspaceId"], m["role"]) for m in me["memberships"]] == [(wid, "viewer")]
    assert phone.get(f"/api/v1/workspaces/{wid}/members").status_code == 200


# --- managing one's own passkeys ---


def test_rename_own_passkey(owner):
    """PATCH relabels a passkey."""
    owner.enroll("old")
    (listed,) = owner.get("/api/v1/me/passkeys").json()["passkeys"]
    res = owner.patch(f"/api/v1/me/passkeys/{listed['credentialId']}", json={"label": "new"})
    assert res.status_code == 200
    assert res.json()["passkey"]["label"] == "new"
    res = owner.patch(f"/api/v1/me/passkeys/{listed['credentialId']}", json={"label": " "})
    assert res.status_code == 400


def test_user_cannot_revoke_own_last_passkey(owner, app_client):
    """I2: a user's last passkey stays unless they have another way in (409 last-passkey)."""
    member = join_by_invite(owner, _workspace_id(owner), "member", "Mo")
    (listed,) = member.get("/api/v1/me/passkeys").json()["passkeys"]
    path = f"/api/v1/me/passkeys/{listed['credentialId']}"
    res = member.delete(path)
    assert res.status_code == 409
    assert res.json()["error"] == "last-passkey"
    assert member.delete(path + "?force=true").status_code == 409
    assert member.enroll("second").delete(path).status_code == 204


def test_owner_may_revoke_own_last_passkey(owner):
    """The owner keeps the recovery token, so their last passkey can go."""
    owner.enroll()
    (listed,) = owner.get("/api/v1/me/passkeys").json()["passkeys"]
    assert owner.delete(f"/api/v1/me/passkeys/{listed['credentialId']}").status_code == 204


def test_cannot_touch_another_users_passkey(owner, app_client):
    """Another user's credential id is not found on /me/passkeys."""
    owner.enroll()
    (listed,) = owner.get("/api/v1/me/passkeys").json()["passkeys"]
    member = join_by_invite(owner, _workspace_id(owner), "member", "Mo")
    path = f"/api/v1/me/passkeys/{listed['credentialId']}"
    assert member.delete(path).status_code == 404
    assert member.patch(path, json={"label": "mine"}).status_code == 404
    assert len(owner.get("/api/v1/me/passkeys").json()["passkeys"]) == 1
