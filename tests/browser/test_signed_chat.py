"""A signed conversation in a protected workspace, in Chromium with a virtual passkey
(TRUST.md §4.8, §4.13, §8): the phone signs the new thread, the follow-up and the approval
answer with the person's passkey (user verification), adds its own device to the log on
first use, shows the approval from the agent's exact request bytes, and says that the agent
verified each. The agent is a real process paired through the §4.2 flow, driving the real
pinned Codex CLI offline against the scripted model; its audit log holds every statement.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, expect

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.runners.appserver.supervisor import SOCKET_NAME
from codexrelay.agent.trust import TRUST_FILE
from tests.agents import AgentProcess, pair_pinned, write_agent_config
from tests.browser.phone import Phone, dump_logs, go
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import RelayProcess, wait_until
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)
from tests.softauthn import COOKIE
from tests.softauthn import Phone as ApiPhone
from tests.trustkit import Book, TrustedPhone

pytestmark = [pytest.mark.browser, pytest.mark.realcodex, pytest.mark.timeout(300)]

AGENT = "signbox"


@dataclass
class Protected:
    owner: TrustedPhone
    book: Book
    agent: AgentProcess
    dir: Path

    def audit(self) -> list[dict]:
        lines = (self.dir / "state" / AUDIT_FILE).read_bytes().splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def protected(relay: RelayProcess, module_dir: Path) -> Iterator[Protected]:
    """The owner (a software passkey), a genesis, and a pinned agent running conversations."""
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
        book, _ = owner.genesis(wid)
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


def _holding(phone: Phone, owner: TrustedPhone, sign_count_offset: int = 1000) -> None:
    """The browser holds the owner's passkey (the same key) and the owner's session."""
    credential = owner.credential
    pkcs8 = credential.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    phone.cdp.send(
        "WebAuthn.addCredential",
        {
            "authenticatorId": phone.authenticator,
            "credential": {
                "credentialId": base64.b64encode(credential.credential_id).decode(),
                "isResidentCredential": True,
                "rpId": "localhost",
                "privateKey": base64.b64encode(pkcs8).decode(),
                "userHandle": base64.b64encode(credential.user_handle).decode(),
                "signCount": credential.sign_count + sign_count_offset,
            },
        },
    )
    phone.context.add_cookies(
        [{"name": COOKIE, "value": owner.phone.cookie or "", "url": phone.origin}]
    )


def test_a_signed_conversation_in_a_protected_workspace(
    browser: Browser, relay: RelayProcess, protected: Protected, module_dir: Path, tmp_path
):
    """New thread, approval and follow-up, each confirmed by the passkey and verified by the
    agent; the approval card shows the agent's own request bytes."""
    phone = Phone(browser, relay)
    try:
        _holding(phone, protected.owner)
        page = phone.open("/")
        expect(page.locator("#tabbar")).to_be_visible()
        go(phone, "Chats")
        page.get_by_role("link", name="New conversation").click()
        page.get_by_label("Message").fill("MOCK_ESCALATE: echo signed > signed.txt")
        page.get_by_role("button", name="Start").click()
        card = page.locator(".approval-card")
        try:
            expect(card.locator(".command-box")).to_contain_text("echo signed")
        except AssertionError as exc:
            logs = dump_logs(protected.dir / "agent.log", module_dir / "relay.log")
            raise AssertionError(f"{exc}\n{logs}") from None
        card.get_by_role("button", name="Accept", exact=True).click()
        note = page.locator(".signed-note")
        expect(note).to_have_text("Accept · signed by your passkey · verified by signbox label")
        workspace = protected.dir / "workspace"
        wait_until((workspace / "signed.txt").exists, timeout=60, what="the command")
        expect(page.locator(".chat-head .thread-state")).to_have_text("Idle", timeout=60_000)
        page.get_by_label("Message Codex").fill("Now summarise it")
        page.locator(".compose-form").get_by_role("button", name="Send").click()
        expect(note).to_have_text("Message · signed by your passkey · verified by signbox label")
        expect(page.locator(".from-codex").last).to_contain_text("Now summarise it")
        phone.screenshot("24-signed-conversation", tmp_path)
        phone.assert_clean()
    finally:
        phone.close()
    records = [(r["kind"], r["outcome"]) for r in protected.audit()]
    assert records.count(("turn", "accepted")) == 2, records
    assert ("decision", "accepted") in records
    assert not [r for r in protected.audit() if r["outcome"] == "refused"]
    view = relay_log_devices(protected)
    assert any(d.startswith("dv_") and d != protected.owner.device_id for d in view)


def relay_log_devices(protected: Protected) -> list[str]:
    """Device ids the workspace's log names (the browser added its own)."""
    page = protected.owner.phone.get(f"/api/v1/workspaces/{protected.book.ws}/e2e/log").json()
    found = []
    for item in page["entries"][1:]:
        raw = base64.urlsafe_b64decode(item["entry"] + "=" * (-len(item["entry"]) % 4))
        entry = json.loads(raw)
        if entry["op"] == "device.add":
            found.append(entry["body"]["deviceId"])
    return found
