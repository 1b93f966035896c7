"""A phone in a real browser: Debian's Chromium through Playwright, a virtual passkey.

Each ``Phone`` is its own browser context (its own cookies and storage, like a separate
device) at 390x844 with a CDP virtual authenticator. It records console errors, page errors
and CSP violations across navigations; ``assert_clean`` fails on any of them (R19).
"""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

from tests.helpers import ROOT, RelayProcess

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing leaves the machine: every host but the loopback relay fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
PHONE_SIZE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 740}
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
# Reported by an init script, so violations are seen whatever Chromium's own console says.
CSP_MARK = "CSP-VIOLATION"
CSP_LISTENER = (
    "document.addEventListener('securitypolicyviolation', (e) => console.warn("
    f"'{CSP_MARK} ' + e.violatedDirective + ' ' + e.blockedURI));"
)
HTTP_ERROR = "Failed to load resource: the server responded with a status of "
# WCAG 2.2 contrast (1.4.3) for every visible piece of text on the screen: its colour
# against the backgrounds actually painted behind it (alpha composited up to the page),
# 4.5:1, or 3:1 for large text. Disabled controls are exempt, as WCAG exempts them.


def _script(name: str) -> str:
    """A page script kept beside this file, without its leading comment lines."""
    text = (Path(__file__).parent / name).read_text()
    return "\n".join(line for line in text.splitlines() if not line.startswith("//"))


LOW_CONTRAST = _script("contrast.js")
FOCUSED = _script("focused.js")

expect.set_options(timeout=20_000)


class Phone:
    """One device: a browser context with a virtual platform authenticator."""

    def __init__(
        self,
        browser: Browser,
        relay: RelayProcess,
        *,
        name: str = "phone",
        size: dict[str, int] | None = None,
        service_workers: str = "allow",
    ) -> None:
        self.relay = relay
        self.origin = relay.setup.origin
        self.name = name
        self.size = size or PHONE_SIZE
        self.context = browser.new_context(
            base_url=self.origin,
            viewport=self.size,
            device_scale_factor=1,
            is_mobile=True,
            has_touch=True,
            locale="en-GB",
            timezone_id="UTC",
            service_workers=service_workers,  # type: ignore[arg-type]
        )
        self.context.add_init_script(CSP_LISTENER)
        self.page: Page = self.context.new_page()
        self.csp: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.http_errors: list[tuple[str, str]] = []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable")
        self.authenticator = self.add_authenticator()

    def add_authenticator(self) -> str:
        """A platform authenticator with resident keys and user verification."""
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
        }
        result = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
        return str(result["authenticatorId"])

    def swap_authenticator(self) -> None:
        """Take this phone's passkeys away and give it a fresh, empty authenticator."""
        remove = {"authenticatorId": self.authenticator}
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", remove)
        self.authenticator = self.add_authenticator()

    def credentials(self) -> list[dict[str, Any]]:
        """The passkeys the virtual authenticator holds."""
        result = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})
        return list(result["credentials"])

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if CSP_MARK in text or "Content Security Policy" in text:
            self.csp.append(text)
        elif message.type == "error" and text.startswith(HTTP_ERROR):
            # An HTTP error answer the app handles (401 when signed out, 403 for an
            # enrollment-only session, a 4xx the user is shown): recorded, checked below.
            self.http_errors.append((text.removeprefix(HTTP_ERROR), message.location["url"]))
        elif message.type == "error":
            self.console_errors.append(text)

    def open(self, path: str = "/") -> Page:
        """Load the app at ``path`` (a fragment such as ``/#/agents`` included)."""
        self.page.goto(f"{self.origin}{path}")
        return self.page

    def fetch_json(self, path: str, method: str = "GET", body: Any = None) -> dict[str, Any]:
        """Call the API from inside the page (same origin, the page's own cookie)."""
        result: dict[str, Any] = self.page.evaluate(
            """async ([path, method, body]) => {
                const init = { method, headers: {} };
                if (body !== null) {
                    init.headers['Content-Type'] = 'application/json';
                    init.body = JSON.stringify(body);
                }
                const res = await fetch(path, init);
                const text = await res.text();
                return { status: res.status, body: text ? JSON.parse(text) : null };
            }""",
            [path, method, body],
        )
        return result

    def screenshot(self, name: str, tmp_dir: Path) -> Path:
        """A phone-size screenshot of a main screen, which must be usable (see
        ``assert_usable``); into docs/screenshots when CODEXRELAY_SCREENSHOTS=1."""
        self.assert_usable()
        self.page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
        directory = SCREENSHOT_DIR if os.environ.get("CODEXRELAY_SCREENSHOTS") == "1" else tmp_dir
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        self.page.screenshot(path=str(path), animations="disabled", caret="hide")
        return path

    @staticmethod
    def scan_qr(image: Locator) -> str:
        """What another device's camera reads from the QR code on screen: the rendered
        pixels, decoded by ZXing (not the data the page was built from)."""
        expect(image).to_be_visible()
        # Where a person would hold it: mid-screen, clear of the tab bar and any toast.
        image.evaluate("(img) => img.scrollIntoView({ block: 'center' })")
        image.page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
        shot = Image.open(io.BytesIO(image.screenshot(animations="disabled")))
        found = zxingcpp.read_barcodes(shot)
        assert len(found) == 1, f"{len(found)} QR codes readable on screen"
        return found[0].text

    def assert_clean(self) -> None:
        """R19: no CSP violation, no console or page error, no server error, no inline style."""
        assert not self.csp, f"CSP violations on {self.name}: {self.csp}"
        assert not self.page_errors, f"page errors on {self.name}: {self.page_errors}"
        assert not self.console_errors, f"console errors on {self.name}: {self.console_errors}"
        bad = [e for e in self.http_errors if not e[0].startswith("4") or "/api/" not in e[1]]
        assert not bad, f"failed loads on {self.name}: {bad}"
        # An empty style="" is left behind by Playwright's own screenshot helper; any
        # content in a style attribute would be the app's and is refused by the CSP.
        styled = self.page.evaluate(
            """[...document.querySelectorAll('[style]')]
                .filter((e) => e.getAttribute('style').trim() !== '')
                .map((e) => e.outerHTML.slice(0, 200))"""
        )
        assert not styled, f"elements carry inline style attributes: {styled}"
        self.assert_fits()

    def assert_usable(self) -> None:
        """The current screen fits the phone, every control has a label, every control is
        at least 44 px tall for a thumb, and all text is readable (WCAG contrast)."""
        self.assert_fits()
        self.assert_contrast()
        unlabelled = self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter((e) => e.getClientRects().length)
                .filter((e) => !e.labels.length && !e.getAttribute('aria-label'))
                .map((e) => e.outerHTML.slice(0, 120))"""
        )
        assert not unlabelled, f"controls without a label: {unlabelled}"
        small = self.page.evaluate(
            """() => [...document.querySelectorAll(
                    'button, a.button, .tabbar a, .back, summary, select, textarea, '
                    + 'input:not([type=radio]):not([type=checkbox])')]
                .filter((e) => e.getClientRects().length)
                .filter((e) => !e.closest('[hidden], dialog:not([open])'))
                .filter((e) => e.getBoundingClientRect().height < 44)
                .map((e) => `${e.tagName} ${e.textContent.trim().slice(0, 30)}`)"""
        )
        assert not small, f"touch targets under 44 px: {small}"

    def assert_contrast(self) -> None:
        """Every visible text meets WCAG 2.2 AA contrast in the colour scheme in use."""
        low = self.page.evaluate(LOW_CONTRAST)
        assert not low, f"text below WCAG AA contrast: {low[:8]}"

    def assert_focus_order(self, presses: int = 80) -> list[str]:
        """Keyboard use: Tab reaches the screen's controls in reading order (top to bottom,
        then left to right, so no CSS reorders them away from the DOM), every one shows a
        focus ring, and focus never gets stuck. Returns what was focused, in order."""
        page = self.page
        # Start where a keyboard user arriving on the screen would: the top of the page.
        page.evaluate(
            """() => { const start = document.createElement("span");
                       start.id = "focus-start"; start.tabIndex = -1;
                       document.body.prepend(start); start.focus(); }"""
        )
        seen: list[dict[str, Any]] = []
        for _ in range(presses):
            page.keyboard.press("Tab")
            now = page.evaluate(FOCUSED)
            if now is None or (seen and now["id"] == seen[0]["id"]):
                break
            assert not seen or now["id"] != seen[-1]["id"], f"focus stuck on {now['name']}"
            seen.append(now)
        assert seen, "Tab reaches nothing"
        no_ring = [e["name"] for e in seen if not e["ring"]]
        assert not no_ring, f"focused without a visible focus ring: {no_ring}"
        main = [e for e in seen if e["main"]]
        for before, after in itertools.pairwise(main):
            lower = after["top"] > before["top"] + 4
            same_row = abs(after["top"] - before["top"]) <= 4
            in_order = lower or (same_row and after["left"] >= before["left"])
            assert in_order, f"Tab jumps back up the screen: {before['name']} -> {after['name']}"
        page.evaluate("document.getElementById('focus-start')?.remove(); "
                      "document.querySelectorAll('[data-focus-probe]')"
                      ".forEach((e) => delete e.dataset.focusProbe)")  # fmt: skip
        return [e["name"] for e in seen]

    def assert_fits(self) -> None:
        """Nothing on the current screen is wider than the phone (no sideways scrolling)."""
        wide = self.page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter((e) => e.getBoundingClientRect().right > window.visualViewport.width + 1)
                .filter((e) => !e.closest('pre, [hidden]'))
                .slice(0, 5).map((e) => `${e.tagName}.${e.className}`)"""
        )
        assert not wide, f"wider than the {self.name}'s screen: {wide}"

    def at_phone_widths(self, check: Any = None) -> None:
        """The current screen is usable on a small (360 px) and a common (390 px) phone;
        ``check()`` runs at each width too. Leaves the phone at its own size."""
        try:
            for size in (SMALL_PHONE, PHONE_SIZE):
                self.page.set_viewport_size(size)
                self.assert_usable()
                if check is not None:
                    check()
        finally:
            self.page.set_viewport_size(self.size)

    def assert_whole(self, locator: Locator) -> None:
        """Every character of the element's text is on screen: nothing in it is clipped
        (no ellipsis, no hidden overflow) and nothing runs past the screen's edge."""
        expect(locator).to_be_visible()
        clipped = locator.evaluate(
            """(el) => [el, ...el.querySelectorAll('*')].filter((e) => {
                const s = getComputedStyle(e);
                const hides = s.overflowX !== 'visible' || s.overflowY !== 'visible';
                const over = e.scrollWidth > e.clientWidth + 1
                    || e.scrollHeight > e.clientHeight + 1;
                const off = e.getBoundingClientRect().right > window.visualViewport.width + 1;
                return (hides && over) || off || s.textOverflow === 'ellipsis';
            }).map((e) => `${e.tagName}.${e.className}`)"""
        )
        assert not clipped, f"text cut off on {self.name}: {clipped}"

    def assert_above_tab_bar(self, locator: Locator) -> None:
        """The element is wholly on screen and clear of the bottom navigation."""
        expect(locator).to_be_visible()
        box = locator.bounding_box()
        bar = self.page.locator("#tabbar").bounding_box()
        assert box is not None
        assert bar is not None
        assert box["y"] >= 0, f"above the top of the screen: {box}"
        assert box["y"] + box["height"] <= bar["y"] + 0.5, f"under the tab bar: {box} {bar}"

    def close(self) -> None:
        self.context.close()


def dump_logs(*paths: Path) -> str:
    """Server logs for a failure message."""
    parts = [f"--- {p.name} ---\n{p.read_text(errors='replace')[-4000:]}" for p in paths]
    return "\n".join(parts)


# ---- flows shared by the test modules ----


def recovery_sign_in(phone: Phone) -> None:
    """Sign in from the sign-in screen with the relay's recovery token."""
    page = phone.page
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.locator("summary", has_text="Recovery token").click()
    page.get_by_label("Recovery token").fill(phone.relay.setup.token)
    page.get_by_role("button", name="Sign in with recovery token").click()
    expect(page.locator("#tabbar")).to_be_visible()


def add_passkey(phone: Phone, label: str) -> None:
    """Create a passkey from Settings."""
    page = phone.page
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("#view .loading")).to_have_count(0)
    before = page.locator(".passkey-card").count()
    page.get_by_label("Name for a new passkey").fill(label)
    page.get_by_role("button", name="Create a passkey on this device").click()
    expect(page.locator(".passkey-card")).to_have_count(before + 1)


def sign_out(phone: Phone) -> None:
    """Sign out from Settings."""
    page = phone.page
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def passkey_sign_in(phone: Phone) -> None:
    """Sign in with the discoverable passkey on this phone's authenticator."""
    page = phone.page
    page.get_by_role("button", name="Sign in with passkey").click()
    expect(page.locator("#tabbar")).to_be_visible()


def owner_phone(browser: Browser, relay: RelayProcess, name: str = "owner") -> Phone:
    """A phone where the owner has a passkey and is signed in with it."""
    phone = Phone(browser, relay, name=name)
    phone.open("/")
    recovery_sign_in(phone)
    add_passkey(phone, "Owner phone")
    sign_out(phone)
    passkey_sign_in(phone)
    return phone


def go(phone: Phone, tab: str) -> None:
    """Open a tab of the bottom bar."""
    phone.page.locator("#tabbar").get_by_role("link", name=tab).click()


def in_page_storage(phone: Phone) -> dict[str, Any]:
    """What this device holds: IndexedDB names and records, caches, workers, web storage."""
    result: dict[str, Any] = phone.page.evaluate(
        """async () => {
            const dbs = (await indexedDB.databases()).map((d) => d.name);
            let records = 0;
            if (dbs.includes('codexrelay-device')) {
                const db = await new Promise((ok, fail) => {
                    const req = indexedDB.open('codexrelay-device');
                    req.onsuccess = () => ok(req.result);
                    req.onerror = () => fail(req.error);
                });
                if (db.objectStoreNames.contains('details')) {
                    records = await new Promise((ok) => {
                        const req = db.transaction('details').objectStore('details').count();
                        req.onsuccess = () => ok(req.result);
                    });
                }
                db.close();
            }
            return {
                databases: dbs,
                records,
                caches: await caches.keys(),
                workers: (await navigator.serviceWorker.getRegistrations()).length,
                local: localStorage.length,
                session: sessionStorage.length,
            };
        }"""
    )
    return result
