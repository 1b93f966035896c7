"""Python and browser trust code agree byte for byte (TRUST.md §10: interop vectors).

The browser modules under ``web/e2e/`` run in Debian's Chromium, loaded as plain ES modules
from a loopback static server that sends the product's CSP (no eval, nothing inline); a CDP
virtual authenticator holds a passkey whose private key the test made, so Python can verify
what ``webauthn.js`` signed.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Browser, Page

from codexrelay.e2e import keys, statements
from codexrelay.e2e.envelope import (
    KeyWrap,
    Receiver,
    Sealer,
    new_task_key,
    unwrap_task_key,
    wrap_task_key,
)
from codexrelay.e2e.webauthn_verify import parse_signature, verify_statement_signature
from codexrelay.e2e.wire import b64u, b64u_decode
from codexrelay.relay.http.security import CSP
from tests.browser.phone import CSP_LISTENER, CSP_MARK
from tests.softauthn import Credential, SoftAuthenticator
from tests.unit.e2e import builders

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "codexrelay" / "web"
HARNESS = Path(__file__).parent / "e2e_harness"
FIXTURES = ROOT / "tests" / "fixtures"
TASK = "0b7f0000-0000-4000-8000-000000000001"


class _Handler(SimpleHTTPRequestHandler):
    """The web directory at /, the harness at /__test__/, with the product's CSP."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
    }

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0]
        if clean.startswith("/__test__/"):
            return str(HARNESS / clean.removeprefix("/__test__/"))
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        del format, args


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A loopback static server; the page is opened at http://localhost:PORT (rp id localhost)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(browser: Browser, origin: str) -> Iterator[Page]:
    """One page with the harness loaded and CSP violations recorded."""
    context = browser.new_context()
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.on("pageerror", lambda e: messages.append(f"pageerror {e}"))
    page.goto(f"{origin}/__test__/index.html")
    page.wait_for_selector("body[data-ready='1']")
    yield page
    assert [m for m in messages if CSP_MARK in m or m.startswith("pageerror")] == []
    context.close()


def js(page: Page, body: str, arg: Any = None) -> Any:
    """Run an async function body with ``e2e`` (the modules), ``arg`` and helpers in scope."""
    script = (
        "async (arg) => { const e2e = window.e2e; const S = e2e.statements;"
        " const hex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));"
        " const toHex = (b) => Array.from(new Uint8Array(b),"
        " (x) => x.toString(16).padStart(2, '0')).join('');"
        f" {body} }}"
    )
    return page.evaluate(script, arg)


def test_e2e_modules_refuse_eval_under_the_product_csp(browser: Browser, origin: str) -> None:
    """A harness page really enforces the product CSP (eval blocked)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{origin}/__test__/index.html")
    page.wait_for_selector("body[data-ready='1']")
    cdp = context.new_cdp_session(page)
    result = cdp.send(
        "Runtime.evaluate", {"expression": "eval('1+1')", "allowUnsafeEvalBlockedByCSP": False}
    )
    assert "exceptionDetails" in result
    context.close()


def test_e2e_tags_safety_and_pairing_agree(page: Page) -> None:
    """Tag hashes, safety numbers and pairing MACs are the same digits in both languages."""
    vectors = json.loads((FIXTURES / "e2e_vectors.json").read_text())
    got = js(
        page,
        """
        const tags = [];
        for (const t of arg.tags) tags.push(S.b64u(await S.taggedHash(t.tag, S.fromB64u(t.data))));
        const s = arg.safety;
        const groups = await e2e.safety.safetyNumber(hex(s.genesisHash), s.id, hex(s.sigPub));
        const p = arg.pairing;
        const key = await e2e.pairing.pairingKey(hex(p.secret), p.code);
        return {
          tags, groups,
          secretText: e2e.pairing.formatSecret(hex(p.secret)),
          parsed: toHex(e2e.pairing.parseSecret(p.secretText.toLowerCase())),
          claimMac: await e2e.pairing.claimMac(key, S.fromB64u(p.claim)),
          grantMac: await e2e.pairing.grantMac(key, S.fromB64u(p.grant)),
          verified: await e2e.pairing.verifyClaim(key, S.fromB64u(p.claim), p.claimMac),
          forged: await e2e.pairing.verifyClaim(key, S.fromB64u(p.grant), p.claimMac),
        };
        """,
        vectors,
    )
    assert got["tags"] == [t["hash"] for t in vectors["tags"]]
    assert got["groups"] == vectors["safety"]["groups"]
    pairing = vectors["pairing"]
    assert (got["secretText"], got["parsed"]) == (pairing["secretText"], pairing["secret"])
    assert (got["claimMac"], got["grantMac"]) == (pairing["claimMac"], pairing["grantMac"])
    assert got["verified"] is True
    assert got["forged"] is False


def test_e2e_rfc9180_vectors_in_the_browser(page: Page) -> None:
    """The vendored HPKE reproduces the RFC 9180 vectors (seal with the vector's ikmE, open)."""
    vectors = json.loads((FIXTURES / "hpke_rfc9180_vectors.json").read_text())["vectors"]
    results = js(
        page,
        """
        const out = [];
        for (const v of arg) {
          const suite = e2e.envelope.hpkeSuite(v.kem_id === 0x20 ? "c25519" : "p256");
          const pair = await suite.kem.deriveKeyPair(hex(v.ikmR).buffer);
          const pk = toHex(await suite.kem.serializePublicKey(pair.publicKey));
          const first = v.encryptions[0];
          const sealed = await suite.seal(
            { recipientPublicKey: pair.publicKey, info: hex(v.info), ekm: hex(v.ikmE).buffer },
            hex(first.pt), hex(first.aad));
          const opened = await suite.open(
            { recipientKey: pair, enc: hex(v.enc), info: hex(v.info) },
            hex(first.ct), hex(first.aad));
          out.push({ pk, enc: toHex(sealed.enc), ct: toHex(sealed.ct), pt: toHex(opened) });
        }
        return out;
        """,
        vectors,
    )
    for vector, got in zip(vectors, results, strict=True):
        first = vector["encryptions"][0]
        assert got == {
            "pk": vector["pkRm"],
            "enc": vector["enc"],
            "ct": first["ct"],
            "pt": first["pt"],
        }


@pytest.mark.parametrize("suite", ["c25519", "p256"])
def test_e2e_hpke_task_keys_both_ways(page: Page, suite: str) -> None:
    """K_t wrapped in Python opens in the browser with a non-extractable key, and back."""
    python_key = keys.generate_kex_key(suite)  # type: ignore[arg-type]
    task_key = new_task_key()
    got = js(
        page,
        """
        const { suite, pythonPub, wrap, ws, task } = arg;
        const device = await e2e.keys.generateDeviceKeys(suite);
        const pub = (await e2e.keys.publicKeys(device)).kexPub;
        const hpke = e2e.envelope.hpkeSuite(suite);
        const recipient = await hpke.kem.importKey("raw", S.fromB64u(pythonPub).buffer, true);
        const key = crypto.getRandomValues(new Uint8Array(32));
        const toPython = await e2e.envelope.wrapTaskKey(
          key, suite, recipient, { ws, task, recipientKeyId: "ag_3#k1" });
        let extractable = true;
        try {
          await crypto.subtle.exportKey("pkcs8", device.kex.privateKey);
        } catch { extractable = false; }
        return { pub, toPython, key: S.b64u(key), extractable };
        """,
        {
            "suite": suite,
            "pythonPub": keys.public_text(python_key),
            "ws": "ws_7",
            "task": TASK,
            "wrap": None,
        },
    )
    assert got["extractable"] is False
    wrap = KeyWrap.model_validate(got["toPython"])
    assert b64u(unwrap_task_key(wrap, python_key, ws="ws_7", task=TASK)) == got["key"]
    # And Python to the browser: a fresh device, its public key out, K_t in.
    back = js(
        page,
        """
        const device = await e2e.keys.generateDeviceKeys(arg.suite);
        window.lastDevice = device;
        return (await e2e.keys.publicKeys(device)).kexPub;
        """,
        {"suite": suite},
    )
    to_browser = wrap_task_key(
        task_key,
        keys.load_kex_public(suite, back),
        ws="ws_7",
        task=TASK,
        recipient_key_id="dv_1#k1",
    )  # type: ignore[arg-type]
    opened = js(
        page,
        """
        const key = await e2e.envelope.unwrapTaskKey(
          arg.wrap, arg.suite, window.lastDevice.kex, { ws: "ws_7", task: arg.task });
        return S.b64u(key);
        """,
        {"wrap": to_browser.model_dump(), "suite": suite, "task": TASK},
    )
    assert opened == b64u(task_key)


@pytest.mark.parametrize("suite", ["c25519", "p256"])
def test_e2e_envelopes_both_ways(page: Page, suite: str) -> None:
    """Python seals and signs, the browser verifies and opens in order; and the reverse."""
    task_key = new_task_key()
    signing = keys.generate_signing_key(suite)  # type: ignore[arg-type]
    sealer = Sealer(
        task_key=task_key, ws="ws_7", agent="ag_3", task=TASK, sender="ag_3#k1", signing_key=signing
    )
    sent = [sealer.seal("task.out", f"line {i} ".encode() * (i * 500 + 1)) for i in range(3)]
    got = js(
        page,
        """
        const { suite, taskKey, sigPub, sent } = arg;
        const algorithm = suite === "c25519"
          ? { name: "Ed25519" } : { name: "ECDSA", namedCurve: "P-256" };
        const publicKey = await crypto.subtle.importKey(
          "raw", S.fromB64u(sigPub), algorithm, false, ["verify"]);
        const ids = { ws: "ws_7", agent: "ag_3", task: arg.task };
        const receiver = new e2e.envelope.Receiver({ taskKey: S.fromB64u(taskKey), ...ids });
        const text = (bytes) => new TextDecoder().decode(bytes);
        const texts = [];
        for (const env of sent) {
          texts.push(text((await receiver.open(S.utf8(env), { suite, publicKey })).plaintext));
        }
        let replay = null;
        try {
          await receiver.open(S.utf8(sent[1]), { suite, publicKey });
        } catch (e) { replay = e.reason; }
        const device = await e2e.keys.generateDeviceKeys(suite);
        const signer = { suite, privateKey: device.sig.privateKey };
        const out = new e2e.envelope.Sealer(
          { taskKey: S.fromB64u(taskKey), ...ids, sender: "dv_1#k1", signer });
        const back = [];
        for (const message of ["cancel please", "x".repeat(20000)]) {
          back.push(text(await out.seal("task.submit", S.utf8(message))));
        }
        const sigPub2 = (await e2e.keys.publicKeys(device)).sigPub;
        return { texts, replay, counters: receiver.counters, back, sigPub: sigPub2 };
        """,
        {
            "suite": suite,
            "taskKey": b64u(task_key),
            "sigPub": keys.public_text(signing),
            "sent": [s.decode() for s in sent],
            "task": TASK,
        },
    )
    assert got["texts"] == [(f"line {i} " * (i * 500 + 1)) for i in range(3)]
    assert got["replay"] == "duplicate"
    assert got["counters"]["duplicates"] == 1
    receiver = Receiver(task_key=task_key, ws="ws_7", agent="ag_3", task=TASK)
    device_key = keys.load_verify_key(suite, got["sigPub"])  # type: ignore[arg-type]
    opened = [receiver.open(env.encode(), sender_key=device_key).plaintext for env in got["back"]]
    assert opened == [b"cancel please", b"x" * 20000]


def _add_virtual_passkey(page: Page) -> Credential:
    """A CDP virtual authenticator holding a passkey whose private key this test knows."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})[
        "authenticatorId"
    ]
    credential = SoftAuthenticator().new_credential("localhost", b"u_owner")
    pkcs8 = credential.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cdp.send(
        "WebAuthn.addCredential",
        {
            "authenticatorId": authenticator,
            "credential": {
                "credentialId": base64.b64encode(credential.credential_id).decode(),
                "isResidentCredential": True,
                "rpId": "localhost",
                "privateKey": base64.b64encode(pkcs8).decode(),
                "userHandle": base64.b64encode(b"u_owner").decode(),
                "signCount": 0,
            },
        },
    )
    return credential


def test_e2e_webauthn_js_signs_a_statement_python_verifies(page: Page, origin: str) -> None:
    """webauthn.js signs H(tag(task) ‖ S) with UV; the agent-side verifier accepts it, and not
    as any other statement."""
    credential = _add_virtual_passkey(page)
    statement = builders.raw(builders.task())
    auth = js(
        page,
        """
        return await e2e.webauthn.signStatement({
          tagName: "task", bytes: S.fromB64u(arg.stmt), rpId: "localhost",
          credentialIds: [arg.cred] });
        """,
        {"stmt": b64u(statement), "cred": b64u(credential.credential_id)},
    )
    signed = statements.decode_statement(statement, statements.TaskStatement)
    result = verify_statement_signature(
        parse_signature(auth),
        signed,
        rp_id="localhost",
        origins=[origin],
        cose_key=credential.cose_public_key(),
        sign_count=0,
    )
    assert result.user_verified
    assert result.new_sign_count >= 1
    other = statements.decode_statement(
        builders.raw(builders.task(writeAccess=True)), statements.TaskStatement
    )
    with pytest.raises(ValueError, match="challenge-mismatch"):
        verify_statement_signature(
            parse_signature(auth),
            other,
            rp_id="localhost",
            origins=[origin],
            cose_key=credential.cose_public_key(),
            sign_count=0,
        )
    assert isinstance(credential.private_key, ec.EllipticCurvePrivateKey)
    assert b64u_decode(auth["assertion"]["rawId"], max_bytes=64) == credential.credential_id
