"""Security headers (R19), origin checks, rate limits (R20) and the error contract."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from codexrelay.relay.http.security import CSP

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def _add_failing_route(app: FastAPI) -> None:
    async def boom() -> None:
        secret_detail = "internal detail that must not leak"
        raise RuntimeError(secret_detail)

    app.router.routes.insert(0, APIRoute("/api/v1/test-failure", boom, methods=["GET"]))


def _assert_security_headers(res, *, api: bool) -> None:
    assert res.headers["content-security-policy"].startswith(EXPECTED_CSP)
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "no-referrer"
    assert res.headers["cross-origin-opener-policy"] == "same-origin"
    assert res.headers["cross-origin-resource-policy"] == "same-origin"
    assert "camera=()" in res.headers["permissions-policy"]
    if api:
        assert res.headers["cache-control"] == "no-store"


def test_csp_has_no_unsafe_sources():
    """R19: the CSP never allows inline or eval'd script, or a third-party origin."""
    assert "unsafe" not in CSP
    assert "http" not in CSP
    assert "*" not in CSP


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/me", "/api/v1/nope", "/openapi.json"])
def test_headers_on_api_responses(app_client, path):
    """R19: 200, 401 and 404 API responses all carry the headers and no-store."""
    _assert_security_headers(app_client.get(path), api=True)


def test_headers_on_web_page(app_client):
    """R19: the web page carries the headers and references only same-origin files."""
    res = app_client.get("/")
    assert res.status_code == 200
    _assert_security_headers(res, api=False)
    assert "<script>" not in res.text
    assert "http://" not in res.text
    assert "https://" not in res.text


def test_unexpected_error_is_500_without_details(make_client):
    """An unexpected exception is a 500 with a request id, headers, and no exception text."""
    with make_client(prepare=_add_failing_route) as client:
        res = client.get("/api/v1/test-failure")
        assert res.status_code == 500
        body = res.json()
        assert body["error"] == "internal-error"
        assert len(body["requestId"]) == 16
        assert "internal detail" not in res.text
        assert "Traceback" not in res.text
        _assert_security_headers(res, api=True)


def test_unknown_api_path_is_404_json(app_client):
    """Unknown API paths answer the JSON error shape."""
    res = app_client.get("/api/v1/does-not-exist")
    assert res.status_code == 404
    assert res.json() == {"error": "not-found", "message": "Nothing here."}


def test_wrong_method_is_405_json(app_client):
    """A wrong method answers the JSON error shape."""
    res = app_client.get("/api/v1/auth/bootstrap")
    assert res.status_code == 405
    assert res.json()["error"] == "method-not-allowed"


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:1"])
def test_foreign_origin_refused_on_post(app_client, origin):
    """State-changing requests from another origin (or Origin: null) are refused."""
    res = app_client.post(
        "/api/v1/auth/bootstrap",
        json={"token": app_client.setup.token},
        headers={"Origin": origin},
    )
    assert res.status_code == 403
    assert res.json()["error"] == "forbidden"
    assert "set-cookie" not in res.headers


def test_missing_origin_allowed_for_non_browser_clients(app_client):
    """A request without Origin (curl, scripts) is not a cross-site browser request."""
    del app_client.headers["Origin"]
    res = app_client.post("/api/v1/auth/bootstrap", json={"token": app_client.setup.token})
    assert res.status_code == 200


def test_agent_paths_exempt_from_origin_check(app_client):
    """Agent endpoints carry no cookie and are exempt from the browser origin check."""
    res = app_client.post("/api/v1/agent/pair", json={}, headers={"Origin": "https://evil.example"})
    assert res.status_code != 403


def test_login_rate_limited_per_address(make_client):
    """R20: the n+1th attempt in a minute is 429 with Retry-After, even with the right token."""
    with make_client(maxLoginAttemptsPerMinute=3) as client:
        for _ in range(3):
            assert client.post("/api/v1/auth/bootstrap", json={"token": "x"}).status_code == 401
        res = client.post("/api/v1/auth/bootstrap", json={"token": client.setup.token})
        assert res.status_code == 429
        assert res.json()["error"] == "rate-limited"
        assert 1 <= int(res.headers["retry-after"]) <= 60


def test_login_rate_limit_counts_successes(make_client):
    """R20: successful attempts count too."""
    with make_client(maxLoginAttemptsPerMinute=2) as client:
        for _ in range(2):
            res = client.post("/api/v1/auth/bootstrap", json={"token": client.setup.token})
            assert res.status_code == 200
        res = client.post("/api/v1/auth/bootstrap", json={"token": client.setup.token})
        assert res.status_code == 429


def test_forwarded_for_ignored_without_trusted_proxy(make_client):
    """R20: X-Forwarded-For from an untrusted peer cannot dodge the per-address limit."""
    with make_client(maxLoginAttemptsPerMinute=2, globalAttemptsFactor=100) as client:
        for i in range(2):
            res = client.post(
                "/api/v1/auth/bootstrap",
                json={"token": "x"},
                headers={"X-Forwarded-For": f"10.0.0.{i}"},
            )
            assert res.status_code == 401
        res = client.post(
            "/api/v1/auth/bootstrap", json={"token": "x"}, headers={"X-Forwarded-For": "10.0.0.9"}
        )
        assert res.status_code == 429
