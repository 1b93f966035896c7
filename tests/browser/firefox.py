"""A phone in Firefox: Debian's firefox-esr, headless, driven over WebDriver BiDi.

Firefox speaks the protocols itself (no geckodriver, which Debian does not ship): the session
is made over Marionette, which also holds a virtual passkey authenticator, and upgraded to
BiDi (``webSocketUrl``) for the rest, with small synchronous clients for both. A preload
script watches for script errors and CSP violations from the first line of the app on; the
page is driven with DOM events from a sandboxed script realm, so the app's own globals are
never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FIREFOX = Path("/usr/bin/firefox-esr")
WAIT_SEC = 20
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
# Quiet, offline-friendly automation profile (on top of Firefox's recommended remote prefs).
PREFS = {
    "marionette.port": 0,  # any free port, written to MarionetteActivePort in the profile
    # Passkey requests go to the virtual authenticator only (no USB keys, no OS prompt).
    "security.webauth.webauthn_enable_softtoken": True,
    "security.webauth.webauthn_enable_usbtoken": False,
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "toolkit.telemetry.server": "http://127.0.0.1:9/",
}
WATCH = """() => {
  const seen = (text) => console.error(`__problem ${text}`);
  window.addEventListener("error", (e) => seen(`error: ${e.message}`));
  window.addEventListener("unhandledrejection", (e) => seen(`rejection: ${e.reason}`));
  document.addEventListener("securitypolicyviolation", (e) => seen(`CSP: ${e.violatedDirective}`));
}"""
# Helpers evaluated in a sandbox realm: they see the page's DOM, never its scripts.
HELPERS = """
const visible = (el) =>
  !!el.getClientRects().length && getComputedStyle(el).visibility !== "hidden";
const find = (css, text, exact) => [...document.querySelectorAll(css)].find((el) => {
  if (!visible(el)) return false;
  const shown = el.innerText.trim();
  return text === null || (exact ? shown === text : shown.includes(text));
}) || null;
const field = (label) => {
  const l = [...document.querySelectorAll("label")]
    .find((x) => x.textContent.trim() === label && visible(x));
  return l ? l.control : null;
};
const press = (el) => { el.scrollIntoView({ block: "center" }); el.click(); return true; };
const type = (el, text) => {
  el.focus();
  el.value = text;
  el.dispatchEvent(new Event("input", { bubbles: true }));
  el.dispatchEvent(new Event("change", { bubbles: true }));
  return true;
};
const choose = (el, optionText) => {
  const option = [...el.options].find((o) => o.text.trim() === optionText);
  if (!option) return false;
  el.value = option.value;
  el.dispatchEvent(new Event("change", { bubbles: true }));
  return true;
};
"""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def missing() -> str | None:
    """Why Firefox cannot run here, or None."""
    if not FIREFOX.exists():
        return f"{FIREFOX} is missing: run scripts/ensure-browsers.sh (make test runs it)"
    return None


class Marionette:
    """Firefox's own remote protocol: ``LENGTH:[0, id, command, params]`` over TCP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SEC * 2)
        self.buffer = b""
        self.next_id = 0
        self._read()  # the server's greeting

    def _read(self) -> Any:
        while b":" not in self.buffer:
            self.buffer += self._chunk()
        size, _, rest = self.buffer.partition(b":")
        while len(rest) < int(size):
            rest += self._chunk()
        self.buffer = rest[int(size) :]
        return json.loads(rest[: int(size)])

    def _chunk(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            msg = "Marionette closed the connection"
            raise RuntimeError(msg)
        return data

    def send(self, command: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        body = json.dumps([0, self.next_id, command, params]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            _kind, answer_id, error, result = self._read()
            if answer_id == self.next_id:
                break
        if error:
            msg = f"Marionette {command}: {error}"
            raise RuntimeError(msg)
        return result

    def close(self) -> None:
        self.sock.close()


class Bidi:
    """Commands and events over one BiDi WebSocket."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(connect(url, max_size=None))
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ask = self.next_id
        self.ws.send(json.dumps({"id": ask, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=WAIT_SEC * 2))
            if message.get("id") != ask:
                if message.get("type") == "event":
                    self.events.append(message)
                continue
            if message.get("type") == "error":
                msg = f"BiDi {method}: {message.get('error')}: {message.get('message')}"
                raise RuntimeError(msg)
            result: dict[str, Any] = message["result"]
            return result

    def close(self) -> None:
        self._stack.close()


class FirefoxPhone:
    """One headless Firefox at phone size."""

    def __init__(self, origin: str, directory: Path) -> None:
        profile = directory / "profile"
        shutil.rmtree(profile, ignore_errors=True)
        profile.mkdir(parents=True)
        (profile / "user.js").write_text(
            "".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items())
        )
        self.log_path = directory / "firefox.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(FIREFOX), "--headless", "--no-remote", "--marionette",
                 "--profile", str(profile), "--remote-debugging-port", "0",
                 "--window-size", "390,844", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"},
            )  # fmt: skip
        try:
            self._listening()
            port = int(self._wait_for(lambda: _read_text(profile / "MarionetteActivePort")))
            self.marionette = Marionette(port)
            session = self.marionette.send("WebDriver:NewSession", {"webSocketUrl": True})
            self.bidi = Bidi(session["capabilities"]["webSocketUrl"])
            tree = self.bidi.send("browsingContext.getTree")
            self.context: str = tree["contexts"][0]["context"]
            self.bidi.send("session.subscribe", events=["log.entryAdded"])
            self.bidi.send("script.addPreloadScript", functionDeclaration=WATCH)
            self.bidi.send("browsingContext.setViewport", context=self.context,
                           viewport={"width": 390, "height": 844})  # fmt: skip
        except Exception:
            self.proc.kill()
            raise
        self.origin = origin

    def _wait_for(self, check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WAIT_SEC * 2
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        msg = f"Firefox did not start its remote servers:\n{self.log_path.read_text()[-2000:]}"
        raise RuntimeError(msg)

    def _listening(self) -> str:
        found: str = self._wait_for(
            lambda: LISTENING.search(self.log_path.read_text(errors="replace"))
        ).group(1)
        return found

    def add_passkey_authenticator(self) -> None:
        """A virtual platform authenticator that holds passkeys and verifies the user."""
        self.marionette.send(
            "WebAuthn:AddVirtualAuthenticator",
            {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
             "hasUserVerification": True, "isUserConsenting": True, "isUserVerified": True},
        )  # fmt: skip

    # ---- the same small interface as WebKitPhone -------------------------------------

    def open(self, path: str = "/") -> None:
        self.bidi.send(
            "browsingContext.navigate",
            context=self.context,
            url=self.origin + path,
            wait="complete",
        )

    def evaluate(self, expression: str) -> Any:
        """``expression`` (JS, may be a promise) evaluated in the page; its JSON value."""
        result = self.bidi.send(
            "script.evaluate",
            expression=f"Promise.resolve({expression}).then((v) => JSON.stringify(v ?? null))",
            target={"context": self.context},
            awaitPromise=True,
        )
        if result.get("type") == "exception":
            msg = f"Firefox: script failed: {result['exceptionDetails'].get('text')}"
            raise AssertionError(msg)
        return json.loads(result["result"]["value"])

    def _helper(self, call: str) -> Any:
        result = self.bidi.send(
            "script.evaluate",
            expression=f"(() => {{ {HELPERS}; return JSON.stringify({call} ?? null); }})()",
            target={"context": self.context, "sandbox": "tests"},
            awaitPromise=False,
        )
        if result.get("type") == "exception":
            return None  # the DOM moved under us: try again
        return json.loads(result["result"]["value"])

    def wait(self, check: Callable[[], Any], what: str = "the page") -> Any:
        deadline = time.monotonic() + WAIT_SEC
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        body = self._helper("document.body.innerText.slice(0, 1500)")
        msg = f"Firefox: timed out waiting for {what}; the screen says:\n{body}"
        raise AssertionError(msg)

    def find(self, css: str, text: str | None = None, *, exact: bool = False) -> str:
        """Wait for a displayed element like WebKitPhone.find; its text."""
        args = f"{json.dumps(css)}, {json.dumps(text)}, {json.dumps(exact)}"
        found: str = self.wait(
            lambda: self._helper(f"(find({args}) || {{}}).innerText"),
            f"{css} {text or ''}".strip(),
        )
        return found

    def _node(self, call: str) -> str | None:
        """The shared id of the element ``call`` (helpers in scope) returns, or None."""
        result = self.bidi.send(
            "script.evaluate",
            expression=f"(() => {{ {HELPERS}; const el = {call}; "
            "if (el) el.scrollIntoView({ block: 'center' }); return el; })()",
            target={"context": self.context, "sandbox": "tests"},
            awaitPromise=False,
        )
        value = result.get("result", {})
        found: str | None = value.get("sharedId") if value.get("type") == "node" else None
        return found

    def _real_click(self, call: str) -> bool:
        """A real pointer click in the middle of the element (user activation included,
        which WebAuthn needs), not a script ``click()``."""
        node = self._node(call)
        if node is None:
            return False
        element = {"type": "element", "element": {"sharedId": node}}
        try:
            self.bidi.send(
                "input.performActions",
                context=self.context,
                actions=[{"type": "pointer", "id": "finger", "parameters": {"pointerType": "mouse"},
                          "actions": [{"type": "pointerMove", "x": 0, "y": 0, "origin": element},
                                      {"type": "pointerDown", "button": 0},
                                      {"type": "pointerUp", "button": 0}]}],
            )  # fmt: skip
        except RuntimeError:  # re-rendered or covered at that moment: try again
            return False
        return True

    def click(self, css: str, text: str | None = None, *, exact: bool = False) -> None:
        args = f"{json.dumps(css)}, {json.dumps(text)}, {json.dumps(exact)}"
        self.wait(lambda: self._real_click(f"find({args})"), f"{css} {text or ''} to click".strip())

    def type_into(self, label: str, text: str) -> None:
        call = f"(() => {{ const el = field({json.dumps(label)}); return el && type(el, {json.dumps(text)}); }})()"  # noqa: E501
        self.wait(lambda: self._helper(call), f"the field {label!r}")

    def choose(self, label: str) -> None:
        self.wait(lambda: self._real_click(f"field({json.dumps(label)})"), f"the choice {label!r}")

    def select(self, label: str, *, by_label: str) -> None:
        call = (
            f"(() => {{ const el = field({json.dumps(label)}); "
            f"return el && choose(el, {json.dumps(by_label)}); }})()"
        )
        self.wait(lambda: self._helper(call), f"{by_label!r} in {label!r}")

    def tab(self, name: str) -> None:
        self.click("#tabbar a", name)
        self.wait(lambda: self._helper("!document.querySelector('#view .loading')"), "the screen")

    def text(self, css: str) -> str:
        return self.find(css)

    def url(self) -> str:
        found: str = self._helper("location.href")
        return found

    def problems(self) -> list[str]:
        """Script errors, rejections, CSP violations and console errors seen so far."""
        self.bidi.send("browsingContext.getTree")  # a round trip: every earlier event is in
        found = []
        for event in self.bidi.events:
            params = event.get("params", {})
            if event.get("method") == "log.entryAdded" and params.get("level") == "error":
                found.append(str(params.get("text", ""))[:300])
        return found

    def forget_problems(self) -> None:
        self.bidi.events.clear()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may already be gone
            self.marionette.send("WebDriver:DeleteSession", {})
        self.bidi.close()
        self.marionette.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
