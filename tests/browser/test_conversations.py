"""A live conversation on a phone, in Chromium, against a real relay, a real agent and the
real pinned Codex CLI (offline, scripted model): Markdown rendered and sanitized, a command
approved from the pinned card, a diff declined, all at 360 px, keyboard reachable, readable
and CSP-clean (R17, R19)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.browser.phone import SMALL_PHONE, Phone, dump_logs, go, recovery_sign_in
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import RelayProcess, wait_until
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)

pytestmark = [pytest.mark.browser, pytest.mark.realcodex, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def codexbox(relay: RelayProcess, module_dir: Path) -> Iterator[AgentProcess]:
    """An agent running live conversations on the real Codex CLI."""
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    with ModelServer(responder=scripted_reply) as model:
        owner = relay.login()
        agent = pair_agent(
            relay,
            owner,
            default_workspace(owner),
            module_dir / "codexbox",
            agent_id="codexbox",
            process_env={API_KEY_ENV: "mock-key", "TMPDIR": str(codex_tmp), "NO_COLOR": "1"},
            features={"codexExec": True, "conversations": True},
            codex={"command": [str(launcher)],
                   "home": str(write_codex_home(module_dir / "codex-home", model.base_url))},
        )  # fmt: skip
        owner.close()
        yield agent
        agent.stop()
    shutil.rmtree(codex_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def phone(browser: Browser, relay: RelayProcess, codexbox: AgentProcess) -> Iterator[Phone]:
    """The owner on a small phone (360 px wide)."""
    device = Phone(browser, relay, name="small phone", size=SMALL_PHONE)
    device.open("/")
    recovery_sign_in(device)
    yield device
    device.assert_clean()
    device.close()


def _send(phone: Phone, text: str) -> None:
    page = phone.page
    page.get_by_label("Message Codex").fill(text)
    page.locator(".compose-form").get_by_role("button", name="Send").click()


def test_conversation_through_an_approval(
    phone: Phone, codexbox: AgentProcess, module_dir: Path, tmp_path
):
    """Start a conversation, read Codex's Markdown reply (unsafe HTML stripped), answer a
    command approval from the pinned card, then decline a patch shown as a diff."""
    page = phone.page
    workspace = module_dir / "codexbox" / "workspace"
    go(phone, "Chats")
    page.get_by_role("link", name="New conversation").click()
    prompt = "Look at **the build** and `make test`\n<img src=x><script>window.pwned=1</script>"
    page.get_by_label("Message").fill(prompt)
    expect(page.get_by_role("switch", name="Write mode: let Codex change files")).to_be_disabled()
    page.get_by_role("button", name="Start").click()
    reply = page.locator(".from-codex .markdown").first
    try:
        expect(reply.locator("strong")).to_have_text("the build")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump_logs(module_dir / 'codexbox' / 'agent.log')}") from None
    expect(reply.locator("code")).to_have_text("make test")
    assert reply.locator("img, script").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page.locator(".chat-head .thread-state")).to_have_text("Idle")

    _send(phone, "MOCK_ESCALATE: echo hi-from-phone > phone.txt; cat phone.txt")
    card = page.locator(".approval-card")
    expect(card).to_contain_text("Codex asks to run a command")
    expect(card.locator(".command-box")).to_contain_text("echo hi-from-phone")
    expect(card.locator(".reason")).to_contain_text("MOCK_REASON run echo hi-from-phone")
    expect(page.locator(".chat-head .thread-state")).to_have_text("Waiting for you")
    phone.assert_usable()
    phone.screenshot("20-conversation-approval", tmp_path)
    order = phone.assert_focus_order()
    assert any("Accept" in name for name in order), order
    card.get_by_role("button", name="Accept", exact=True).click()
    cell = page.locator(".command-cell").last
    expect(cell.locator(".out")).to_contain_text("hi-from-phone")
    expect(cell.locator(".cell-status")).to_contain_text("exit 0")
    expect(card).to_have_count(0)
    assert (workspace / "phone.txt").read_text() == "hi-from-phone\n"
    expect(page.locator(".settled")).to_contain_text("Accepted by you")

    _send(phone, "MOCK_PATCH: notes.txt hello from the phone")
    expect(card.locator(".diff")).to_contain_text("+hello from the phone")
    expect(card.locator(".file-change summary")).to_contain_text("notes.txt")
    phone.screenshot("21-conversation-diff", tmp_path)
    card.get_by_role("button", name="Decline").click()
    expect(page.locator(".file-cell")).to_contain_text("declined")
    assert not (workspace / "notes.txt").exists()
    wait_until(lambda: page.locator(".chat-head .thread-state").inner_text() == "Idle", timeout=60)
    phone.assert_usable()
    phone.screenshot("22-conversation", tmp_path)


def test_thread_list_shows_state_and_unread(phone: Phone, codexbox: AgentProcess, tmp_path):
    """The list shows each conversation with its state badge, newest first; one another
    person changed since it was last opened is marked unread."""
    page = phone.page
    go(phone, "Chats")
    cards = page.locator(".thread-card")
    expect(cards.first).to_be_visible()
    expect(cards.first.locator(".thread-state")).to_have_text("Idle")
    expect(page.locator(".thread-card.unread")).to_have_count(0)
    page.evaluate("localStorage.clear()")
    go(phone, "Tasks")
    go(phone, "Chats")
    expect(cards.first).to_be_visible()  # count the cards once the list is drawn
    expect(page.locator(".thread-card.unread")).to_have_count(cards.count())
    phone.assert_usable()
    phone.screenshot("23-conversations", tmp_path)
