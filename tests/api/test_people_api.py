"""Invites, enrollment lock, recovery codes, members and owner administration over HTTP."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.helpers import FakeClock, both_backends
from tests.softauthn import Phone, join_by_invite


@pytest.fixture
def owner(app_client, relay_setup) -> Phone:
    """The instance owner, signed in with the recovery token."""
    return Phone(app_client).bootstrap(relay_setup.token)


@pytest.fixture
def wid(owner) -> str:
    """The default workspace, owned by the instance owner."""
    return owner.get("/api/v1/me").json()["memberships"][0]["workspaceId"]


def _invite(phone: Phone, wid: str, role: str, **extra) -> dict:
    res = phone.post(f"/api/v1/workspaces/{wid}/invites", json={"role": role, **extra})
    assert res.status_code == 201, res.text
    return res.json()


def _accept(phone: Phone, code: str, name: str = "New person"):
    return phone.post("/api/v1/invites/accept", json={"code": code, "name": name})


def _user_id(phone: Phone) -> str:
    return phone.get("/api/v1/me").json()["user"]["id"]


def _error(res, status: int, code: str) -> None:
    assert res.status_code == status, res.text
    assert res.json()["error"] == code


# --- invites (R21, O5) ---


@both_backends
def test_invite_create_shape_and_code_shown_once(owner, wid, relay_setup):
    """O5: the code and url come once; the list and state.json never hold the code."""
    body = _invite(owner, wid, "member", note="Sam's phone", ttlSec=600)
    assert set(body) == {"invite", "code", "url", "qrSvg"}
    assert body["url"] == f"{relay_setup.origin}/#invite={body['code']}"
    assert body["qrSvg"].startswith("<svg")
    assert "<script" not in body["qrSvg"]
    assert body["invite"]["role"] == "member"
    assert body["invite"]["expiresAt"] == "2026-11-29T12:10:00Z"
    listed = owner.get(f"/api/v1/workspaces/{wid}/invites").json()["invites"]
    assert [i["id"] for i in listed] == [body["invite"]["id"]]
    assert listed[0]["status"] == "pending"
    assert listed[0]["note"] == "Sam's phone"
    assert body["code"] not in owner.get(f"/api/v1/workspaces/{wid}/invites").text
    state_text = relay_setup.stored_text()
    assert body["code"] not in state_text
    assert body["code"].replace("-", "") not in state_text


def test_invite_default_ttl_comes_from_config(owner, wid):
    """Without ttlSec the invite lasts inviteTtlSec (3 days by default)."""
    assert _invite(owner, wid, "viewer")["invite"]["expiresAt"] == "2026-12-02T12:00:00Z"


def test_invite_ttl_bounds(owner, wid):
    """ttlSec is validated (422 outside 300..2592000)."""
    res = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "member", "ttlSec": 5})
    _error(res, 422, "invalid-request")


@pytest.mark.parametrize(
    ("inviter", "role", "status"),
    [
        ("admin", "member", 201),
        ("admin", "viewer", 201),
        ("admin", "admin", 403),
        ("admin", "owner", 403),
        ("member", "viewer", 403),
        ("viewer", "viewer", 403),
    ],
)
def test_invite_role_ceilings(owner, wid, inviter, role, status):
    """R03: admin+ invites, never above their own role; only owners invite admins/owners."""
    phone = join_by_invite(owner, wid, inviter, inviter.title())
    res = phone.post(f"/api/v1/workspaces/{wid}/invites", json={"role": role})
    assert res.status_code == status, res.text


def test_owner_invites_an_admin(owner, wid, app_client):
    """An owner may invite an admin, who gets the admin role after enrolling."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    assert admin.get("/api/v1/me").json()["memberships"][0]["role"] == "admin"


def test_invite_accept_opens_enrollment_only_session(owner, wid, app_client):
    """R21: accepting makes an enrollment-locked user with an ``invite`` session."""
    phone = Phone(app_client)
    res = _accept(phone, _invite(owner, wid, "member")["code"], "Sam")
    assert res.status_code == 200
    assert res.json()["user"]["status"] == "enrollment-locked"
    assert res.json()["user"]["name"] == "Sam"
    assert phone.cookie
    session = phone.get("/api/v1/me").json()["session"]
    assert session["via"] == "invite"
    assert session["enrollmentLocked"] is True
    assert session["isRecovery"] is False


def test_invite_code_is_one_time(owner, wid, app_client):
    """O5: a used code is 400 invalid-or-expired-code."""
    code = _invite(owner, wid, "member")["code"]
    assert _accept(Phone(app_client), code).status_code == 200
    _error(_accept(Phone(app_client), code), 400, "invalid-or-expired-code")


def test_invite_code_expires(owner, wid, app_client, clock: FakeClock):
    """O5: an expired code is refused."""
    code = _invite(owner, wid, "member", ttlSec=300)["code"]
    clock.advance(300)
    _error(_accept(Phone(app_client), code), 400, "invalid-or-expired-code")
    assert owner.get(f"/api/v1/workspaces/{wid}/invites").json()["invites"][0]["status"] == (
        "expired"
    )


def test_wrong_invite_code_is_refused(app_client):
    """A made-up code is refused like a used one."""
    _error(_accept(Phone(app_client), "ABCD-EFGH-JKMN"), 400, "invalid-or-expired-code")


def test_invite_accept_needs_name_for_new_user(owner, wid, app_client):
    """A new user must give a name (400) and the code survives the mistake."""
    code = _invite(owner, wid, "member")["code"]
    res = Phone(app_client).post("/api/v1/invites/accept", json={"code": code})
    _error(res, 400, "invalid-request")
    assert _accept(Phone(app_client), code).status_code == 200


def test_cancelled_invite_is_refused(owner, wid, app_client):
    """Cancelling an invite (DELETE) kills its code."""
    body = _invite(owner, wid, "member")
    path = f"/api/v1/workspaces/{wid}/invites/{body['invite']['id']}"
    assert owner.delete(path).status_code == 204
    _error(_accept(Phone(app_client), body["code"]), 400, "invalid-or-expired-code")
    assert owner.get(f"/api/v1/workspaces/{wid}/invites").json()["invites"][0]["status"] == (
        "cancelled"
    )


def test_cancel_after_accept_locks_out_the_invitee(owner, wid, app_client):
    """Cancelling before the invitee enrolled ends their session and any chance to join."""
    body = _invite(owner, wid, "member")
    phone = Phone(app_client)
    assert _accept(phone, body["code"]).status_code == 200
    assert owner.delete(f"/api/v1/workspaces/{wid}/invites/{body['invite']['id']}").status_code == (
        204
    )
    _error(phone.get("/api/v1/me"), 401, "unauthenticated")


def test_cancel_used_invite_is_conflict(owner, wid, app_client):
    """An invite that already made a member cannot be cancelled (409)."""
    body = _invite(owner, wid, "member")
    phone = Phone(app_client)
    _accept(phone, body["code"])
    phone.enroll()
    res = owner.delete(f"/api/v1/workspaces/{wid}/invites/{body['invite']['id']}")
    _error(res, 409, "conflict")


def test_signed_in_active_user_accepting_invite_just_joins(owner, wid, app_client):
    """An active user who accepts gains the membership; no new user, no new cookie."""
    created = owner.post("/api/v1/workspaces", json={"name": "Second"}).json()["workspace"]
    member = join_by_invite(owner, wid, "member", "Mo")
    users_before = len(owner.get("/api/v1/users").json()["users"])
    cookie = member.cookie
    code = _invite(owner, created["id"], "viewer")["code"]
    res = member.post("/api/v1/invites/accept", json={"code": code})
    assert res.status_code == 200, res.text
    assert res.json()["user"]["id"] == _user_id(member)
    assert member.cookie == cookie
    assert len(owner.get("/api/v1/users").json()["users"]) == users_before
    roles = {m["workspaceId"]: m["role"] for m in member.get("/api/v1/me").json()["memberships"]}
    assert roles == {wid: "member", created["id"]: "viewer"}


def test_invite_accept_is_rate_limited(make_client):
    """R20: invite accept counts against the login limit."""
    with make_client(maxLoginAttemptsPerMinute=2) as client:
        phone = Phone(client)
        for _ in range(2):
            _error(_accept(phone, "AAAA-BBBB-CCCC"), 400, "invalid-or-expired-code")
        _error(_accept(phone, "AAAA-BBBB-CCCC"), 429, "rate-limited")


# --- the enrollment lock on every endpoint (R21) ---

# Routes an enrollment-locked session may use, and routes that need no session at all.
ENROLLMENT_ALLOWED = {
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/passkeys/register/options"),
    ("POST", "/api/v1/auth/passkeys/register/verify"),
}
PUBLIC = {
    ("POST", "/api/v1/auth/bootstrap"),
    ("POST", "/api/v1/auth/passkeys/login/options"),
    ("POST", "/api/v1/auth/passkeys/login/verify"),
    ("POST", "/api/v1/invites/accept"),
    ("POST", "/api/v1/auth/recovery/redeem"),
    # the web bundle's hash: public by design, so anyone can compare it (codexrelay verify-web)
    ("GET", "/api/v1/web-bundle"),
}


def _api_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) of the phone API; included routers are flattened by FastAPI."""
    found = []
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        if not isinstance(context.original_route, APIRoute) or not path.startswith("/api/v1/"):
            continue
        if path.startswith("/api/v1/agent/"):
            continue  # agents use bearer tokens, never cookies
        found.extend((method, path) for method in sorted(context.methods or ()))
    return found


def _fill(path: str, wid: str) -> str:
    return path.replace("{wid}", wid).replace("{", "x").replace("}", "")


@pytest.mark.parametrize("how", ["invite", "recovery-code"])
def test_enrollment_lock_on_every_endpoint(owner, wid, app_client, how):
    """R21: an enrollment-only session gets 403 enrollment-required everywhere else."""
    phone = Phone(app_client)
    if how == "invite":
        assert _accept(phone, _invite(owner, wid, "admin")["code"]).status_code == 200
    else:
        member = join_by_invite(owner, wid, "admin", "Ada")
        code = owner.post(f"/api/v1/users/{_user_id(member)}/recovery-code").json()["code"]
        assert phone.post("/api/v1/auth/recovery/redeem", json={"code": code}).status_code == 200
    checked = 0
    for method, path in _api_routes(app_client.app):
        if (method, path) in ENROLLMENT_ALLOWED | PUBLIC:
            continue
        res = phone.request(method, _fill(path, wid), json={} if method != "GET" else None)
        assert res.status_code == 403, (
            f"{method} {path}: {res.status_code} {res.text} (R21; if this route is public "
            "by design, add it to PUBLIC in tests/api/test_people_api.py)"
        )
        assert res.json()["error"] == "enrollment-required", f"{method} {path}"
        checked += 1
    assert checked >= 15
    assert phone.get("/api/v1/me").status_code == 200
    assert phone.post("/api/v1/auth/logout").status_code == 204


def test_enrollment_allowed_routes_exist(app_client):
    """The allow-list above names real routes (so it cannot silently rot)."""
    routes = set(_api_routes(app_client.app))
    assert routes >= ENROLLMENT_ALLOWED | PUBLIC


# --- recovery codes ---


def test_owner_recovery_code_flow(owner, wid, app_client):
    """A lost passkey: the owner issues a code; redeeming it allows only a new passkey."""
    member = join_by_invite(owner, wid, "member", "Mo")
    uid = _user_id(member)
    res = owner.post(f"/api/v1/users/{uid}/recovery-code", json={"ttlSec": 600})
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["recoveryCode"]["userId"] == uid
    assert body["url"].endswith(f"/#recovery={body['code']}")

    lost = Phone(app_client)
    res = lost.post("/api/v1/auth/recovery/redeem", json={"code": body["code"]})
    assert res.status_code == 200
    assert res.json()["user"]["id"] == uid
    me = lost.get("/api/v1/me").json()
    assert me["session"]["via"] == "recovery-code"
    assert me["session"]["isRecovery"] is True
    assert me["session"]["enrollmentLocked"] is True
    assert me["user"]["hasPasskey"] is True
    _error(lost.get(f"/api/v1/workspaces/{wid}/members"), 403, "enrollment-required")
    assert lost.register("new phone").status_code == 201
    assert lost.get(f"/api/v1/workspaces/{wid}/members").status_code == 200
    assert lost.get("/api/v1/me").json()["session"]["enrollmentLocked"] is False


def test_recovery_code_is_one_time_and_expires(owner, wid, app_client, clock: FakeClock):
    """Recovery codes are single use and expire."""
    uid = _user_id(join_by_invite(owner, wid, "member", "Mo"))
    code = owner.post(f"/api/v1/users/{uid}/recovery-code").json()["code"]
    redeem = "/api/v1/auth/recovery/redeem"
    assert Phone(app_client).post(redeem, json={"code": code}).status_code == 200
    _error(Phone(app_client).post(redeem, json={"code": code}), 400, "invalid-or-expired-code")
    code = owner.post(f"/api/v1/users/{uid}/recovery-code", json={"ttlSec": 300}).json()["code"]
    clock.advance(300)
    _error(Phone(app_client).post(redeem, json={"code": code}), 400, "invalid-or-expired-code")


def test_recovery_redeem_is_rate_limited(make_client):
    """R20: recovery-code redeem counts against the login limit."""
    with make_client(maxLoginAttemptsPerMinute=1) as client:
        phone = Phone(client)
        body = {"code": "AAAA-BBBB-CCCC"}
        _error(
            phone.post("/api/v1/auth/recovery/redeem", json=body), 400, "invalid-or-expired-code"
        )
        _error(phone.post("/api/v1/auth/recovery/redeem", json=body), 429, "rate-limited")


def test_admin_issues_recovery_code_for_member(owner, wid, app_client):
    """A workspace admin recovers a member they outrank."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    uid = _user_id(join_by_invite(owner, wid, "member", "Mo"))
    res = admin.post(f"/api/v1/workspaces/{wid}/members/{uid}/recovery-code")
    assert res.status_code == 201, res.text
    redeemed = Phone(app_client).post(
        "/api/v1/auth/recovery/redeem", json={"code": res.json()["code"]}
    )
    assert redeemed.json()["user"]["id"] == uid


def test_admin_cannot_recover_someone_placed_higher_elsewhere(owner, wid, app_client):
    """R03: a member who is owner of another workspace is beyond a workspace admin's reach."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    other = owner.post("/api/v1/workspaces", json={"name": "Other"}).json()["workspace"]
    member = join_by_invite(owner, wid, "member", "Mo")
    member.post(
        "/api/v1/invites/accept", json={"code": _invite(owner, other["id"], "owner")["code"]}
    )
    res = admin.post(f"/api/v1/workspaces/{wid}/members/{_user_id(member)}/recovery-code")
    _error(res, 403, "forbidden")


@pytest.mark.parametrize(("actor", "target"), [("admin", "admin"), ("member", "viewer")])
def test_recovery_code_needs_a_higher_role(owner, wid, actor, target):
    """Only admin+ issue recovery codes, and only for roles below their own."""
    acting = join_by_invite(owner, wid, actor, "Actor")
    uid = _user_id(join_by_invite(owner, wid, target, "Target"))
    _error(acting.post(f"/api/v1/workspaces/{wid}/members/{uid}/recovery-code"), 403, "forbidden")


def test_only_owner_issues_instance_recovery_codes(owner, wid):
    """The /users routes are the instance owner's alone."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    _error(admin.post(f"/api/v1/users/{_user_id(owner)}/recovery-code"), 403, "forbidden")
    _error(admin.get("/api/v1/users"), 403, "forbidden")


# --- members (R03, B7) ---


def test_admin_changes_member_role(owner, wid):
    """Admins move people between viewer and member."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    uid = _user_id(join_by_invite(owner, wid, "viewer", "Vi"))
    res = admin.patch(f"/api/v1/workspaces/{wid}/members/{uid}", json={"role": "member"})
    assert res.status_code == 200
    assert res.json()["member"] == {
        "userId": uid,
        "name": "Vi",
        "role": "member",
        "status": "active",
    }


@pytest.mark.parametrize(("target", "role"), [("member", "admin"), ("admin", "member")])
def test_admin_cannot_touch_admin_roles(owner, wid, target, role):
    """Only owners grant or change admin and owner roles."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    uid = _user_id(join_by_invite(owner, wid, target, "T"))
    res = admin.patch(f"/api/v1/workspaces/{wid}/members/{uid}", json={"role": role})
    _error(res, 403, "forbidden")


def test_owner_promotes_and_last_owner_is_kept(owner, wid):
    """Owners grant owner; the last owner cannot be demoted (409 last-owner)."""
    me = _user_id(owner)
    res = owner.patch(f"/api/v1/workspaces/{wid}/members/{me}", json={"role": "admin"})
    _error(res, 409, "last-owner")
    uid = _user_id(join_by_invite(owner, wid, "member", "Mo"))
    assert (
        owner.patch(f"/api/v1/workspaces/{wid}/members/{uid}", json={"role": "owner"}).status_code
        == 200
    )
    res = owner.patch(f"/api/v1/workspaces/{wid}/members/{me}", json={"role": "admin"})
    assert res.status_code == 200


def test_role_change_validates_the_role(owner, wid):
    """An unknown role is 422."""
    res = owner.patch(f"/api/v1/workspaces/{wid}/members/{_user_id(owner)}", json={"role": "god"})
    _error(res, 422, "invalid-request")


def test_removed_member_loses_access_at_once(owner, wid):
    """R03: after DELETE the member's very next workspace request is 404."""
    member = join_by_invite(owner, wid, "member", "Mo")
    assert member.get(f"/api/v1/workspaces/{wid}/members").status_code == 200
    assert owner.delete(f"/api/v1/workspaces/{wid}/members/{_user_id(member)}").status_code == 204
    _error(member.get(f"/api/v1/workspaces/{wid}/members"), 404, "not-found")
    assert member.get("/api/v1/workspaces").json()["workspaces"] == []


def test_admin_cannot_remove_admin_and_viewer_cannot_remove_anyone(owner, wid):
    """Admins remove only those below them; viewers only themselves."""
    admin = join_by_invite(owner, wid, "admin", "Ada")
    other_admin = join_by_invite(owner, wid, "admin", "Abe")
    viewer = join_by_invite(owner, wid, "viewer", "Vi")
    _error(
        admin.delete(f"/api/v1/workspaces/{wid}/members/{_user_id(other_admin)}"), 403, "forbidden"
    )
    _error(viewer.delete(f"/api/v1/workspaces/{wid}/members/{_user_id(admin)}"), 403, "forbidden")
    assert admin.delete(f"/api/v1/workspaces/{wid}/members/{_user_id(viewer)}").status_code == 204


def test_member_leaves_and_last_owner_cannot(owner, wid):
    """B7: a member may leave; the last owner may not (409)."""
    viewer = join_by_invite(owner, wid, "viewer", "Vi")
    assert viewer.delete(f"/api/v1/workspaces/{wid}/members/{_user_id(viewer)}").status_code == 204
    _error(owner.delete(f"/api/v1/workspaces/{wid}/members/{_user_id(owner)}"), 409, "last-owner")


def test_remove_unknown_member_is_not_found(owner, wid):
    """Removing someone who is not a member is 404."""
    _error(owner.delete(f"/api/v1/workspaces/{wid}/members/usr_nobody"), 404, "not-found")


# --- owner administration (I2) ---


def test_owner_lists_users(owner, wid):
    """I2: the owner sees every user with passkey and session counts."""
    member = join_by_invite(owner, wid, "member", "Mo")
    users = {u["id"]: u for u in owner.get("/api/v1/users").json()["users"]}
    row = users[_user_id(member)]
    assert row["passkeyCount"] == 1
    assert row["sessionCount"] == 1
    assert row["memberships"] == [
        {"workspaceId": wid, "workspaceName": "Default", "role": "member"}
    ]


def test_owner_revokes_users_passkeys_and_sessions(owner, wid, app_client):
    """I2: the owner ends all of a user's sessions and revokes their passkeys."""
    member = join_by_invite(owner, wid, "member", "Mo")
    uid = _user_id(member)
    assert owner.delete(f"/api/v1/users/{uid}/sessions").status_code == 204
    _error(member.get("/api/v1/me"), 401, "unauthenticated")
    assert Phone(app_client, authenticator=member.authenticator).login().status_code == 200

    res = owner.delete(f"/api/v1/users/{uid}/passkeys")
    _error(res, 409, "last-passkey")
    assert "Mo" in res.json()["message"]
    assert owner.delete(f"/api/v1/users/{uid}/passkeys?force=true").status_code == 204
    assert owner.get(f"/api/v1/users/{uid}/passkeys").json()["passkeys"] == []
    res = Phone(app_client, authenticator=member.authenticator).login()
    _error(res, 400, "invalid-passkey")


def test_owner_revokes_one_passkey_with_force(owner, wid):
    """I2: one passkey by id: 409 when it is the last way in, 204 with ?force=true."""
    member = join_by_invite(owner, wid, "member", "Mo")
    uid = _user_id(member)
    (listed,) = owner.get(f"/api/v1/users/{uid}/passkeys").json()["passkeys"]
    path = f"/api/v1/users/{uid}/passkeys/{listed['credentialId']}"
    _error(owner.delete(path), 409, "last-passkey")
    assert owner.delete(path + "?force=true").status_code == 204
    _error(owner.delete(path + "?force=true"), 404, "not-found")


def test_recovery_code_lets_owner_revoke_last_passkey(owner, wid):
    """With a live recovery code the user still has a way in, so no force is needed."""
    uid = _user_id(join_by_invite(owner, wid, "member", "Mo"))
    owner.post(f"/api/v1/users/{uid}/recovery-code")
    assert owner.delete(f"/api/v1/users/{uid}/passkeys").status_code == 204


def test_user_admin_routes_for_unknown_user_are_404(owner):
    """Unknown user ids are 404 on the owner's routes."""
    for res in (
        owner.get("/api/v1/users/usr_nobody/passkeys"),
        owner.delete("/api/v1/users/usr_nobody/sessions"),
        owner.delete("/api/v1/users/usr_nobody/passkeys"),
        owner.post("/api/v1/users/usr_nobody/recovery-code"),
    ):
        _error(res, 404, "not-found")
