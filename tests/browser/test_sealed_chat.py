"""A sealed conversation on the phone, in Chromium with a virtual passkey (TRUST.md §4.7,
§4.8, §4.13, §8): in a workspace whose signed policy says ``content: sealed`` the phone
starts a thread, answers an approval and sends a follow-up only as passkey-signed statements
sealed to the agent, and shows the reply, the command cell and the approval request from the
agent's signed envelopes it opens with its own device key. The agent is a real process
paired through the §4.2 flow, driving the real pinned Codex CLI offline against the scripted
model. Canaries in the prompt and the reply appear nowhere in the relay's log or data dir.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from codexrelay.agent.runners.appserver.supervisor import SOCKET_NAME
from codexrelay.agent.trust import TRUST_FILE
from codexrelay.e2e.policy import default_policy
from tests.agents import pair_pinned, write_agent_config
from tests.browser.phone import Phone, dump_logs, go
from tests.browser.test_signed_chat import AGENT, Protected, _holding, relay_log_devices
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import RelayProcess, wait_until
from tests.proof.test_leak_canaries import _data_files, _hits, canary, fragments
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)
from tests.softauthn import Phone as ApiPhone
from tests.trustkit import TrustedPhone

pytestmark = [pytest.mark.browser, pytest.mark.realcodex, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def sealed(relay: RelayProcess, module_dir: Path) -> Iterator[Protected]:
    """The owner, a genesis whose policy seals content, and a pinned conversation agent."""
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    with ModelServer(responder=scripted_reply) as model:
        owner = TrustedPhone.enroll(
            ApiPhone(relay.client()).bootstrap(relay.setup.token), "localhost"
        )
        wid = owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        policy = default_policy().model_dump(by_alias=True) | {"content": "sealed"}
        book, _ = owner.genesis(wid, policy)
        directory = module_dir / "signbox"
        config = write_agent_config(
            directory,
            relay.setup.base_url,
            agent_id=AGENT,
            features={"codexExec": True, "conversations": True},
            codex={
                "command": [str(launcher)],
                "home": str(write_codex_home(module_dir / "codex-home", model.base_url)),
            },
        )
        env = {API_KEY_ENV: "mock-key", "NO_COLOR": "1", "TMPDIR": str(codex_tmp)}
        agent = pair_pinned(owner, book, config, env)
        try:
            wait_until((directory / "state" / TRUST_FILE).exists, timeout=30, what="the pin")
            wait_until((directory / "state" / SOCKET_NAME).exists, timeout=60, what="app-server")
            yield Protected(owner, book, agent, directory)
        finally:
            agent.stop()
            owner.phone.client.close()
            shutil.rmtree(codex_tmp, ignore_errors=True)


def test_a_sealed_conversation_from_the_phone(
    browser: Browser, relay: RelayProcess, sealed: Protected, module_dir: Path, tmp_path
):
    """Start, approval and follow-up sealed from the phone; the phone shows what it opened;
    the command runs once; the relay's log and data dir hold no canary."""
    said, echoed = canary("prompt"), canary("reply")
    phone = Phone(browser, relay)
    page = phone.page
    try:
        _holding(phone, sealed.owner)
        phone.open("/")
        expect(page.locator("#tabbar")).to_be_visible()
        go(phone, "Chats")
        page.get_by_role("link", name="New conversation").click()
        expect(page.locator(".new-thread .sealed-note")).to_contain_text(
            "Sealed: only signbox label"
        )
        page.get_by_label("Message").fill(f"Note {said}\nMOCK_ESCALATE: echo ran >> sealed.txt")
        page.get_by_role("button", name="Start").click()
        card = page.locator(".approval-card")
        try:
            expect(card.locator(".command-box")).to_contain_text("echo ran >> sealed.txt")
        except AssertionError as exc:
            logs = dump_logs(sealed.dir / "agent.log", module_dir / "relay.log")
            raise AssertionError(f"{exc}\n{logs}") from None
        expect(page.locator(".sealed-badge")).to_have_text("Sealed · verified from signbox label")
        expect(page.locator(".from-you").first).to_contain_text(said)
        expect(page.locator(".chat-head")).to_contain_text(said)
        card.get_by_role("button", name="Accept", exact=True).click()
        note = page.locator(".signed-note")
        expect(note).to_have_text("Accept · signed by your passkey · verified by signbox label")
        workspace = sealed.dir / "workspace"
        wait_until((workspace / "sealed.txt").exists, timeout=60, what="the command")
        expect(page.locator(".command-cell").first).to_contain_text("echo ran")
        expect(page.locator(".chat-head .thread-state")).to_have_text("Idle", timeout=60_000)
        expect(page.locator(".composer .sealed-note")).to_contain_text("Sealed: only signbox label")
        page.get_by_label("Message Codex").fill(f"Say {echoed}")
        page.locator(".compose-form").get_by_role("button", name="Send").click()
        expect(note).to_have_text("Message · signed by your passkey · verified by signbox label")
        expect(page.locator(".from-codex").last).to_contain_text(echoed, timeout=60_000)
        expect(page.locator(".output-incomplete")).to_have_count(0)
        thread_url = page.url
        go(phone, "Chats")
        expect(page.locator(".thread-title").first).to_contain_text(said)
        phone.screenshot("25-sealed-conversation", tmp_path)
        phone.assert_clean()
    finally:
        phone.close()
    assert (workspace / "sealed.txt").read_text() == "ran\n"
    records = [(r["kind"], r["outcome"]) for r in sealed.audit()]
    assert records.count(("turn", "accepted")) == 2, records
    assert records.count(("decision", "accepted")) == 1, records
    assert any(d != sealed.owner.device_id for d in relay_log_devices(sealed))
    _later_device(browser, relay, sealed, thread_url, echoed)
    relay.stop()
    haystacks = _data_files(relay.setup.data_dir)
    haystacks["relay.log"] = (module_dir / "relay.log").read_bytes()
    needles = {"prompt": fragments(said), "reply": fragments(echoed)}
    assert len(haystacks) > 1, haystacks.keys()
    assert _hits(haystacks, needles) == []


def _later_device(
    browser: Browser, relay: RelayProcess, sealed: Protected, thread_url: str, echoed: str
) -> None:
    """A second browser profile of the owner, not a reader when the thread began: it adds
    its device (one passkey touch), asks the agent for the thread key, and then shows the
    history the agent wrapped to it."""
    later = Phone(browser, relay, name="later")
    try:
        _holding(later, sealed.owner, sign_count_offset=5000)
        later.open("/")
        expect(later.page.locator("#tabbar")).to_be_visible()
        later.page.goto(thread_url)
        notice = later.page.locator(".cannot-read")
        expect(notice).to_contain_text("not in the workspace's signed log yet")
        expect(later.page.locator(".from-codex")).to_have_count(0)
        notice.get_by_role("button", name="Add this device to read sealed conversations").click()
        expect(later.page.locator(".from-codex").last).to_contain_text(echoed, timeout=60_000)
        expect(later.page.locator(".sealed-badge")).to_have_text(
            "Sealed · verified from signbox label"
        )
        later.assert_clean()
        _relay_drops_one(later)
    finally:
        later.close()
    assert ("key.req", "accepted") in [(r["kind"], r["outcome"]) for r in sealed.audit()]


def _relay_drops_one(phone: Phone) -> None:
    """A relay that leaves one envelope out of the thread's stream: the phone says "Output
    incomplete" (what it still shows is only what verified, in order within each epoch)."""
    page = phone.page

    def drop_second(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["envelopes"] = [e for e in body["envelopes"] if e["index"] != 1]
        route.fulfill(response=response, json=body)

    page.route("**/envelopes?after=-1", drop_second)
    page.reload()
    expect(page.locator(".output-incomplete")).to_contain_text("Output incomplete", timeout=30_000)
    expect(page.locator(".output-incomplete")).to_contain_text("missing, out of order or refused")
    page.unroute("**/envelopes?after=-1")
