"""The demo on a phone over the network (`demo --lan`): Chromium opens the printed https URL
by its name through Caddy, the name resolved to this computer and the certificate accepted as
a phone that installed the demo's CA would, and a passkey made there signs in again: the
name, not an IP address, is what passkeys need (R02, R05)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import expect, sync_playwright

from tests.browser.phone import CHROMIUM, LAUNCH_ARGS, Phone, passkey_sign_in, recovery_sign_in
from tests.demos import LAN_HOST, RUNNING, Demo, env_without_codex

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which("caddy") is None, reason="caddy missing: deploy/ensure-caddy.sh"
    ),
]


@pytest.fixture
def lan_demo(tmp_path: Path) -> Iterator[Demo]:
    env = {**env_without_codex(), "XDG_STATE_HOME": str(tmp_path / "state-home")}
    args = ["--dir", str(tmp_path / "demo"), "--port", "0", "--lan", "--lan-host", LAN_HOST]
    demo = Demo.start(tmp_path, *args, "--https-port", "0", env=env)
    yield demo
    RUNNING.remove(demo)
    assert demo.stop(signal.SIGINT) == 0


def leaf_key_hash(port: int, root: Path) -> str:
    """base64 SHA-256 of the served certificate's public key, after checking it against the
    demo's CA: what Chromium is told to accept, as a phone that trusts the CA would."""
    context = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=LAN_HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_a_passkey_made_on_the_lan_name_signs_in(lan_demo: Demo):
    """Through Caddy, on https://NAME:PORT: the page is a secure context, the owner's first
    sign-in offers the passkey, it is made for NAME, and it signs the owner in again."""
    url = lan_demo.value("URL: ")
    token = lan_demo.value("Recovery token: ")
    root = Path(lan_demo.value("CA certificate: "))
    port = urlsplit(url).port
    assert port is not None
    rules = f"--host-resolver-rules=MAP {LAN_HOST} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE localhost"
    args = [a for a in LAUNCH_ARGS if not a.startswith("--host-resolver-rules")]
    args += [rules, f"--ignore-certificate-errors-spki-list={leaf_key_hash(port, root)}"]
    relay = SimpleNamespace(setup=SimpleNamespace(origin=url.rstrip("/"), token=token))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            phone = Phone(browser, relay, name="phone on the LAN")  # type: ignore[arg-type]
            page = phone.open("/")
            assert page.evaluate("window.isSecureContext") is True
            recovery_sign_in(phone)
            page.get_by_role("button", name="Create a passkey now").click()
            expect(page.locator("#passkey-created")).to_be_visible()
            assert [c["rpId"] for c in phone.credentials()] == [LAN_HOST]
            page.get_by_role("link", name="Settings").click()
            page.get_by_role("button", name="Sign out", exact=True).click()
            passkey_sign_in(phone)
            me = phone.fetch_json("/api/v1/me")["body"]
            assert me["session"]["via"] == "passkey"
            expect(page.locator("#tabbar")).to_be_visible()
            phone.assert_clean()
            phone.close()
        finally:
            browser.close()
