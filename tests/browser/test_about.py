"""Settings, About: the version and web bundle hash the relay states, and the phone's own
hash of the files it is served, naming any file that differs (TRUST.md tier B)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route, expect

from codexrelay import __version__, webbundle
from tests.browser.phone import Phone, go, recovery_sign_in
from tests.helpers import RelayProcess

pytestmark = pytest.mark.browser


def grouped(value: str) -> str:
    return " ".join(value[i : i + 8] for i in range(0, len(value), 8))


@pytest.fixture(params=["allow", "block"])
def phone(browser: Browser, relay: RelayProcess, request: pytest.FixtureRequest) -> Iterator[Phone]:
    phone = Phone(browser, relay, name="about", service_workers=request.param)
    phone.open("/")
    recovery_sign_in(phone)
    yield phone
    phone.close()


def test_about_states_the_bundle_and_the_phone_hashes_what_it_is_served(phone: Phone):
    page = phone.page
    go(phone, "Settings")
    about = page.locator("#about")
    expect(about.locator("#app-version")).to_have_text(__version__)
    expect(about.locator("#bundle-hash")).to_have_text(grouped(webbundle.installed_hash()))
    expect(about.locator("#app-tier")).to_contain_text("The relay serves this app itself")
    about.get_by_role("button", name="Hash the app this phone is served").click()
    result = about.locator("#bundle-check")
    expect(result).to_contain_text("Matches", timeout=30_000)
    expect(result.locator("code")).to_have_text(grouped(webbundle.installed_hash()))
    assert not phone.page_errors


def test_a_changed_file_is_named_and_the_hash_differs(browser: Browser, relay: RelayProcess):
    """Stands in for a relay that serves other code than it states: one module's bytes change
    on the way (service workers off, so the browser's router sees every fetch)."""
    phone = Phone(browser, relay, name="changed", service_workers="block")
    try:
        phone.open("/")
        recovery_sign_in(phone)
        page = phone.page

        def changed(route: Route) -> None:
            response = route.fetch()
            route.fulfill(response=response, body=response.body() + b"\n// changed on the way\n")

        page.route("**/js/format.js", changed)
        page.reload()
        go(phone, "Settings")
        about = page.locator("#about")
        expect(about.locator("#bundle-hash")).to_have_text(grouped(webbundle.installed_hash()))
        about.get_by_role("button", name="Hash the app this phone is served").click()
        result = about.locator("#bundle-check")
        expect(result).to_contain_text("Differs from what the relay states", timeout=30_000)
        expect(result).to_contain_text("Files that differ: js/format.js.")
        computed = result.locator("code").inner_text()
        assert computed != grouped(webbundle.installed_hash())
    finally:
        phone.close()
