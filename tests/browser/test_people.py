"""People on phones: an admin invites someone from one browser, the invitee enrolls in
another and sees nothing before their passkey; roles limit what the UI offers (R03, R21,
O5, B7)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.browser.phone import SMALL_PHONE, Phone, go, owner_phone
from tests.helpers import RelayProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    """The owner's phone, signed in with a passkey."""
    phone = owner_phone(browser, relay)
    yield phone
    phone.assert_clean()
    phone.close()


@pytest.fixture(scope="module")
def agent(relay: RelayProcess, module_dir: Path) -> Iterator[AgentProcess]:
    """An agent in the Default workspace (paired over the API) with write mode on."""
    client = relay.login()
    try:
        wid = default_workspace(client)
        features = {"codexExec": True, "codexExecWrite": True, "runAction": True, "readLog": True}
        process = pair_agent(relay, client, wid, module_dir / "agent", features=features)
    finally:
        client.close()
    yield process
    process.stop()


def create_invite(owner: Phone, role: str, note: str) -> str:
    """Create an invite on the People screen; returns the link shown once."""
    page = owner.page
    go(owner, "People")
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_label("Note (optional)").fill(note)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/invites")
    ) as created:
        page.get_by_role("button", name="Create invite").click()
    code = created.value.json()["code"]
    shown = page.get_by_role("region", name="New invite")
    # An earlier invite may still be on screen: wait for this one.
    expect(shown.locator(".big-code")).to_have_text(code)
    expect(shown).to_contain_text("Shown once")
    url = shown.locator("code.command-text").inner_text().strip()
    # The other phone may scan the code instead of opening the link: both say the same.
    assert owner.scan_qr(shown.get_by_role("img", name=re.compile("QR code of the link"))) == url
    return url


def enroll(browser: Browser, relay: RelayProcess, url: str, name: str) -> Phone:
    """A new phone that opens an invite link, gives a name and creates a passkey."""
    phone = Phone(browser, relay, name=name, size=SMALL_PHONE)
    page = phone.open(url.removeprefix(relay.setup.origin))
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Accept invite").click()
    page.get_by_role("button", name="Create passkey").click()
    expect(page.locator("#tabbar")).to_be_visible()
    return phone


def test_invited_user_enrolls_and_sees_nothing_before_the_passkey(
    browser: Browser, relay: RelayProcess, owner: Phone, agent: AgentProcess, tmp_path: Path
):
    """R21, O5: the invite link opens enrollment on another phone; until the passkey exists
    the invitee sees no workspace and the API refuses them; then they land in it as a member,
    and write mode says it needs the admin role."""
    url = create_invite(owner, "member", "Ada's phone")
    assert re.fullmatch(rf"{relay.setup.origin}/#invite=[0-9A-Z-]+", url)
    owner.screenshot("09-people", tmp_path)
    wid = owner.fetch_json("/api/v1/me")["body"]["memberships"][0]["workspaceId"]

    ada = Phone(browser, relay, name="invitee", size=SMALL_PHONE)
    try:
        page = ada.open(url.removeprefix(relay.setup.origin))
        expect(page.get_by_role("heading", name="You are invited")).to_be_visible()
        assert "#invite" not in page.url, "the code stays in the address bar"
        page.get_by_label("Your name").fill("Ada")
        page.get_by_role("button", name="Accept invite").click()
        expect(page.get_by_role("heading", name="Create your passkey")).to_be_visible()
        ada.screenshot("02-enroll", tmp_path)

        # Nothing of the workspace before the passkey: not on screen, not from the API.
        expect(page.locator("#tabbar")).to_be_hidden()
        assert "Default" not in page.locator("body").inner_text()
        page.evaluate("location.hash = '#/agents'")
        expect(page.get_by_role("heading", name="Create your passkey")).to_be_visible()
        me = ada.fetch_json("/api/v1/me")["body"]
        assert me["memberships"] == []
        assert me["session"]["enrollmentLocked"] is True
        for path in ("/api/v1/workspaces", f"/api/v1/workspaces/{wid}/tasks",
                     f"/api/v1/workspaces/{wid}/agents", "/api/v1/me/cache-key"):  # fmt: skip
            res = ada.fetch_json(path)
            assert res["status"] == 403, path
            assert res["body"]["error"] == "enrollment-required", path

        page.get_by_role("button", name="Create passkey").click()
        expect(page.locator("#tabbar")).to_be_visible()
        expect(page.locator("#workspace-name")).to_have_text("Default (member)")
        ada.assert_usable()

        go(ada, "New task")
        page.get_by_label("Codex", exact=True).check()
        switch = page.get_by_role("switch", name="Write mode: let Codex change files")
        expect(switch).to_be_disabled()
        expect(page.locator("#write-note")).to_have_text("Write mode needs the admin role.")
        go(ada, "People")
        expect(page.get_by_role("button", name="Create invite")).to_have_count(0)
        expect(page.locator(".member-card", has_text="Ada")).to_contain_text("member")
        ada.assert_usable()

        go(owner, "Tasks")
        go(owner, "People")
        expect(owner.page.locator(".member-card", has_text="Ada")).to_contain_text("member")
        expect(owner.page.locator(".invite-card").first).to_contain_text("accepted")
        ada.assert_clean()
    finally:
        ada.close()


def test_role_change_and_invite_cancel(browser: Browser, relay: RelayProcess, owner: Phone):
    """B7, O5: an admin lowers a member to viewer, who can then only read and leaves; a
    pending invite can be cancelled."""
    ben = enroll(browser, relay, create_invite(owner, "member", "Ben's phone"), "Ben")
    try:
        page = ben.page
        go(owner, "Tasks")
        go(owner, "People")
        card = owner.page.locator(".member-card", has_text="Ben")
        card.get_by_role("combobox").select_option("viewer")
        card.get_by_role("button", name="Change role").click()
        expect(owner.page.locator(".member-card", has_text="Ben")).to_contain_text("viewer")

        page.reload()
        go(ben, "New task")
        expect(page.locator(".notice")).to_contain_text(
            "(viewer) can read tasks but not start them"
        )
        go(ben, "People")
        page.get_by_role("button", name="Leave this workspace").click()
        page.locator("#confirm").get_by_role("button", name="Leave").click()
        expect(page.get_by_role("heading", name="No workspace yet")).to_be_visible()
        ben.assert_clean()
    finally:
        ben.close()

    create_invite(owner, "viewer", "never used")
    pending = owner.page.locator(".invite-card", has_text="never used")
    pending.get_by_role("button", name="Cancel invite").click()
    expect(owner.page.locator(".invite-card", has_text="never used")).to_contain_text("cancelled")


def test_admin_reads_the_audit_trail(owner: Phone, agent: AgentProcess, tmp_path: Path):
    """B2, O4: an admin reads the workspace's signed records in the app, newest first, and
    filters them by event; a recovery-token sign-in is flagged."""
    create_invite(owner, "viewer", "audit check")
    page = owner.page
    page.get_by_role("link", name="Open the audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    records = page.locator(".audit-card")
    expect(records.first).to_contain_text("invite.created")
    expect(page.locator(".audit-card", has_text="pairing.created").first).to_be_visible()
    owner.screenshot("12-audit", tmp_path)
    page.get_by_label("Event").fill("invite.*")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".audit-card", has_text="pairing.created")).to_have_count(0)
    events = records.locator("strong").all_inner_texts()
    assert events
    assert all(e.startswith("invite.") for e in events)
    owner.assert_usable()

    # The relay owner also sees the relay-wide chain: sign-ins are there, not in a workspace.
    page.get_by_label("Event").fill("auth.*")
    page.get_by_label("Records of").select_option("relay")
    bootstrap = page.locator(".audit-card", has_text="auth.bootstrap.login").first
    expect(bootstrap).to_contain_text("Done in a recovery session.")
    expect(bootstrap).to_contain_text("Owner")
    expect(page.locator(".audit-card", has_text="auth.passkey.login").first).to_be_visible()
    assert page.get_by_role("link", name="Download signed export").get_attribute("href") == (
        "/api/v1/audit/export"
    )
    owner.assert_usable()


def test_recovery_code_lets_a_member_register_a_new_passkey(
    browser: Browser, relay: RelayProcess, owner: Phone
):
    """I2, R21: an admin makes a one-time recovery code in the UI; on a new phone it opens
    only passkey registration, after which the member is back in their workspace."""
    cleo = enroll(browser, relay, create_invite(owner, "member", "Cleo's phone"), "Cleo")
    cleo.close()  # the phone is lost
    page = owner.page
    go(owner, "Tasks")
    go(owner, "People")
    page.locator(".member-card", has_text="Cleo").get_by_role(
        "button", name="Recovery code"
    ).click()
    page.locator("#confirm").get_by_role("button", name="Make code").click()
    shown = page.get_by_role("region", name="Recovery code for Cleo")
    url = shown.locator("code.command-text").inner_text().strip()
    assert re.fullmatch(rf"{relay.setup.origin}/#recovery=[0-9A-Z-]+", url)
    assert owner.scan_qr(shown.get_by_role("img", name=re.compile("QR code of the link"))) == url

    new_phone = Phone(browser, relay, name="new phone", size=SMALL_PHONE)
    try:
        # Typed by hand on the sign-in screen this time, rather than opened as a link.
        screen = new_phone.open("/")
        screen.locator("summary", has_text="I have an invite or recovery code").click()
        screen.get_by_label("What do you have?").select_option(label="A recovery code")
        screen.get_by_label("The code (or the whole link)").fill(url.split("=", 1)[1].lower())
        screen.get_by_role("button", name="Continue").click()
        screen.get_by_role("button", name="Recover my account").click()
        expect(screen.get_by_role("heading", name="Register a new passkey")).to_be_visible()
        expect(screen.locator("#tabbar")).to_be_hidden()
        screen.get_by_role("button", name="Register a new passkey").click()
        expect(screen.locator("#workspace-name")).to_have_text("Default (member)")
        go(new_phone, "Settings")
        expect(screen.locator(".passkey-card")).to_have_count(2)
        new_phone.assert_clean()
    finally:
        new_phone.close()


LONG_NAME = "Payments team: ledger migration to the new reconciliation service (Q3)"


def test_workspaces_are_created_and_switched_from_the_phone(owner: Phone, tmp_path: Path):
    """R03: the relay owner creates a workspace on the phone and becomes its owner; the
    picker lists every workspace with its whole name (wrapped, never cut) on a 360 px and a
    390 px screen, and switching shows only that workspace's agents and tasks."""
    page = owner.page
    go(owner, "Tasks")
    page.locator("#workspace-switcher").click()
    expect(page.get_by_role("heading", name="Workspaces")).to_be_visible()
    page.get_by_label("Name of the new workspace").fill(LONG_NAME)
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("heading", name="Agents")).to_be_visible()
    switcher = page.locator("#workspace-switcher")
    expect(page.locator("#workspace-name")).to_have_text(f"{LONG_NAME} (owner)")
    expect(page.locator(".empty")).to_contain_text("No agents yet")
    owner.at_phone_widths(lambda: owner.assert_whole(switcher))
    go(owner, "Tasks")
    expect(page.locator(".empty")).to_contain_text("No tasks yet")

    switcher.click()
    choices = page.locator(".workspace-choice")
    expect(choices).to_have_count(2)
    current = page.locator(".workspace-choice[aria-current=true]")
    expect(current.locator(".workspace-choice-name")).to_have_text(LONG_NAME)
    owner.at_phone_widths(lambda: [owner.assert_whole(c) for c in choices.all()])
    owner.screenshot("14-workspaces", tmp_path)
    page.reload()  # the choice is kept on this device
    expect(page.locator("#workspace-name")).to_have_text(f"{LONG_NAME} (owner)")
    page.locator(".workspace-choice", has_text="Default").click()
    expect(page.locator("#workspace-name")).to_have_text("Default (owner)")
    expect(page).to_have_url(re.compile("#/tasks$"))
    go(owner, "People")
    expect(page.locator(".member-card", has_text="Owner (you)")).to_be_visible()


def test_the_only_owner_is_told_how_to_leave_instead(owner: Phone, relay: RelayProcess):
    """A workspace keeps an owner: its only owner is not offered "Leave this workspace"
    (the relay would refuse with last-owner) and reads what to do instead, at both widths;
    with another owner the button is back."""
    client = relay.login()
    try:
        wid = client.post("/api/v1/workspaces", json={"name": "Solo"}).json()["workspace"]["id"]
    finally:
        client.close()
    page = owner.page
    page.reload()  # the new membership arrives with the next /me
    page.locator("#workspace-switcher").click()
    page.locator(".workspace-choice", has_text="Solo").click()
    go(owner, "People")
    note = page.locator("#sole-owner")
    expect(note).to_contain_text("You are the only owner of this workspace")
    expect(note).to_contain_text("invite someone as owner")
    expect(page.get_by_role("button", name="Leave this workspace")).to_have_count(0)
    owner.at_phone_widths(lambda: owner.assert_whole(note))
    page.locator("#workspace-switcher").click()
    page.locator(".workspace-choice", has_text="Default").click()
    go(owner, "People")
    expect(note).to_contain_text("make another member an owner with Change role above")
    expect(page.get_by_role("button", name="Leave this workspace")).to_have_count(0)

    # With a second owner, leaving is offered again.
    ada = page.locator(".member-card", has_text="Ada")
    ada.get_by_role("combobox").select_option("owner")
    ada.get_by_role("button", name="Change role").click()
    expect(page.get_by_role("button", name="Leave this workspace")).to_be_visible()
    expect(note).to_have_count(0)
    ada = page.locator(".member-card", has_text="Ada")
    ada.get_by_role("combobox").select_option("member")
    ada.get_by_role("button", name="Change role").click()
    expect(note).to_be_visible()
    assert owner.fetch_json(f"/api/v1/workspaces/{wid}/members")["body"]["members"][0]["role"] == (
        "owner"
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_contrast_check_sees_faint_text(owner: Phone, scheme: str):
    """The WCAG contrast check run on every screenshot can fail: faint text is caught in
    both colour schemes, the app's own screen passes, and nothing is left behind."""
    page = owner.page
    go(owner, "People")
    page.emulate_media(color_scheme=scheme)
    try:
        owner.assert_contrast()
        page.evaluate(
            """() => {
                const p = document.createElement("p");
                p.id = "faint";
                p.textContent = "Barely there";
                p.style.color = getComputedStyle(document.body).backgroundColor;
                p.style.opacity = "1";
                document.querySelector("main").append(p);
            }"""
        )
        with pytest.raises(AssertionError, match=r"Barely there"):
            owner.assert_contrast()
    finally:
        page.evaluate("document.getElementById('faint')?.remove()")
        page.emulate_media(color_scheme="light")
    owner.assert_contrast()


def test_keyboard_reaches_every_control_in_reading_order(owner: Phone):
    """Accessible by keyboard: on each main screen Tab walks the controls top to bottom,
    each with a visible focus ring, and the first stop is the skip link."""
    for tab in ("Tasks", "New task", "Agents", "People", "Settings"):
        go(owner, tab)
        expect(owner.page.locator("#view .loading")).to_have_count(0)
        order = owner.assert_focus_order()
        assert order[0].startswith("A Skip to content"), order[:3]
        assert len(order) >= 3, order


def test_focus_order_check_sees_reordering_and_missing_rings(owner: Phone):
    """The keyboard check can fail: a form laid out against its DOM order, and focus with
    no visible ring, are both caught; the screen passes once put back."""
    page = owner.page
    go(owner, "Settings")
    expect(page.locator("#view .loading")).to_have_count(0)
    create = page.get_by_role("button", name="Create a passkey on this device")
    form = create.locator("xpath=..")
    expect(form.get_by_label("Name for a new passkey")).to_be_visible()
    try:
        form.evaluate("(f) => Object.assign(f.style, { display: 'flex' }) && "
                      "Object.assign(f.style, { flexDirection: 'column-reverse' })")  # fmt: skip
        with pytest.raises(AssertionError, match="Tab jumps back up the screen"):
            owner.assert_focus_order()
    finally:
        form.evaluate("(f) => f.removeAttribute('style')")
    rule = "#view :focus-visible { outline: none !important; box-shadow: none !important }"
    page.evaluate("(rule) => document.styleSheets[0].insertRule(rule, 0)", rule)
    try:
        with pytest.raises(AssertionError, match="without a visible focus ring"):
            owner.assert_focus_order()
    finally:
        page.evaluate("document.styleSheets[0].deleteRule(0)")
    owner.assert_focus_order()
