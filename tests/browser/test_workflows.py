"""The owner's day on a phone, against a real relay and real agent processes: pair an agent
from the UI, run an action, a log read and Codex tasks with live progress, continue a
session, cancel, and revoke an agent (R06, R07, R09, R11, R14, R15, R17, R18, B3, I1)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from codexrelay.relay.config import load_relay_config
from tests.agents import AgentProcess, pair_agent, write_agent_config
from tests.browser.phone import PHONE_SIZE, SMALL_PHONE, Phone, dump_logs, go, owner_phone
from tests.helpers import RelayProcess, wait_until

pytestmark = pytest.mark.browser

GITHUB_TOKEN = "ghp_" + "Z3k9Qm2Xr7Lp4Wv8Ty1Bn6Hc5Jd0Fs2Ga9Ke"


@pytest.fixture(scope="module")
def owner(browser: Browser, relay: RelayProcess) -> Iterator[Phone]:
    """The owner's phone, signed in with a passkey, shared by this module's tests."""
    phone = owner_phone(browser, relay)
    yield phone
    phone.assert_clean()
    phone.close()


def _git_workspace(path: Path) -> None:
    """A git work tree with one committed file, so write-mode tasks produce a diff."""
    path.mkdir(parents=True, exist_ok=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    (path / "README.md").write_text("old line\n")
    for argv in (["git", "init", "-q"], ["git", "add", "README.md"], ["git", "commit", "-qm", "x"]):
        subprocess.run(argv, cwd=path, check=True, env={"PATH": "/usr/bin:/bin", **env})


@pytest.fixture(scope="module")
def devbox(
    owner: Phone, relay: RelayProcess, module_dir: Path, tmp_path_factory
) -> Iterator[AgentProcess]:
    """An agent paired through the phone UI: code and command shown with a QR code, the
    agent process claims the code, the request shows up live and is approved (R06)."""
    page = owner.page
    go(owner, "Agents")
    page.get_by_role("link", name="Pair an agent").click()
    page.get_by_label("Note (optional)").fill("test server")
    page.get_by_role("button", name="Create pairing code").click()
    code = page.locator(".big-code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}", code)
    command = page.locator(".command-text").inner_text().strip()
    assert command == f"codexrelay agent pair --pair-code {code}"
    qr = page.get_by_role("img", name=re.compile("QR code of the command"))
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert owner.scan_qr(qr) == command
    expect(page.get_by_role("timer")).to_contain_text("Expires in")
    owner.screenshot("05-pair-agent", tmp_path_factory.mktemp("shots"))

    directory = module_dir / "devbox"
    _git_workspace(directory / "workspace")
    config = write_agent_config(
        directory,
        relay.setup.base_url,
        agent_id="devbox",
        features={"codexExec": True, "codexExecWrite": True, "runAction": True, "readLog": True},
    )
    agent = AgentProcess(config, directory / "agent.log").start(*command.split()[2:])
    request = page.locator(".request-card", has_text="devbox")
    try:
        expect(request).to_be_visible()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump_logs(directory / 'agent.log')}") from None
    expect(request).to_contain_text("workspace")
    # The code works once: the phone stops counting it down as soon as it is claimed.
    used = page.get_by_role("status").filter(has_text="Used by")
    expect(used).to_contain_text('Used by "devbox label" (devbox). The code no longer works.')
    expect(page.get_by_role("timer")).to_have_count(0)
    expect(page.locator(".command-text")).to_have_count(0)
    owner.at_phone_widths(lambda: owner.assert_whole(used))
    owner.screenshot("15-pairing-code-used", tmp_path_factory.mktemp("shots"))
    request.get_by_role("button", name="Approve").click()
    expect(page.locator(".request-card")).to_have_count(0)
    go(owner, "Agents")
    card = page.locator(".agent-card", has_text="devbox label")
    expect(card.locator(".presence")).to_have_text("Online")
    yield agent
    agent.stop()


def open_new_task(phone: Phone, agent_id: str = "devbox", kind: str = "Codex") -> None:
    """New task screen with the agent and the kind chosen."""
    page = phone.page
    go(phone, "Tasks")
    go(phone, "New task")
    page.get_by_label("Agent", exact=True).select_option(value=agent_id)
    page.get_by_label(kind, exact=True).check()


def run_task(phone: Phone) -> str:
    """Press Run and return the new task's id from the detail screen it opens."""
    page = phone.page
    page.get_by_role("button", name="Run task").click()
    expect(page).to_have_url(re.compile(r"#/tasks/tsk_"))
    return page.url.rsplit("/", 1)[-1]


def status_of(phone: Phone):
    return phone.page.locator("dl.meta .status")


def test_agent_list_shows_what_the_agent_allows(owner: Phone, devbox: AgentProcess, tmp_path):
    """R06, R09, R15: the paired agent is listed online with host, workspace folder, its
    switches, its actions and its log sources."""
    page = owner.page
    go(owner, "Agents")
    card = page.locator(".agent-card", has_text="devbox label")
    expect(card).to_contain_text("workspace")
    for text in ("Codex: on", "Write mode: on", "Actions: on", "Logs: on", "Say hello", "App log"):
        expect(card).to_contain_text(text)
    expect(owner.page.locator("#live-status")).to_have_text("Live")
    owner.assert_usable()
    owner.screenshot("04-agents", tmp_path)


def test_action_and_log_read_show_their_output(owner: Phone, devbox: AgentProcess):
    """R15: a predefined action and a predefined log read run and show their output."""
    page = owner.page
    open_new_task(owner, kind="Action")
    page.get_by_label("Which action").select_option(label="Say hello")
    run_task(owner)
    expect(status_of(owner)).to_have_text("Completed")
    expect(page.locator("pre.output-tail")).to_contain_text("hello")
    expect(page.locator("dl.meta")).to_contain_text("Exit code0")

    open_new_task(owner, kind="Log")
    page.get_by_label("Which log").select_option(label="App log")
    run_task(owner)
    expect(status_of(owner)).to_have_text("Completed")
    expect(page.locator("pre.output-tail")).to_contain_text("line 500")
    expect(page.locator("pre.output-tail")).not_to_contain_text("line 400\n")


def test_codex_task_shows_live_progress_and_final_message(
    owner: Phone, devbox: AgentProcess, tmp_path
):
    """R11, B3: progress arrives live over SSE while the task runs, then the final message;
    a secret in the output is redacted on the agent and the count is shown."""
    page = owner.page
    open_new_task(owner)
    write = page.get_by_role("switch", name="Write mode: let Codex change files")
    expect(write).to_be_enabled()
    page.get_by_label("Prompt").fill("Find out why the login test is flaky and propose a fix.")
    page.get_by_label("Folder (inside the agent's workspace)").fill("services/auth")
    owner.screenshot("06-new-task", tmp_path)
    page.get_by_label("Folder (inside the agent's workspace)").fill("")
    page.get_by_label("Prompt").fill(
        "Explain the project\n"
        "FAKE: slow 0.7\n"
        "FAKE: reasoning Looking at the files first\n"
        "FAKE: command ls -la\n"
        f"FAKE: message The deploy token is {GITHUB_TOKEN}\n"
        "FAKE: message All done: the project has a README."
    )
    run_task(owner)
    # A step is on screen while the task is still going (both read in one evaluation): it
    # came in live over SSE, not with the finished task.
    live = (
        "!!document.querySelector('.progress-list .prog') && !!document.querySelector('progress')"
    )
    wait_until(lambda: page.evaluate(live), timeout=20, what="a progress step while running")
    expect(page.locator(".final-message")).to_have_text("All done: the project has a README.")
    expect(status_of(owner)).to_have_text("Completed")
    expect(page.locator(".prog-reasoning")).to_contain_text("Looking at the files first")
    command = page.locator(".prog-command")
    expect(command).to_have_count(1)  # "started" and "completed" are one item
    expect(command).to_contain_text("ls -la")
    expect(command).to_contain_text("completed · exit 0")
    expect(page.locator(".redaction-notice")).to_contain_text("redacted on the server")
    # The prompt is the person's own text; what came back from the agent is redacted.
    assert GITHUB_TOKEN not in page.locator(".progress-list").inner_text()
    expect(page.locator(".prog-message").first).to_contain_text("The deploy token is")
    expect(page.locator(".running-note")).to_have_count(0)
    owner.assert_usable()
    owner.screenshot("07-task-detail", tmp_path)
    page.emulate_media(color_scheme="dark")
    owner.screenshot("07-task-detail-dark", tmp_path)
    page.emulate_media(color_scheme="light")
    go(owner, "Tasks")
    expect(page.locator(".task-card").first).to_contain_text("Codex")
    expect(page.locator(".task-card").first).to_contain_text("Explain the project")
    owner.screenshot("03-tasks", tmp_path)


def test_write_mode_task_shows_a_coloured_diff(owner: Phone, devbox: AgentProcess):
    """R17, R18: with write mode allowed on both sides an admin's task may edit files, and
    the diff shows removed and added lines in their colours."""
    page = owner.page
    open_new_task(owner)
    page.get_by_label("Prompt").fill("Update the readme\nFAKE: write README.md new line")
    page.get_by_role("switch", name="Write mode: let Codex change files").check()
    run_task(owner)
    expect(status_of(owner)).to_have_text("Completed")
    expect(page.locator("dl.meta")).to_contain_text("Write modeOn")
    added = page.locator(".diff-add", has_text="+new line")
    removed = page.locator(".diff-del", has_text="-old line")
    expect(added).to_be_visible()
    expect(removed).to_be_visible()
    colours = [x.evaluate("(el) => getComputedStyle(el).backgroundColor") for x in (added, removed)]
    assert colours[0] != colours[1]
    owner.assert_usable()


def test_running_task_can_be_cancelled(owner: Phone, devbox: AgentProcess, tmp_path):
    """A running task shows a cancel button; cancelling stops it. The cancelled task says
    who cancelled it when the relay tells (never an exit code such as -15), and no step of
    it still reads "in progress"."""
    page = owner.page
    open_new_task(owner)
    page.get_by_label("Prompt").fill(
        "Wait a while\nFAKE: message started\nFAKE: command-open sleep 100\nFAKE: sleep 30"
    )
    task_id = run_task(owner)
    command = page.locator(".prog-command")
    expect(command).to_contain_text("in progress")
    page.get_by_role("button", name="Cancel task").click()
    expect(status_of(owner)).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    expect(command).to_contain_text("stopped: the task was cancelled")
    view = page.locator("#view")
    expect(view).not_to_contain_text("in progress")
    expect(page.locator("dl.meta")).not_to_contain_text("Exit code")
    wid = owner.fetch_json("/api/v1/me")["body"]["memberships"][0]["workspaceId"]
    task = owner.fetch_json(f"/api/v1/workspaces/{wid}/tasks/{task_id}")["body"]["task"]
    assert task["cancelledBy"] == owner.fetch_json("/api/v1/me")["body"]["user"]["id"]
    expect(page.locator("dl.meta")).to_contain_text("Cancelled byyou")
    owner.at_phone_widths()
    owner.screenshot("16-cancelled-task", tmp_path)
    page.reload()  # drawn from the relay's copy: still nothing in progress
    expect(status_of(owner)).to_have_text("Cancelled")
    expect(command).to_contain_text("stopped: the task was cancelled")
    expect(view).not_to_contain_text("in progress")


def test_prompt_size_is_counted_and_a_refusal_shows_above_the_tab_bar(
    owner: Phone, devbox: AgentProcess, tmp_path
):
    """The composer counts the prompt's bytes near the cap the relay publishes (and
    enforces), and the relay's 413 for a prompt over it is shown whole above the bottom
    navigation on a 360 px and a 390 px phone."""
    page = owner.page
    limit = load_relay_config(owner.relay.setup.config_path).max_prompt_bytes
    cap = owner.fetch_json("/api/v1/me")["body"]["relay"]["limits"]["maxPromptBytes"]
    assert cap == limit
    open_new_task(owner)
    prompt = page.get_by_label("Prompt")
    counter = page.locator("#prompt-bytes")

    def paste(text: str, times: int) -> None:
        """A long prompt arrives as a paste would: at once, with one input event."""
        prompt.evaluate(
            "(el, [text, times]) => { el.value = text.repeat(times); "
            "el.dispatchEvent(new Event('input', { bubbles: true })); }",
            [text, times],
        )

    prompt.fill("é" * 10)
    expect(counter).to_be_hidden()  # far from the cap
    paste("x", cap - 100)
    prompt.press("End")
    prompt.type("é")  # two bytes for one character, typed
    expect(counter).to_have_text(f"{cap - 98:,} of {cap:,} bytes used.")
    paste("x", cap + 5)
    expect(counter).to_have_text(f"Too long: {cap + 5:,} of {cap:,} bytes. Shorten it by 5 bytes.")
    # Sent anyway: the relay's own sentence, whole.
    paste("y", limit + 1)
    for size in (SMALL_PHONE, PHONE_SIZE):
        page.set_viewport_size(size)
        page.evaluate("window.scrollTo(0, 0)")
        page.get_by_role("button", name="Run task").click()
        alert = page.get_by_role("alert")
        expect(alert).to_have_text(f"The prompt is larger than {limit // 1024} KiB.")
        owner.assert_above_tab_bar(alert)
        owner.assert_usable()
    page.set_viewport_size(owner.size)
    owner.screenshot("17-prompt-too-large", tmp_path)


def test_refusals_are_explained_in_sentences(owner: Phone, devbox: AgentProcess):
    """The relay's refusal shows its own sentence; the agent's refusal shows why in words
    (the folder is checked again on the agent)."""
    page = owner.page
    open_new_task(owner)
    page.get_by_label("Prompt").fill("Look around")
    folder = page.get_by_label("Folder (inside the agent's workspace)")
    folder.fill("../outside")
    page.get_by_role("button", name="Run task").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The working directory must be a path inside the agent's workspace, like src/app."
    )
    folder.fill("no/such/folder")
    run_task(owner)
    expect(status_of(owner)).to_have_text("Refused by agent")
    expect(page.locator(".error-notice")).to_have_text("The folder does not exist on the agent.")


def test_codex_session_can_be_continued(owner: Phone, devbox: AgentProcess, tmp_path):
    """R12, R14: the agent's recent sessions are listed; Continue opens a resume task with
    write mode off, and it runs against the same session."""
    page = owner.page
    open_new_task(owner)
    page.get_by_label("Prompt").fill("Remember the number seven")
    run_task(owner)
    expect(status_of(owner)).to_have_text("Completed")
    go(owner, "Agents")
    page.locator(".agent-card", has_text="devbox label").get_by_role(
        "link", name="Sessions"
    ).click()
    session = page.locator(".session-card", has_text="Remember the number seven").first
    expect(session).to_be_visible(timeout=30_000)
    owner.screenshot("08-sessions", tmp_path)
    session_id = session.get_attribute("data-session-id")
    session.get_by_role("link", name="Continue").click()
    expect(page.get_by_role("heading", name="Continue a Codex session")).to_be_visible()
    write = page.get_by_role("switch", name="Write mode: let Codex change files")
    expect(write).to_be_disabled()
    expect(page.locator("#write-note")).to_have_text(
        "A continued session runs read-only from here."
    )
    page.get_by_label("What next?").fill("What was the number?")
    run_task(owner)
    expect(status_of(owner)).to_have_text("Completed")
    expect(page.locator("dl.meta")).to_contain_text(session_id)
    expect(page.locator("dl.meta")).to_contain_text("Off (read-only)")


def test_task_waits_for_an_offline_agent(
    owner: Phone, relay: RelayProcess, module_dir: Path, tmp_path
):
    """An offline agent's task can be queued: the phone says whom it waits for and until
    when, and the task runs once the agent is back (B4: once)."""
    client = relay.login()
    try:
        wid = client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
        sleepy = pair_agent(relay, client, wid, module_dir / "sleepy", agent_id="sleepy")
        sleepy.stop()
        wait_until(
            lambda: (
                not next(
                    a
                    for a in client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
                    if a["agentId"] == "sleepy"
                )["online"]
            ),
            what="sleepy offline",
        )
    finally:
        client.close()
    page = owner.page
    open_new_task(owner, agent_id="sleepy", kind="Action")
    expect(page.locator(".hint[role=status]")).to_contain_text("offline right now")
    expect(page.get_by_label("If it is still offline, wait for it")).to_have_value("3600")
    page.get_by_role("button", name="Queue task").click()
    expect(page).to_have_url(re.compile(r"#/tasks/tsk_"))
    waiting = page.locator(".running-note.waiting")
    expect(waiting).to_contain_text("Waiting for sleepy label (until")
    owner.at_phone_widths(lambda: owner.assert_whole(waiting))
    owner.screenshot("18-waiting-for-agent", tmp_path)
    sleepy.start("start")
    try:
        expect(status_of(owner)).to_have_text("Completed", timeout=30_000)
        expect(page.locator(".running-note.waiting")).to_have_count(0)
    finally:
        sleepy.stop()


def test_revoke_agent_from_the_ui(owner: Phone, relay: RelayProcess, module_dir: Path):
    """R07, I1, R17: an agent whose config forbids write mode says so on the switch; revoking
    it from the UI (after a confirmation) disconnects it and its process exits."""
    client = relay.login()
    try:
        wid = client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
        spare = pair_agent(relay, client, wid, module_dir / "spare", agent_id="spare")
    finally:
        client.close()
    try:
        page = owner.page
        open_new_task(owner, agent_id="spare")
        expect(
            page.get_by_role("switch", name="Write mode: let Codex change files")
        ).to_be_disabled()
        expect(page.locator("#write-note")).to_have_text("Write mode is off on this agent.")
        go(owner, "Agents")
        card = page.locator(".agent-card", has_text="spare label")
        expect(card.locator(".presence")).to_have_text("Online")
        card.get_by_role("button", name="Revoke").click()
        dialog = page.locator("#confirm")
        expect(dialog).to_contain_text('Revoke agent "spare label"?')
        dialog.get_by_role("button", name="Revoke agent").click()
        revoked = page.locator("details", has_text="Revoked agents")
        expect(revoked).to_be_visible()
        revoked.locator("summary").click()
        expect(revoked.locator(".agent-card", has_text="spare label")).to_contain_text("Revoked")
        assert spare.wait_exit(timeout=20) != 0
    finally:
        spare.stop()
