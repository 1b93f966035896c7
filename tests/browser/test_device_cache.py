"""Task details cached on the phone (R11), encrypted per user and per device (B5): the
relay's copy expires, the device's copy stays readable to its user on that device only, and
"Clear data" removes everything (I6)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.browser.phone import Phone, go, in_page_storage, owner_phone, sign_out
from tests.helpers import RelayProcess, wait_until, write_relay_config

pytestmark = pytest.mark.browser

READ_RAW = """async () => {
    const db = await new Promise((ok, fail) => {
        const req = indexedDB.open('codexrelay-device');
        req.onsuccess = () => ok(req.result);
        req.onerror = () => fail(req.error);
    });
    const all = await new Promise((ok) => {
        const req = db.transaction('details').objectStore('details').getAll();
        req.onsuccess = () => ok(req.result);
    });
    db.close();
    return all;
}"""

# Try every record on this device with the signed-in user's keys, through the app's own
# code: the relay's key alone, then with this device's own key for that user.
DECRYPT_ALL = """async () => {
    const cache = await import('/js/cache.js');
    const passkey = await import('/js/passkey.js');
    const { key } = await (await fetch('/api/v1/me/cache-key')).json();
    const me = await (await fetch('/api/v1/me')).json();
    const keys = await cache.deriveKeys(passkey.toBytes(key));
    const records = await (READ_RAW)();
    const relayKeyAlone = [];
    for (const record of records) relayKeyAlone.push(await cache.decryptRecord(keys, record));
    keys.device = await cache.deviceKey(me.user.id);
    const opened = [];
    for (const record of records) opened.push(await cache.decryptRecord(keys, record));
    return { key, opened, relayKeyAlone };
}""".replace("(READ_RAW)", f"({READ_RAW})")


@pytest.fixture(scope="module")
def relay(module_dir: Path) -> Iterator[RelayProcess]:
    """A relay with its defaults: write mode off on the relay side (R17)."""
    proc = RelayProcess(write_relay_config(module_dir / "relay"), module_dir / "relay.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agent(relay: RelayProcess, module_dir: Path) -> Iterator[AgentProcess]:
    """An agent in the Default workspace, paired over the API."""
    client = relay.login()
    try:
        process = pair_agent(relay, client, default_workspace(client), module_dir / "agent")
    finally:
        client.close()
    yield process
    process.stop()


@pytest.fixture
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    """A fresh owner phone for each test: every test here changes the device's storage."""
    phone = owner_phone(browser, relay)
    yield phone
    phone.assert_clean()
    phone.close()


def run_hello(phone: Phone) -> str:
    """Run the "Say hello" action from the UI, see its output, and return the task id."""
    page = phone.page
    go(phone, "Tasks")
    go(phone, "New task")
    agent = page.get_by_label("Agent", exact=True)
    expect(agent.locator("option", has_text="devbox label")).not_to_contain_text("offline")
    agent.select_option(value="devbox")
    page.get_by_label("Codex", exact=True).check()
    # R17: the relay's default forbids write mode, and the switch says so.
    expect(page.locator("#write-note")).to_have_text("Write mode is off on the relay.")
    page.get_by_label("Action", exact=True).check()
    page.get_by_label("Which action").select_option(label="Say hello")
    page.get_by_role("button", name="Run task").click()
    expect(page).to_have_url(re.compile(r"#/tasks/tsk_"))
    expect(page.locator("pre.output-tail")).to_contain_text("hello")
    return page.url.rsplit("/", 1)[-1]


def open_task(phone: Phone, task_id: str) -> None:
    """Open a task from the task list, as a person would."""
    go(phone, "Tasks")
    phone.page.locator(f'[data-task-id="{task_id}"] a').click()


def test_second_user_cannot_read_the_first_users_cache(
    browser: Browser, relay: RelayProcess, owner: Phone, agent: AgentProcess
):
    """B5: on a shared browser a second user finds the first user's cached details but can
    neither locate nor decrypt them, nor can anyone once the first user signed out; the first
    user could."""
    page = owner.page
    task_id = run_hello(owner)
    wait_until(lambda: in_page_storage(owner)["records"] >= 1, what="a cached record")
    own = page.evaluate(f"async () => (await import('/js/cache.js')).loadTask('{task_id}')")
    assert "hello" in own["task"]["outputTail"]
    first = page.evaluate(DECRYPT_ALL)
    assert any(o and o["task"]["id"] == task_id for o in first["opened"])
    # The relay's key alone (what the relay could hand anyone) opens nothing on the device.
    assert first["relayKeyAlone"] == [None] * len(first["relayKeyAlone"])
    for record in page.evaluate(READ_RAW):
        assert task_id not in record["k"], "record names must not reveal task ids"

    client = relay.login()
    try:
        made = client.post("/api/v1/workspaces", json={"name": "Team B"}).json()["workspace"]
        res = client.post(f"/api/v1/workspaces/{made['id']}/invites", json={"role": "member"})
        url = res.json()["url"]
    finally:
        client.close()
    sign_out(owner)
    # Signed out, the phone holds the records but not the key, and the relay will not give it.
    assert (
        page.evaluate(f"async () => (await import('/js/cache.js')).loadTask('{task_id}')") is None
    )
    assert owner.fetch_json("/api/v1/me/cache-key")["status"] == 401
    owner.swap_authenticator()  # the second person's passkey lives on their own key
    owner.open(url.removeprefix(relay.setup.origin))
    page.get_by_label("Your name").fill("Bea")
    page.get_by_role("button", name="Accept invite").click()
    page.get_by_role("button", name="Create passkey").click()
    expect(page.locator("#workspace-name")).to_contain_text("Team B")

    second = page.evaluate(DECRYPT_ALL)
    assert second["key"] != first["key"]
    assert len(second["opened"]) >= 1, "the first user's record is still on the device"
    assert second["opened"] == [None] * len(second["opened"])
    mine = page.evaluate(f"async () => (await import('/js/cache.js')).loadTask('{task_id}')")
    assert mine is None
    page.evaluate(f"location.hash = '#/tasks/{task_id}'")
    expect(page.get_by_role("alert")).to_contain_text("No such task.")


def test_expired_details_come_from_the_device_until_cleared(
    relay: RelayProcess, owner: Phone, agent: AgentProcess, tmp_path: Path
):
    """R10, R11, I6: after a relay restart the relay no longer holds the details and the
    phone shows its encrypted copy; "Clear data" deletes IndexedDB, caches, the service
    worker and web storage, after which the details are gone from the device too."""
    page = owner.page
    task_id = run_hello(owner)
    wait_until(lambda: in_page_storage(owner)["records"] >= 1, what="a cached record")
    stored = page.evaluate(READ_RAW)
    assert all("hello" not in str(r) for r in stored), "cached details are stored in the clear"

    page.goto("about:blank")  # no open stream while the relay is down
    relay.stop()
    relay.start()
    owner.open("/")
    expect(page.locator("#tabbar")).to_be_visible()
    open_task(owner, task_id)
    expect(page.locator(".cache-notice")).to_contain_text("Showing the copy saved on this device")
    expect(page.locator("pre.output-tail")).to_contain_text("hello")
    assert owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/tasks/{task_id}")["body"]["task"][
        "detailsExpired"
    ]
    owner.screenshot("10-cached-task", tmp_path)

    go(owner, "Settings")
    expect(owner.page.locator("#view .loading")).to_have_count(0)
    flags = page.get_by_role("list", name="Relay features")
    expect(flags.locator("li", has_text="Write-mode Codex tasks")).to_contain_text("off")
    expect(flags.locator("li", has_text="Predefined actions")).to_contain_text("on")
    owner.screenshot("11-settings", tmp_path)
    page.get_by_role("button", name="Clear data on this device").click()
    page.locator("#confirm").get_by_role("button", name="Clear data").click()
    expect(page.get_by_text("Cleared: cached task details")).to_be_visible()
    storage = in_page_storage(owner)
    assert "codexrelay-device" not in storage["databases"]
    assert storage["caches"] == []
    assert storage["workers"] == 0
    assert storage["local"] == storage["session"] == 0

    open_task(owner, task_id)
    expect(page.locator(".cache-notice")).to_contain_text("no copy is saved on this device")
    expect(page.locator("pre.output-tail")).to_have_count(0)


def _wid(phone: Phone) -> str:
    return str(phone.fetch_json("/api/v1/me")["body"]["memberships"][0]["workspaceId"])
