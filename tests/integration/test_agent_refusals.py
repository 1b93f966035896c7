"""A lying relay cannot make the agent run what its own config forbids (R09, R14, R15, B4).

The real agent process connects to a fake relay that sends forged tasks straight over the
WebSocket, skipping every relay-side check.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from codexrelay.agent.tokenstore import TokenStore
from tests.agents import AgentProcess, write_agent_config

pytestmark = pytest.mark.asyncio


class FakeRelay:
    """Accepts one agent, answers hello, and records everything the agent sends.

    It numbers what it sends (``linkSeq``, B4) as the real relay does on a numbered
    connection."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.hello: dict | None = None
        self.connected = asyncio.Event()
        self.ws: ServerConnection | None = None
        self.new_message = asyncio.Event()
        self.sent = 0
        self.connections = 0
        self.closes: list[int | None] = []

    async def send_message(self, message: dict) -> None:
        """Send one message with the next linkSeq."""
        assert self.ws is not None
        self.sent += 1
        await self.ws.send(json.dumps({"linkSeq": self.sent, **message}))

    async def handler(self, ws: ServerConnection) -> None:
        self.hello = json.loads(await ws.recv())
        self.ws, self.sent = ws, 0
        self.connections += 1
        await self.send_message(
            {
                "type": "welcome",
                "protocol": 1,
                "workspaceId": "ws_fake",
                "features": {
                    "codexExec": True,
                    "codexExecWrite": True,
                    "runAction": True,
                    "readLog": True,
                },
            }
        )
        self.connected.set()
        try:
            async for raw in ws:
                self.received.append(json.loads(raw))
                self.new_message.set()
        finally:
            self.closes.append(ws.close_code)
            self.new_message.set()

    async def send_task(self, **task) -> None:
        await self.send_message({"type": "task", "task": task})

    async def outcome(self, task_id: str) -> dict:
        """The agent's rejection or finish report for ``task_id``."""

        async def wait() -> dict:
            while True:
                for message in self.received:
                    if message.get("taskId") == task_id and message["type"] in {
                        "task.rejected",
                        "task.finished",
                    }:
                        return message
                self.new_message.clear()
                await self.new_message.wait()

        return await asyncio.wait_for(wait(), 15)


@pytest.fixture
async def fake_world(tmp_path: Path):
    relay = FakeRelay()
    async with serve(relay.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_text("not for the relay\n")
        config = write_agent_config(
            tmp_path,
            url,
            actions={
                "hello": {"label": "Hello", "argv": ["echo", "hello"]},
            },
        )
        workspace = tmp_path / "workspace"
        (workspace / "escape").symlink_to(outside)
        TokenStore(tmp_path / "state").save("cra_fake", relay_base_url=url, agent_id="devbox")
        marker = tmp_path / "ran-marker"
        agent = AgentProcess(config, tmp_path / "agent.log", env={"MARKER": str(marker)}).start(
            "start"
        )
        try:
            await asyncio.wait_for(relay.connected.wait(), 20)
            yield relay, tmp_path
        finally:
            await asyncio.to_thread(agent.stop)  # keep the loop free for the close handshake


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ({"type": "run_action", "actionId": "rm-rf"}, "unknown-action"),
        ({"type": "read_log", "logSourceId": "etc-shadow"}, "unknown-log-source"),
        ({"type": "codex_exec", "prompt": "x", "cwd": "../outside"}, "cwd-outside-workspace"),
        ({"type": "codex_exec", "prompt": "x", "cwd": "/etc"}, "cwd-outside-workspace"),
        ({"type": "codex_exec", "prompt": "x", "cwd": "escape"}, "cwd-outside-workspace"),
        ({"type": "codex_exec", "prompt": "x", "writeAccess": True}, "write-mode-disabled"),
        (
            {"type": "codex_exec", "prompt": "x", "resumeSessionId": str(uuid.uuid4())},
            "unknown-session",
        ),
    ],
    ids=["action", "log", "dotdot", "absolute", "symlink", "write", "resume"],
)
async def test_agent_refuses_forged_task(fake_world, task, reason):
    """The agent re-checks every task against its own config and rejects it with a reason."""
    relay, _ = fake_world
    task_id = f"forged-{uuid.uuid4().hex[:8]}"
    await relay.send_task(id=task_id, **task)
    outcome = await relay.outcome(task_id)
    assert outcome["type"] == "task.rejected"
    assert outcome["reason"] == reason
    assert not any(
        m.get("taskId") == task_id and m["type"] in {"task.started", "task.progress"}
        for m in relay.received
    )


async def test_agent_runs_a_task_id_once(fake_world):
    """B4: the same task id sent twice runs once; the repeat is refused."""
    relay, _ = fake_world
    await relay.send_task(id="once-1", type="run_action", actionId="hello")
    first = await relay.outcome("once-1")
    assert first["type"] == "task.finished"
    assert first["outputTail"].strip() == "hello"
    relay.received.clear()
    await relay.send_task(id="once-1", type="run_action", actionId="hello")
    second = await relay.outcome("once-1")
    assert second["type"] == "task.rejected"
    assert second["reason"] == "duplicate-task"


async def test_agent_hello_advertises_ids_not_paths(fake_world):
    """A2/R15: hello carries ids, labels and flags only, never argv or file paths."""
    relay, tmp_path = fake_world
    hello = relay.hello
    assert hello["agentId"] == "devbox"
    assert [a["id"] for a in hello["actions"]] == ["hello"]
    text = json.dumps(hello)
    assert str(tmp_path) not in text
    assert "echo" not in text
    assert hello["features"]["codexExecWrite"] is False
    assert not os.environ.get("CODEXRELAY_NEVER_SET")
