"""Settings lists my devices as the verified log holds them, with the safety numbers
`codexrelay verify-log` computes; a device and a passkey are revoked with passkey-signed log
entries, and a device that finds itself revoked deletes its keys and cached task details."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from codexrelay.e2e.log import SignedEntry, parse_signed, verify_log
from codexrelay.e2e.safety import format_safety_number, safety_number
from codexrelay.e2e.wire import b64u_decode
from tests.browser.phone import Phone, go
from tests.browser.test_protected import protected_owner
from tests.helpers import RelayProcess

pytestmark = pytest.mark.browser

HAS_KEYS = """async (name) => {
    const keys = await import('/e2e/keys.js');
    return Boolean(await keys.loadKeys(name));
}"""


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    phone = protected_owner(browser, relay)
    yield phone
    phone.close()


def _log(phone: Phone) -> dict:
    wid = phone.fetch_json("/api/v1/me")["body"]["memberships"][0]["workspaceId"]
    return {"wid": wid, **phone.fetch_json(f"/api/v1/workspaces/{wid}/e2e/log")["body"]}


def _confirm_if_asked(phone: Phone) -> None:
    """Sudo mode: confirm with the passkey when the phone asks (a recent check may cover it)."""
    button = phone.page.locator("#confirm").get_by_role("button", name="Confirm with passkey")
    try:
        button.wait_for(state="visible", timeout=3000)
    except PlaywrightTimeout:
        return
    button.click()


def _signed(item: dict, seq: int) -> SignedEntry:
    return parse_signed({"entry": item["entry"], "sigs": item["sigs"]}, seq)


def _entry(item: dict) -> dict:
    """The entry's own JSON (op, body), as signed."""
    return json.loads(b64u_decode(item["entry"], max_bytes=1 << 20))


def test_my_device_shows_the_safety_number_verify_log_computes_and_is_revoked(owner: Phone):
    page = owner.page
    found = _log(owner)
    view = verify_log([_signed(e, i) for i, e in enumerate(found["entries"])])
    (device,) = list(view.devices.values())
    genesis = b64u_decode(view.genesis_hash, max_bytes=32)
    expected = format_safety_number(
        safety_number(genesis, device.device_id, b64u_decode(device.sig_pub, max_bytes=200))
    )
    go(owner, "Settings")
    section = page.locator("#my-devices")
    card = section.locator(".device-card", has_text="(this device)")
    expect(card.locator(".safety-number")).to_have_text(expected)
    me = owner.fetch_json("/api/v1/me")["body"]["user"]["id"]
    name = f"device:{found['wid']}:{me}"
    assert page.evaluate(HAS_KEYS, name)

    card.get_by_role("button", name="Revoke device").click()
    page.locator("#confirm").get_by_role("button", name="Revoke device").click()
    _confirm_if_asked(owner)
    expect(section.locator(".device-card.is-revoked")).to_have_count(1)
    entry = _entry(_log(owner)["entries"][-1])
    assert entry["op"] == "device.revoke"
    assert entry["body"]["deviceId"] == device.device_id
    assert not page.evaluate(HAS_KEYS, name), "the revoked device kept its keys"


def test_a_passkey_the_log_does_not_hold_is_revoked_at_the_relay_only(owner: Phone):
    """The spare key is made on a security key beside the phone's own authenticator; the
    virtual authenticators cannot then sign its passkey.add, so the log never holds it and
    revoking it changes the relay only (the signed passkey.revoke path is the device
    revoke's signEntry, proven above)."""
    page = owner.page
    options = {
        "protocol": "ctap2",
        "transport": "usb",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    owner.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    go(owner, "Settings")
    page.get_by_label("Name for a new passkey").fill("Spare key")
    page.get_by_role("button", name="Create a passkey on this device").click()
    _confirm_if_asked(owner)
    card = page.locator(".passkey-card", has_text="Spare key")
    expect(card).to_have_count(1)
    before = _log(owner)["entries"]
    assert all(_entry(e)["op"] != "passkey.add" for e in before)
    card.get_by_role("button", name="Revoke").click()
    page.locator("#confirm").get_by_role("button", name="Revoke passkey").click()
    _confirm_if_asked(owner)
    expect(page.locator(".passkey-card", has_text="Spare key")).to_have_count(0)
    assert _log(owner)["entries"] == before
