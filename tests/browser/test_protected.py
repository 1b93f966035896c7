"""A protected workspace on a phone (TRUST.md §8), against a real relay and real agent
processes: the owner's first passkey signs the genesis, an agent pairs with a code whose
secret the relay never sees and shows "Verified with your pairing code", a task is confirmed
on its own screen, signed by the passkey and verified by the agent before it runs; a forged
key claim disables Approve; a recovery-token session cannot run anything; and the People
screen warns when the relay's member list disagrees with the signed log."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from codexrelay.e2e import keys
from codexrelay.e2e.wire import b64u
from tests.agents import AgentProcess, write_agent_config
from tests.browser.phone import (
    Phone,
    dump_logs,
    go,
    passkey_sign_in,
    recovery_sign_in,
    sign_out,
)
from tests.browser.test_people import create_invite, enroll
from tests.helpers import RelayProcess, wait_until
from tests.softauthn import Phone as SoftPhone
from tests.softauthn import join_by_invite
from tests.trustkit import claim_for

pytestmark = pytest.mark.browser


def protected_owner(browser: Browser, relay: RelayProcess) -> Phone:
    """The relay owner's first sign-in: the recovery token, then the first passkey, which
    also signs the workspace's genesis; then a passkey sign-in."""
    phone = Phone(browser, relay, name="owner")
    page = phone.page
    phone.open("/")
    recovery_sign_in(phone)
    page.get_by_role("region", name="First sign-in").get_by_role(
        "button", name="Create a passkey now"
    ).click()
    expect(page.locator("#passkey-created")).to_be_visible()
    toast = page.locator(".toast").filter(has_text="Protection is")
    expect(toast).to_be_visible()
    assert toast.first.inner_text().startswith("Protection is on"), toast.first.inner_text()
    sign_out(phone)
    passkey_sign_in(phone)
    return phone


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    phone = protected_owner(browser, relay)
    yield phone
    phone.assert_clean()
    phone.close()


def _wid(phone: Phone) -> str:
    me = phone.fetch_json("/api/v1/me")["body"]
    return str(me["memberships"][0]["workspaceId"])


def _pairing_code(owner: Phone) -> str:
    page = owner.page
    go(owner, "Agents")
    page.get_by_role("link", name="Pair an agent").click()
    page.get_by_role("button", name="Create pairing code").click()
    full = page.locator(".full-code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}\.([0-9A-Z]{4}-){3}[0-9A-Z]{4}", full), full
    return full


@pytest.fixture(scope="module")
def devbox(
    owner: Phone, relay: RelayProcess, module_dir: Path, tmp_path_factory
) -> Iterator[AgentProcess]:
    """An agent paired with CODE.SECRET: the phone checks its MAC'd key claim, shows the
    green badge and the safety number, and approving signs agent.add and the grant."""
    page = owner.page
    full = _pairing_code(owner)
    command = page.locator(".command-text").inner_text().strip()
    assert command == f"codexrelay agent pair --pair-code {full}"
    directory = module_dir / "devbox"
    config = write_agent_config(directory, relay.setup.base_url, agent_id="devbox")
    agent = AgentProcess(config, directory / "agent.log").start(*command.split()[2:])
    card = page.locator(".request-card", has_text="devbox")
    try:
        expect(card).to_be_visible()
        expect(card.locator(".trust-badge")).to_contain_text("Verified with your pairing code")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump_logs(directory / 'agent.log')}") from None
    safety = card.locator(".safety-number").inner_text()
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", safety), safety
    owner.screenshot("30-pairing-verified", tmp_path_factory.mktemp("shots"))
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".request-card")).to_have_count(0)
    wait_until(lambda: "Paired to workspace" in agent.logs(), timeout=20, what="the pin")
    assert safety in agent.logs(), "the agent prints the same safety number"
    yield agent
    agent.stop()


def test_genesis_pairing_and_a_signed_task_the_agent_verifies(
    owner: Phone, devbox: AgentProcess, relay: RelayProcess, tmp_path: Path
):
    """The log has the owner's genesis and the agent; the confirmation screen shows what
    runs; the task is signed, verified by the agent and run; its cancel would be signed."""
    page = owner.page
    log = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/e2e/log")["body"]
    assert [e["op"] for e in log["entries"]] == ["genesis", "agent.add"]
    go(owner, "Settings")
    expect(page.locator("#protection")).to_contain_text("On.")
    expect(page.locator("#protection .log-head")).to_contain_text(f"#1 {log['head']['hash']}")

    go(owner, "New task")
    page.get_by_label("Agent", exact=True).select_option(value="devbox")
    page.get_by_label("Action", exact=True).check()
    page.get_by_label("Which action").select_option(value="hello")
    page.get_by_role("button", name="Review and sign").click()
    expect(page.get_by_role("heading", name="Confirm the task")).to_be_visible()
    summary = page.locator(".task-confirm")
    expect(summary).to_contain_text("devbox label · safety number")
    expect(summary).to_contain_text("Say hello (hello)")
    expect(summary).to_contain_text("(read-only)")
    owner.screenshot("31-confirm-task", tmp_path)
    page.get_by_role("button", name="Confirm with Face ID").click()
    expect(page).to_have_url(re.compile(r"#/tasks/[0-9a-f-]{36}$"))
    line = page.locator(".signed-line")
    expect(line).to_have_text("Signed by your passkey · verified by devbox label")
    expect(page.locator("dl.meta .status")).to_have_text(re.compile("Completed", re.I))
    owner.screenshot("32-signed-task", tmp_path)
    task_id = page.url.rsplit("/", 1)[-1]
    go(owner, "Agents")
    card = page.locator(".agent-card", has_text="devbox label")
    expect(card.locator(".pinned")).to_contain_text("devbox label pinned this workspace (head #1)")
    expect(card.locator(".audit-head")).to_have_text(re.compile(r"^[1-9]\d*:[A-Za-z0-9_-]{43}$"))
    safety = card.locator(".safety-number").inner_text()
    assert safety in devbox.logs(), "the phone and the agent show the same safety number"
    owner.screenshot("35-agent-pinned", tmp_path)
    task = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/tasks/{task_id}")["body"]["task"]
    assert task["status"] == "completed"
    assert "hello" in task["outputTail"]


def test_write_mode_is_shown_in_red_before_signing(owner: Phone, devbox: AgentProcess):
    """The confirmation screen names write mode, the folder and the whole prompt."""
    page = owner.page
    go(owner, "New task")
    page.get_by_label("Agent", exact=True).select_option(value="devbox")
    page.get_by_label("Codex", exact=True).check()
    page.get_by_label("Prompt").fill("Explain the build\nin two lines")
    page.get_by_role("button", name="Review and sign").click()
    summary = page.locator(".task-confirm")
    expect(summary).to_contain_text("the workspace root")
    expect(summary.locator(".confirm-prompt")).to_have_text("Explain the build\nin two lines")
    page.get_by_role("button", name="Back").click()
    expect(page.get_by_role("button", name="Review and sign")).to_be_visible()


def test_a_running_signed_task_is_cancelled_with_the_device_key(
    owner: Phone, devbox: AgentProcess, relay: RelayProcess
):
    """Cancel needs no passkey touch: the device key in the log signs it, and the agent
    stops the task (a cancel from a device the log does not list would be refused)."""
    page = owner.page
    go(owner, "New task")
    page.get_by_label("Agent", exact=True).select_option(value="devbox")
    page.get_by_label("Codex", exact=True).check()
    page.get_by_label("Prompt").fill(
        "Wait a while\nFAKE: message started\nFAKE: command-open sleep 100\nFAKE: sleep 30"
    )
    page.get_by_role("button", name="Review and sign").click()
    page.get_by_role("button", name="Confirm with Face ID").click()
    expect(page.locator(".prog-command")).to_contain_text("in progress")
    expect(page.locator(".signed-line")).to_contain_text("verified by devbox label")
    with page.expect_response(lambda r: r.url.endswith("/signed-cancel")) as cancelled:
        page.get_by_role("button", name="Cancel task").click()
    assert cancelled.value.status == 200, cancelled.value.text()
    expect(page.locator("dl.meta .status")).to_have_text("Cancelled")


def test_a_forged_key_claim_disables_approve(owner: Phone, relay: RelayProcess, tmp_path: Path):
    """A pair request whose claim is MAC'd with another secret (what a relay that swapped
    the agent's keys would send) shows red and cannot be approved."""
    page = owner.page
    full = _pairing_code(owner)
    code = full.split(".", 1)[0]
    claim = {
        "agentId": "intruder",
        "label": "intruder",
        "hostname": "host",
        "workspaceRootName": "app",
        "sigPub": keys.public_text(keys.generate_signing_key("c25519")),
        "kexPub": keys.public_text(keys.generate_kex_key("c25519")),
        "suite": "c25519",
        "nonce": b64u(secrets.token_bytes(32)),
    }
    body = {k: claim[k] for k in ("agentId", "label", "hostname", "workspaceRootName")}
    forged = claim_for(secrets.token_bytes(10), code, claim)
    with httpx.Client(base_url=relay.setup.base_url, timeout=10) as client:
        res = client.post("/api/v1/agent/pair", json={"code": code, **body, "e2e": forged})
    assert res.status_code == 202, res.text
    card = page.locator(".request-card", has_text="intruder")
    expect(card.locator(".trust-badge")).to_contain_text("Unverified")
    expect(card.get_by_role("button", name="Approve")).to_be_disabled()
    owner.screenshot("33-pairing-unverified", tmp_path)
    card.get_by_role("button", name="Reject").click()
    expect(page.locator(".request-card", has_text="intruder")).to_have_count(0)


def test_a_recovery_token_session_cannot_run_a_task(
    browser: Browser, owner: Phone, relay: RelayProcess, devbox: AgentProcess
):
    """Signed in with the recovery token alone, the phone holds no passkey signature: the
    New task screen says why instead of offering Run."""
    phone = Phone(browser, relay, name="recovery")
    try:
        phone.open("/")
        recovery_sign_in(phone)
        go(phone, "New task")
        notice = phone.page.locator("#cannot-sign")
        expect(notice).to_contain_text("You signed in with the recovery token")
        expect(phone.page.get_by_role("button", name=re.compile("Run task|Review"))).to_have_count(
            0
        )
        go(phone, "Agents")
        phone.page.get_by_role("link", name="Pair an agent").click()
        expect(phone.page.locator("#view")).to_contain_text("You signed in with the recovery token")
        expect(phone.page.get_by_role("button", name="Create pairing code")).to_have_count(0)
    finally:
        phone.close()


def test_people_shows_the_log_and_warns_when_the_relay_disagrees(
    owner: Phone, relay: RelayProcess, tmp_path: Path
):
    """Members as the signed log says, with who signed each change; someone the relay lists
    but the log does not raises the banner."""
    page = owner.page
    go(owner, "People")
    section = page.locator(".log-section")
    expect(section).to_contain_text("Members in the signed log")
    expect(section.locator(".log-history")).to_contain_text("founded the workspace")
    expect(page.locator(".log-disagrees")).to_have_count(0)
    expect(page.locator("#log-warning")).to_have_count(0)
    with relay.client() as client:
        inviter = SoftPhone(client).bootstrap(relay.setup.token)
        join_by_invite(inviter, _wid(owner), "member", "Ada")
    page.reload()
    banner = page.locator(".log-disagrees")
    expect(banner).to_contain_text("disagrees with the signed log")
    expect(banner).to_contain_text("Ada is a member on the relay but not in the signed log.")
    owner.screenshot("34-log-disagrees", tmp_path)
    go(owner, "Tasks")
    expect(page.locator("#log-warning")).to_contain_text(
        "The relay's member list disagrees with the signed log"
    )


def test_two_person_rule_with_a_second_phone(
    browser: Browser, owner: Phone, relay: RelayProcess, devbox: AgentProcess, tmp_path: Path
):
    """B6: the owner signs a policy needing two people for actions; a new member joins the
    signed log with a key card checked on the owner's phone; the owner's task waits for a
    second approver; the member reads the same confirmation, co-signs, and the agent runs it."""
    page = owner.page
    go(owner, "Settings")
    page.get_by_label("Predefined actions: two people must approve").check()
    page.get_by_role("button", name="Sign and save the policies").click()
    expect(page.locator(".toast").filter(has_text="Policies signed")).to_be_visible()

    bea = enroll(browser, relay, create_invite(owner, "member", "Bea's phone"), "Bea")
    try:
        go(bea, "People")
        bea.page.get_by_role("button", name="Make my key card").click()
        card_text = bea.page.locator(".key-card-text").inner_text().strip()
        bea_safety = bea.page.locator(".key-card .safety-number").inner_text()
        page.reload()
        go(owner, "People")
        page.get_by_label("Key card").fill(card_text)
        page.get_by_role("button", name="Check key card").click()
        confirm = page.locator(".confirm-member")
        expect(confirm).to_contain_text("Key card of Bea (member), signed by their passkey")
        expect(confirm.locator(".safety-number")).to_have_text(bea_safety)
        page.get_by_role("button", name="Add Bea to the log with Face ID").click()
        expect(page.locator(".log-member", has_text="Bea")).to_be_visible()

        go(owner, "New task")
        page.get_by_label("Agent", exact=True).select_option(value="devbox")
        page.get_by_label("Action", exact=True).check()
        page.get_by_label("Which action").select_option(value="hello")
        page.get_by_role("button", name="Review and sign").click()
        expect(page.locator(".notice", has_text="2 people must approve")).to_be_visible()
        page.get_by_role("button", name="Confirm with Face ID").click()
        waiting = page.locator(".pending-card.waiting")
        expect(waiting).to_contain_text("Waiting for a second approver")
        owner.screenshot("36-waiting-for-approver", tmp_path)

        go(bea, "Tasks")
        request = bea.page.locator(".pending-card.request")
        expect(request).to_contain_text("asks you to approve a task")
        request.get_by_role("button", name="Review and approve").click()
        expect(request.locator(".task-confirm")).to_contain_text("Say hello (hello)")
        bea.screenshot("37-second-approver", tmp_path)
        request.get_by_role("button", name="Approve with Face ID").click()
        expect(bea.page.locator(".toast").filter(has_text="Approved")).to_be_visible()

        expect(waiting).to_have_count(0)
        go(owner, "Tasks")
        page.locator(".task-card").first.click()
        expect(page.locator(".signed-line")).to_have_text(
            "Signed by your passkey · verified by devbox label"
        )
        expect(page.locator("dl.meta .status")).to_have_text(re.compile("Completed", re.I))
        bea.assert_clean()
    finally:
        bea.close()


def test_revoking_an_agent_is_a_signed_log_entry(owner: Phone, devbox: AgentProcess):
    """In a protected workspace Revoke signs agent.revoke: the relay closes the agent's
    socket and People shows who revoked it."""
    page = owner.page
    go(owner, "Agents")
    card = page.locator(".agent-card", has_text="devbox label")
    card.get_by_role("button", name="Revoke").click()
    page.locator("#confirm").get_by_role("button", name="Revoke agent").click()
    expect(page.locator(".agent-card.is-revoked", has_text="devbox label")).to_have_count(1)
    log = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/e2e/log")["body"]
    assert log["entries"][-1]["op"] == "agent.revoke"
    go(owner, "People")
    history = page.locator(".log-history")
    expect(history).to_contain_text("revoked an agent (devbox label)")


def test_protection_for_new_and_existing_workspaces(owner: Phone, relay: RelayProcess):
    """A workspace created on the phone is protected at once; one made before (here through
    the API) turns protection on with one owner action in Settings."""
    page = owner.page
    client = relay.login()
    try:
        made = client.post("/api/v1/workspaces", json={"name": "Older"}).json()["workspace"]
    finally:
        client.close()
    page.reload()
    page.locator("#workspace-switcher").click()
    page.locator(".workspace-choice", has_text="Older").click()
    go(owner, "Settings")
    protection = page.locator("#protection")
    expect(protection).to_contain_text("Off.")
    protection.get_by_role("button", name="Turn protection on").click()
    expect(protection).to_contain_text("On.")
    log = owner.fetch_json(f"/api/v1/workspaces/{made['id']}/e2e/log")["body"]
    assert [e["op"] for e in log["entries"]] == ["genesis"]

    page.locator("#workspace-switcher").click()
    page.get_by_label("Name of the new workspace").fill("Fresh")
    page.get_by_role("button", name="Create workspace").click()
    # The toast from turning protection on for "Older" may still show: wait for this one,
    # which comes just before the app opens the new workspace's Agents screen.
    expect(page.locator(".toast").filter(has_text='Workspace "Fresh" created')).to_contain_text(
        "Protection is on"
    )
    expect(page.get_by_role("heading", name="Agents", level=2)).to_be_visible()
    go(owner, "Settings")
    expect(page.locator("#protection")).to_contain_text("On.")
