"""`codexrelay demo` with protection on, as a person follows it: sign in with the printed
recovery token, create the first passkey (which signs the workspace's genesis), pin the
demo agent with the printed pin command and the code the phone shows, approve the verified
request, and run a signed task the demo agent verifies and runs."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.phone import Phone, go, recovery_sign_in
from tests.demos import RUNNING, Demo, env_without_codex

pytestmark = pytest.mark.browser

DEMO_AGENT = "Demo agent (this computer)"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo.start(tmp_path, "--dir", str(tmp_path / "demo"), "--port", "0")
    yield running
    if running in RUNNING:
        RUNNING.remove(running)
    assert running.stop() == 0, running.output()


def test_the_demo_agent_pins_the_protected_workspace_and_runs_signed_tasks(
    browser: Browser, demo: Demo, tmp_path: Path
):
    url = demo.value("URL: ")
    token = demo.value("Recovery token: ")
    pin = demo.value("Pin the demo agent: ")
    assert pin.endswith(" --code CODE.SECRET"), pin
    relay = SimpleNamespace(setup=SimpleNamespace(origin=url.rstrip("/"), token=token))
    phone = Phone(browser, relay, name="demo phone")  # type: ignore[arg-type]
    page = phone.page
    try:
        phone.open("/")
        recovery_sign_in(phone)
        page.get_by_role("button", name="Create a passkey now").click()
        expect(page.locator(".toast").filter(has_text="Protection is on")).to_be_visible()
        go(phone, "Agents")
        card = page.locator(".agent-card", has_text=DEMO_AGENT)
        expect(card.locator(".not-pinned")).to_contain_text("Not pinned")

        page.get_by_role("link", name="Pair an agent").click()
        page.get_by_role("button", name="Create pairing code").click()
        # The recovery session never confirmed with a passkey: pairing needs sudo mode.
        sudo = page.locator("#confirm")
        expect(sudo).to_contain_text("Confirm it is you with your passkey")
        sudo.get_by_role("button", name="Confirm with passkey").click()
        command = page.locator(".pin-command-text").inner_text().strip()
        code = command.rsplit(" ", 1)[1]
        argv = [*shlex.split(pin.removesuffix("CODE.SECRET")), code]
        env = env_without_codex()
        with (tmp_path / "pin.log").open("w") as log:
            pinning = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            request = page.locator(".request-card", has_text="demo")
            expect(request.locator(".trust-badge")).to_contain_text(
                "Verified with your pairing code"
            )
            expect(request).to_contain_text("asks to pin this workspace")
            request.get_by_role("button", name="Approve").click()
            assert pinning.wait(timeout=60) == 0, (tmp_path / "pin.log").read_text()
        assert "Paired to workspace" in (tmp_path / "pin.log").read_text()

        go(phone, "New task")
        page.get_by_label("Agent", exact=True).select_option(value="demo")
        page.get_by_label("Action", exact=True).check()
        page.get_by_label("Which action").select_option(value="git-status")
        page.get_by_role("button", name="Review and sign").click()
        page.get_by_role("button", name="Confirm with Face ID").click()
        expect(page).to_have_url(re.compile(r"#/tasks/[0-9a-f-]{36}$"))
        expect(page.locator(".signed-line")).to_have_text(
            f"Signed by your passkey · verified by {DEMO_AGENT}"
        )
        expect(page.locator("dl.meta .status")).to_have_text(re.compile("Completed", re.I))
        phone.assert_clean()
    finally:
        phone.close()
