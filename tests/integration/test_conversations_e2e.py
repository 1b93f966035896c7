"""Live conversations end to end: phones on a real relay, a real agent process, and the real
pinned Codex CLI (app-server) offline against the scripted loopback model (R09, R10, R17).

One relay and one agent serve the whole module; each test uses its own thread and its own
file names. The phone side is plain HTTP plus the workspace's event stream.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import unix_connect

from codexrelay.agent.runners.appserver.supervisor import SOCKET_NAME, connect_path
from codexrelay.relay.storage.records import Role
from tests.agents import AgentProcess, default_workspace, pair_agent, wait_online
from tests.conversations import (
    decide,
    feed,
    idle,
    item,
    pending_approval,
    read,
    start,
    threads_url,
)
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)
from tests.softauthn import COOKIE, Phone

pytestmark = [pytest.mark.realcodex, pytest.mark.timeout(240)]

APPROVAL_TIMEOUT_SEC = 8


@dataclass
class Conv:
    relay: RelayProcess
    phone: httpx.Client
    wid: str
    agent: AgentProcess
    workspace: Path
    socket: Path

    def client(self, role: Role) -> httpx.Client:
        """A second phone: a new member of the workspace with ``role``, with a passkey."""
        code = self.phone.post(
            f"/api/v1/workspaces/{self.wid}/invites", json={"role": role.value}
        ).json()["code"]
        joiner = Phone(self.relay.client())
        accepted = joiner.post("/api/v1/invites/accept", json={"code": code, "name": "Bea"})
        assert accepted.status_code == 200, accepted.text
        joiner.enroll()
        joiner.client.close()
        other = self.relay.client()
        other.cookies.set(COOKIE, joiner.cookie or "")
        return other


@pytest.fixture(scope="module")
def conv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conv]:
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    tmp = tmp_path_factory.mktemp("conv")
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    with ModelServer(responder=scripted_reply) as model:
        home = write_codex_home(tmp / "codex-home", model.base_url)
        relay = RelayProcess(write_relay_config(tmp / "relay"), tmp / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        agent = pair_agent(
            relay,
            phone,
            wid,
            tmp / "agent",
            process_env={API_KEY_ENV: "mock-key", "TMPDIR": str(codex_tmp), "NO_COLOR": "1"},
            features={"codexExec": True, "conversations": True},
            codex={"command": [str(launcher)], "home": str(home)},
            conversations={"approvalTimeoutSec": APPROVAL_TIMEOUT_SEC},
        )
        socket = tmp / "agent" / "state" / SOCKET_NAME
        wait_until(socket.exists, timeout=60, what="the agent's app-server socket")
        try:
            yield Conv(relay, phone, wid, agent, tmp / "agent" / "workspace", socket)
        finally:
            agent.stop()
            phone.close()
            relay.stop()
            shutil.rmtree(codex_tmp, ignore_errors=True)
    assert "Traceback" not in relay.logs(), relay.logs()[-3000:]
    assert "Traceback" not in agent.logs(), agent.logs()[-3000:]


def test_phone_sees_the_streamed_reply_and_a_commands_output(conv: Conv):
    """The phone starts a thread: the reply streams over the event stream, the reasoning
    summary arrives, and after an accepted command its output, exit code and duration."""
    with feed(conv.phone, conv.wid) as events:
        started = start(conv.phone, conv.wid, "Explain the build\nMOCK_REASON: checking it")
        tid = started["thread"]["id"]
        assert (started["thread"]["source"], started["turn"]["status"]) == ("phone", "inProgress")
        delta = events.wait("item-delta", lambda d: d["threadId"] == tid, what="a streamed line")
        assert delta["delta"] == "MOCK_REPLY: Explain the build\n"
        message = item(conv.phone, conv.wid, tid, "agentMessage", "completed")
        assert message["text"] == "MOCK_REPLY: Explain the build\nMOCK_REASON: checking it"
        assert item(conv.phone, conv.wid, tid, "reasoning")["summary"] == "checking it"
        idle(conv.phone, conv.wid, tid)
        prompt = "MOCK_ESCALATE: echo output-42 > ran42.txt; cat ran42.txt"
        res = conv.phone.post(threads_url(conv.wid, tid, "turns"), json={"prompt": prompt})
        assert res.status_code == 201, res.text
        approval = pending_approval(conv.phone, conv.wid, tid)
        assert approval["kind"] == "command"
        assert "echo output-42" in approval["command"]
        assert approval["reason"] == "MOCK_REASON run echo output-42 > ran42.txt; cat ran42.txt"
        assert decide(conv.phone, conv.wid, tid, approval["id"], "accept").status_code == 200
        done = item(conv.phone, conv.wid, tid, "commandExecution", "completed")
        assert "output-42" in done["output"]
        assert (done["exitCode"], done["durationMs"] is not None) == (0, True)
        events.wait(
            "item", lambda d: d["item"]["id"] == done["id"] and d["item"]["status"] == "completed"
        )
        events.wait(
            "approval",
            lambda d: (
                d["approval"]["id"] == approval["id"] and d["approval"]["status"] == "accepted"
            ),
        )
        idle(conv.phone, conv.wid, tid)
    assert (conv.workspace / "ran42.txt").read_text() == "output-42\n"
    snapshot = read(conv.phone, conv.wid, tid)
    later = read(conv.phone, conv.wid, tid, after=snapshot["seq"] - 2)
    assert [i["seq"] for i in later["items"]] == [
        i["seq"] for i in snapshot["items"] if i["seq"] > snapshot["seq"] - 2
    ]


def test_declined_command_does_not_run(conv: Conv):
    """Decline: the command never runs and its item ends declined."""
    tid = start(conv.phone, conv.wid, "MOCK_ESCALATE: touch declined.txt")["thread"]["id"]
    approval = pending_approval(conv.phone, conv.wid, tid)
    answered = decide(conv.phone, conv.wid, tid, approval["id"], "decline").json()["approval"]
    assert (answered["status"], answered["decision"]) == ("declined", "decline")
    assert item(conv.phone, conv.wid, tid, "commandExecution", "declined")
    idle(conv.phone, conv.wid, tid)
    assert not (conv.workspace / "declined.txt").exists()


def test_unanswered_command_is_declined_at_the_configured_time(conv: Conv):
    """Nobody answers: at the agent's approvalTimeoutSec the approval expires as a decline."""
    tid = start(conv.phone, conv.wid, "MOCK_ESCALATE: touch late.txt")["thread"]["id"]
    approval = pending_approval(conv.phone, conv.wid, tid)
    expired = wait_until(
        lambda: (
            next(
                a for a in read(conv.phone, conv.wid, tid)["approvals"] if a["id"] == approval["id"]
            )["status"]
            == "expired"
        ),
        timeout=APPROVAL_TIMEOUT_SEC + 30,
        what="the approval expired",
    )
    assert expired
    shown = next(
        a for a in read(conv.phone, conv.wid, tid)["approvals"] if a["id"] == approval["id"]
    )
    assert shown["decision"] == "decline"
    assert item(conv.phone, conv.wid, tid, "commandExecution", "declined")
    assert not (conv.workspace / "late.txt").exists()
    res = decide(conv.phone, conv.wid, tid, approval["id"], "accept")
    assert (res.status_code, res.json()["error"]) == (409, "approval-resolved")


@pytest.mark.parametrize("decision", ["accept", "decline"])
def test_file_change_accept_writes_and_decline_leaves_the_tree(conv: Conv, decision: str):
    """The phone sees the exact diff; accept writes the file, decline leaves the tree as is."""
    name = f"patched-{decision}.txt"
    before = sorted(p.name for p in conv.workspace.iterdir())
    tid = start(conv.phone, conv.wid, f"MOCK_PATCH: {name} hello from the patch")["thread"]["id"]
    approval = pending_approval(conv.phone, conv.wid, tid)
    assert approval["kind"] == "fileChange"
    [change] = approval["changes"]
    assert (
        change["path"].endswith(name),
        change["kind"],
        "hello from the patch" in change["diff"],
    ) == (True, "add", True)
    assert decide(conv.phone, conv.wid, tid, approval["id"], decision).status_code == 200
    end = "completed" if decision == "accept" else "declined"
    assert item(conv.phone, conv.wid, tid, "fileChange", end)["changes"][0]["path"].endswith(name)
    idle(conv.phone, conv.wid, tid)
    if decision == "accept":
        assert (conv.workspace / name).read_text() == "hello from the patch\n"
    else:
        assert sorted(p.name for p in conv.workspace.iterdir()) == before


def test_interrupt_while_approval_pending_never_runs(conv: Conv):
    """Interrupt with the approval open: it is cancelled, the command never runs, a late
    accept gets 409, and steering the stopped thread gets 409 no-running-turn."""
    tid = start(conv.phone, conv.wid, "MOCK_ESCALATE: touch never.txt")["thread"]["id"]
    approval = pending_approval(conv.phone, conv.wid, tid)
    res = conv.phone.post(threads_url(conv.wid, tid, "interrupt"))
    assert (res.status_code, res.json()["turn"]["status"]) == (200, "interrupted"), res.text
    idle(conv.phone, conv.wid, tid)
    shown = {a["id"]: a for a in read(conv.phone, conv.wid, tid)["approvals"]}
    assert shown[approval["id"]]["status"] == "cancelled"
    late = decide(conv.phone, conv.wid, tid, approval["id"], "accept")
    assert (late.status_code, late.json()["error"]) == (409, "approval-resolved")
    steer = conv.phone.post(threads_url(conv.wid, tid, "steer"), json={"prompt": "more"})
    assert (steer.status_code, steer.json()["error"]) == (409, "no-running-turn")
    assert not (conv.workspace / "never.txt").exists()


def test_two_phones_one_answer(conv: Conv):
    """Two phones see the same approval; the first answer runs the command, the second gets
    409 approval-resolved and its event stream shows the approval resolved."""
    other = conv.client(Role.ADMIN)
    try:
        with feed(other, conv.wid) as events:
            tid = start(conv.phone, conv.wid, "MOCK_ESCALATE: echo once >> once.txt")["thread"][
                "id"
            ]
            approval = pending_approval(conv.phone, conv.wid, tid)
            events.wait("approval", lambda d: d["approval"]["id"] == approval["id"])
            assert pending_approval(other, conv.wid, tid)["id"] == approval["id"]
            assert decide(conv.phone, conv.wid, tid, approval["id"], "accept").status_code == 200
            second = decide(other, conv.wid, tid, approval["id"], "decline")
            assert (second.status_code, second.json()["error"]) == (409, "approval-resolved")
            resolved = events.wait(
                "approval",
                lambda d: (
                    d["approval"]["id"] == approval["id"] and d["approval"]["status"] != "pending"
                ),
            )
            assert resolved["approval"]["status"] == "accepted"
            idle(conv.phone, conv.wid, tid)
    finally:
        other.close()
    assert (conv.workspace / "once.txt").read_text() == "once\n"


@contextlib.contextmanager
def _tui(conv: Conv, prompt: str) -> Iterator[str]:
    """A second client of the agent's app-server, standing in for `codex --remote` (the
    terminal), running a thread of its own; yields the thread id."""
    with unix_connect(str(connect_path(conv.socket)), uri="ws://localhost/") as ws:

        def ask(request_id: int, method: str, params: dict) -> dict:
            ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv(timeout=60))
                if message.get("id") == request_id and "method" not in message:
                    return message

        ask(1, "initialize", {"clientInfo": {"name": "codex-tui", "version": "0.171.0"}})
        ws.send(json.dumps({"method": "initialized"}))
        params = {
            "cwd": str(conv.workspace),
            "approvalPolicy": "on-request",
            "sandbox": "read-only",
        }
        tid = ask(2, "thread/start", params)["result"]["thread"]["id"]
        text = [{"type": "text", "text": prompt, "text_elements": []}]
        ask(3, "turn/start", {"threadId": tid, "input": text})
        yield tid


def test_terminal_session_taken_over_from_the_phone(conv: Conv):
    """A thread started in the terminal shows up on the phone with its approval; the
    phone's accept runs the terminal's command."""
    with _tui(conv, "MOCK_ESCALATE: touch tui.txt") as tid:
        approval = pending_approval(conv.phone, conv.wid, tid)
        listed = conv.phone.get(threads_url(conv.wid), params={"agentId": "devbox"}).json()
        mine = next(t for t in listed["threads"] if t["id"] == tid)
        assert (mine["source"], mine["createdBy"]) == ("terminal", None)
        assert decide(conv.phone, conv.wid, tid, approval["id"], "accept").status_code == 200
        assert item(conv.phone, conv.wid, tid, "commandExecution", "completed")
        assert (conv.workspace / "tui.txt").exists()


def test_agent_restart_mid_turn_runs_nothing_twice(conv: Conv):
    """Restart the agent while Codex waits for approval: the phone sees the approval
    cancelled and the thread no longer running; a stale accept is refused; the next turn
    runs its own command once."""
    tid = start(conv.phone, conv.wid, "MOCK_ESCALATE: echo run >> runs.txt")["thread"]["id"]
    approval = pending_approval(conv.phone, conv.wid, tid)
    conv.agent.stop()
    wait_online(conv.phone, conv.wid, "devbox", online=False)
    conv.agent.start("start")
    wait_online(conv.phone, conv.wid, "devbox", timeout=40)

    def settled() -> bool:
        shown = read(conv.phone, conv.wid, tid)
        status = {a["id"]: a["status"] for a in shown["approvals"]}[approval["id"]]
        return status == "cancelled" and shown["thread"]["status"] in {"notLoaded", "idle"}

    wait_until(settled, timeout=60, what="the stale approval cancelled after the restart")
    stale = decide(conv.phone, conv.wid, tid, approval["id"], "accept")
    assert (stale.status_code, stale.json()["error"]) == (409, "approval-resolved")
    assert not (conv.workspace / "runs.txt").exists()
    res = conv.phone.post(
        threads_url(conv.wid, tid, "turns"),
        json={"prompt": "MOCK_ESCALATE: echo again >> runs.txt"},
    )
    assert res.status_code == 201, res.text
    again = wait_until(
        lambda: next(
            (
                a
                for a in read(conv.phone, conv.wid, tid)["approvals"]
                if a["status"] == "pending" and a["id"] != approval["id"]
            ),
            None,
        ),
        timeout=60,
        what="the new approval",
    )
    assert decide(conv.phone, conv.wid, tid, again["id"], "accept").status_code == 200
    idle(conv.phone, conv.wid, tid)
    wait_until((conv.workspace / "runs.txt").exists, what="the new command ran")
    assert (conv.workspace / "runs.txt").read_text() == "again\n"
