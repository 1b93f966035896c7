"""A sealed workspace for browser phones: the relay app with its attack hooks
(``tests/proof/hostile.py``), a real agent process pinned to a log whose owner-signed
policy says ``content: sealed``, and people whose passkeys live both in Python (to sign log
entries and seal tasks, ``tests/sealkit.py``) and in a Chromium profile's virtual
authenticator (to sign in and certify that browser's own device).

A browser never shares a credential with Python code that keeps signing: each verifier
keeps a sign counter per credential, so the owner's browser gets a passkey of its own,
added to the log with ``passkey.add``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, expect

from codexrelay.e2e.envelope import parse_wire
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.wire import b64u, b64u_decode
from tests import sealkit
from tests.agents import AgentProcess
from tests.browser.phone import Phone, go, passkey_sign_in
from tests.helpers import wait_until
from tests.proof.hostile import HostileRelay
from tests.proof.test_hostile_relay import AGENT, _online, pair
from tests.softauthn import Credential, SoftAuthenticator, join_by_invite
from tests.trustkit import Book, TrustedPhone

AGENT_LABEL = f"{AGENT} label"
__all__ = ["AGENT", "AGENT_LABEL", "SealedWorld", "flip", "start", "stop", "wrapped_to"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class SealedWorld:
    relay: HostileRelay
    owner: TrustedPhone
    book: Book
    wid: str
    agent: AgentProcess
    directory: Path
    http: httpx.Client
    phones: list[Phone] = field(default_factory=list)

    def sync(self) -> None:
        """Move the owner's book to the relay's head (browsers add their own devices)."""
        res = self.owner.phone.get(f"/api/v1/workspaces/{self.wid}/e2e/log")
        for item in res.json()["entries"][self.book.seq + 1 :]:
            self.book.advance(b64u_decode(item["entry"], max_bytes=1 << 20))

    def person(self, role: str, name: str) -> TrustedPhone:
        """Someone invited, with a passkey, and added to the signed log by the owner."""
        phone = join_by_invite(self.owner.phone, self.wid, role, name)
        me = phone.get("/api/v1/me").json()["user"]
        person = TrustedPhone(phone, me["id"], me["name"], "localhost")
        self.sync()
        self.owner.add_member(self.book, person, role)
        return person

    def browser_passkey(self, person: TrustedPhone) -> Credential:
        """A second passkey of ``person`` for a browser: registered, and in the log."""
        first = person.phone.authenticator
        second = SoftAuthenticator()
        assert person.sudo().status_code == 200
        person.phone.authenticator = second
        try:
            person.phone.enroll("Browser")
        finally:
            person.phone.authenticator = first
        credential = second.credential_for("localhost")
        self.sync()
        body = {
            "userId": person.user_id,
            "credId": b64u(credential.credential_id),
            "cose": b64u(credential.cose_public_key()),
        }
        self.owner.add(self.book, "passkey.add", body)
        return credential

    def browser(self, browser: Browser, credential: Credential, name: str) -> Phone:
        """A Chromium profile holding ``credential``, signed in with it, whose own device
        is certified in the log from the Tasks screen (one passkey touch)."""
        phone = Phone(browser, self.relay, name=name)  # type: ignore[arg-type]
        der = credential.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        phone.cdp.send(
            "WebAuthn.addCredential",
            {
                "authenticatorId": phone.authenticator,
                "credential": {
                    "credentialId": _b64(credential.credential_id),
                    "isResidentCredential": True,
                    "rpId": credential.rp_id,
                    "privateKey": _b64(der),
                    "userHandle": _b64(credential.user_handle),
                    "signCount": credential.sign_count + 1,
                },
            },
        )
        phone.open("/")
        passkey_sign_in(phone)
        self.phones.append(phone)
        return phone

    def add_device(self, phone: Phone) -> None:
        """The Tasks screen offers to certify this browser's device; it signs device.add."""
        go(phone, "Tasks")
        banner = phone.page.locator(".reader-banner")
        expect(banner).to_contain_text("not in the signed log yet")
        phone.assert_usable()
        banner.get_by_role("button", name="Add this device to read sealed tasks").click()
        expect(phone.page.locator(".reader-banner")).to_have_count(0)
        self.sync()

    def device_of(self, user_id: str) -> str:
        """The device a browser certified for ``user_id`` (the newest device.add)."""
        self.sync()
        entries = self.owner.phone.get(f"/api/v1/workspaces/{self.wid}/e2e/log").json()["entries"]
        found = [
            json.loads(b64u_decode(e["entry"], max_bytes=1 << 20))["body"]
            for e in entries
            if e["op"] == "device.add"
        ]
        return str([b for b in found if b["userId"] == user_id][-1]["deviceId"])

    def run(self, prompt: str) -> tuple[str, list[bytes]]:
        """The owner's Python phone seals and submits a Codex task; every envelope once
        the agent's ``task.done`` is in."""
        self.sync()
        stmt, body = self.owner.task(self.book, AGENT, "codex_exec", prompt=prompt)
        view = sealkit.verified_view(self.owner, self.book)
        request, _ = sealkit.seal(self.owner, view, stmt, body)
        res = sealkit.submit(self.owner, self.wid, request)
        assert res.status_code == 201, res.text
        items = wait_until(
            lambda: (
                (e := sealkit.envelopes(self.owner, self.wid, stmt["task"]))
                and parse_wire(e[-1])[1].kind == "task.done"
                and e
            ),
            timeout=30,
            what="the task.done envelope",
        )
        return str(stmt["task"]), items


def wrapped_to(items: list[bytes]) -> set[str]:
    """Every device the agent wrapped the task key to."""
    return {w.to for item in items[1:] for w in parse_wire(item)[0].keys or ()}


def start(directory: Path) -> SealedWorld:
    relay = HostileRelay(directory / "relay").start()
    http = relay.client()
    from tests.softauthn import Phone as SoftPhone  # noqa: PLC0415 - two Phone classes

    soft = SoftPhone(http).bootstrap(relay.setup.token)
    owner = TrustedPhone.enroll(soft, "localhost")
    wid = soft.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
    policy = default_policy().model_dump(by_alias=True) | {"content": "sealed"}
    book, _ = owner.genesis(wid, policy)
    process, _, _ = pair(owner, book, relay, directory / "agent")
    wait_until(lambda: _online(owner, wid), timeout=30, what="the agent online and pinned")
    return SealedWorld(relay, owner, book, wid, process, directory / "agent", http)


def stop(world: SealedWorld) -> None:
    try:
        for phone in world.phones:
            phone.close()
    finally:
        world.agent.stop()
        world.http.close()
        world.relay.stop()


def flip(envelope: str) -> str:
    """The envelope with one byte of its ciphertext changed (still valid base64url)."""
    wire: dict[str, Any] = json.loads(envelope)
    ct = wire["ct"]
    middle = len(ct) // 2
    wire["ct"] = ct[:middle] + ("A" if ct[middle] != "A" else "B") + ct[middle + 1 :]
    return json.dumps(wire, separators=(",", ":"))
