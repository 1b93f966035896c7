"""The phone sends sealed tasks (TRUST.md §4.5, §8), in Chromium with a virtual passkey,
against a real relay behind a capturing proxy and a real agent with the fake ``codex``.

The owner switches the workspace's content policy to "sealed" in Settings (an owner-signed
``policy.set``); a Codex task is then sealed on the phone to the agent and to the reader
devices of the phone's own verified log; the agent runs the exact prompt, while a canary in
it appears in no byte the relay received or sent (browser and agent traffic both ways,
decoded), nor in its debug log or data dir. A plain signed task is refused with 409
``e2e-required``, and a confirmation screen drawn before sealing was switched on is drawn
again and sealed, never sent in the clear.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Request, expect

from tests.agents import AgentProcess, write_agent_config
from tests.browser.phone import Phone, dump_logs, go
from tests.browser.test_protected import _pairing_code, _wid, protected_owner
from tests.fakes.capture_proxy import CaptureProxy
from tests.helpers import RelayProcess, RelaySetup, free_port, wait_until, write_relay_config
from tests.proof.test_leak_canaries import _data_files, _hits, canary, fragments

pytestmark = pytest.mark.browser
AGENT = "devbox"
LABEL = "devbox label"


@dataclass
class ProxiedSetup(RelaySetup):
    """A relay whose public origin is the capturing proxy in front of it."""

    proxy_port: int = 0

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.proxy_port}"


@pytest.fixture(scope="module")
def proxy() -> Iterator[CaptureProxy]:
    capture = CaptureProxy(free_port()).start()
    yield capture
    capture.stop()


@pytest.fixture(scope="module")
def relay(module_dir: Path, proxy: CaptureProxy) -> Iterator[RelayProcess]:
    """The relay (SQLite, debug log) listening where the proxy forwards; phones and the
    agent reach it only through the proxy."""
    port = proxy.upstream[1]
    plain = write_relay_config(
        module_dir / "relay",
        listenPort=port,
        publicOrigin=f"http://localhost:{proxy.port}",
        features={"codexExecWrite": True},
        logLevel="debug",
        storage={"backend": "sqlite"},
    )
    setup = ProxiedSetup(plain.config_path, plain.token, plain.port, plain.data_dir, proxy.port)
    proc = RelayProcess(setup, module_dir / "relay.log").start()
    yield proc
    proc.stop()


# Every request the owner's page made: (method, URL, body).
SENT: list[tuple[str, str, str]] = []


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    phone = protected_owner(browser, relay)

    def record(request: Request) -> None:
        SENT.append((request.method, request.url, request.post_data or ""))

    phone.page.on("request", record)
    yield phone
    phone.assert_clean()
    phone.close()


@pytest.fixture(scope="module")
def devbox(owner: Phone, proxy: CaptureProxy, module_dir: Path) -> Iterator[AgentProcess]:
    """The agent, paired and pinned through the phone, talking to the relay via the proxy."""
    full = _pairing_code(owner)
    directory = module_dir / "devbox"
    config = write_agent_config(directory, proxy.url, agent_id=AGENT)
    agent = AgentProcess(config, directory / "agent.log").start("pair", "--pair-code", full)
    card = owner.page.locator(".request-card", has_text=AGENT)
    try:
        expect(card.locator(".trust-badge")).to_contain_text("Verified with your pairing code")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump_logs(directory / 'agent.log')}") from None
    card.get_by_role("button", name="Approve").click()
    expect(owner.page.locator(".request-card")).to_have_count(0)
    wait_until(lambda: "Paired to workspace" in agent.logs(), timeout=20, what="the pin")
    yield agent
    agent.stop()


def _log(owner: Phone) -> list[dict[str, Any]]:
    """The log entries as the relay serves them, each with its decoded statement."""
    entries = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/e2e/log")["body"]["entries"]
    for entry in entries:
        raw = entry["entry"] + "=" * (-len(entry["entry"]) % 4)
        entry["decoded"] = json.loads(base64.urlsafe_b64decode(raw))
    return list(entries)


def _user_prompts(codex_home: Path) -> list[str]:
    """Every user message the fake ``codex`` recorded in its rollouts (what it was asked)."""
    found = []
    for path in codex_home.rglob("rollout-*.jsonl"):
        for line in path.read_text().splitlines():
            payload = json.loads(line).get("payload") or {}
            if payload.get("type") == "message" and payload.get("role") == "user":
                found += [c["text"] for c in payload["content"] if c.get("type") == "input_text"]
    return found


def _run_codex(owner: Phone, prompt: str) -> None:
    page = owner.page
    go(owner, "New task")
    page.get_by_label("Agent", exact=True).select_option(value=AGENT)
    page.get_by_label("Codex", exact=True).check()
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_role("button", name="Review and sign").click()
    expect(page.get_by_role("heading", name="Confirm the task")).to_be_visible()


def _confirm_and_wait(owner: Phone) -> str:
    page = owner.page
    page.get_by_role("button", name="Confirm with Face ID").click()
    expect(page).to_have_url(re.compile(r"#/tasks/[0-9a-f-]{36}$"))
    expect(page.locator("dl.meta .status")).to_have_text(re.compile("Completed", re.I))
    return page.url.rsplit("/", 1)[-1]


def _posts(path: str) -> list[str]:
    return [body for method, url, body in SENT if method == "POST" and url.endswith(path)]


def test_the_owner_seals_task_content_in_settings(
    owner: Phone, devbox: AgentProcess, tmp_path: Path
):
    """Settings > Protection shows the content policy and its meaning; switching it signs
    a policy.set with content "sealed" and every other rule kept."""
    page = owner.page
    go(owner, "Settings")
    content = page.locator("#protection .content-policy")
    expect(content).to_contain_text("Not sealed.")
    expect(content).to_contain_text("the relay can read prompts and outputs")
    before = _log(owner)[-1]["decoded"]
    page.get_by_role("button", name="Seal task content").click()
    expect(page.locator(".toast").filter(has_text="Sealing is on")).to_be_visible()
    expect(content).to_have_attribute("data-content", "sealed")
    expect(content).to_contain_text("The relay can no longer read them")
    expect(content).to_contain_text("only the agent and the devices in the signed log")
    owner.screenshot("38-sealing-on", tmp_path)
    last = _log(owner)[-1]["decoded"]
    assert last["op"] == "policy.set"
    assert last["seq"] == before["seq"] + 1
    policy = last["body"]["policy"]
    assert policy["content"] == "sealed"
    assert policy["codexWrite"] == {"minRole": "admin"}, "the other rules are kept"


def test_a_sealed_task_runs_and_the_relay_never_reads_it(
    owner: Phone, devbox: AgentProcess, relay: RelayProcess, proxy: CaptureProxy, module_dir: Path
):
    """The confirmation says who can read it; the agent runs exactly the typed prompt; the
    sender's task page shows it from the device cache; the canary is in no byte the relay
    received or sent, nor in its log or data dir, while the controls are found there."""
    secret = canary("prompt")
    prompt = f"Summarise the build {secret}\nin two lines, please\nFAKE: message done"
    _run_codex(owner, prompt)
    page = owner.page
    devices = [e["decoded"]["body"].get("deviceId") for e in _log(owner) if e["op"] == "device.add"]
    genesis = _log(owner)[0]["decoded"]
    readers = [d["deviceId"] for d in genesis["devices"]] + [d for d in devices if d]
    expect(page.locator(".sealed-line")).to_have_text(
        f"Sealed: only {LABEL} and {len(readers)} device{'s' if len(readers) != 1 else ''} "
        "can read it."
    )
    expect(page.locator(".confirm-prompt")).to_have_text(prompt)
    owner.screenshot("39-confirm-sealed", module_dir)
    task_id = _confirm_and_wait(owner)
    expect(page.locator("pre.prompt")).to_have_text(prompt)
    page.reload()
    expect(page.locator("pre.prompt")).to_have_text(prompt)  # from the encrypted device cache
    go(owner, "Tasks")
    expect(page.locator(".task-card").first).to_contain_text(f"Summarise the build {secret}")

    assert prompt in _user_prompts(module_dir / "devbox" / "codex-home"), "codex got it exactly"
    assert _posts("/signed-tasks") == [], "never sent as a plain signed task"
    sealed = _posts("/sealed-tasks")
    assert len(sealed) == 1
    request = json.loads(sealed[0])
    assert (request["agentId"], request["type"], request["writeAccess"]) == (
        AGENT,
        "codex_exec",
        False,
    )
    wire = json.loads(request["envelope"])
    assert [w["to"] for w in wire["keys"]] == [AGENT, *readers], "the agent and the log's devices"
    task = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/tasks/{task_id}")["body"]["task"]
    assert task["sealed"] is True
    assert task.get("prompt") is None

    captured = proxy.readable()
    places = {f"traffic {k}": v for k, v in captured.items()}
    places["relay log"] = relay.log_path.read_bytes()
    places.update({f"data dir {k}": v for k, v in _data_files(relay.setup.data_dir).items()})
    assert "relay.sqlite3" in _data_files(relay.setup.data_dir)

    def seen(prefix: str, needle: str) -> bool:
        return any(needle.encode() in v for k, v in captured.items() if k.startswith(prefix))

    assert seen("http-up", "POST /api/v1/workspaces/"), "the browser's requests pass the proxy"
    assert seen("http-up", f"/tasks/{task_id}"), "the capture sees what the browser asks"
    assert seen("http-down", LABEL), "the capture sees the relay's answers"
    assert seen("ws-down", task_id), "the capture sees what the relay sent the agent"
    assert seen("ws-up", task_id), "and what the agent sent back"
    leaks = _hits(places, {"prompt": fragments(secret)})
    assert not leaks, "\n".join(leaks)


def test_a_plain_signed_task_is_refused_once_sealed(
    owner: Phone, devbox: AgentProcess, module_dir: Path
):
    """The phone's own signed-task path, passkey-signed and well formed, gets 409
    e2e-required from the relay, and nothing runs."""
    prompt = "A plain task that must not run"
    me = owner.fetch_json("/api/v1/me")["body"]["user"]
    got = owner.page.evaluate(
        """async ([wid, userId, prompt]) => {
          const trust = await import("/js/trust.js");
          const app = { wid, me: { user: { id: userId } } };
          const draft = await trust.draftTask(app, { agent: "devbox", type: "codex_exec" }, prompt);
          try {
            await trust.submitTask(app, draft);
            return { ok: true };
          } catch (err) {
            return { status: err.status, code: err.code };
          }
        }""",
        [_wid(owner), me["id"], prompt],
    )
    assert got == {"status": 409, "code": "e2e-required"}
    owner.http_errors.clear()  # the 409 asked for above
    assert prompt not in _user_prompts(module_dir / "devbox" / "codex-home")


def test_a_confirmation_drawn_before_sealing_is_sealed_not_sent_plain(
    owner: Phone, devbox: AgentProcess, module_dir: Path
):
    """Sealing switched off, a task reviewed, then sealing switched on (as from another
    device): Confirm reads the log again, draws the screen anew with who can read it, and
    the task goes sealed; no plain submission is ever made."""
    page = owner.page
    go(owner, "Settings")
    page.get_by_role("button", name="Stop sealing task content").click()
    page.locator("#confirm").get_by_role("button", name="Stop sealing").click()
    expect(page.locator("#protection .content-policy")).to_have_attribute("data-content", "signed")
    prompt = "Reviewed before sealing\nFAKE: message sealed anyway"
    _run_codex(owner, prompt)
    expect(page.locator(".sealed-line")).to_have_count(0)
    SENT.clear()
    me = owner.fetch_json("/api/v1/me")["body"]["user"]
    page.evaluate(
        """async ([wid, userId]) => {
          const trust = await import("/js/trust.js");
          const { view } = await trust.trustState(wid, { fresh: true });
          await trust.signEntry({ wid, me: { user: { id: userId } } }, "policy.set",
            { policy: { ...view.policy, content: "sealed" } });
        }""",
        [_wid(owner), me["id"]],
    )
    page.get_by_role("button", name="Confirm with Face ID").click()
    expect(page.locator(".toast").filter(has_text="content policy changed")).to_be_visible()
    expect(page.locator(".sealed-line")).to_contain_text(f"Sealed: only {LABEL} and")
    task_id = _confirm_and_wait(owner)
    assert _posts("/signed-tasks") == []
    assert len(_posts("/sealed-tasks")) == 1
    task = owner.fetch_json(f"/api/v1/workspaces/{_wid(owner)}/tasks/{task_id}")["body"]["task"]
    assert task["sealed"] is True
    assert prompt in _user_prompts(module_dir / "devbox" / "codex-home")


def test_a_sealed_task_under_a_two_person_rule_cannot_be_confirmed(
    owner: Phone, devbox: AgentProcess
):
    """A second approver could not read a sealed task yet: the confirmation says so and
    offers no Confirm, rather than sending something the agent would refuse."""
    page = owner.page
    go(owner, "Settings")
    two = page.get_by_label("Codex, read-only: two people must approve")
    two.check()
    page.get_by_role("button", name="Sign and save the policies").click()
    expect(page.locator(".toast").filter(has_text="Policies signed")).to_be_visible()
    assert _log(owner)[-1]["decoded"]["body"]["policy"]["content"] == "sealed", "kept sealed"
    _run_codex(owner, "Needs two people")
    expect(page.locator(".notice[role=alert]")).to_contain_text("cannot co-sign a sealed task")
    expect(page.get_by_role("button", name="Confirm with Face ID")).to_be_disabled()
    go(owner, "Settings")
    page.get_by_label("Codex, read-only: two people must approve").uncheck()
    page.get_by_role("button", name="Sign and save the policies").click()
    expect(page.locator(".toast").filter(has_text="Policies signed")).to_be_visible()
