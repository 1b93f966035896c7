"""Phones read sealed tasks (TRUST.md §4.5, §4.7, §8) in real Chromium profiles, each with
its own IndexedDB device keys and virtual passkey, against the relay app and a real agent
process: the owner, a member and a viewer read the same task (title, prompt, output, exit
code) from envelopes only they can open; a revoked device gets nothing new; a device
certified after a task asks the agent for its key and then reads it; a tampered envelope
shows "Output incomplete" and none of the content."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests import sealkit
from tests.browser.phone import Phone, go, in_page_storage
from tests.browser.sealworld import AGENT, AGENT_LABEL, SealedWorld, flip, start, stop, wrapped_to
from tests.helpers import wait_until
from tests.trustkit import TrustedPhone

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[SealedWorld]:
    """The relay and agent; after ``browser`` so its profiles close before Chromium."""
    del browser
    found = start(Path(tmp_path_factory.mktemp("sealed-read")))
    yield found
    stop(found)


@pytest.fixture(scope="module")
def readers(world: SealedWorld, browser: Browser) -> dict[str, tuple[TrustedPhone, Phone]]:
    """Three browser profiles, each a person of the log with its own certified device."""
    found: dict[str, tuple[TrustedPhone, Phone]] = {}
    owner_phone = world.browser(browser, world.browser_passkey(world.owner), "owner")
    found["owner"] = (world.owner, owner_phone)
    for role, name in (("member", "Mia"), ("viewer", "Vic")):
        person = world.person(role, name)
        found[role] = (person, world.browser(browser, person.credential, role))
    for _, phone in found.values():
        world.add_device(phone)
    return found


def _open_task(phone: Phone, title: str) -> None:
    go(phone, "Tasks")
    card = phone.page.locator(".task-card", has_text=title)
    expect(card).to_be_visible()
    card.click()
    expect(phone.page).to_have_url(re.compile(r"#/tasks/[0-9a-f-]{36}$"))


def test_owner_member_and_viewer_read_the_same_sealed_task(
    world: SealedWorld, readers: dict[str, Any], tmp_path: Path
):
    """Every reader device decrypts the prompt's first line as the list title and the
    whole task on its page, verified from the agent; the relay's copy has none of it."""
    mark = uuid.uuid4().hex[:12]
    first = f"Summarise {mark} in src/{'very' * 15}/long/path.py"  # wraps, never widens
    prompt = f"{first}\nsecond line {mark}\nFAKE: message said-{mark}"
    task_id, items = world.run(prompt)
    devices = {world.device_of(p.user_id) for p, _ in readers.values()}
    assert devices <= wrapped_to(items), "the agent wraps the key to every reader device"
    relay_copy = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/tasks/{task_id}").text
    assert mark not in relay_copy
    for role, (_, phone) in readers.items():
        page = phone.page
        _open_task(phone, f"Summarise {mark}")
        expect(page.locator(".screen-title")).to_have_text(first)
        expect(page.locator(".sealed-badge")).to_have_text(f"Sealed · verified from {AGENT_LABEL}")
        expect(page.locator("pre.prompt")).to_have_text(prompt)
        expect(page.locator(".final-message")).to_contain_text(f"said-{mark}")
        expect(page.locator("dl.meta")).to_contain_text("Exit code0")
        expect(page.locator(".output-incomplete")).to_have_count(0)
        signer = "you" if role == "owner" else world.owner.name
        expect(page.locator(".sealed-signer")).to_have_text(
            f"End-to-end encrypted · signed by {signer}"
        )
        if role == "viewer":
            phone.at_phone_widths()
            phone.screenshot("45-sealed-task-viewer", tmp_path)
        phone.assert_clean()


def test_a_running_sealed_task_updates_live_from_envelope_events(
    world: SealedWorld, readers: dict[str, Any]
):
    """The page opens while the agent has sent nothing yet; the relay's envelope list
    stays empty (only the submission), so the output can only come from the live
    ``envelope`` events, each opened in order as it arrives."""
    _, phone = readers["member"]
    page = phone.page
    go(phone, "Tasks")
    mark = uuid.uuid4().hex[:12]

    def blank(path: str, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "envelopes": []} if path.endswith("/envelopes") else data

    world.relay.attack.http[f"/api/v1/workspaces/{world.wid}/tasks/"] = blank
    try:
        stmt, body = world.owner.task(
            world.book,
            AGENT,
            "codex_exec",
            prompt=f"Live {mark}\nFAKE: sleep 8\nFAKE: message live-{mark}",
        )
        world.sync()
        request, _ = sealkit.seal(
            world.owner, sealkit.verified_view(world.owner, world.book), stmt, body
        )
        assert sealkit.submit(world.owner, world.wid, request).status_code == 201
        page.locator(f'li[data-task-id="{stmt["task"]}"] .task-card').click()
        expect(page.locator(".key-request")).to_contain_text("Waiting for")
        expect(page.locator(".final-message")).to_contain_text(f"live-{mark}", timeout=30_000)
        expect(page.locator("pre.prompt")).to_contain_text(f"Live {mark}")
        expect(page.locator("dl.meta .status")).to_have_text(re.compile("Completed", re.I))
        expect(page.locator(".sealed-badge")).to_contain_text("verified from")
        expect(page.locator(".output-incomplete")).to_have_count(0)
    finally:
        world.relay.attack.http.clear()


def test_decrypted_texts_are_cached_only_encrypted(world: SealedWorld, readers: dict[str, Any]):
    """What a phone decrypted is kept in the device cache as AES-GCM records: the
    prompt's mark appears nowhere in IndexedDB or web storage in plain, and the page shows
    that copy once the relay's envelopes are gone."""
    mark = uuid.uuid4().hex[:12]
    task_id, _ = world.run(f"Cache {mark}\nFAKE: message cached-{mark}")
    _, phone = readers["member"]
    _open_task(phone, f"Cache {mark}")
    expect(phone.page.locator(".final-message")).to_contain_text(f"cached-{mark}")
    stored = phone.page.evaluate(
        """async () => {
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
            const text = (b) => Array.from(new Uint8Array(b), (c) => String.fromCharCode(c))
                .join('');
            return { count: all.length, bytes: all.map((r) => text(r.ct)).join(''),
                     web: JSON.stringify(localStorage) + JSON.stringify(sessionStorage) };
        }"""
    )
    assert stored["count"] >= 1, "the decrypted task was kept on the device"
    assert mark not in stored["bytes"]
    assert mark not in stored["web"]
    # Once the relay no longer holds the envelopes, the page shows this device's copy.
    gone = {"submission": None, "envelopes": [], "expired": True}
    world.relay.attack.http[f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/envelopes"] = (
        lambda _path, _data: gone
    )
    try:
        phone.page.reload()
        expect(phone.page.locator(".cache-notice")).to_contain_text("copy saved on this device")
        expect(phone.page.locator(".final-message")).to_contain_text(f"cached-{mark}")
        expect(phone.page.locator("pre.prompt")).to_contain_text(f"Cache {mark}")
    finally:
        world.relay.attack.http.clear()


def test_a_revoked_device_cannot_read_new_sealed_tasks(world: SealedWorld, readers: dict[str, Any]):
    """The owner revokes the viewer's browser device in the log: the agent no longer wraps
    keys to it, the page says the task cannot be read on this device, and the device
    deletes what it had decrypted of earlier sealed tasks."""
    person, phone = readers["viewer"]
    assert in_page_storage(phone)["records"] >= 1, "the viewer kept what it read earlier"
    device = world.device_of(person.user_id)
    world.sync()
    world.owner.add(world.book, "device.revoke", {"userId": person.user_id, "deviceId": device})
    mark = uuid.uuid4().hex[:12]
    task_id, items = world.run(f"After revoking {mark}\nFAKE: message hidden-{mark}")
    assert device not in wrapped_to(items)
    page = phone.page
    page.goto(f"{phone.origin}/#/tasks/{task_id}")
    expect(page.locator(".cannot-read")).to_contain_text("cannot be read on this device")
    expect(page.locator("#view")).not_to_contain_text(mark)
    go(phone, "Tasks")
    expect(page.locator(".reader-banner")).to_contain_text(
        "removed from the workspace's signed log"
    )
    expect(page.locator(".task-card", has_text=mark)).to_have_count(0)
    wait_until(
        lambda: in_page_storage(phone)["records"] == 0,
        timeout=20,
        what="the revoked device deleting what it had decrypted",
    )


def test_a_device_added_later_reads_an_older_task_through_a_key_request(
    world: SealedWorld, browser: Browser, tmp_path: Path
):
    """A task runs; then Lee joins and opens it on a new phone. The device is certified
    there, asks the agent (device-signed key.req), and the agent's key.wrap opens it."""
    mark = uuid.uuid4().hex[:12]
    task_id, items = world.run(f"History {mark}\nFAKE: message before-lee-{mark}")
    lee = world.person("member", "Lee")
    phone = world.browser(browser, lee.credential, "lee")
    page = phone.page
    page.goto(f"{phone.origin}/#/tasks/{task_id}")
    notice = page.locator(".cannot-read")
    expect(notice).to_contain_text("not in the workspace's signed log yet")
    notice.get_by_role("button", name="Add this device to read sealed tasks").click()
    expect(page.locator(".final-message")).to_contain_text(f"before-lee-{mark}")
    expect(page.locator("pre.prompt")).to_contain_text(f"History {mark}")
    expect(page.locator(".sealed-badge")).to_have_text(f"Sealed · verified from {AGENT_LABEL}")
    device = world.device_of(lee.user_id)
    assert device not in wrapped_to(items), "the task was sealed before the device existed"
    phone.screenshot("46-sealed-key-request", tmp_path)
    phone.assert_clean()


def test_a_tampered_envelope_shows_incomplete_output_and_no_content(
    world: SealedWorld, readers: dict[str, Any], tmp_path: Path
):
    """A relay that changes one byte of the submission and of the agent's first envelope
    gets the page to show "Output incomplete" with its counters, and neither the prompt
    nor the output."""
    mark = uuid.uuid4().hex[:12]
    task_id, _ = world.run(f"Tamper {mark}\nFAKE: message secret-{mark}")
    path = f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/envelopes"

    def tamper(_path: str, data: dict[str, Any]) -> dict[str, Any]:
        stream = list(data["envelopes"])
        if stream and stream[0]["index"] == 0:
            stream[0] = {**stream[0], "envelope": flip(stream[0]["envelope"])}
        return {**data, "submission": flip(data["submission"]), "envelopes": stream}

    world.relay.attack.http[path] = tamper
    try:
        _, phone = readers["member"]
        page = phone.page
        page.goto(f"{phone.origin}/#/tasks/{task_id}")
        incomplete = page.locator(".output-incomplete")
        expect(incomplete).to_contain_text("Output incomplete")
        expect(incomplete).to_contain_text(re.compile(r"0 verified, \d+ missing or out of order"))
        expect(page.locator(".sealed-badge")).to_have_text("Sealed")
        expect(page.locator("#view")).not_to_contain_text(mark)
        expect(page.locator("pre.prompt")).to_have_count(0)
        phone.screenshot("47-sealed-output-incomplete", tmp_path)
    finally:
        world.relay.attack.http.clear()


def test_the_sealed_session_catalog_opens_on_a_reader_device(
    world: SealedWorld, readers: dict[str, Any]
):
    """The relay's session list is empty in a sealed workspace; the phone opens the
    agent's signed catalog envelope with its own device key and lists the session, whose
    preview holds the prompt."""
    mark = uuid.uuid4().hex[:12]
    world.run(f"Session {mark}\nFAKE: message done")
    plain = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/agents/{AGENT}/sessions")
    assert plain.json()["sessions"] == []
    _, phone = readers["owner"]
    page = phone.page
    page.goto(f"{phone.origin}/#/agents/{AGENT}/sessions")
    expect(page.locator(".session-card", has_text=mark).first).to_be_visible(timeout=40_000)
    expect(page.locator("#view [role=status]").first).to_contain_text("sealed, verified")
