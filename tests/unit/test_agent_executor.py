"""The executor: the agent's own checks on every task, the ledger, queueing, cancel, redaction."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from codexrelay.agent.catalog import SessionCatalog
from codexrelay.agent.config import AgentConfig
from codexrelay.agent.executor import Executor, default_runners
from codexrelay.agent.ledger import LEDGER_FILE, TaskLedger
from codexrelay.protocol import (
    Message,
    TaskAccepted,
    TaskFinished,
    TaskProgress,
    TaskRejected,
    TaskSpec,
    TaskStarted,
    dump_message,
    parse_agent_message,
)
from tests.fakes import fake_agent_config_data

SID = "01a2285e-4d34-7503-abfd-c91a7e41551b"


class Outbox:
    """What the executor sent, checked to be valid protocol on the way."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        parse_agent_message(dump_message(message))  # every message must survive the wire
        self.messages.append(message)

    def of(self, task_id: str) -> list[Message]:
        return [m for m in self.messages if getattr(m, "task_id", None) == task_id]

    def types(self, task_id: str) -> list[str]:
        return [m.type for m in self.of(task_id)]  # type: ignore[attr-defined]

    def finished(self, task_id: str) -> TaskFinished:
        found = [m for m in self.of(task_id) if isinstance(m, TaskFinished)]
        assert len(found) == 1, self.types(task_id)
        return found[0]

    def rejection(self, task_id: str) -> TaskRejected:
        (message,) = self.of(task_id)
        assert isinstance(message, TaskRejected), message
        return message


def make(
    tmp_path: Path, *, session_ids: Any = None, redact: Any = None, **overrides: Any
) -> tuple[Executor, Outbox]:
    overrides.setdefault(
        "actions",
        {
            "hello": {"label": "Hello", "argv": ["echo", "hello"]},
            "gate": {"label": "Gate", "argv": ["sh", "-c", GATE]},
        },
    )
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    overrides.setdefault("logSources", {"app": {"label": "App", "path": str(log)}})
    config = AgentConfig.model_validate(fake_agent_config_data(tmp_path, **overrides))
    outbox = Outbox()
    kwargs: dict[str, Any] = {"runners": default_runners(config, grace_sec=0.3)}
    if session_ids is not None:
        kwargs["session_ids"] = session_ids
    if redact is not None:
        kwargs["redact"] = redact
    return Executor(config, outbox, **kwargs), outbox


# Marks itself started, then waits for a `go` file in the workspace: a task we hold open.
GATE = "touch started.$$; while [ ! -e go ]; do sleep 0.02; done; echo released"


async def poll(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def codex(task_id: str, prompt: str = "hello", **fields: Any) -> TaskSpec:
    return TaskSpec(id=task_id, type="codex_exec", prompt=prompt, **fields)


def action(task_id: str, action_id: str = "hello") -> TaskSpec:
    return TaskSpec(id=task_id, type="run_action", action_id=action_id)


async def test_executor_reports_the_whole_lifecycle(tmp_path):
    """An accepted task sends accepted, started, progress (seq 1, 2, ...) and finished."""
    executor, outbox = make(tmp_path)
    assert await executor.handle(codex("t1", "FAKE: message a\nFAKE: message b")) is True
    await executor.join()
    types = outbox.types("t1")
    assert types == [
        "task.accepted",
        "task.started",
        "task.progress",
        "task.progress",
        "task.finished",
    ]
    progress = [m for m in outbox.of("t1") if isinstance(m, TaskProgress)]
    assert [m.seq for m in progress] == [1, 2]
    finished = outbox.finished("t1")
    assert (finished.status, finished.final_message) == ("completed", "b")
    assert finished.codex_session_id is not None
    # The Codex session is named once, with the first progress event, not only at the end.
    assert [m.codex_session_id for m in progress] == [finished.codex_session_id, None]
    assert executor.running_ids() == []


async def test_executor_runs_actions_and_log_reads(tmp_path):
    """Action output and a log tail come back in task.finished."""
    executor, outbox = make(tmp_path)
    await executor.handle(action("a1"))
    await executor.handle(TaskSpec(id="l1", type="read_log", log_source_id="app"))
    await executor.join()
    assert outbox.finished("a1").output_tail == "hello\n"
    assert outbox.finished("l1").output_tail == "one\ntwo\n"


@pytest.mark.parametrize(
    ("flag", "spec"),
    [
        ("codexExec", codex("x")),
        ("runAction", action("x")),
        ("readLog", TaskSpec(id="x", type="read_log", log_source_id="app")),
    ],
)
async def test_executor_refuses_disabled_features(tmp_path, flag, spec):
    """R09: the agent enforces its own feature flags whatever the relay sent."""
    executor, outbox = make(tmp_path, features={flag: False})
    assert await executor.handle(spec) is False
    assert outbox.rejection("x").reason == "feature-disabled"


async def test_executor_refuses_unknown_action_and_log_ids(tmp_path):
    """R15, O6: only action and log ids listed in the config exist."""
    executor, outbox = make(tmp_path)
    await executor.handle(action("a", "rm-rf"))
    await executor.handle(TaskSpec(id="l", type="read_log", log_source_id="etc-shadow"))
    assert outbox.rejection("a").reason == "unknown-action"
    assert outbox.rejection("l").reason == "unknown-log-source"


@pytest.mark.parametrize(
    "cwd", ["..", "../..", "/etc", "sub/../../x", "escape", "escape/inner", "a\x00b"]
)
async def test_executor_refuses_cwd_outside_workspace(tmp_path, cwd):
    """A relay-sent cwd that leaves workspaceRoot (.., absolute, symlink, NUL) is refused."""
    executor, outbox = make(tmp_path)
    (tmp_path / "ws" / "escape").symlink_to(tmp_path)
    (tmp_path / "inner").mkdir()
    await executor.handle(codex("c", cwd=cwd))
    assert outbox.rejection("c").reason == "cwd-outside-workspace"


async def test_executor_accepts_cwd_inside_workspace(tmp_path):
    """A relative cwd inside workspaceRoot is where Codex runs."""
    executor, outbox = make(tmp_path)
    (tmp_path / "ws" / "pkg").mkdir()
    await executor.handle(codex("c", "FAKE: echo-argv", cwd="pkg"))
    await executor.join()
    argv = json.loads(outbox.finished("c").final_message or "")
    assert argv[argv.index("-C") + 1] == str((tmp_path / "ws" / "pkg").resolve())


@pytest.mark.parametrize("cwd", ["nope", "nope/..", "-o/etc/passwd/../../.."])
async def test_executor_refuses_missing_cwd(tmp_path, cwd):
    """A cwd inside the root that does not exist is refused before Codex starts, also when
    ``..`` would fold the missing part away on paper (the kernel walks every component)."""
    executor, outbox = make(tmp_path)
    await executor.handle(codex("c", cwd=cwd))
    assert outbox.rejection("c").reason == "cwd-not-found"


async def test_executor_refuses_write_mode_when_disabled(tmp_path):
    """R17, A4: write mode needs codexExecWrite on this agent, whatever the relay allows."""
    executor, outbox = make(tmp_path)
    await executor.handle(codex("w", write_access=True))
    assert outbox.rejection("w").reason == "write-mode-disabled"


async def test_executor_refuses_write_on_resume_unless_allowed(tmp_path):
    """R14: a resumed task may not write unless codex.allowWriteOnResume is set."""
    executor, outbox = make(tmp_path, features={"codexExecWrite": True}, session_ids=lambda: {SID})
    await executor.handle(codex("w", write_access=True, resume_session_id=SID))
    assert outbox.rejection("w").reason == "write-on-resume-disabled"


async def test_executor_write_mode_when_allowed_uses_workspace_write(tmp_path):
    """A4: with codexExecWrite on and writeAccess asked, the sandbox is workspace-write."""
    executor, outbox = make(tmp_path, features={"codexExecWrite": True})
    await executor.handle(codex("w", "FAKE: echo-argv", write_access=True))
    await executor.handle(codex("r", "FAKE: echo-argv"))
    await executor.join()
    sandboxes = []
    for task_id in ("w", "r"):
        argv = json.loads(outbox.finished(task_id).final_message or "")
        sandboxes.append(argv[argv.index("--sandbox") + 1])
    assert sandboxes == ["workspace-write", "read-only"]


async def test_executor_refuses_resume_of_unknown_session(tmp_path):
    """A resume id missing from the agent's own catalog is refused."""
    executor, outbox = make(tmp_path, session_ids=lambda: {"01a2285e-4d34-7503-abfd-c91a7e41551c"})
    await executor.handle(codex("r", resume_session_id=SID))
    assert outbox.rejection("r").reason == "unknown-session"


async def test_executor_refuses_non_canonical_session_id(tmp_path):
    """A resume id that is not a canonical UUID is refused even if a catalog listed it."""
    executor, outbox = make(tmp_path, session_ids=lambda: {"last"})
    spec = TaskSpec.model_construct(**{**codex("r").model_dump(), "resume_session_id": "last"})
    await executor.handle(spec)
    assert outbox.rejection("r").reason == "unknown-session"


async def test_executor_resumes_a_session_from_the_catalog(tmp_path):
    """A session recorded under workspaceRoot (seen by the catalog) can be resumed."""
    config_home = tmp_path / "codex-home"
    catalog = SessionCatalog(codex_home=config_home, workspace_root=(tmp_path / "ws").resolve())
    executor, outbox = make(tmp_path, session_ids=catalog.session_ids)
    await executor.handle(codex("first", "start here"))
    await executor.join()
    sid = outbox.finished("first").codex_session_id
    catalog.refresh()
    await executor.handle(codex("second", "go on", resume_session_id=sid))
    await executor.join()
    finished = outbox.finished("second")
    assert (finished.status, finished.codex_session_id) == ("completed", sid)


async def test_executor_refuses_empty_prompt(tmp_path):
    """A Codex task without a prompt is refused."""
    executor, outbox = make(tmp_path)
    await executor.handle(codex("p", "  \n"))
    assert outbox.rejection("p").reason == "invalid-task"


async def test_executor_refuses_a_repeated_task_id(tmp_path):
    """B4: a task id is executed at most once, also while the first run is going."""
    executor, outbox = make(tmp_path)
    assert await executor.handle(action("dup")) is True
    assert await executor.handle(action("dup")) is False
    await executor.join()
    assert await executor.handle(action("dup")) is False
    reasons = [m.reason for m in outbox.of("dup") if isinstance(m, TaskRejected)]
    assert reasons == ["duplicate-task", "duplicate-task"]
    assert outbox.types("dup").count("task.started") == 1


async def test_executor_refuses_a_repeat_after_agent_restart(tmp_path):
    """B4: the ledger in stateDir outlives the process, so a replay after restart is refused."""
    first, _ = make(tmp_path)
    await first.handle(action("once"))
    await first.join()
    again, outbox = make(tmp_path)
    await again.handle(action("once"))
    assert outbox.rejection("once").reason == "duplicate-task"


def test_ledger_is_private_durable_and_bounded(tmp_path):
    """B4: 0700 dir, 0600 file; compaction keeps the newest ids and forgets only old ones."""
    state = tmp_path / "state"
    ledger = TaskLedger.open(state, capacity=5)
    assert all(ledger.record(f"t{i}") for i in range(12))
    assert ledger.record("t11") is False
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / LEDGER_FILE).stat().st_mode) == 0o600
    reopened = TaskLedger.open(state, capacity=5)
    assert all(f"t{i}" in reopened for i in range(7, 12))  # the newest `capacity` always kept
    assert "t0" not in reopened
    assert len((state / LEDGER_FILE).read_text().splitlines()) < 10


def test_ledger_survives_a_torn_last_line(tmp_path):
    """A crash mid-append loses only that line; ids written after it are still found."""
    state = tmp_path / "state"
    TaskLedger.open(state).record("kept")
    with (state / LEDGER_FILE).open("a") as fh:
        fh.write('"torn')
    ledger = TaskLedger.open(state)
    ledger.record("after")
    reopened = TaskLedger.open(state)
    assert "kept" in reopened
    assert "after" in reopened
    assert ledger.record('id with "quotes"\nand a newline') is True
    assert 'id with "quotes"\nand a newline' in TaskLedger.open(state)


async def test_executor_refuses_a_task_it_cannot_record(tmp_path):
    """B4: a task whose id cannot be written to the ledger is refused, never run unrecorded."""
    executor, outbox = make(tmp_path)
    ledger = tmp_path / "state" / LEDGER_FILE
    ledger.unlink()
    ledger.mkdir()  # appending to it now fails like a broken disk would
    assert await executor.handle(action("r")) is False
    assert outbox.rejection("r").reason == "ledger-unavailable"


async def test_executor_runs_two_at_a_time_and_queues_the_third(tmp_path):
    """maxConcurrentTasks=2: a third task waits in the queue until a slot frees up."""
    executor, outbox = make(tmp_path)
    ws = tmp_path / "ws"
    for task_id in ("g1", "g2", "g3"):
        assert await executor.handle(action(task_id, "gate")) is True
    await poll(lambda: len(list(ws.glob("started.*"))) == 2)
    started = [m.task_id for m in outbox.messages if isinstance(m, TaskStarted)]
    assert started == ["g1", "g2"]
    assert sorted(executor.running_ids()) == ["g1", "g2", "g3"]
    (ws / "go").touch()
    await executor.join()
    order = [
        (m.type, m.task_id) for m in outbox.messages if isinstance(m, TaskStarted | TaskFinished)
    ]
    assert order.index(("task.started", "g3")) > min(
        order.index(("task.finished", "g1")), order.index(("task.finished", "g2"))
    )
    assert all(outbox.finished(t).status == "completed" for t in ("g1", "g2", "g3"))


async def test_executor_cancels_a_queued_task_before_it_starts(tmp_path):
    """A task cancelled while queued never starts and finishes as cancelled."""
    executor, outbox = make(tmp_path, maxConcurrentTasks=1)
    await executor.handle(action("run", "gate"))
    await executor.handle(action("queued", "hello"))
    await poll(lambda: list((tmp_path / "ws").glob("started.*")))
    assert executor.cancel("queued") is True
    await poll(lambda: "task.finished" in outbox.types("queued"))
    assert outbox.types("queued") == ["task.accepted", "task.finished"]
    assert outbox.finished("queued").status == "cancelled"
    (tmp_path / "ws" / "go").touch()
    await executor.join()
    assert outbox.finished("run").status == "completed"


async def test_executor_cancels_a_running_task(tmp_path):
    """cancel() stops a running task's process group; it finishes as cancelled."""
    executor, outbox = make(tmp_path)
    await executor.handle(codex("c", "FAKE: hang"))
    await poll(lambda: "task.progress" in outbox.types("c"))
    assert executor.cancel("c") is True
    assert executor.cancel("nope") is False
    await asyncio.wait_for(executor.join(), 10)
    assert outbox.finished("c").status == "cancelled"


async def test_executor_shutdown_cancels_everything(tmp_path):
    """shutdown() stops running and queued tasks and reports each one."""
    executor, outbox = make(tmp_path, maxConcurrentTasks=1)
    await executor.handle(action("a", "gate"))
    await executor.handle(action("b", "gate"))
    await poll(lambda: list((tmp_path / "ws").glob("started.*")))
    await asyncio.wait_for(executor.shutdown(), 10)
    assert (outbox.finished("a").status, outbox.finished("b").status) == ("cancelled", "cancelled")
    assert executor.running_ids() == []


def init_repo(ws: Path) -> None:
    """A git work tree with f.txt staged, so a write shows up in the diff."""
    git = shutil.which("git") or "git"
    subprocess.run([git, "init", "-q"], cwd=ws, check=True)
    subprocess.run([git, "add", "f.txt"], cwd=ws, check=True)


def redact_secret(text: str) -> tuple[str, int]:
    return text.replace("SECRET", "[redacted]"), text.count("SECRET")


async def test_executor_redacts_every_outbound_text(tmp_path):
    """B3: progress, output tail, final message, diff and error pass the redaction hook."""
    executor, outbox = make(
        tmp_path,
        redact=redact_secret,
        features={"codexExecWrite": True},
        actions={"leak": {"label": "Leak", "argv": ["sh", "-c", "echo SECRET; exit 3"]}},
    )
    prompt = "FAKE: command cat SECRET\nFAKE: write f.txt SECRET\nFAKE: message SECRET"
    ws = tmp_path / "ws"
    (ws / "f.txt").write_text("x\n")
    init_repo(ws)
    await executor.handle(codex("c", prompt, write_access=True))
    await executor.handle(action("a", "leak"))
    await executor.handle(codex("f", "FAKE: fail SECRET down"))
    await executor.join()
    wire = "".join(dump_message(m) for m in outbox.messages)
    assert "SECRET" not in wire
    assert "[redacted]" in (outbox.finished("c").diff_text or "")
    assert outbox.finished("c").final_message == "[redacted]"
    assert outbox.finished("c").redactions >= 5
    assert outbox.finished("a").redactions == 2  # one progress chunk + the tail
    assert outbox.finished("f").error == "[redacted] down"


async def test_executor_keeps_running_when_send_fails(tmp_path):
    """A dropped connection while sending does not kill the task; it still runs to the end."""
    config = AgentConfig.model_validate(
        fake_agent_config_data(
            tmp_path, actions={"mark": {"label": "M", "argv": ["touch", "done"]}}
        )
    )

    async def broken(message: Message) -> None:
        raise ConnectionError

    executor = Executor(config, broken)
    assert await executor.handle(action("m", "mark")) is True
    await executor.join()
    assert (tmp_path / "ws" / "done").exists()


def new_files_holding(directory: Path, before: set[Path], text: str) -> list[Path]:
    """Files that appeared in ``directory`` since ``before`` and contain ``text``."""
    fresh = set(directory.iterdir()) - before
    return [p for p in fresh if p.is_file() and text in p.read_text(errors="ignore")]


async def test_executor_leaves_no_task_files_behind(tmp_path):
    """The prompt goes on stdin: nothing holding task content is left in stateDir or TMPDIR."""
    executor, outbox = make(tmp_path)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    before = set(tmp.iterdir())  # noqa: ASYNC240 - a one-off listing before the task starts
    await executor.handle(codex("c", "private prompt text"))
    await executor.join()
    assert outbox.finished("c").status == "completed"
    assert new_files_holding(tmp_path / "state", set(), "private prompt text") == []
    assert new_files_holding(tmp, before, "private prompt text") == []


async def test_executor_messages_are_sent_in_protocol_order(tmp_path):
    """Accepted comes before started, and finished is last, for every task."""
    executor, outbox = make(tmp_path)
    for task_id in ("x1", "x2", "x3"):
        await executor.handle(action(task_id))
    await executor.join()
    for task_id in ("x1", "x2", "x3"):
        types = outbox.types(task_id)
        assert types[0] == "task.accepted"
        assert types[1] == "task.started"
        assert types[-1] == "task.finished"
        assert isinstance(outbox.of(task_id)[0], TaskAccepted)
