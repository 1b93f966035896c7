"""The three runners against real processes: actions, log reads, and Codex via the fake CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.runners.actions import ActionRunner
from codexrelay.agent.runners.base import TaskOutcome
from codexrelay.agent.runners.codex import CodexExecRunner, build_exec_argv
from codexrelay.agent.runners.codex_events import CodexEventParser
from codexrelay.agent.runners.logs import LogRunner, read_last_lines
from codexrelay.agent.runners.text import TailBuffer, cap_head, cap_tail
from codexrelay.protocol import ProgressEvent, TaskSpec
from tests.fakes import fake_agent_config_data
from tests.fakes.model_server import ModelServer
from tests.realcodex import CodexUnavailableError, codex_env, install_codex, write_codex_home

GRACE = 0.3
GIT = shutil.which("git") or "git"


def config_for(tmp_path: Path, **overrides: Any) -> AgentConfig:
    return AgentConfig.model_validate(fake_agent_config_data(tmp_path, **overrides))


class Recorder:
    """Collects what a runner emits."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self.sessions: list[str | None] = []  # the Codex session named with each event

    async def __call__(self, event: ProgressEvent, *, codex_session_id: str | None = None) -> None:
        self.events.append(event)
        self.sessions.append(codex_session_id)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def text(self) -> str:
        return "".join(event.text for event in self.events)


async def run(
    runner: Any, spec: TaskSpec, cancelled: asyncio.Event | None = None
) -> tuple[TaskOutcome, Recorder]:
    recorder = Recorder()
    outcome = await runner.run(spec, emit=recorder, cancelled=cancelled or asyncio.Event())
    return outcome, recorder


async def poll(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


# ---- actions --------------------------------------------------------------------------


def action_runner(tmp_path: Path, argv: list[str], **action: Any) -> tuple[ActionRunner, TaskSpec]:
    config = config_for(tmp_path, actions={"a": {"label": "A", "argv": argv, **action}})
    return ActionRunner(config, grace_sec=GRACE), TaskSpec(
        id="t1", type="run_action", action_id="a"
    )


async def test_action_runner_streams_output_and_exit_code(tmp_path):
    """An action's output arrives as output events and in the tail; exit 0 completes it."""
    runner, spec = action_runner(tmp_path, ["sh", "-c", "echo one; echo two >&2"])
    outcome, recorder = await run(runner, spec)
    assert outcome.status == "completed"
    assert outcome.exit_code == 0
    assert set(recorder.kinds()) == {"output"}
    assert recorder.text() == "one\ntwo\n" == outcome.output_tail


async def test_action_runner_nonzero_exit_fails(tmp_path):
    """A non-zero exit code fails the task and is reported."""
    runner, spec = action_runner(tmp_path, ["sh", "-c", "exit 7"])
    outcome, _ = await run(runner, spec)
    assert (outcome.status, outcome.exit_code) == ("failed", 7)
    assert "code 7" in (outcome.error or "")


async def test_action_runner_uses_argv_without_a_shell(tmp_path):
    """R15: argv words reach the program as they are; shell syntax is not interpreted."""
    runner, spec = action_runner(tmp_path, ["echo", "$HOME;", "`id`", "&&", "ls"])
    outcome, _ = await run(runner, spec)
    assert outcome.output_tail == "$HOME; `id` && ls\n"


async def test_action_runner_environment_is_minimal(tmp_path, monkeypatch):
    """R15: an action sees PATH, HOME, LANG and its own env, never the agent's secrets."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-agent-secret")
    monkeypatch.setenv("CODEXRELAY_SOMETHING", "agent-only")
    runner, spec = action_runner(tmp_path, ["env"], env={"BUILD_MODE": "fast"})
    outcome, _ = await run(runner, spec)
    names = {line.split("=", 1)[0] for line in outcome.output_tail.splitlines()}
    assert "sk-agent-secret" not in outcome.output_tail
    assert names <= {"PATH", "HOME", "LANG", "BUILD_MODE", "PWD"}
    assert "BUILD_MODE=fast" in outcome.output_tail


async def test_action_runner_runs_in_configured_cwd_with_stdin_closed(tmp_path):
    """The action runs in its cwd under workspaceRoot and reads EOF from stdin at once."""
    (tmp_path / "ws" / "sub").mkdir(parents=True)
    runner, spec = action_runner(tmp_path, ["sh", "-c", "pwd; cat; echo done"], cwd="sub")
    outcome, _ = await run(runner, spec)
    assert outcome.output_tail == f"{(tmp_path / 'ws' / 'sub').resolve()}\ndone\n"


async def test_action_runner_rechecks_cwd_symlink_at_run_time(tmp_path):
    """A cwd symlink re-pointed outside workspaceRoot after start-up is refused at run time."""
    link = tmp_path / "ws" / "dir"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.mkdir()
    runner, spec = action_runner(tmp_path, ["pwd"], cwd="dir")
    link.rmdir()
    link.symlink_to(tmp_path)
    outcome, _ = await run(runner, spec)
    assert outcome.status == "failed"
    assert "outside workspaceRoot" in (outcome.error or "")


async def test_action_runner_missing_program_fails(tmp_path):
    """A program that does not exist fails the task with a clear message."""
    runner, spec = action_runner(tmp_path, ["/nonexistent/tool"])
    outcome, _ = await run(runner, spec)
    assert outcome.status == "failed"
    assert "cannot start /nonexistent/tool" in (outcome.error or "")


async def test_action_runner_timeout_terms_then_kills_the_group(tmp_path):
    """A timed-out action's whole group is stopped: TERM, then KILL for what ignores TERM."""
    pidfile = tmp_path / "child.pid"
    script = f'trap "" TERM; sleep 60 & echo $! > {pidfile}; echo started; wait'
    runner, spec = action_runner(tmp_path, ["sh", "-c", script], timeoutSec=1)
    started = time.monotonic()
    outcome, recorder = await run(runner, spec)
    assert time.monotonic() - started < 1 + GRACE + 2
    assert outcome.status == "failed"
    assert "did not finish within 1s" in (outcome.error or "")
    assert "started" in recorder.text()
    await poll(lambda: not pid_alive(int(pidfile.read_text())), within=5)


async def test_action_runner_cancel_stops_the_group(tmp_path):
    """Cancelling a running action stops it and its children; it ends as cancelled."""
    pidfile = tmp_path / "child.pid"
    runner, spec = action_runner(tmp_path, ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
    cancelled = asyncio.Event()
    job = asyncio.create_task(run(runner, spec, cancelled))
    await poll(lambda: pidfile.exists() and pidfile.read_text().strip())
    cancelled.set()
    outcome, _ = await asyncio.wait_for(job, 10)
    assert outcome.status == "cancelled"
    await poll(lambda: not pid_alive(int(pidfile.read_text())), within=5)


async def test_action_runner_caps_output_tail_on_a_character(tmp_path):
    """R18: the tail keeps the newest maxTaskLogBytes, cut on a UTF-8 boundary."""
    script = 'i=0; while [ $i -lt 3000 ]; do echo "line $i é€😀"; i=$((i+1)); done'
    config = config_for(
        tmp_path,
        maxTaskLogBytes=1024,
        actions={"a": {"label": "A", "argv": ["sh", "-c", script]}},
    )
    outcome, recorder = await run(
        ActionRunner(config), TaskSpec(id="t", type="run_action", action_id="a")
    )
    tail = outcome.output_tail
    assert len(tail.encode()) <= 1024
    assert "\ufffd" not in tail
    assert tail.endswith("line 2999 é€😀\n")
    assert recorder.text().startswith("line 0 ")  # the stream itself is complete


# ---- logs -----------------------------------------------------------------------------


def log_config(tmp_path: Path, path: Path, max_lines: int = 3, **top: Any) -> AgentConfig:
    sources = {"app": {"label": "App", "path": str(path), "maxLines": max_lines}}
    return config_for(tmp_path, logSources=sources, **top)


LOG_SPEC = TaskSpec(id="l", type="read_log", log_source_id="app")


async def test_log_runner_returns_last_lines(tmp_path):
    """A log read returns the last maxLines lines."""
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    outcome, _ = await run(LogRunner(log_config(tmp_path, log)), LOG_SPEC)
    assert outcome.status == "completed"
    assert outcome.output_tail == "line 7\nline 8\nline 9\n"


def test_read_last_lines_handles_short_files_and_no_final_newline(tmp_path):
    """Fewer lines than asked, and a last line without a newline, are both returned whole."""
    log = tmp_path / "app.log"
    log.write_bytes(b"a\nb")
    assert read_last_lines(str(log), max_lines=5, max_bytes=4096).data == b"a\nb\n"
    log.write_bytes(b"")
    assert read_last_lines(str(log), max_lines=5, max_bytes=4096).data == b""


def test_read_last_lines_spans_blocks(tmp_path):
    """Lines longer than a read block and block edges inside lines come back intact."""
    log = tmp_path / "app.log"
    lines = [("x" * 70000) + str(i) for i in range(4)]
    log.write_text("\n".join(lines) + "\n")
    tail = read_last_lines(str(log), max_lines=2, max_bytes=1 << 20)
    assert tail.data.decode() == lines[2] + "\n" + lines[3] + "\n"


def _bytes_read() -> int:
    io = Path("/proc/self/io").read_text()
    return int(next(line for line in io.splitlines() if line.startswith("rchar:")).split()[1])


async def test_log_runner_reads_a_huge_file_from_the_end_only(tmp_path):
    """R18: the last lines of a 1 GB log cost about one cap's worth of reads, not 1 GB."""
    log = tmp_path / "huge.log"
    with log.open("wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GB of NULs with no newline
        fh.seek(1 << 30)
        fh.write(b"".join(b"tail line %d\n" % i for i in range(5)))
    config = log_config(tmp_path, log, max_lines=1000, maxTaskLogBytes=65536)
    before = _bytes_read()
    outcome, _ = await run(LogRunner(config), LOG_SPEC)
    read = _bytes_read() - before
    assert outcome.status == "completed"
    assert outcome.output_tail.endswith("tail line 3\ntail line 4\n")
    assert len(outcome.output_tail.encode()) <= 65536
    assert read < 512 * 1024, f"read {read} bytes"


async def test_log_runner_missing_file_fails_clearly(tmp_path):
    """A missing log file is a failed task saying so."""
    outcome, _ = await run(LogRunner(log_config(tmp_path, tmp_path / "gone.log")), LOG_SPEC)
    assert outcome.status == "failed"
    assert "does not exist" in (outcome.error or "")


async def test_log_runner_directory_fails_clearly(tmp_path):
    """A directory configured as a log is refused as such."""
    outcome, _ = await run(LogRunner(log_config(tmp_path, tmp_path)), LOG_SPEC)
    assert outcome.status == "failed"
    assert "is a directory" in (outcome.error or "")


async def test_log_runner_fifo_fails_without_blocking(tmp_path):
    """A FIFO is not read (it would block forever); it is reported as not a regular file."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome, _ = await asyncio.wait_for(run(LogRunner(log_config(tmp_path, fifo)), LOG_SPEC), 5)
    assert "not a regular file" in (outcome.error or "")


# ---- codex ----------------------------------------------------------------------------


def codex_runner(tmp_path: Path, **overrides: Any) -> CodexExecRunner:
    return CodexExecRunner(config_for(tmp_path, **overrides), grace_sec=GRACE)


def codex_spec(prompt: str, **fields: Any) -> TaskSpec:
    return TaskSpec(id=fields.pop("id", "c1"), type="codex_exec", prompt=prompt, **fields)


def test_build_exec_argv_puts_exec_options_before_resume(tmp_path):
    """The argv matches the CLI: exec options, then `resume ID`, then `-` for stdin."""
    config = config_for(
        tmp_path, codex={"command": ["codex"], "model": "m1", "extraArgs": ["-c", "k=1"]}
    )
    ws = config.root
    new = build_exec_argv(config.codex, cwd=ws, write=False, resume_session_id=None)
    assert new == [
        "codex", "exec", "--json", "--sandbox", "read-only", "--skip-git-repo-check",
        "-C", str(ws), "-m", "m1", "-c", "k=1", "-",
    ]  # fmt: skip
    sid = "01a2285e-4d34-7503-abfd-c91a7e41551b"
    resume = build_exec_argv(config.codex, cwd=ws, write=True, resume_session_id=sid)
    assert resume[4] == "workspace-write"
    assert resume[-3:] == ["resume", sid, "-"]


async def test_codex_runner_completes_with_final_message_and_session(tmp_path):
    """A turn that completes reports the last agent message and the thread id as session."""
    runner = codex_runner(tmp_path)
    outcome, recorder = await run(runner, codex_spec("FAKE: message first\nFAKE: message last"))
    assert outcome.status == "completed"
    assert outcome.exit_code == 0
    assert outcome.final_message == "last"
    assert recorder.kinds() == ["message", "message"]
    rollouts = list((tmp_path / "codex-home" / "sessions").glob("*/*/*/rollout-*.jsonl"))
    assert [p.name[-42:-6] for p in rollouts] == [outcome.codex_session_id]
    assert outcome.diff_text is None
    assert recorder.sessions == [outcome.codex_session_id] * 2  # known from thread.started on


async def test_codex_runner_passes_prompt_on_stdin_only(tmp_path):
    """The prompt goes on stdin (argv is visible to every local user) and stdin is closed."""
    prompt = "please keep this private-word-123\nFAKE: echo-argv"
    outcome, _ = await run(codex_runner(tmp_path), codex_spec(prompt))
    argv = json.loads(outcome.final_message or "")
    assert "private-word-123" not in " ".join(argv)
    assert argv[-1] == "-"
    assert argv[argv.index("--sandbox") + 1] == "read-only"


async def test_codex_runner_sets_codex_home_and_keeps_agent_env(tmp_path, monkeypatch):
    """Codex runs with CODEX_HOME from the config and the agent's own environment."""
    monkeypatch.setenv("CODEX_MOCK_API_KEY", "k-1")
    runner = codex_runner(tmp_path)
    home, _ = await run(runner, codex_spec("FAKE: echo-env CODEX_HOME"))
    key, _ = await run(runner, codex_spec("FAKE: echo-env CODEX_MOCK_API_KEY", id="c2"))
    assert home.final_message == f"CODEX_HOME={tmp_path / 'codex-home'}"
    assert key.final_message == "CODEX_MOCK_API_KEY=k-1"


async def test_codex_runner_reports_every_event_kind(tmp_path):
    """Commands, reasoning, file changes, web searches, error items and retry notices."""
    prompt = "\n".join([
        "FAKE: reasoning thinking", "FAKE: command ls -la", "FAKE: command-fail false",
        "FAKE: web-search python docs", "FAKE: error-item model metadata missing",
        "FAKE: retry-notice", "FAKE: noise not json", "FAKE: message done",
    ])  # fmt: skip
    outcome, recorder = await run(codex_runner(tmp_path), codex_spec(prompt))
    assert outcome.status == "completed"
    assert recorder.kinds() == [
        "reasoning", "command", "command", "command", "command",
        "web_search", "error", "error", "message",
    ]  # fmt: skip
    started, done = recorder.events[1], recorder.events[2]
    assert (started.status, started.exit_code) == ("in_progress", None)
    assert (done.status, done.exit_code, done.command) == ("completed", 0, "/bin/bash -lc 'ls -la'")
    assert done.text == "fake output of: ls -la\n"
    assert (recorder.events[4].status, recorder.events[4].exit_code) == ("failed", 3)
    assert recorder.events[5].text == "python docs"
    assert recorder.events[7].text.startswith("Reconnecting... 1/5")
    assert "not json" in outcome.output_tail
    assert "$ /bin/bash -lc 'ls -la'" in outcome.output_tail


def test_codex_event_parser_reads_web_search_with_duplicated_id():
    """The CLI's web_search item repeats the "id" key; the query is still read."""
    parser = CodexEventParser(expected_session_id=None, max_output_bytes=4096)
    line = (
        '{"type":"item.completed","item":{"id":"item_0","type":"web_search","id":"ws_1",'
        '"query":"","action":{"type":"search","query":"rust clap"}}}'
    )
    events = parser.feed(line)
    assert [(e.kind, e.text) for e in events] == [("web_search", "rust clap")]


async def test_codex_runner_turn_failed_is_a_failure_with_message(tmp_path):
    """turn.failed (exit 1) fails the task with the CLI's error message."""
    outcome, recorder = await run(codex_runner(tmp_path), codex_spec("FAKE: fail quota exceeded"))
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert outcome.error == "quota exceeded"
    assert recorder.kinds() == ["error"]


async def test_codex_runner_nonzero_exit_without_events_uses_stderr(tmp_path):
    """A usage error (exit 2) fails with the CLI's stderr line."""
    runner = codex_runner(tmp_path, codex={"extraArgs": ["--full-auto"]})
    outcome, _ = await run(runner, codex_spec("hello"))
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert "unexpected argument '--full-auto'" in (outcome.error or "")


async def test_codex_runner_exit_zero_without_turn_completed_fails(tmp_path):
    """Exit 0 without turn.completed is not a success."""
    outcome, _ = await run(codex_runner(tmp_path), codex_spec("FAKE: exit 0"))
    assert outcome.status == "failed"
    assert "without finishing the turn" in (outcome.error or "")


async def test_codex_runner_timeout_kills_a_hanging_cli_and_its_children(tmp_path):
    """A CLI that never exits (model server down) is stopped at codex.timeoutSec, group and all."""
    pidfile = tmp_path / "child.pid"
    runner = codex_runner(tmp_path, codex={"timeoutSec": 1})
    prompt = f"FAKE: child-pidfile {pidfile}\nFAKE: ignore-term\nFAKE: hang"
    started = time.monotonic()
    outcome, recorder = await run(runner, codex_spec(prompt))
    assert time.monotonic() - started < 1 + GRACE + 2
    assert outcome.status == "failed"
    assert "did not finish within 1s" in (outcome.error or "")
    assert "error" in recorder.kinds()
    await poll(lambda: not pid_alive(int(pidfile.read_text())), within=5)


async def test_codex_runner_cancel_stops_the_run(tmp_path):
    """A cancelled Codex run is stopped and ends as cancelled, with its session id known."""
    pidfile = tmp_path / "child.pid"
    cancelled = asyncio.Event()
    runner = codex_runner(tmp_path)
    job = asyncio.create_task(
        run(runner, codex_spec(f"FAKE: child-pidfile {pidfile}\nFAKE: hang"), cancelled)
    )
    await poll(lambda: pidfile.exists() and pidfile.read_text().strip())
    cancelled.set()
    outcome, _ = await asyncio.wait_for(job, 10)
    assert outcome.status == "cancelled"
    assert outcome.codex_session_id is not None
    await poll(lambda: not pid_alive(int(pidfile.read_text())), within=5)


async def test_codex_runner_resume_continues_the_same_session(tmp_path):
    """A resume runs in the same thread and appends to the same rollout file."""
    runner = codex_runner(tmp_path)
    first, _ = await run(runner, codex_spec("first turn"))
    sid = first.codex_session_id
    second, _ = await run(runner, codex_spec("second turn", id="c2", resume_session_id=sid))
    assert second.status == "completed"
    assert second.codex_session_id == sid
    assert second.final_message == "fake reply: second turn"
    rollouts = list((tmp_path / "codex-home" / "sessions").glob("*/*/*/rollout-*.jsonl"))
    assert len(rollouts) == 1


async def test_codex_runner_resume_that_starts_a_new_thread_fails(tmp_path):
    """A resume whose thread.started id differs is stopped and reported as a failure."""
    runner = codex_runner(tmp_path)
    first, _ = await run(runner, codex_spec("first"))
    spec = codex_spec(
        "FAKE: new-thread\nFAKE: slow 5", id="c2", resume_session_id=first.codex_session_id
    )
    started = time.monotonic()
    outcome, _ = await run(runner, spec)
    assert time.monotonic() - started < 4  # stopped at thread.started, not after the slow turn
    assert outcome.status == "failed"
    assert "started a new session instead of resuming" in (outcome.error or "")


async def test_codex_runner_unknown_resume_id_fails_with_cli_message(tmp_path):
    """Resuming a UUID the CLI has no rollout for fails with the CLI's own error."""
    spec = codex_spec("hi", resume_session_id="01a2285e-4d34-7503-abfd-c91a7e41551b")
    outcome, _ = await run(codex_runner(tmp_path), spec)
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert "no rollout found for thread id" in (outcome.error or "")


async def test_codex_runner_missing_binary_says_how_to_install(tmp_path):
    """No Codex CLI on the machine: the task fails with the install command."""
    runner = codex_runner(tmp_path, codex={"command": [str(tmp_path / "missing" / "codex")]})
    outcome, _ = await run(runner, codex_spec("hi"))
    assert outcome.status == "failed"
    assert "npm install -g @openai/codex" in (outcome.error or "")


async def test_codex_runner_read_only_does_not_write(tmp_path):
    """A4: without write mode the sandbox is read-only and nothing is written, no diff."""
    runner = codex_runner(tmp_path, features={"codexExecWrite": True})
    outcome, _ = await run(runner, codex_spec("FAKE: write new.txt hi"))
    assert outcome.status == "completed"
    assert not (tmp_path / "ws" / "new.txt").exists()
    assert outcome.diff_text is None


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True)


def git_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    git(ws, "init", "-q")
    (ws / "tracked.txt").write_text("old\n")
    git(ws, "add", "tracked.txt")
    git(ws, "commit", "-q", "-m", "start")
    return ws


async def test_codex_runner_write_mode_returns_git_diff(tmp_path):
    """R18: a write-mode run returns the diff of tracked changes and new files."""
    git_workspace(tmp_path)
    runner = codex_runner(tmp_path, features={"codexExecWrite": True})
    prompt = "FAKE: write tracked.txt new\nFAKE: write sub/added.txt hello"
    outcome, recorder = await run(runner, codex_spec(prompt, write_access=True))
    assert outcome.status == "completed"
    assert [e.kind for e in recorder.events if e.kind == "file_change"] == ["file_change"] * 2
    assert recorder.events[0].changes[0].kind == "update"
    diff = outcome.diff_text or ""
    assert "-old\n+new\n" in diff
    assert "+++ b/sub/added.txt" in diff
    assert "+hello" in diff
    assert outcome.diff_truncated is False


async def test_codex_runner_diff_is_capped_and_flagged(tmp_path):
    """R18: a diff over maxDiffBytes is cut to the cap and flagged as truncated."""
    git_workspace(tmp_path)
    runner = codex_runner(tmp_path, features={"codexExecWrite": True}, maxDiffBytes=1024)
    prompt = "FAKE: write tracked.txt " + "é" * 3000
    outcome, _ = await run(runner, codex_spec(prompt, write_access=True))
    assert outcome.diff_truncated is True
    assert len((outcome.diff_text or "").encode()) <= 1024
    assert "\ufffd" not in (outcome.diff_text or "")


async def test_codex_runner_write_mode_outside_git_has_no_diff(tmp_path):
    """A write-mode run in a directory that is not a git work tree returns no diff."""
    runner = codex_runner(tmp_path, features={"codexExecWrite": True})
    outcome, _ = await run(runner, codex_spec("FAKE: write a.txt x", write_access=True))
    assert outcome.status == "completed"
    assert (tmp_path / "ws" / "a.txt").read_text() == "x\n"
    assert (outcome.diff_text, outcome.diff_truncated) == (None, False)


async def test_codex_runner_refuses_write_when_config_forbids_it(tmp_path):
    """A4, R17: even if asked, the runner keeps read-only when the config disallows writes."""
    outcome, _ = await run(codex_runner(tmp_path), codex_spec("FAKE: echo-argv", write_access=True))
    argv = json.loads(outcome.final_message or "")
    assert argv[argv.index("--sandbox") + 1] == "read-only"


async def test_codex_runner_caps_output_tail(tmp_path):
    """R18: a huge command output is cut to maxTaskLogBytes in the tail and per event."""
    runner = codex_runner(tmp_path, maxTaskLogBytes=2048)
    outcome, recorder = await run(runner, codex_spec("FAKE: big-output 400000"))
    assert outcome.status == "completed"
    assert len(outcome.output_tail.encode()) <= 2048
    assert max(len(e.text.encode()) for e in recorder.events) <= 16384
    assert outcome.output_tail == cap_tail(outcome.output_tail, 2048)[0]


@pytest.mark.parametrize("prompt", ["", "FAKE: stderr oops\nFAKE: exit 5"])
async def test_codex_runner_reports_exit_code_failures(tmp_path, prompt):
    """An odd exit (no prompt text is fine; exit 5 is not) maps to the right status."""
    outcome, _ = await run(codex_runner(tmp_path), codex_spec(prompt or "plain"))
    if prompt:
        assert (outcome.status, outcome.exit_code) == ("failed", 5)
        assert "oops" in (outcome.error or "")
    else:
        assert outcome.status == "completed"


# ---- caps -----------------------------------------------------------------------------


@given(
    chunks=st.lists(st.text(alphabet="aé€😀\n", max_size=40), max_size=30),
    cap=st.integers(min_value=4, max_value=64),
)
def test_tail_buffer_keeps_whole_characters_within_the_cap(chunks, cap):
    """R18: however output is chunked, the tail is within the cap and starts on a character."""
    data = "".join(chunks).encode()
    tail = TailBuffer(cap)
    for i in range(0, len(data), 7):  # split across character boundaries on purpose
        tail.append(data[i : i + 7])
    text = tail.text()
    assert len(text.encode()) <= cap
    assert "\ufffd" not in text
    assert data.endswith(text.encode())
    assert len(text.encode()) >= cap - 3 or text.encode() == data


@given(text=st.text(alphabet="aé€😀", max_size=50), cap=st.integers(min_value=0, max_value=60))
def test_cap_head_and_tail_cut_on_characters(text, cap):
    """R18: head and tail caps never split a UTF-8 character and never exceed the cap."""
    head, head_cut = cap_head(text, cap)
    tail, tail_cut = cap_tail(text, cap)
    assert text.startswith(head)
    assert text.endswith(tail)
    assert len(head.encode()) <= cap
    assert len(tail.encode()) <= cap
    assert head_cut == tail_cut == (len(text.encode()) > cap)


# ---- the real CLI ---------------------------------------------------------------------


@pytest.mark.realcodex
@pytest.mark.timeout(300)
async def test_codex_runner_drives_the_real_cli(tmp_path, monkeypatch):
    """The runner's argv, stdin and event parsing work with the pinned @openai/codex CLI."""
    try:
        launcher = await asyncio.to_thread(install_codex)
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    with ModelServer() as server:
        home = write_codex_home(tmp_path / "home", server.base_url)
        for name, value in codex_env(home, tmp_path / "tmp").items():
            monkeypatch.setenv(name, value)
        runner = codex_runner(tmp_path, codex={"command": [str(launcher)], "home": str(home)})
        first, recorder = await run(runner, codex_spec("hello real cli"))
        sid = first.codex_session_id
        second, _ = await run(runner, codex_spec("again", id="c2", resume_session_id=sid))
    assert (first.status, first.exit_code, recorder.kinds()) == ("completed", 0, ["message"])
    assert first.final_message == "MOCK_REPLY: hello real cli"
    assert (second.status, second.codex_session_id) == ("completed", sid)
    assert second.final_message == "MOCK_REPLY: again"
