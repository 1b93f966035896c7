"""A phone in Firefox reads a sealed task (TRUST.md §8; issue 19 asks for Firefox where
WebCrypto allows: Firefox ESR 140 has Ed25519 and X25519). The person's passkey sits in
Marionette's virtual authenticator; the browser signs in with it, certifies its own
device (non-extractable keys in IndexedDB) from the Tasks screen, and then opens a task
the owner sealed, with the agent's signature checked against its own verified log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from codexrelay.e2e.wire import b64u
from tests.browser import firefox
from tests.browser.sealworld import AGENT_LABEL, SealedWorld, start, stop, wrapped_to

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedWorld]:
    found = start(Path(tmp_path_factory.mktemp("sealed-firefox")))
    yield found
    stop(found)


def _with_passkey(phone: Any, credential: Any) -> None:
    """A virtual platform authenticator holding ``credential`` (WebDriver WebAuthn)."""
    made = phone.marionette.send(
        "WebAuthn:AddVirtualAuthenticator",
        {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
         "hasUserVerification": True, "isUserConsenting": True, "isUserVerified": True},
    )  # fmt: skip
    authenticator = made["value"] if isinstance(made, dict) else made
    der = credential.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    phone.marionette.send(
        "WebAuthn:AddCredential",
        {
            "authenticatorId": authenticator,
            "credentialId": b64u(credential.credential_id),
            "isResidentCredential": True,
            "rpId": credential.rp_id,
            "privateKey": b64u(der),
            "userHandle": b64u(credential.user_handle),
            "signCount": credential.sign_count + 1,
        },
    )


def test_firefox_reads_a_sealed_task(world: SealedWorld, tmp_path: Path):
    why = firefox.missing()
    if why:
        pytest.fail(why)
    person = world.person("member", "Fern")
    phone = firefox.FirefoxPhone(world.relay.setup.origin, tmp_path / "firefox")
    try:
        _with_passkey(phone, person.credential)
        phone.open("/")
        phone.click("button", "Sign in with passkey")
        phone.find("#tabbar")
        phone.tab("Tasks")
        phone.click(".reader-banner button", "Add this device to read sealed tasks")
        phone.wait(
            lambda: phone.evaluate("!document.querySelector('.reader-banner')"),
            "the device in the log",
        )
        mark = uuid.uuid4().hex[:12]
        task_id, items = world.run(f"Firefox {mark}\nFAKE: message said-{mark}")
        assert world.device_of(person.user_id) in wrapped_to(items)
        phone.open(f"/#/tasks/{task_id}")
        phone.find(".final-message", f"said-{mark}")
        phone.find("pre.prompt", f"Firefox {mark}")
        phone.find(".sealed-badge", f"Sealed · verified from {AGENT_LABEL}")
        assert phone.evaluate("!document.querySelector('.output-incomplete')")
        phone.tab("Tasks")
        phone.find(".task-card strong", f"Firefox {mark}")
        assert phone.problems() == []
    finally:
        phone.close()
