"""The phone app in WebKit (Safari's engine, and every iPhone browser's), against a real
relay and a real agent: it loads as ES modules, signs in with the recovery token, pairs an
agent, runs an action and a log read with live status over SSE, keeps task details in its
encrypted IndexedDB cache, and shows every screen, with no script error (R02, R06, R11, R19).

WebKitGTK ships without passkeys, so passkey ceremonies are proven in Chromium only; here
the app must say so and still offer the recovery-token sign-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents import AgentProcess, write_agent_config
from tests.browser.phone import dump_logs
from tests.browser.webkit import Screen, WebKitPhone, missing
from tests.helpers import RelayProcess

pytestmark = pytest.mark.browser

DEVICE_RECORDS = """
const done = arguments[arguments.length - 1];
(async () => {
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
    if (all.length && !sample) sample = JSON.stringify(all[0], (k, v) =>
      v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? `<${v.byteLength} bytes>` : v);
  }
  db.close();
  return { names, records, sample };
})().then(done, (err) => done({ error: String(err) }));
"""


@pytest.fixture(scope="module")
def phone(relay: RelayProcess, module_dir: Path) -> Iterator[WebKitPhone]:
    """One WebKit browser on its own X screen for this module."""
    why = missing()
    if why:
        pytest.fail(why)
    screen = Screen()
    try:
        phone = WebKitPhone(screen, relay.setup.origin, module_dir / "webkitdriver.log")
        try:
            yield phone
        finally:
            phone.close()
    finally:
        screen.close()


@pytest.fixture(scope="module")
def signed_in(phone: WebKitPhone, relay: RelayProcess) -> WebKitPhone:
    """The owner signed in with the recovery token (WebKitGTK has no passkeys)."""
    phone.open("/")
    phone.find("h2", "Sign in")
    phone.find(".warning", "This browser does not support passkeys.")
    phone.click("summary", "Recovery token")
    phone.field("Recovery token").send_keys(relay.setup.token)
    phone.click("button", "Sign in with recovery token")
    phone.find("#tabbar")
    return phone


@pytest.fixture(scope="module")
def devbox(signed_in: WebKitPhone, relay: RelayProcess, module_dir: Path) -> Iterator[AgentProcess]:
    """An agent paired from WebKit: code, command and QR shown, request approved live."""
    phone = signed_in
    phone.tab("Agents")
    phone.click("a.button", "Pair an agent")
    phone.field("Note (optional)").send_keys("webkit")
    phone.click("button", "Create pairing code")
    command = phone.text(".command-text").strip()
    assert command.startswith("codexrelay agent pair --pair-code ")
    assert phone.driver.execute_script(
        "const img = document.querySelector('img.qr'); return img.complete && img.naturalWidth"
    )
    directory = module_dir / "devbox"
    config = write_agent_config(directory, relay.setup.base_url, agent_id="devbox")
    agent = AgentProcess(config, directory / "agent.log").start(*command.split()[2:])
    try:
        phone.find(".request-card", "devbox")
    except AssertionError as exc:
        agent.stop()
        raise AssertionError(f"{exc}\n{dump_logs(directory / 'agent.log')}") from None
    phone.click(".request-card button", "Approve", exact=True)
    phone.tab("Agents")
    phone.find(".agent-card .presence", "Online")
    yield agent
    agent.stop()


def run_from_ui(phone: WebKitPhone, kind: str, picker: str, choice: str) -> None:
    """New task -> agent, kind, one predefined item -> Run task -> wait for the end."""
    phone.tab("Tasks")
    phone.tab("New task")
    phone.select("Agent", by_label="devbox label")
    phone.press(phone.field(kind))
    phone.select(picker, by_label=choice)
    phone.click("button", "Run task")
    phone.wait(lambda: "#/tasks/tsk_" in phone.driver.current_url, "the task's screen")
    phone.find("dl.meta .status", "Completed")


def test_webkit_signs_in_with_the_recovery_token(signed_in: WebKitPhone):
    """R02, O4: the app runs as ES modules in WebKit; with no passkeys in the browser it
    says so and the recovery token still signs the owner in."""
    secure = signed_in.driver.execute_script(
        "return [window.isSecureContext, typeof crypto.subtle, typeof indexedDB]"
    )
    assert secure == [True, "object", "object"]
    assert signed_in.problems() == []


def test_webkit_error_watch_sees_script_errors(signed_in: WebKitPhone):
    """The "no script error" checks here can fail: a thrown error and a console error on
    the page are both seen."""
    driver = signed_in.driver
    driver.execute_script("setTimeout(() => { throw new Error('thrown-canary'); })")
    driver.execute_script("console.error('console-canary')")
    seen = signed_in.wait(lambda: len(signed_in.problems()) >= 2 and signed_in.problems())
    assert any("thrown-canary" in p for p in seen), seen
    assert any("console-canary" in p for p in seen), seen
    driver.execute_script("window.__problems.length = 0")


def test_webkit_runs_an_action_and_a_log_read(signed_in: WebKitPhone, devbox: AgentProcess):
    """R06, R15, R11: pair from WebKit, run an action and a log read, see their output
    arrive live, and keep the details in the encrypted device cache (IndexedDB + AES-GCM)."""
    phone = signed_in
    run_from_ui(phone, "Action", "Which action", "Say hello")
    assert "hello" in phone.text("pre.output-tail")
    run_from_ui(phone, "Log", "Which log", "App log")
    assert "line 500" in phone.text("pre.output-tail")
    cache = phone.driver.execute_async_script(DEVICE_RECORDS)
    assert cache.get("records", 0) >= 2, cache
    assert "hello" not in cache["sample"], "the device cache holds plain text"
    assert "line 500" not in cache["sample"], "the device cache holds plain text"
    assert phone.problems() == []


def test_webkit_shows_every_screen(signed_in: WebKitPhone, devbox: AgentProcess):
    """R19: every main screen renders in WebKit, without a script error or CSP violation."""
    phone = signed_in
    screens = {"Tasks": "Tasks", "Agents": "Agents", "New task": "New task",
               "People": "People", "Settings": "Settings"}  # fmt: skip
    for tab, title in screens.items():
        phone.tab(tab)
        phone.find("h2.screen-title", title)
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
