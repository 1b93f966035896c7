"""Bootstrap login, cookie sessions, logout and the /me endpoints (R01, R02, R20)."""

from __future__ import annotations

from http.cookies import SimpleCookie

from pydantic import SecretStr

from codexrelay.crypto import sha256_hex
from tests.api.conftest import login, services_of
from tests.helpers import both_backends


def _set_cookie(res) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(res.headers["set-cookie"])
    return cookie


def test_bootstrap_wrong_token_is_401(app_client):
    """R01: a wrong token is refused with invalid-bootstrap-token and no cookie."""
    res = app_client.post("/api/v1/auth/bootstrap", json={"token": "crb_wrong"})
    assert res.status_code == 401
    assert res.json() == {
        "error": "invalid-bootstrap-token",
        "message": "That recovery token is not valid.",
    }
    assert "set-cookie" not in res.headers


def test_bootstrap_empty_token_is_401(app_client):
    """R01: an empty token is a wrong token, not a validation error."""
    res = app_client.post("/api/v1/auth/bootstrap", json={"token": ""})
    assert res.status_code == 401
    assert res.json()["error"] == "invalid-bootstrap-token"


def test_bootstrap_hash_instead_of_token_is_401(app_client):
    """R01: the stored hash itself is not a credential."""
    config = app_client.setup.config()
    res = app_client.post(
        "/api/v1/auth/bootstrap", json={"token": config["bootstrapAdminTokenHash"]}
    )
    assert res.status_code == 401


def test_bootstrap_missing_body_is_422(app_client):
    """A missing token field is 422 invalid-request, naming the field."""
    res = app_client.post("/api/v1/auth/bootstrap", json={})
    assert res.status_code == 422
    assert res.json() == {"error": "invalid-request", "message": "token: Field required."}
    res = app_client.post("/api/v1/auth/bootstrap")
    assert res.status_code == 422
    assert res.json()["error"] == "invalid-request"


def test_bootstrap_wrong_type_is_422(app_client):
    """A token of the wrong JSON type is 422, and the value is not echoed."""
    res = app_client.post("/api/v1/auth/bootstrap", json={"token": ["crb_x"]})
    assert res.status_code == 422
    assert "crb_x" not in res.text


def test_bootstrap_unknown_field_is_422(app_client):
    """Unknown body fields are refused."""
    res = app_client.post(
        "/api/v1/auth/bootstrap", json={"token": app_client.setup.token, "admin": True}
    )
    assert res.status_code == 422


def test_bootstrap_malformed_json_is_400(app_client):
    """Malformed JSON gets the error shape, never a 500."""
    res = app_client.post(
        "/api/v1/auth/bootstrap",
        content=b'{"token": ',
        headers={"Content-Type": "application/json"},
    )
    assert res.status_code == 400
    assert res.json() == {
        "error": "invalid-request",
        "message": "The request body is not valid JSON.",
    }


def test_bootstrap_ten_megabyte_body_is_413(app_client):
    """A 10 MB body is refused with payload-too-large before any handler runs."""
    body = b'{"token": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    res = app_client.post(
        "/api/v1/auth/bootstrap", content=body, headers={"Content-Type": "application/json"}
    )
    assert res.status_code == 413
    assert res.json()["error"] == "payload-too-large"


def test_chunked_body_over_cap_is_413(app_client):
    """The cap holds for chunked uploads that carry no Content-Length."""

    def chunks():
        yield b'{"token": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    res = app_client.post(
        "/api/v1/auth/bootstrap", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert res.status_code == 413


def test_text_plain_body_is_415(app_client):
    """A cross-site-style text/plain post is never parsed."""
    res = app_client.post(
        "/api/v1/auth/bootstrap",
        content=b'{"token": "x"}',
        headers={"Content-Type": "text/plain"},
    )
    assert res.status_code == 415
    assert res.json()["error"] == "invalid-request"


def test_bootstrap_success_opens_session(app_client):
    """R02: success returns the owner and sets an HttpOnly SameSite=Strict cookie."""
    res = app_client.post("/api/v1/auth/bootstrap", json={"token": app_client.setup.token})
    assert res.status_code == 200
    assert res.json()["user"]["isOwner"] is True
    cookie = _set_cookie(res)
    morsel = cookie["codexrelay-session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/"
    assert not morsel["secure"]
    me = app_client.get("/api/v1/me").json()
    assert me["session"]["via"] == "bootstrap"
    assert me["session"]["isRecovery"] is True
    assert me["memberships"][0]["role"] == "owner"


@both_backends
def test_session_stored_only_as_hash(app_client):
    """R02: the relay keeps the cookie value's SHA-256, never the value."""
    res = app_client.post("/api/v1/auth/bootstrap", json={"token": app_client.setup.token})
    value = _set_cookie(res)["codexrelay-session"].value
    state_text = app_client.setup.stored_text()
    assert value not in state_text
    assert sha256_hex(value) in state_text


def test_https_origin_cookie_is_host_prefixed_and_secure(make_client):
    """R02: on https the cookie is __Host- prefixed and Secure, and HSTS is sent (O1)."""
    with make_client(publicOrigin="https://relay.example.org") as client:
        login(client)
        res = client.post("/api/v1/auth/bootstrap", json={"token": client.setup.token})
        morsel = _set_cookie(res)["__Host-codexrelay-session"]
        assert morsel["secure"] is True
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "strict"
        assert morsel["path"] == "/"
        assert "domain" not in res.headers["set-cookie"].lower()
        assert res.headers["strict-transport-security"].startswith("max-age=")


def test_http_origin_has_no_hsts(app_client):
    """HSTS is only sent for https origins."""
    assert "strict-transport-security" not in app_client.get("/healthz").headers


def test_me_without_session_is_401(app_client):
    """Unauthenticated calls get 401 unauthenticated."""
    res = app_client.get("/api/v1/me")
    assert res.status_code == 401
    assert res.json()["error"] == "unauthenticated"


def test_forged_cookie_is_401(app_client):
    """A cookie that was not issued by this relay opens nothing."""
    app_client.cookies.set("codexrelay-session", "crs_AAAA.BBBB")
    assert app_client.get("/api/v1/me").status_code == 401


def test_session_expires(make_client, clock):
    """A session past sessionTtlSec stops working and is pruned."""
    with make_client(sessionTtlSec=60) as client:
        login(client)
        assert client.get("/api/v1/me").status_code == 200
        clock.advance(61)
        assert client.get("/api/v1/me").status_code == 401


def test_logout_deletes_session(app_client):
    """Logout answers 204, clears the cookie and the session is gone from state."""
    login(app_client)
    old = app_client.cookies.get("codexrelay-session")
    res = app_client.post("/api/v1/auth/logout")
    assert res.status_code == 204
    assert 'codexrelay-session=""' in res.headers["set-cookie"]
    assert services_of(app_client).store.sessions.count() == 0
    app_client.cookies.clear()
    app_client.cookies.set("codexrelay-session", old)
    assert app_client.get("/api/v1/me").status_code == 401


def test_sessions_list_and_end(app_client):
    """Users list their sessions and end another one (I2)."""
    login(app_client)
    other_cookie = app_client.cookies.get("codexrelay-session")
    app_client.cookies.clear()
    login(app_client)
    listed = app_client.get("/api/v1/me/sessions").json()["sessions"]
    assert len(listed) == 2
    current = [s for s in listed if s["current"]]
    others = [s for s in listed if not s["current"]]
    assert len(current) == 1
    assert set(listed[0]) == {"id", "via", "createdAt", "expiresAt", "lastSeenAt", "current"}
    assert app_client.delete(f"/api/v1/me/sessions/{others[0]['id']}").status_code == 204
    assert app_client.delete(f"/api/v1/me/sessions/{others[0]['id']}").status_code == 404
    me_cookie = app_client.cookies.get("codexrelay-session")
    app_client.cookies.clear()
    app_client.cookies.set("codexrelay-session", other_cookie)
    assert app_client.get("/api/v1/me").status_code == 401
    app_client.cookies.clear()
    app_client.cookies.set("codexrelay-session", me_cookie)
    assert app_client.get("/api/v1/me").status_code == 200


def test_sessions_capped_per_user(make_client):
    """Sessions are capped per user: the oldest ends, nobody else's does."""
    with make_client(maxSessionsPerUser=2) as client:
        cookies = []
        for _ in range(3):
            client.cookies.clear()
            login(client)
            cookies.append(client.cookies.get("codexrelay-session"))
        client.cookies.clear()
        client.cookies.set("codexrelay-session", cookies[0])
        assert client.get("/api/v1/me").status_code == 401
        for value in cookies[1:]:
            client.cookies.clear()
            client.cookies.set("codexrelay-session", value)
            assert client.get("/api/v1/me").status_code == 200


def test_rotated_token_secret_ends_sessions(app_client):
    """I3: a session cookie signed under an old tokenSecret no longer opens anything."""
    login(app_client)
    assert app_client.get("/api/v1/me").status_code == 200
    services = services_of(app_client)
    services.config = services.config.model_copy(update={"token_secret": SecretStr("n" * 43)})
    assert app_client.get("/api/v1/me").status_code == 401
