"""Path and argv abuse against a real agent: a lying relay gets nothing run (R09, R13, R14,
R15, A2, B4).

A fake relay (the one from tests/integration/test_agent_refusals.py, run on its own thread
here so hypothesis can drive it) sends forged tasks straight over the agent's socket:
``..`` and absolute working directories, symlinks out of workspaceRoot and symlink loops,
NUL bytes, over-long names, unknown action and log ids, session ids outside the catalog,
flag-like values (``--help``, ``-C/``) in every string field, unknown fields. Each must be
rejected with a reason (or, when it does not even parse, ignored), the agent must stay
connected, and nothing may run: the one action that could run appends to a marker file,
and the Codex CLI leaves a rollout for every run.

"Ignored" is checked without sleeping: after each forged task a harmless sentinel task is
sent; the agent handles messages in order, so once the sentinel's report is in, any report
about the forged task would already have arrived.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import serve

from codexrelay.agent.ledger import LEDGER_FILE
from codexrelay.agent.tokenstore import TokenStore
from tests.agents import AgentProcess, write_agent_config
from tests.integration.test_agent_refusals import FakeRelay

REPORTS = {"task.rejected", "task.finished"}
FLAGS = ("--help", "-C/", "-c", "--sandbox=danger-full-access", "-", "--", "-o/etc/passwd")


class RelayThread:
    """A ``FakeRelay`` served on its own event loop thread, driven synchronously."""

    def __init__(self) -> None:
        self.relay = FakeRelay()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._server: Any = None

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> RelayThread:
        self.thread.start()

        async def open_server() -> Any:
            return await serve(self.relay.handler, "127.0.0.1", 0)

        self._server = self.call(open_server())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        self.call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def send_raw(self, task: dict[str, Any]) -> None:
        """Send a ``task`` message with exactly these fields."""

        self.call(self.relay.send_message({"type": "task", "task": task}))

    def outcome(self, task_id: str) -> dict[str, Any]:
        return self.call(self.relay.outcome(task_id))

    def about(self, task_id: str) -> list[dict[str, Any]]:
        """Every report the agent sent about ``task_id``."""
        return [m for m in list(self.relay.received) if m.get("taskId") == task_id]


@dataclass
class Agent:
    """The agent under attack and what it could touch."""

    relay: RelayThread
    dir: Path
    process: AgentProcess
    sentinels: int = 0

    @property
    def marker(self) -> Path:
        return self.dir / "marker.txt"

    def rollouts(self) -> int:
        return sum(1 for _ in (self.dir / "codex-home").rglob("rollout-*.jsonl"))

    def ledger(self) -> str:
        return (self.dir / "state" / LEDGER_FILE).read_text()

    def forge(self, **task: Any) -> dict[str, Any] | None:
        """Send a forged task and a sentinel after it; the forged task's report, if any."""
        task_id = task.setdefault("id", f"forged-{uuid.uuid4().hex[:12]}")
        self.relay.send_raw(task)
        sentinel = f"sentinel-{uuid.uuid4().hex[:12]}"
        self.relay.send_raw({"id": sentinel, "type": "read_log", "logSourceId": "app"})
        assert self.relay.outcome(sentinel)["type"] == "task.finished", self.process.logs()
        self.sentinels += 1
        reports = [m for m in self.relay.about(task_id) if m["type"] in REPORTS]
        started = [m for m in self.relay.about(task_id) if m["type"] == "task.started"]
        assert not started, f"forged task {task} was started"
        return reports[0] if reports else None


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """A real agent process connected to the fake relay, with traps in its workspace."""
    directory = Path(tmp_path_factory.mktemp("abuse"))
    relay = RelayThread().start()
    url = f"http://127.0.0.1:{relay.port}"
    outside = directory / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the relay\n")
    marker = directory / "marker.txt"
    config = write_agent_config(
        directory,
        url,
        actions={
            "mark": {
                "label": "Mark",
                "argv": [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('ran\\n')"],
            }
        },
    )
    workspace = directory / "workspace"
    (workspace / "sub").mkdir()
    (workspace / "escape").symlink_to(outside)
    (workspace / "loop").symlink_to(workspace / "loop")
    (workspace / "dangling").symlink_to(directory / "nowhere")
    TokenStore(directory / "state").save("cra_fake", relay_base_url=url, agent_id="devbox")
    process = AgentProcess(config, directory / "agent.log").start("start")
    try:
        relay.call(asyncio.wait_for(relay.relay.connected.wait(), 20))
        yield Agent(relay, directory, process)
    finally:
        process.stop()
        relay.stop()


ESCAPING_CWDS = [
    "..",
    "../",
    "../outside",
    "sub/../..",
    "sub/../../outside/secret.txt",
    "./../outside",
    "/",
    "/etc",
    "//etc",
    "/tmp",
    "escape",
    "escape/",
    "escape/../outside",
    "sub/../escape",
]
UNUSABLE_CWDS = [
    "a\x00b",
    "sub\x00/../..",
    "\x00",
    "loop",
    "loop/x",
    "dangling",
    "nope",
    "nope/..",  # the kernel needs ``nope`` to exist; it is never folded away
    "-o/etc/passwd/../../..",
    "a" * 300,
    "sub/" + "b" * 256,
    ("c" * 200 + "/") * 20,
    "~",
    "~root",
    *FLAGS,
]


@pytest.mark.parametrize("cwd", ESCAPING_CWDS)
def test_cwd_outside_the_workspace_is_refused(agent, cwd):
    """R13, R15: a cwd that leaves workspaceRoot (``..``, absolute, symlink) is refused."""
    before = agent.rollouts()
    report = agent.forge(type="codex_exec", prompt="FAKE: message hi", cwd=cwd)
    assert report is not None
    assert (report["type"], report["reason"]) == ("task.rejected", "cwd-outside-workspace")
    assert agent.rollouts() == before


@pytest.mark.parametrize("cwd", UNUSABLE_CWDS, ids=lambda v: repr(v)[:40])
def test_unusable_cwd_is_refused(agent, cwd):
    """R15: NUL bytes, symlink loops, over-long names, flags and missing dirs: refused with
    a reason, the agent stays connected, nothing runs."""
    before = agent.rollouts()
    report = agent.forge(type="codex_exec", prompt="FAKE: message hi", cwd=cwd)
    assert report is not None, f"{cwd!r} was neither refused nor run"
    assert report["type"] == "task.rejected", report
    assert report["reason"] in {"cwd-outside-workspace", "cwd-not-found"}, report
    assert agent.rollouts() == before


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ({"type": "run_action", "actionId": "--help"}, "unknown-action"),
        ({"type": "run_action", "actionId": "-C/"}, "unknown-action"),
        ({"type": "run_action", "actionId": "mark\x00"}, "unknown-action"),
        ({"type": "run_action", "actionId": "MARK"}, "unknown-action"),
        ({"type": "run_action", "actionId": " mark"}, "unknown-action"),
        ({"type": "run_action", "actionId": "../mark"}, "unknown-action"),
        ({"type": "run_action"}, "unknown-action"),
        ({"type": "read_log", "logSourceId": "--help"}, "unknown-log-source"),
        ({"type": "read_log", "logSourceId": "/etc/passwd"}, "unknown-log-source"),
        ({"type": "read_log", "logSourceId": "../app"}, "unknown-log-source"),
        ({"type": "read_log", "logSourceId": "app\x00"}, "unknown-log-source"),
        ({"type": "read_log"}, "unknown-log-source"),
        (
            {"type": "codex_exec", "prompt": "x", "resumeSessionId": str(uuid.uuid4())},
            "unknown-session",
        ),
        ({"type": "codex_exec", "prompt": "x", "writeAccess": True}, "write-mode-disabled"),
        ({"type": "codex_exec", "prompt": ""}, "invalid-task"),
        ({"type": "codex_exec"}, "invalid-task"),
        ({"id": "--help", "type": "run_action", "actionId": "nope"}, "unknown-action"),
        ({"id": "../../etc/passwd", "type": "run_action", "actionId": "nope"}, "unknown-action"),
    ],
    ids=lambda v: repr(v)[:50],
)
def test_forged_ids_are_refused(agent, task, reason):
    """R09, R14, R15: unknown actions, logs and sessions, and flag-like ids, are refused."""
    marked = agent.marker.read_text() if agent.marker.exists() else ""
    report = agent.forge(**task)
    assert report is not None
    assert (report["type"], report["reason"]) == ("task.rejected", reason)
    assert (agent.marker.read_text() if agent.marker.exists() else "") == marked


@pytest.mark.parametrize(
    "task",
    [
        {"type": "shell", "command": "touch /tmp/pwned"},
        {"type": "run_action", "actionId": "mark", "argv": ["sh", "-c", "id"]},
        {"type": "run_action", "actionId": "mark", "env": {"LD_PRELOAD": "/tmp/x.so"}},
        {"type": "codex_exec", "prompt": "x", "resumeSessionId": "--help"},
        {"type": "codex_exec", "prompt": "x", "resumeSessionId": "../../../etc/passwd"},
        {"type": "codex_exec", "prompt": "x", "cwd": "a" * 5000},
        {"type": "read_log", "logSourceId": "x" * 100},
        {"id": "x" * 65, "type": "run_action", "actionId": "mark"},
        {"id": "", "type": "run_action", "actionId": "mark"},
    ],
    ids=lambda v: repr(v)[:50],
)
def test_malformed_tasks_are_ignored(agent, task):
    """A task that does not fit the protocol (unknown type or field, over-long, flag as a
    session id) is dropped unparsed: never accepted, never run."""
    marked = agent.marker.read_text() if agent.marker.exists() else ""
    task_id = task.setdefault("id", f"bad-{uuid.uuid4().hex[:8]}")
    assert agent.forge(**task) is None
    assert json.dumps(task_id) not in agent.ledger()
    assert (agent.marker.read_text() if agent.marker.exists() else "") == marked


# Generated tasks against the one live agent of this module (so the fixture is shared).
AGAINST_THE_AGENT = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
PIECES = st.sampled_from(["..", ".", "sub", "escape", "loop", "", "~", "\x00", *FLAGS])


@AGAINST_THE_AGENT
@given(
    before=st.lists(PIECES, max_size=3),
    after=st.lists(st.one_of(PIECES, st.text(max_size=20)), max_size=3),
    escape=st.sampled_from(["climb", "/", "//", "escape"]),
)
def test_generated_escaping_cwds_never_run(agent, before, after, escape):
    """R13, R15 (hypothesis): any cwd built around an escape (absolute, more ``..`` than
    the path has levels, or the symlink out) plus arbitrary pieces is refused; nothing runs."""
    if escape == "climb":
        # One ``..`` more than the levels ``before`` could descend (a piece may hold a
        # slash, ``-o/etc/passwd``), so the path always climbs above workspaceRoot.
        levels = sum(1 for part in "/".join(before).split("/") if part not in ("", "."))
        middle = [*before, *([".."] * (levels + 1))]
    else:
        middle = [escape.rstrip("/") or escape, *before] if escape != "escape" else ["escape"]
    cwd = (
        "/".join([*middle, *after]).replace("//", "/")
        if escape != "//"
        else "/" + "/".join([*before, *after])
    )
    runs = agent.rollouts()
    report = agent.forge(type="codex_exec", prompt="FAKE: message hi", cwd=cwd)
    assert report is not None, cwd
    assert report["type"] == "task.rejected", (cwd, report)
    assert agent.rollouts() == runs, cwd


@AGAINST_THE_AGENT
@given(
    field=st.sampled_from(["actionId", "logSourceId"]),
    value=st.one_of(
        st.text(max_size=64), st.sampled_from(FLAGS), st.text(alphabet="-/.\x00 ", max_size=10)
    ),
)
def test_generated_ids_never_run(agent, field, value):
    """R15 (hypothesis): an action or log id the agent's config does not list never runs."""
    if value in {"mark", "app"}:
        return
    kind = "run_action" if field == "actionId" else "read_log"
    marked = agent.marker.read_text() if agent.marker.exists() else ""
    report = agent.forge(type=kind, **{field: value})
    if report is not None:
        assert report["type"] == "task.rejected", (value, report)
    assert (agent.marker.read_text() if agent.marker.exists() else "") == marked


def test_flag_like_prompts_stay_off_argv(agent):
    """R15, A4: a prompt of flags is only text on stdin; Codex's argv stays the agent's own."""
    prompt = "\n".join([*FLAGS, "FAKE: echo-argv"])
    agent.relay.send_raw({"id": "flags-prompt", "type": "codex_exec", "prompt": prompt})
    finished = agent.relay.outcome("flags-prompt")
    assert finished["type"] == "task.finished", finished
    argv = json.loads(finished["finalMessage"])
    assert "read-only" in argv
    assert not {"--help", "-C/", "-o/etc/passwd", "--sandbox=danger-full-access"} & set(argv)


def test_the_marker_action_still_runs_when_asked(agent):
    """The traps can tell: the real action id runs once and marks the file; the same id
    sent again is refused (B4); the agent stayed connected through all the abuse."""
    before = agent.marker.read_text().count("ran") if agent.marker.exists() else 0
    agent.relay.send_raw({"id": "mark-once", "type": "run_action", "actionId": "mark"})
    assert agent.relay.outcome("mark-once")["status"] == "completed"
    assert agent.marker.read_text().count("ran") == before + 1

    async def forget() -> None:
        agent.relay.relay.received.clear()

    agent.relay.call(forget())
    report = agent.forge(id="mark-once", type="run_action", actionId="mark")
    assert report is not None
    assert report["reason"] == "duplicate-task"
    assert agent.marker.read_text().count("ran") == before + 1
    assert agent.process.running()
    assert agent.relay.relay.hello is not None
    assert "relay unreachable" not in agent.process.logs(), "the agent lost its connection"
