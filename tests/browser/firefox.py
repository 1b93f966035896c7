"""A phone in Firefox: Debian's firefox-esr, headless, driven over WebDriver BiDi.

Firefox speaks BiDi itself (no geckodriver, which Debian does not ship): a small synchronous
client over ``websockets`` is enough. A preload script watches for script errors and CSP
violations from the first line of the app on; the page is driven with DOM events from a
sandboxed script realm, so the app's own globals are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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


def missing() -> str | None:
    """Why Firefox cannot run here, or None."""
    if not FIREFOX.exists():
        return f"{FIREFOX} is missing: run scripts/ensure-browsers.sh (make test runs it)"
    return None


class Bidi:
    """Commands and events over one BiDi WebSocket."""

    def __init__(self, url: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(f"{url}/session", max_size=None)
        )
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
                [str(FIREFOX), "--headless", "--no-remote", "--profile", str(profile),
                 "--remote-debugging-port", "0", "--window-size", "390,844", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"},
            )  # fmt: skip
        try:
            self.bidi = Bidi(self._listening())
            self.bidi.send("session.new", capabilities={})
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

    def _listening(self) -> str:
        deadline = time.monotonic() + WAIT_SEC * 2
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        msg = f"Firefox did not start its BiDi server:\n{self.log_path.read_text()[-2000:]}"
        raise RuntimeError(msg)

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

    def click(self, css: str, text: str | None = None, *, exact: bool = False) -> None:
        args = f"{json.dumps(css)}, {json.dumps(text)}, {json.dumps(exact)}"
        call = f"(() => {{ const el = find({args}); return el && press(el); }})()"
        self.wait(lambda: self._helper(call), f"{css} {text or ''} to click".strip())

    def type_into(self, label: str, text: str) -> None:
        call = f"(() => {{ const el = field({json.dumps(label)}); return el && type(el, {json.dumps(text)}); }})()"  # noqa: E501
        self.wait(lambda: self._helper(call), f"the field {label!r}")

    def choose(self, label: str) -> None:
        call = f"(() => {{ const el = field({json.dumps(label)}); return el && press(el); }})()"
        self.wait(lambda: self._helper(call), f"the choice {label!r}")

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
            self.bidi.send("session.end")
        self.bidi.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
