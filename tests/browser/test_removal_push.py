"""After a removal in a protected workspace the phone pushes its verified log to each agent
(TRUST.md §4.10) and shows, per agent, "confirmed by <agent> (head #N)" only when the
agent's signed acknowledgement verifies against the agent's key in the phone's own log;
an answer whose signature a relay altered leaves the agent "pending", with a retry."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from tests.agents import AgentProcess, write_agent_config
from tests.browser.phone import Phone, dump_logs, go
from tests.browser.test_people import create_invite, enroll
from tests.browser.test_protected import _pairing_code, _wid, protected_owner
from tests.helpers import PYTHON, RelayProcess, wait_until

pytestmark = pytest.mark.browser

AGENT_LABEL = "devbox label"


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    phone = protected_owner(browser, relay)
    yield phone
    phone.close()


@pytest.fixture(scope="module")
def devbox(owner: Phone, relay: RelayProcess, module_dir: Path) -> Iterator[AgentProcess]:
    """An agent paired and pinned to the owner's protected workspace."""
    page = owner.page
    full = _pairing_code(owner)
    directory = module_dir / "devbox"
    config = write_agent_config(directory, relay.setup.base_url, agent_id="devbox")
    agent = AgentProcess(config, directory / "agent.log").start("pair", "--pair-code", full)
    card = page.locator(".request-card", has_text="devbox")
    try:
        expect(card.locator(".trust-badge")).to_contain_text("Verified with your pairing code")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump_logs(directory / 'agent.log')}") from None
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".request-card")).to_have_count(0)
    wait_until(lambda: "Paired to workspace" in agent.logs(), timeout=20, what="the pin")
    yield agent
    agent.stop()


def _add_to_log(browser: Browser, owner: Phone, relay: RelayProcess, name: str) -> None:
    """A new member joins, and the owner adds them to the signed log from their key card."""
    newcomer = enroll(browser, relay, create_invite(owner, "member", f"{name}'s phone"), name)
    try:
        go(newcomer, "People")
        newcomer.page.get_by_role("button", name="Make my key card").click()
        card_text = newcomer.page.locator(".key-card-text").inner_text().strip()
    finally:
        newcomer.close()
    page = owner.page
    page.reload()
    go(owner, "People")
    page.get_by_label("Key card").fill(card_text)
    page.get_by_role("button", name="Check key card").click()
    page.get_by_role("button", name=f"Add {name} to the log with Face ID").click()
    expect(page.locator(".log-member", has_text=name)).to_be_visible()


def _remove(owner: Phone, name: str) -> None:
    page = owner.page
    go(owner, "People")
    card = page.locator(".member-card", has_text=name)
    card.get_by_role("button", name="Remove").click()
    page.locator("#confirm").get_by_role("button", name="Remove").click()
    expect(page.locator("#log-push .log-push")).to_be_visible()


def _head(owner: Phone) -> dict[str, object]:
    log = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/e2e/log")["body"]
    assert log["entries"][-1]["op"] == "member.remove", log["entries"][-1]
    return {"seq": log["head"]["seq"], "hash": log["head"]["hash"]}


def _trust_show(agent: AgentProcess) -> str:
    command = ["agent", "trust", "show", "--config", str(agent.config_path)]
    shown = subprocess.run(
        [PYTHON, "-m", "codexrelay", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_a_removal_is_confirmed_by_the_agent(
    browser: Browser, owner: Phone, relay: RelayProcess, devbox: AgentProcess, tmp_path: Path
):
    """The owner removes Bea: the phone signs member.remove, pushes the log to devbox and
    shows that devbox confirmed the new head; devbox's pinned log holds the removal."""
    _add_to_log(browser, owner, relay, "Bea")
    _remove(owner, "Bea")
    head = _head(owner)
    pushed = owner.page.locator("#log-push")
    expect(pushed.locator(".push-confirmed")).to_have_text(
        f"confirmed by {AGENT_LABEL} (head #{head['seq']})"
    )
    expect(pushed.locator(".push-pending")).to_have_count(0)
    owner.screenshot("40-removal-confirmed", tmp_path)
    shown = _trust_show(devbox)
    assert re.search(rf"Log head: .*{head['seq']}", shown), shown
    assert str(head["hash"]) in shown, shown
    assert "Bea (" not in shown, shown
    owner.assert_clean()


def test_a_tampered_acknowledgement_stays_pending(
    browser: Browser, owner: Phone, relay: RelayProcess, devbox: AgentProcess
):
    """A relay that alters the agent's signature gets "pending on devbox", never
    "confirmed"; the retry, once answers pass unaltered, confirms."""
    _add_to_log(browser, owner, relay, "Cy")
    page = owner.page
    tampered: list[str] = []

    def flip_sig(route: Route) -> None:
        response = route.fetch()
        answer = response.json()
        sig = answer["sig"]
        answer["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
        tampered.append(answer["sig"])
        route.fulfill(response=response, body=json.dumps(answer))

    page.route("**/log-push", flip_sig)
    try:
        _remove(owner, "Cy")
        pending = page.locator("#log-push .push-pending")
        expect(pending).to_have_text(f"pending on {AGENT_LABEL}")
        expect(page.locator("#log-push .push-confirmed")).to_have_count(0)
        assert tampered, "the acknowledgement passed through the altered route"
    finally:
        page.unroute("**/log-push")
    head = _head(owner)
    page.locator("#log-push").get_by_role("button", name="Retry").click()
    expect(page.locator("#log-push .push-confirmed")).to_have_text(
        f"confirmed by {AGENT_LABEL} (head #{head['seq']})"
    )
    assert "Cy (" not in _trust_show(devbox)
