"""Signing in on a phone: recovery token, passkey registration, passkey sign-in, O4 warning,
passkey and session management, and the CSP holding in a real browser (R02, R05, R19, O4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.phone import (
    Phone,
    add_passkey,
    go,
    owner_phone,
    passkey_sign_in,
    recovery_sign_in,
    sign_out,
)
from tests.helpers import RelayProcess, wait_until, write_relay_config

pytestmark = pytest.mark.browser


@pytest.fixture
def phone(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    """A fresh phone (browser context) that must end the test with a clean console."""
    device = Phone(browser, relay)
    yield device
    device.assert_clean()
    device.close()


@pytest.fixture
def first_phone(browser: Browser, tmp_path: Path) -> Iterator[Phone]:
    """A phone on a relay of its own: the owner's first passkey also protects the
    workspace, after which adding passkeys on the module's relay needs sudo mode."""
    relay = RelayProcess(write_relay_config(tmp_path / "relay"), tmp_path / "relay.log").start()
    device = Phone(browser, relay)
    yield device
    device.assert_clean()
    device.close()
    relay.stop()


def test_owner_recovery_then_passkey_sign_in(first_phone: Phone, tmp_path: Path):
    """R02, R05, O4: the owner's first sign-in with the recovery token says so plainly and
    offers the passkey next (no "recovery only" yet); register it, sign out, sign in with the
    passkey; the session cookie is HttpOnly and SameSite=Strict; a later recovery login is
    warned that the token is for recovery only."""
    phone = first_phone
    page = phone.open("/")
    expect(page.get_by_role("button", name="Sign in with passkey")).to_be_visible()
    expect(page.locator("#view")).to_contain_text("First time here?")
    phone.screenshot("01-sign-in", tmp_path)
    recovery_sign_in(phone)
    first = page.get_by_role("region", name="First sign-in")
    expect(first).to_contain_text("First sign-in.")
    expect(first).to_contain_text("Next, create a passkey on this device")
    expect(page.locator("body")).not_to_contain_text("recovery only")
    expect(page.locator("#recovery-warning")).to_have_count(0)
    phone.at_phone_widths(lambda: phone.assert_whole(first))
    phone.screenshot("13-first-sign-in", tmp_path)
    first.get_by_role("button", name="Create a passkey now").click()
    expect(first).to_have_count(0)
    # Now that a passkey exists, the token is named for what it has become.
    expect(page.locator("#passkey-created")).to_contain_text("recovery token is for recovery only")
    expect(page.locator("#recovery-warning")).to_have_count(0)
    go(phone, "Settings")
    expect(page.locator(".passkey-card")).to_have_count(1)
    creds = phone.credentials()
    assert len(creds) == 1
    assert creds[0]["isResidentCredential"] is True
    sign_out(phone)

    passkey_sign_in(phone)
    me = phone.fetch_json("/api/v1/me")["body"]
    assert me["session"]["via"] == "passkey"
    assert me["session"]["isRecovery"] is False
    expect(page.locator("#recovery-warning")).to_have_count(0)
    cookies = [c for c in phone.context.cookies() if "codexrelay" in c["name"]]
    assert len(cookies) == 1
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Strict"
    assert "codexrelay" not in page.evaluate("document.cookie")
    assert phone.credentials()[0]["signCount"] > creds[0]["signCount"]

    sign_out(phone)
    recovery_sign_in(phone)
    warning = page.locator("#recovery-warning")
    expect(warning).to_contain_text("although you have a passkey")
    expect(warning).to_contain_text("recovery only")


def test_passkeys_and_sessions_are_managed_from_settings(browser: Browser, relay: RelayProcess):
    """I2: rename and revoke a passkey, and sign out another session, from Settings."""
    owner = owner_phone(browser, relay)
    other = owner_phone(browser, relay, name="second device")
    try:
        page = owner.page
        go(owner, "Settings")
        card = page.locator(".passkey-card", has_text="Owner phone").first
        card.get_by_role("button", name="Rename").click()
        card.get_by_role("textbox").fill("Renamed phone")
        card.get_by_role("button", name="Save name").click()
        expect(page.locator(".passkey-card", has_text="Renamed phone")).to_have_count(1)

        owner.swap_authenticator()  # a second security key: this one holds no passkey yet
        add_passkey(owner, "Spare key")
        spare = page.locator(".passkey-card", has_text="Spare key")
        spare.get_by_role("button", name="Revoke").click()
        page.locator("#confirm").get_by_role("button", name="Revoke passkey").click()
        expect(page.locator(".passkey-card", has_text="Spare key")).to_have_count(0)

        before = len(owner.fetch_json("/api/v1/me/sessions")["body"]["sessions"])
        page.get_by_role("button", name="Sign out all other sessions").click()
        page.locator("#confirm").get_by_role("button", name="Sign out others").click()
        expect(page.locator(".session-row")).to_have_count(1)
        assert before >= 2
        # The other device finds out on its next request and shows the sign-in screen.
        go(other, "Agents")
        expect(other.page.get_by_role("heading", name="Sign in")).to_be_visible()
        owner.assert_clean()
        other.assert_clean()
    finally:
        owner.close()
        other.close()


def test_csp_blocks_eval_and_inline_script(phone: Phone):
    """R19: eval and injected inline script are refused, and the watcher sees it; the page
    loads nothing from another origin and carries no inline style."""
    page = phone.open("/")
    expect(page.get_by_role("button", name="Sign in with passkey")).to_be_visible()
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    result = phone.cdp.send(
        "Runtime.evaluate",
        {"expression": "eval('6 * 7')", "allowUnsafeEvalBlockedByCSP": False},
    )
    assert "exceptionDetails" in result, "eval ran despite the CSP"
    page.evaluate(
        """() => {
            const s = document.createElement('script');
            s.textContent = 'window.injected = true';
            document.body.append(s);
        }"""
    )
    assert page.evaluate("window.injected === undefined")
    wait_until(lambda: len(phone.csp) >= 2, timeout=10, what="two CSP violation reports")
    origins = page.evaluate(
        "[...new Set(performance.getEntriesByType('resource').map((e) => new URL(e.name).origin))]"
    )
    assert set(origins) <= {phone.origin}
    phone.csp.clear()  # the two violations this test caused on purpose
    phone.console_errors.clear()


CACHED_PATHS = """async () => {
    const paths = [];
    for (const name of await caches.keys()) {
        const cache = await caches.open(name);
        for (const request of await cache.keys()) paths.push(new URL(request.url).pathname);
    }
    return paths;
}"""


def test_app_is_installable_and_caches_only_its_shell(phone: Phone):
    """PWA: Chromium finds the app installable (manifest, icons, service worker); the
    worker's cache holds the app's static files and never an API response."""
    page = phone.open("/")
    recovery_sign_in(phone)
    go(phone, "Agents")
    expect(page.locator("#view .loading")).to_have_count(0)
    wait_until(
        lambda: page.evaluate("navigator.serviceWorker.controller !== null"),
        what="the service worker to control the page",
    )
    errors = phone.cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    # Playwright's contexts are off-the-record profiles; that is the test's doing, not the app's.
    assert [e for e in errors if e["errorId"] != "in-incognito"] == []
    manifest = phone.cdp.send("Page.getAppManifest")
    assert manifest["errors"] == []
    assert manifest["url"].endswith("/manifest.webmanifest")
    cached = wait_until(lambda: page.evaluate(CACHED_PATHS), what="the app shell in the cache")
    assert {"/", "/app.js", "/app.css", "/js/cache.js"} <= set(cached)
    assert not [p for p in cached if p.startswith("/api/")], cached
