"""Notifications on a real phone browser: Settings turns them on, chooses kinds, lists
devices and sends a test; a push the relay sent reaches the service worker, which shows a
generic title, and a tap opens the exact screen (the pairing request, the finished task)
in the right workspace.

Chromium cannot subscribe through the real Push API offline (it needs Google's push
service), so the page's PushManager hands out a subscription of the loopback stand-in
(the edge we do not own), and the relay's real, decrypted payloads are handed to the
service worker with CDP ``ServiceWorker.deliverPushMessage``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.browser.phone import Phone, add_passkey, go, passkey_sign_in, recovery_sign_in, sign_out
from tests.fakes.push_service import Device, PushServiceStandIn
from tests.helpers import RelayProcess, wait_until, write_relay_config

pytestmark = pytest.mark.browser

# The page's PushManager, as a browser with a push service would give it (offline here).
PUSH_MANAGER = """
(() => {
  const device = %s;
  let current = null;
  const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')
    + '='.repeat((4 - (s.length %% 4)) %% 4)), (c) => c.charCodeAt(0));
  const make = (options) => ({
    endpoint: device.endpoint,
    expirationTime: null,
    options: { userVisibleOnly: true, applicationServerKey: options.applicationServerKey.buffer },
    toJSON: () => ({ endpoint: device.endpoint, expirationTime: null, keys: device.keys }),
    getKey: (name) => bytes(device.keys[name]).buffer,
    unsubscribe: async () => { current = null; return true; },
  });
  PushManager.prototype.subscribe = async function (options) {
    current = make(options);
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""
NOTIFICATIONS = """async () => (await (await navigator.serviceWorker.ready).getNotifications())
    .map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }))"""
TAP = """async (tag) => {
  const [shown] = await self.registration.getNotifications({ tag });
  // A tap: the same event the notification centre sends (waitUntil refuses an untrusted
  // event, the handler's work goes on).
  self.dispatchEvent(new NotificationEvent('notificationclick', { notification: shown }));
}"""


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushServiceStandIn]:
    service = PushServiceStandIn().start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def relay(module_dir: Path) -> Iterator[RelayProcess]:
    """A relay allowed to send to the loopback stand-in."""
    setup = write_relay_config(
        module_dir / "relay", push={"allowedHosts": ["127.0.0.1"], "coalesceSec": 0.2}
    )
    proc = RelayProcess(setup, module_dir / "relay.log").start()
    yield proc
    proc.stop()


class PushPhone:
    """The owner's phone, with notification permission and the stand-in's PushManager,
    watching its service worker registrations over CDP."""

    def __init__(self, browser: Browser, relay: RelayProcess, device: Device) -> None:
        self.phone = Phone(browser, relay, name="push")
        self.device = device
        context = self.phone.context
        context.grant_permissions(["notifications"], origin=relay.setup.origin)
        context.add_init_script(PUSH_MANAGER % json.dumps(device.subscription_json()))
        self.registrations: dict[str, str] = {}
        cdp = self.phone.cdp
        cdp.on("ServiceWorker.workerRegistrationUpdated", self._registered)
        cdp.send("ServiceWorker.enable")

    def _registered(self, event: dict[str, Any]) -> None:
        for reg in event["registrations"]:
            if not reg["isDeleted"]:
                self.registrations[reg["scopeURL"]] = reg["registrationId"]

    def deliver(self, payload: bytes) -> None:
        """What the browser's push service connection does with a message for this app."""
        origin = self.phone.origin
        wait_until(lambda: self.registrations.get(f"{origin}/"), what="the service worker")
        self.phone.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": origin,
                "registrationId": self.registrations[f"{origin}/"],
                "data": payload.decode("utf-8"),
            },
        )

    def notifications(self) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = self.phone.page.evaluate(NOTIFICATIONS)
        return shown

    def shown(self, tag: str) -> dict[str, Any]:
        return wait_until(
            lambda: next((n for n in self.notifications() if n["tag"] == tag), None),
            what=f"a notification tagged {tag}",
        )

    def tap(self, tag: str) -> None:
        (worker,) = self.phone.context.service_workers
        worker.evaluate(TAP, tag)


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess, push_service) -> Iterator[PushPhone]:
    """The owner, signed in with a passkey, notifications not yet turned on."""
    push = PushPhone(browser, relay, push_service.new_device())
    phone = push.phone
    phone.open("/")
    recovery_sign_in(phone)
    add_passkey(phone, "Owner phone")
    sign_out(phone)
    passkey_sign_in(phone)
    yield push
    phone.assert_clean()
    phone.close()


@pytest.fixture(scope="module")
def agent(relay: RelayProcess, module_dir: Path) -> Iterator[AgentProcess]:
    client = relay.login()
    try:
        process = pair_agent(relay, client, default_workspace(client), module_dir / "agent")
    finally:
        client.close()
    yield process
    process.stop()


def _last(push_service: PushServiceStandIn, kind: str) -> Any:
    return wait_until(
        lambda: next((d for d in reversed(push_service.received()) if d.payload["kind"] == kind),
                     None),
        what=f"a {kind} notification at the push service",
    )  # fmt: skip


def test_settings_turn_on_choose_kinds_and_send_a_test(owner, push_service, tmp_path):
    """Off at first with a button to turn it on; then on, with kind switches that the
    relay keeps, this device in the list, and a test that arrives and is shown."""
    phone, page = owner.phone, owner.phone.page
    go(phone, "Settings")
    section = page.locator("#notifications")
    expect(section.locator("#push-state")).to_have_text("Off on this device.")
    section.get_by_role("button", name="Turn on notifications").click()
    expect(section.locator("#push-state")).to_contain_text("On for this device.")
    expect(section.locator(".push-device")).to_have_count(1)
    expect(section.locator(".push-device")).to_contain_text("This device")
    expect(section.get_by_role("checkbox", name="A new passkey on your account")).to_be_disabled()

    def kinds() -> list[str]:
        (sub,) = phone.fetch_json("/api/v1/me/push-subscriptions")["body"]["subscriptions"]
        assert sub["current"]
        return list(sub["kinds"])

    section.get_by_role("checkbox", name="Your task finished").uncheck()
    wait_until(lambda: "finished" not in kinds(), what="the relay to keep the switch")
    section.get_by_role("checkbox", name="Your task finished").check()
    wait_until(lambda: "finished" in kinds(), what="the relay to keep the switch")

    section.get_by_role("button", name="Send a test notification").click()
    test = _last(push_service, "test")
    assert test.token == owner.device.token
    owner.deliver(test.plaintext)
    shown = owner.shown("test")
    assert (shown["title"], shown["data"]) == ("Test notification", {"kind": "test", "ws": "",
                                                                       "id": ""})  # fmt: skip
    section.evaluate("(el) => window.scrollTo(0, el.getBoundingClientRect().top + scrollY - 72)")
    phone.screenshot("19-notifications", tmp_path)


def test_a_pairing_request_notification_opens_the_request(owner, relay, push_service):
    """An agent claims a code: the owner's phone shows "Pairing request in <workspace>"
    and a tap opens the Pair screen with the waiting request."""
    phone, page = owner.phone, owner.phone.page
    client = relay.login()
    try:
        wid = default_workspace(client)
        code = client.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
        claim = client.post(
            "/api/v1/agent/pair", json={"code": code, "agentId": "laptop", "label": "Laptop"}
        ).json()
    finally:
        client.close()
    delivery = _last(push_service, "pair-request")
    assert delivery.payload == {"kind": "pair-request", "ws": wid, "id": claim["requestId"]}
    go(phone, "Tasks")
    owner.deliver(delivery.plaintext)
    name = phone.fetch_json("/api/v1/me")["body"]["memberships"][0]["workspaceName"]
    shown = owner.shown(f"{wid}/{claim['requestId']}")
    assert shown["title"] == f"Pairing request in {name}"
    owner.tap(f"{wid}/{claim['requestId']}")
    expect(page).to_have_url(f"{phone.origin}/#/pair?ws={wid}")
    expect(page.locator("#view")).to_contain_text("Laptop")


def test_a_finished_task_notification_opens_the_task(owner, relay, agent, push_service):
    """The owner's task finishes: the phone shows "Finished in <workspace>" and a tap opens
    that task, whose result the app fetches then."""
    phone, page = owner.phone, owner.phone.page
    client = relay.login()
    try:
        wid = default_workspace(client)
        body = {"agentId": "devbox", "type": "run_action", "actionId": "hello"}
        task_id = client.post(f"/api/v1/workspaces/{wid}/tasks", json=body).json()["task"]["id"]
    finally:
        client.close()
    delivery = _last(push_service, "finished")
    assert delivery.payload == {"kind": "finished", "ws": wid, "id": task_id}
    go(phone, "Settings")
    owner.deliver(delivery.plaintext)
    assert owner.shown(f"{wid}/{task_id}")["title"].startswith("Finished in ")
    owner.tap(f"{wid}/{task_id}")
    expect(page).to_have_url(f"{phone.origin}/#/tasks/{task_id}?ws={wid}")
    expect(page.locator("#view")).to_contain_text("hello")


def test_a_conversation_notification_opens_the_conversation(owner, relay):
    """An approval waiting in a conversation (the id is a Codex thread id, not a task's):
    a tap opens that conversation's screen in its workspace."""
    phone, page = owner.phone, owner.phone.page
    client = relay.login()
    try:
        wid = default_workspace(client)
    finally:
        client.close()
    thread_id = str(uuid.uuid4())
    payload = json.dumps({"kind": "approval-needed", "ws": wid, "id": thread_id})
    go(phone, "Settings")
    owner.deliver(payload.encode("utf-8"))
    assert owner.shown(f"{wid}/{thread_id}")["title"].startswith("Approval needed in ")
    owner.tap(f"{wid}/{thread_id}")
    expect(page).to_have_url(f"{phone.origin}/#/chats/{thread_id}?ws={wid}")
