"""A relay drives live conversations over the agent's socket; the agent re-checks them all.

The real agent process (conversations on, the pinned Codex CLI against the scripted loopback
model) connects to a fake relay that speaks the protocol directly, as a relay would, and
also sends requests that no honest relay would (R09, R13, R15, R17, A4).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from codexrelay.agent.tokenstore import TokenStore
from tests.agents import AgentProcess, write_agent_config
from tests.appserver import Recorder, is_approval, is_item
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)

pytestmark = [pytest.mark.realcodex, pytest.mark.timeout(180)]

WELCOME = {
    "type": "welcome",
    "protocol": 1,
    "workspaceId": "ws_fake",
    "features": {"codexExec": True, "codexExecWrite": True, "conversations": True},
}


class FakeRelay(Recorder):
    """Accepts one agent, answers hello, records what it sends and sends what a test says."""

    def __init__(self) -> None:
        super().__init__()
        self.hello: dict | None = None
        self.ws: ServerConnection | None = None
        self.connected = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        self.hello = json.loads(await ws.recv())
        await ws.send(json.dumps(WELCOME))
        self.ws = ws
        self.connected.set()
        async for raw in ws:
            self.messages.append(json.loads(raw))
            self._changed.set()

    async def ask(self, kind: str, **fields: object) -> dict:
        """Send one request and wait for its reply or refusal."""
        assert self.ws is not None
        request_id = f"r-{uuid.uuid4().hex[:10]}"
        await self.ws.send(json.dumps({"type": kind, "requestId": request_id, **fields}))
        return await self.wait_for(
            lambda m: m.get("requestId") == request_id, what=f"the answer to {kind}", timeout=90
        )


@dataclass
class Agent:
    relay: FakeRelay
    workspace: Path
    process: AgentProcess

    async def restart(self) -> int:
        """Stop the agent process and start it again; the index of its new hello's era."""
        await asyncio.to_thread(self.process.stop)
        self.relay.connected.clear()
        mark = len(self.relay.messages)
        self.process.start("start")
        await asyncio.wait_for(self.relay.connected.wait(), 30)
        return mark


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    relay = FakeRelay()
    with ModelServer(responder=scripted_reply) as model:
        home = write_codex_home(tmp_path / "codex-home", model.base_url)
        async with serve(relay.handler, "127.0.0.1", 0) as server:
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            config = write_agent_config(
                tmp_path,
                url,
                features={"codexExec": True, "codexExecWrite": False, "conversations": True},
                codex={"command": [str(launcher)], "home": str(home)},
            )
            workspace = tmp_path / "workspace"
            outside = tmp_path / "outside"
            outside.mkdir()
            (workspace / "escape").symlink_to(outside)
            TokenStore(tmp_path / "state").save("cra_fake", relay_base_url=url, agent_id="devbox")
            env = {API_KEY_ENV: "mock-key", "TMPDIR": str(codex_tmp), "NO_COLOR": "1"}
            process = AgentProcess(config, tmp_path / "agent.log", env=env).start("start")
            try:
                await asyncio.wait_for(relay.connected.wait(), 30)
                yield Agent(relay, workspace, process)
            finally:
                await asyncio.to_thread(process.stop)
                shutil.rmtree(codex_tmp, ignore_errors=True)
    assert "Traceback" not in process.logs(), process.logs()


async def test_agent_runs_a_conversation_for_the_relay(agent: Agent):
    """Start, approve, read and list a thread over the agent socket; the command runs once."""
    relay = agent.relay
    assert relay.hello["features"]["conversations"] is True
    await relay.wait_for(lambda m: m["type"] == "threads.update", what="threads.update")
    started = await relay.ask("thread.start", prompt="MOCK_ESCALATE: touch made.txt", cwd=".")
    assert started["type"] == "thread.reply", started
    thread = started["thread"]
    assert (thread["source"], thread["writeAccess"]) == ("phone", False)
    asked = await relay.wait_for(is_approval(thread["id"]), what="the approval")
    decided = await relay.ask(
        "approval.decide",
        threadId=thread["id"],
        approvalId=asked["approval"]["id"],
        decision="accept",
        decidedBy="user-1",
    )
    assert decided["approval"]["status"] == "accepted"
    await relay.wait_for(is_item(thread["id"], "commandExecution", "completed"))
    assert (agent.workspace / "made.txt").exists()
    again = await relay.ask(
        "approval.decide",
        threadId=thread["id"],
        approvalId=asked["approval"]["id"],
        decision="accept",
    )
    assert (again["type"], again["reason"]) == ("thread.refused", "approval-resolved")
    read = await relay.ask("thread.read", threadId=thread["id"])
    types = [item["type"] for item in read["items"]]
    assert types[:2] == ["userMessage", "commandExecution"]
    assert read["seq"] >= max(item["seq"] for item in read["items"])
    listed = await relay.ask("thread.list")
    assert thread["id"] in [t["id"] for t in listed["threads"]]


@pytest.mark.parametrize(
    ("kind", "fields", "reason"),
    [
        ("thread.start", {"prompt": "x", "cwd": "../outside"}, "cwd-outside-workspace"),
        ("thread.start", {"prompt": "x", "cwd": "escape"}, "cwd-outside-workspace"),
        ("thread.start", {"prompt": "x", "cwd": "missing"}, "cwd-not-found"),
        ("thread.start", {"prompt": "x", "writeAccess": True}, "write-mode-disabled"),
        ("thread.start", {"prompt": "   "}, "invalid-request"),
        ("thread.resume", {"threadId": str(uuid.uuid4())}, "unknown-thread"),
        ("thread.steer", {"threadId": str(uuid.uuid4()), "prompt": "x"}, "unknown-thread"),
        ("thread.interrupt", {"threadId": str(uuid.uuid4())}, "unknown-thread"),
        (
            "approval.decide",
            {"threadId": str(uuid.uuid4()), "approvalId": "apr_x", "decision": "accept"},
            "unknown-approval",
        ),
    ],
    ids=[
        "dotdot",
        "symlink",
        "missing",
        "write",
        "blank",
        "resume",
        "steer",
        "interrupt",
        "decide",
    ],
)
async def test_agent_refuses_forged_conversation_requests(agent: Agent, kind, fields, reason):
    """The agent checks every request against its own config and answers with a reason."""
    refused = await agent.relay.ask(kind, **fields)
    assert (refused["type"], refused["reason"]) == ("thread.refused", reason), refused
    assert not agent.relay.of("thread.update") or all(
        m["thread"]["cwd"].startswith(str(agent.workspace)) for m in agent.relay.of("thread.update")
    )
    assert not list((agent.workspace / "escape").iterdir())


async def test_agent_restart_mid_approval_runs_nothing_and_the_thread_goes_on(agent: Agent):
    """Restart the agent (and so its app-server) while Codex waits for approval: the command
    never runs, the thread is listed again and takes a new turn, which runs once."""
    relay = agent.relay
    started = await relay.ask("thread.start", prompt="MOCK_ESCALATE: echo run >> runs.txt")
    tid = started["thread"]["id"]
    asked = await relay.wait_for(is_approval(tid))
    mark = await agent.restart()
    await relay.wait_for(lambda m: m["type"] == "threads.update", after=mark, timeout=60)
    listed = {t["id"]: t for t in (await relay.ask("thread.list"))["threads"]}
    assert (listed[tid]["source"], listed[tid]["status"]) == ("phone", "notLoaded")
    stale = await relay.ask(
        "approval.decide", threadId=tid, approvalId=asked["approval"]["id"], decision="accept"
    )
    assert (stale["type"], stale["reason"]) == ("thread.refused", "unknown-approval")
    assert not (agent.workspace / "runs.txt").exists()
    turn = await relay.ask(
        "thread.turn", threadId=tid, prompt="MOCK_ESCALATE: echo again >> runs.txt"
    )
    assert turn["type"] == "thread.reply", turn
    again = await relay.wait_for(is_approval(tid), after=mark)
    await relay.ask(
        "approval.decide", threadId=tid, approvalId=again["approval"]["id"], decision="accept"
    )
    await relay.wait_for(is_item(tid, "commandExecution", "completed"), after=mark)
    assert (agent.workspace / "runs.txt").read_text() == "again\n"
