"""The phone app in the other two engines people use: WebKit (Safari, and every browser on
an iPhone) and Firefox, against a real relay and real agents. In each it loads as ES
modules, signs in with the recovery token, pairs an agent, runs an action and a log read with
live status over SSE, keeps task details in its encrypted IndexedDB cache and shows every
screen, with no script error and no CSP violation (R02, R06, R11, R19).

Passkey ceremonies are proven in Chromium (virtual authenticator); WebKitGTK ships without
passkeys (the app must say so) and Firefox's BiDi has no virtual authenticator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agents import AgentProcess, write_agent_config
from tests.browser import firefox, webkit
from tests.browser.phone import dump_logs
from tests.helpers import RelayProcess

pytestmark = pytest.mark.browser

DEVICE_RECORDS = """(async () => {
  const names = (await indexedDB.databases()).map((d) => d.name);
  if (!names.includes("codexrelay-device")) return { names, records: 0, sample: "" };
  const db = await new Promise((ok, fail) => {
    const req = indexedDB.open("codexrelay-device");
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
  let records = 0;
  let sample = "";
  for (const store of db.objectStoreNames) {
    const all = await new Promise((ok) => {
      const req = db.transaction(store).objectStore(store).getAll();
      req.onsuccess = () => ok(req.result);
    });
    records += all.length;
    for (const record of all) sample += JSON.stringify(record, (k, v) =>
      v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? `<${v.byteLength} bytes>` : v);
  }
  db.close();
  return { names, records, sample };
})()"""


@pytest.fixture(scope="module", params=["webkit", "firefox"])
def engine(request: pytest.FixtureRequest) -> str:
    """Which engine this round of tests runs in."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def phone(engine: str, relay: RelayProcess, module_dir: Path) -> Iterator[Any]:
    """One browser of that engine, at phone size, for this module's round."""
    module = webkit if engine == "webkit" else firefox
    why = module.missing()
    if why:
        pytest.fail(why)
    directory = module_dir / engine
    directory.mkdir(exist_ok=True)
    if engine == "webkit":
        screen = webkit.Screen()
        try:
            phone = webkit.WebKitPhone(screen, relay.setup.origin, directory / "driver.log")
            try:
                yield phone
            finally:
                phone.close()
        finally:
            screen.close()
    else:
        phone = firefox.FirefoxPhone(relay.setup.origin, directory)
        try:
            phone.add_passkey_authenticator()
            yield phone
        finally:
            phone.close()


@pytest.fixture(scope="module")
def signed_in(engine: str, phone: Any, relay: RelayProcess) -> Any:
    """The owner signed in with the recovery token."""
    phone.open("/")
    phone.find("h2", "Sign in")
    if engine == "webkit":
        phone.find(".warning", "This browser does not support passkeys.")
    else:
        phone.find("button", "Sign in with passkey")
    phone.click("summary", "Recovery token")
    phone.type_into("Recovery token", relay.setup.token)
    phone.click("button", "Sign in with recovery token")
    phone.find("#tabbar")
    phone.find("#first-sign-in", "First sign-in.")
    return phone


@pytest.fixture(scope="module")
def agent(engine: str, signed_in: Any, relay: RelayProcess, module_dir: Path) -> Iterator[str]:
    """An agent paired from this engine: code, command and QR shown, request approved live.
    Yields the agent's label."""
    phone = signed_in
    phone.tab("Agents")
    phone.click("a.button", "Pair an agent")
    phone.type_into("Note (optional)", engine)
    phone.click("button", "Create pairing code")
    command = phone.text(".command-text").strip()
    assert command.startswith("codexrelay agent pair --pair-code ")
    assert phone.evaluate("(() => { const i = document.querySelector('img.qr'); "
                          "return i.complete && i.naturalWidth; })()")  # fmt: skip
    directory = module_dir / engine / "agent"
    agent_id = f"{engine}box"
    config = write_agent_config(directory, relay.setup.base_url, agent_id=agent_id)
    process = AgentProcess(config, directory / "agent.log").start(*command.split()[2:])
    try:
        phone.find(".request-card", agent_id)
        phone.click(".request-card button", "Approve", exact=True)
        phone.tab("Agents")
        phone.find(".agent-card .presence", "Online")
    except AssertionError as exc:
        process.stop()
        raise AssertionError(f"{exc}\n{dump_logs(directory / 'agent.log')}") from None
    yield f"{agent_id} label"
    process.stop()


def run_from_ui(phone: Any, agent: str, kind: str, picker: str, choice: str) -> None:
    """New task -> agent, kind, one predefined item -> Run task -> wait for the end."""
    phone.tab("Tasks")
    phone.tab("New task")
    phone.select("Agent", by_label=agent)
    phone.choose(kind)
    phone.select(picker, by_label=choice)
    phone.click("button", "Run task")
    phone.wait(lambda: "#/tasks/tsk_" in phone.url(), "the task's screen")
    phone.find("dl.meta .status", "Completed")


def test_signs_in_with_the_recovery_token(signed_in: Any):
    """R02, O4: the app runs as ES modules; the recovery token signs the owner in, in a
    secure context with WebCrypto and IndexedDB."""
    found = signed_in.evaluate(
        "[window.isSecureContext, typeof crypto.subtle, typeof indexedDB, typeof EventSource]"
    )
    assert found == [True, "object", "object", "function"]
    assert signed_in.problems() == []


def test_error_watch_sees_script_errors(signed_in: Any):
    """The "no script error" checks here can fail: a thrown error and a console error on
    the page are both seen."""
    signed_in.evaluate("(setTimeout(() => { throw new Error('thrown-canary'); }), 0)")
    signed_in.evaluate("(console.error('console-canary'), 0)")
    seen = signed_in.wait(lambda: len(signed_in.problems()) >= 2 and signed_in.problems())
    assert any("thrown-canary" in p for p in seen), seen
    assert any("console-canary" in p for p in seen), seen
    # An engine may report the same error twice (our listener and its own log): let every
    # report arrive before forgetting them.
    last = None
    while (now := signed_in.problems()) != last:
        last = now
        time.sleep(0.5)
    signed_in.forget_problems()


def test_runs_an_action_and_a_log_read(signed_in: Any, agent: str):
    """R06, R15, R11: run an action and a log read, see their output arrive live, and keep
    the details in the encrypted device cache (IndexedDB + AES-GCM), never in plain text."""
    phone = signed_in
    run_from_ui(phone, agent, "Action", "Which action", "Say hello")
    assert "hello" in phone.text("pre.output-tail")
    run_from_ui(phone, agent, "Log", "Which log", "App log")
    assert "line 500" in phone.text("pre.output-tail")
    cache = phone.wait(lambda: (c := phone.evaluate(DEVICE_RECORDS))["records"] >= 2 and c,
                       "two tasks in the device cache")  # fmt: skip
    assert "hello" not in cache["sample"], "the device cache holds plain text"
    assert "line 500" not in cache["sample"], "the device cache holds plain text"
    assert phone.problems() == []


def test_passkey_made_here_signs_the_owner_in(engine: str, signed_in: Any):
    """R02, R05: in Firefox a passkey created in Settings (purpose-tagged challenge, user
    verification) signs the owner in again after signing out. WebKitGTK ships without
    WebAuthn: there the app says so rather than offer a button that cannot work."""
    phone = signed_in
    phone.tab("Settings")
    if engine == "webkit":
        phone.find(".warning", "This browser does not support passkeys.")
        return
    phone.type_into("Name for a new passkey", "Firefox")
    phone.click("button", "Create a passkey on this device")
    phone.find(".passkey-card", "Firefox")
    phone.click("button", "Sign out", exact=True)
    phone.find("h2", "Sign in")
    phone.click("button", "Sign in with passkey")
    phone.find("#tabbar")
    me = phone.evaluate("fetch('/api/v1/me').then((r) => r.json())")
    assert (me["session"]["via"], me["session"]["isRecovery"]) == ("passkey", False), me
    assert phone.problems() == []


MARKDOWN = (
    "import('/js/markdown.js').then((m) => { const d = document.createElement('div');"
    " d.append(m.renderMarkdown('**bold** and `code`\\n\\n<img src=x onerror=alert(1)>"
    "<script>window.pwned=1</script> [link](javascript:alert(1))')); return d.innerHTML; })"
)


def test_renders_codex_markdown_safely(signed_in: Any):
    """The vendored Markdown libraries (marked, DOMPurify) load as ES modules in this engine
    too: Codex's Markdown renders, and images, scripts and javascript: links are gone; the
    Conversations screen opens."""
    html = signed_in.evaluate(MARKDOWN)
    assert "<strong>bold</strong>" in html, html
    assert "<code>code</code>" in html, html
    for unsafe in ("<img", "<script", "javascript:", "onerror"):
        assert unsafe not in html, html
    assert signed_in.evaluate("window.pwned === undefined") is True
    signed_in.tab("Chats")
    signed_in.find("h2.screen-title", "Conversations")
    assert signed_in.problems() == []


def test_shows_every_screen(signed_in: Any, agent: str):
    """R19: every main screen renders, without a script error or CSP violation."""
    phone = signed_in
    for tab in ("Tasks", "Agents", "New task", "People", "Settings"):
        phone.tab(tab)
        phone.find("h2.screen-title", tab)
    phone.click("#workspace-switcher")
    phone.find("h2.screen-title", "Workspaces")
    phone.find(".workspace-choice[aria-current]", "Default")
    phone.tab("Agents")
    phone.find(".agent-card", "Say hello")
    phone.tab("People")
    phone.click("a.button", "Open the audit trail")
    phone.find(".audit-card", "pairing.created")
    phone.tab("Tasks")
    phone.click(".task-card", "Say hello")
    phone.find("pre.output-tail", "hello")
    assert phone.problems() == []
    phone.tab("Settings")
    phone.click("button", "Sign out", exact=True)
    phone.find("h2", "Sign in")
    assert phone.problems() == []
