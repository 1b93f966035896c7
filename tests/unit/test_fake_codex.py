"""The fake Codex CLI speaks the real CLI's argv, JSONL events, exit codes and rollout files."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from codexrelay.agent.catalog import SessionCatalog
from tests.fakes import FAKES_DIR, fake_codex_command

ROLLOUT_NAME = re.compile(
    r"^rollout-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d)-([0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-"
    r"[89ab][0-9a-f]{3}-[0-9a-f]{12})\.jsonl$"
)


def codex(
    tmp_path: Path, *args: str, stdin: str = "", command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CODEX_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [*(command or fake_codex_command()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
        check=False,
    )


def exec_args(tmp_path: Path, *extra: str) -> list[str]:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    return ["exec", "--json", "--skip-git-repo-check", "-C", str(ws), *extra]


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def rollouts(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "home" / "sessions").glob("*/*/*/rollout-*.jsonl"))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fake_codex_emits_the_event_stream(tmp_path):
    """thread.started first, then turn.started, items, and turn.completed last; exit 0."""
    result = codex(tmp_path, *exec_args(tmp_path, "-"), stdin="Fix the bug\nFAKE: command ls")
    assert result.returncode == 0, result.stderr
    stream = events(result)
    assert [e["type"] for e in stream] == [
        "thread.started", "turn.started", "item.started", "item.completed",
        "item.completed", "turn.completed",
    ]  # fmt: skip
    assert stream[-2]["item"] == {
        "id": "item_1",
        "type": "agent_message",
        "text": "fake reply: Fix the bug",
    }
    assert set(stream[-1]["usage"]) == {
        "input_tokens", "cached_input_tokens", "cache_write_input_tokens",
        "output_tokens", "reasoning_output_tokens",
    }  # fmt: skip


def test_fake_codex_writes_a_rollout_in_the_real_format(tmp_path):
    """sessions/YYYY/MM/DD/rollout-<local time>-<uuidv7>.jsonl, session_meta first, ordinals."""
    result = codex(tmp_path, *exec_args(tmp_path, "-"), stdin="Explain the parser")
    thread_id = events(result)[0]["thread_id"]
    (path,) = rollouts(tmp_path)
    match = ROLLOUT_NAME.match(path.name)
    assert match, path.name
    assert match.group(2) == thread_id
    stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H-%M-%S")
    assert path.parent.relative_to(path.parents[3]).as_posix() == stamp.strftime("%Y/%m/%d")
    records = lines(path)
    assert [r["ordinal"] for r in records] == list(range(len(records)))
    meta = records[0]
    assert meta["type"] == "session_meta"
    assert meta["payload"]["id"] == meta["payload"]["session_id"] == thread_id
    assert meta["payload"]["cwd"] == str((tmp_path / "ws").resolve())
    assert all(r["timestamp"].endswith("Z") for r in records)
    users = [
        r["payload"]["item"]["content"][0]["text"]
        for r in records
        if r["type"] == "event_msg" and r["payload"].get("item", {}).get("type") == "UserMessage"
    ]
    assert users == ["Explain the parser"]
    done = records[-1]["payload"]
    assert (done["type"], done["last_agent_message"]) == (
        "task_complete",
        "fake reply: Explain the parser",
    )


def test_fake_codex_resume_appends_to_the_same_rollout(tmp_path):
    """A resume keeps the thread id, appends to the same file and keeps counting ordinals."""
    first = codex(tmp_path, *exec_args(tmp_path, "-"), stdin="one")
    thread_id = events(first)[0]["thread_id"]
    second = codex(tmp_path, *exec_args(tmp_path, "resume", thread_id, "-"), stdin="two")
    assert second.returncode == 0, second.stderr
    assert events(second)[0]["thread_id"] == thread_id
    assert events(second)[-1]["usage"]["input_tokens"] > events(first)[-1]["usage"]["input_tokens"]
    (path,) = rollouts(tmp_path)
    records = lines(path)
    assert [r["type"] for r in records].count("session_meta") == 1
    assert [r["ordinal"] for r in records] == list(range(len(records)))
    assert [
        r["payload"].get("last_agent_message")
        for r in records
        if r["payload"].get("type") == "task_complete"
    ] == [
        "fake reply: one",
        "fake reply: two",
    ]


def test_fake_codex_refuses_an_unknown_resume_uuid(tmp_path):
    """Like the CLI: exit 1, nothing on stdout, the thread/resume error on stderr."""
    sid = "01a2285e-4d34-7503-abfd-c91a7e41551b"
    result = codex(tmp_path, *exec_args(tmp_path, "resume", sid, "-"), stdin="x")
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"no rollout found for thread id {sid} (code -32600)" in result.stderr


def test_fake_codex_resume_of_a_non_uuid_name_starts_a_new_thread(tmp_path):
    """Like the CLI: an unknown non-UUID name silently starts a new session, exit 0."""
    result = codex(tmp_path, *exec_args(tmp_path, "resume", "my-session", "-"), stdin="x")
    assert result.returncode == 0
    assert len(rollouts(tmp_path)) == 1


def test_fake_codex_usage_errors_exit_2(tmp_path):
    """Unknown flags (--full-auto, -a) and bad sandbox values are clap usage errors."""
    for bad in (["--full-auto"], ["-a", "never"], ["--sandbox", "bogus"]):
        result = codex(tmp_path, *exec_args(tmp_path, *bad, "-"), stdin="x")
        assert result.returncode == 2, bad
        assert result.stderr.startswith("error: ")
        assert result.stdout == ""


def test_fake_codex_needs_git_or_the_skip_flag(tmp_path):
    """Outside a git repo without --skip-git-repo-check the CLI exits 1 without JSONL."""
    (tmp_path / "ws").mkdir()
    result = codex(tmp_path, "exec", "--json", "-C", str(tmp_path / "ws"), "-", stdin="x")
    assert result.returncode == 1
    assert "--skip-git-repo-check was not specified" in result.stderr
    missing = codex(tmp_path, "exec", "--skip-git-repo-check", "-C", str(tmp_path / "no"), "x")
    assert missing.returncode == 1
    assert "No such file or directory" in missing.stderr


def test_fake_codex_failed_turn_exits_1_and_records_the_error(tmp_path):
    """turn.failed after an error event, exit 1, and task_complete.error in the rollout."""
    result = codex(tmp_path, *exec_args(tmp_path, "-"), stdin="FAKE: fail model down")
    assert result.returncode == 1
    assert [e["type"] for e in events(result)][-2:] == ["error", "turn.failed"]
    done = lines(rollouts(tmp_path)[0])[-1]["payload"]
    assert done["error"]["message"] == "model down"
    assert done["last_agent_message"] is None


def test_fake_codex_writes_only_in_workspace_write(tmp_path):
    """FAKE: write creates the file with workspace-write; read-only emits no file_change."""
    ro = codex(tmp_path, *exec_args(tmp_path, "-"), stdin="FAKE: write a.txt hi")
    assert "file_change" not in ro.stdout
    assert not (tmp_path / "ws" / "a.txt").exists()
    rw = codex(
        tmp_path, *exec_args(tmp_path, "-s", "workspace-write", "-"), stdin="FAKE: write a.txt hi"
    )
    change = events(rw)[3]["item"]
    assert change["changes"] == [
        {"path": str((tmp_path / "ws" / "a.txt").resolve()), "kind": "add"}
    ]
    assert (tmp_path / "ws" / "a.txt").read_text() == "hi\n"


def test_fake_codex_web_search_repeats_the_id_key(tmp_path):
    """The web_search item carries "id" twice, as the real CLI writes it."""
    result = codex(tmp_path, *exec_args(tmp_path, "-"), stdin="FAKE: web-search cats")
    line = next(ln for ln in result.stdout.splitlines() if "web_search" in ln)
    assert line.count('"id":') == 2
    assert json.loads(line)["item"]["id"] == "ws_1"


def test_fake_codex_prompt_argument_and_piped_stdin_are_joined(tmp_path):
    """With a PROMPT argument and piped stdin, stdin is appended in a <stdin> block."""
    result = codex(tmp_path, *exec_args(tmp_path, "FAKE: echo-prompt"), stdin="extra")
    assert events(result)[2]["item"]["text"] == "FAKE: echo-prompt\n\n<stdin>\nextra\n</stdin>"


def test_fake_codex_runs_under_its_real_name(tmp_path):
    """tests/fakes/codex runs the fake as `codex` (for PATH-based setups)."""
    result = codex(tmp_path, "--version", command=[str(FAKES_DIR / "codex")])
    assert result.returncode == 0
    assert result.stdout.startswith("codex-cli ")


def test_fake_codex_rollouts_are_read_by_the_session_catalog(tmp_path):
    """R13: the session catalog lists the fake's sessions under workspaceRoot with their prompt."""
    codex(tmp_path, *exec_args(tmp_path, "-"), stdin="Refactor the store")
    other = tmp_path / "elsewhere"
    other.mkdir()
    codex(
        tmp_path, "exec", "--json", "--skip-git-repo-check", "-C", str(other), "-", stdin="outside"
    )
    catalog = SessionCatalog(
        codex_home=tmp_path / "home", workspace_root=(tmp_path / "ws").resolve()
    )
    catalog.refresh()
    (session,) = catalog.sessions()
    assert session.title.startswith("Refactor the store")
    assert [p.role for p in session.preview] == ["user", "assistant"]
