"""The web app from a separate static origin (issue 19, TRUST.md tier B): a real Caddy serves
the files `codexrelay export-web` wrote, with deploy/static/Caddyfile's headers; the relay
runs with web.appOrigin and serves the API only. Passkeys, the session cookie and the live
feed work across the two origins; the relay serves no app code and answers CORS for exactly
the app's origin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from playwright.sync_api import Browser, Request, expect

from codexrelay import webbundle
from tests.browser.phone import (
    Phone,
    add_passkey,
    go,
    passkey_sign_in,
    recovery_sign_in,
    sign_out,
)
from tests.cluster import Caddy
from tests.helpers import RelayProcess, free_port, write_relay_config

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
STATIC_CADDYFILE = ROOT / "deploy" / "static" / "Caddyfile"


def static_caddyfile(app_port: int, files: Path, relay_origin: str) -> str:
    """deploy/static/Caddyfile on loopback over plain HTTP with this run's ports and files."""
    text = STATIC_CADDYFILE.read_text()
    for old, new in (
        ("app.example.org", f"http://localhost:{app_port}"),
        ("/srv/codexrelay-app", str(files)),
        ("https://relay.example.org", relay_origin),
    ):
        assert old in text, f"deploy/static/Caddyfile no longer names {old}"
        text = text.replace(old, new)
    return "{\n\tadmin off\n\tauto_https off\n}\n\n" + text


@dataclass
class Split:
    relay: RelayProcess
    caddy: Caddy
    app_origin: str
    relay_origin: str


@pytest.fixture(scope="module")
def split(module_dir: Path) -> Iterator[Split]:
    app_port = free_port()
    app_origin = f"http://localhost:{app_port}"
    setup = write_relay_config(module_dir / "relay", web={"appOrigin": app_origin})
    files = module_dir / "app"
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "codexrelay",
            "export-web",
            str(files),
            "--relay-origin",
            setup.origin,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"bundle hash: {webbundle.installed_hash()}" in exported.stdout
    relay = RelayProcess(setup, module_dir / "relay.log").start()
    caddy = Caddy(
        module_dir / "caddy",
        [],
        port=app_port,
        text=static_caddyfile(app_port, files, setup.origin),
        ready_path="/relay.json",
    )
    try:
        caddy.start()
        yield Split(relay, caddy, app_origin, setup.origin)
    finally:
        caddy.stop()
        relay.stop()


def test_the_app_from_its_own_origin_signs_in_with_a_passkey_and_goes_live(
    browser: Browser, split: Split
):
    stand_in = SimpleNamespace(
        setup=SimpleNamespace(origin=split.app_origin, token=split.relay.setup.token)
    )
    relay_paths: list[str] = []

    def seen(request: Request) -> None:
        if request.url.startswith(split.relay_origin):
            relay_paths.append(request.url.removeprefix(split.relay_origin))

    phone = Phone(browser, stand_in)  # type: ignore[arg-type]
    try:
        page = phone.page
        page.on("request", seen)
        phone.open("/")
        # Recovery token, a passkey made on the app's page (rp id = the app's host), then a
        # passkey sign-in: the cookie the relay set goes along on the app's API calls.
        recovery_sign_in(phone)
        add_passkey(phone, "Phone on the static origin")
        sign_out(phone)
        passkey_sign_in(phone)
        expect(page.locator("#live-status")).to_have_text("Live")
        go(phone, "Settings")
        about = page.locator("#about")
        expect(about.locator("#app-tier")).to_contain_text(
            f"This app comes from its own address ({split.app_origin}), not from the relay "
            f"({split.relay_origin})"
        )
        about.get_by_role("button", name="Hash the app this phone is served").click()
        expect(about.locator("#bundle-check")).to_contain_text("Matches", timeout=30_000)
        assert not phone.csp, phone.csp
        assert not phone.page_errors, phone.page_errors
        # The page's code came from the static origin; the relay was asked for the API only.
        assert any(
            p.startswith("/api/v1/workspaces/") and p.endswith("/events") for p in relay_paths
        )
        assert all(p.startswith("/api/v1/") for p in relay_paths), relay_paths
        served = httpx.get(f"{split.app_origin}/app.js").headers
        assert f"connect-src 'self' {split.relay_origin}" in served["content-security-policy"]
    finally:
        phone.close()


def test_the_relay_serves_the_api_only_and_cors_for_the_app_alone(split: Split):
    relay = split.relay_origin
    home = httpx.get(f"{relay}/", follow_redirects=False)
    assert home.status_code == 308
    assert home.headers["location"] == f"{split.app_origin}/"
    assert httpx.get(f"{relay}/app.js").status_code == 404
    assert httpx.get(f"{relay}/relay.json").json() == {"relayOrigin": relay}

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{relay}/api/v1/auth/bootstrap",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )

    ok = preflight(split.app_origin)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == split.app_origin
    assert ok.headers["access-control-allow-credentials"] == "true"
    other = preflight("http://localhost:1")
    assert "access-control-allow-origin" not in other.headers

    body = {"token": "crb_wrong"}
    from_app = httpx.post(
        f"{relay}/api/v1/auth/bootstrap", json=body, headers={"Origin": split.app_origin}
    )
    assert from_app.status_code == 401, from_app.text
    assert from_app.headers["access-control-allow-origin"] == split.app_origin
    from_elsewhere = httpx.post(
        f"{relay}/api/v1/auth/bootstrap", json=body, headers={"Origin": "http://localhost:1"}
    )
    assert from_elsewhere.status_code == 403
    assert from_elsewhere.json()["error"] == "forbidden"
    assert "access-control-allow-origin" not in from_elsewhere.headers
