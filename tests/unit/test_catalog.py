"""The agent's Codex session catalog, over real rollout files written in Codex's format.

``Rollout`` writes files the way Codex 0.171 does (codex-cli.md sections 5-6): line 0 is
``session_meta``, each turn carries harness messages, the prompt as a ``response_item``
followed by an ``event_msg/item_completed`` ``UserMessage``, and the model's answer both as
an ``AgentMessage`` item and a raw assistant ``response_item``.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codexrelay.agent.catalog import (
    HEAD_BYTES,
    TAIL_BYTES,
    SessionCatalog,
    read_rollout,
    scan_rollouts,
)
from codexrelay.protocol import SessionsUpdate, dump_message, parse_agent_message

START = datetime(2026, 11, 29, 17, 38, 15, 123000, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """Codex's UTC timestamp form: milliseconds and a ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_id() -> str:
    """A UUIDv7-shaped id like the ones Codex gives threads (lower-case, canonical)."""
    raw = bytearray(uuid.uuid4().bytes)
    raw[6] = (raw[6] & 0x0F) | 0x70
    return str(uuid.UUID(bytes=bytes(raw)))


@dataclass
class Rollout:
    """Builds one rollout file line by line, in Codex's order and shape."""

    cwd: str
    session_id: str = field(default_factory=new_id)
    start: datetime = START
    instructions: str = "You are Codex, a coding agent. " * 20
    lines: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0

    def _ts(self) -> str:
        self.step += 1
        return iso(self.start + timedelta(milliseconds=37 * self.step))

    def add(self, kind: str, payload: dict[str, Any], **extra: Any) -> Rollout:
        line = {"timestamp": self._ts(), "ordinal": len(self.lines), "type": kind}
        self.lines.append({**line, "payload": payload, **extra})
        return self

    def meta(self) -> Rollout:
        payload = {
            "account_scoped": True,
            "session_id": self.session_id,
            "id": self.session_id,
            "timestamp": iso(self.start),
            "cwd": self.cwd,
            "runtime_workspace_roots": [self.cwd],
            "originator": "codex_exec",
            "cli_version": "0.171.0",
            "source": "exec",
            "thread_source": "user",
            "model_provider": "mock",
            "base_instructions": {
                "text": self.instructions,
                "provenance": {"type": "model", "model": "gpt-5.5"},
            },
            "history_mode": "paginated",
            "context_window": {"window_id": new_id()},
        }
        return self.add("session_meta", payload)

    def message(self, role: str, text: str) -> Rollout:
        kind = "output_text" if role == "assistant" else "input_text"
        payload = {
            "type": "message",
            "id": f"msg_{new_id()}",
            "role": role,
            "content": [{"type": kind, "text": text}],
        }
        return self.add("response_item", payload, metadata={"history_sequence": self.step})

    def item(self, item_type: str, text: str) -> Rollout:
        part = {"type": "text", "text": text, "text_elements": []}
        if item_type == "AgentMessage":
            part = {"type": "Text", "text": text}
        payload = {
            "type": "item_completed",
            "thread_id": self.session_id,
            "turn_id": "turn",
            "item": {"type": item_type, "id": new_id(), "content": [part]},
        }
        return self.add("event_msg", payload)

    def turn(self, prompt: str, *replies: str) -> Rollout:
        """One exec turn: harness context, the prompt, the replies, the bookkeeping."""
        if not self.lines:
            self.meta()
        self.add("event_msg", {"type": "task_started", "turn_id": "turn", "started_at": 1})
        self.message("developer", "<permissions instructions>read-only</permissions instructions>")
        self.message("user", f"<environment_context>\n  <cwd>{self.cwd}</cwd>\n")
        self.add("turn_context", {"cwd": self.cwd, "approval_policy": "never", "model": "gpt-5.5"})
        self.add("event_msg", {"type": "thread_settings_applied", "thread_id": self.session_id})
        self.message("user", prompt).item("UserMessage", prompt)
        for reply in replies:
            self.item("AgentMessage", reply).message("assistant", reply)
        self.add("token_usage_record", {"thread_id": self.session_id, "usage": {}})
        self.add("event_msg", {"type": "token_count", "info": None})
        last = replies[-1] if replies else None
        return self.add(
            "event_msg",
            {"type": "task_complete", "turn_id": "turn", "last_agent_message": last},
        )

    @property
    def updated(self) -> datetime:
        return datetime.fromisoformat(self.lines[-1]["timestamp"])

    def body(self) -> bytes:
        return b"".join(json.dumps(line).encode() + b"\n" for line in self.lines)

    def path_in(self, home: Path) -> Path:
        day = home / "sessions" / self.start.strftime("%Y/%m/%d")
        return day / f"rollout-{self.start.strftime('%Y-%m-%dT%H-%M-%S')}-{self.session_id}.jsonl"

    def write(self, home: Path, *, body: bytes | None = None) -> Path:
        path = self.path_in(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.body() if body is None else body)
        return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty CODEX_HOME."""
    (tmp_path / "codex-home").mkdir()
    return tmp_path / "codex-home"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The agent's workspaceRoot, with one project inside it."""
    (tmp_path / "work" / "app" / "src").mkdir(parents=True)
    return tmp_path / "work" / "app"


def catalog_of(home: Path, root: Path, **kwargs: Any) -> SessionCatalog:
    catalog = SessionCatalog(codex_home=home, workspace_root=root, **kwargs)
    catalog.refresh()
    return catalog


def test_catalog_summarizes_a_rollout(home: Path, root: Path) -> None:
    """A session shows its id, times, recorded cwd, first prompt as title and messages (R12)."""
    rollout = Rollout(cwd=str(root)).turn("Fix the\n  failing   test", "Done: it passes now.")
    rollout.write(home)
    [summary] = catalog_of(home, root).sessions()
    assert summary.session_id == rollout.session_id
    assert summary.cwd == str(root)
    assert summary.title == "Fix the failing test"
    assert summary.created_at == START
    assert summary.updated_at == rollout.updated
    assert [(p.role, p.text) for p in summary.preview] == [
        ("user", "Fix the failing test"),
        ("assistant", "Done: it passes now."),
    ]


def test_catalog_title_skips_harness_context_and_is_capped(home: Path, root: Path) -> None:
    """The title is the person's first prompt, not environment context, cut to 180 chars."""
    prompt = "word " * 100
    Rollout(cwd=str(root)).turn(prompt, "ok").turn("second prompt", "ok").write(home)
    [summary] = catalog_of(home, root).sessions()
    assert len(summary.title) == 180
    assert summary.title.endswith("\u2026")
    assert summary.title.startswith("word word")
    assert "environment_context" not in summary.title


def test_catalog_title_from_user_message_item_alone(home: Path, root: Path) -> None:
    """A file with only the event item for the prompt still gets its title."""
    rollout = Rollout(cwd=str(root)).meta()
    rollout.message("user", "<environment_context><cwd>/x</cwd></environment_context>")
    rollout.item("UserMessage", "only the event item").item("AgentMessage", "answer")
    rollout.write(home)
    [summary] = catalog_of(home, root).sessions()
    assert summary.title == "only the event item"


def test_catalog_title_placeholder_without_prompt(home: Path, root: Path) -> None:
    """A session killed before any prompt was recorded is still listed, with a placeholder."""
    Rollout(cwd=str(root)).meta().add("event_msg", {"type": "task_started"}).write(home)
    [summary] = catalog_of(home, root).sessions()
    assert summary.title == "Untitled session"
    assert summary.preview == []


def test_catalog_preview_keeps_last_six_messages_capped(home: Path, root: Path) -> None:
    """The preview holds the last 6 user/assistant messages, oldest first, 320 chars each."""
    rollout = Rollout(cwd=str(root))
    for n in range(5):
        rollout.turn(f"prompt {n}", f"answer {n} " + "x" * 400)
    rollout.write(home)
    [summary] = catalog_of(home, root).sessions()
    assert [p.role for p in summary.preview] == ["user", "assistant"] * 3
    assert [p.text[:8] for p in summary.preview[::2]] == ["prompt 2", "prompt 3", "prompt 4"]
    assert all(len(p.text) <= 320 for p in summary.preview)
    assert len(summary.preview[-1].text) == 320


def test_catalog_preview_from_raw_items_when_no_events(home: Path, root: Path) -> None:
    """Files without item events fall back to raw messages, harness context left out."""
    rollout = Rollout(cwd=str(root)).meta()
    rollout.message("user", "<environment_context><cwd>/x</cwd></environment_context>")
    rollout.message("user", "raw prompt").message("assistant", "raw answer")
    rollout.write(home)
    [summary] = catalog_of(home, root).sessions()
    assert summary.title == "raw prompt"
    assert [(p.role, p.text) for p in summary.preview] == [
        ("user", "raw prompt"),
        ("assistant", "raw answer"),
    ]


def test_catalog_lists_newest_first_and_caps_count(home: Path, root: Path) -> None:
    """Sessions come newest first, at most ``max_sessions`` of them."""
    rollouts = [
        Rollout(cwd=str(root), start=START + timedelta(hours=n)).turn(f"p{n}", "a")
        for n in range(5)
    ]
    for rollout in rollouts:
        rollout.write(home)
    catalog = catalog_of(home, root, max_sessions=3)
    assert [s.title for s in catalog.sessions()] == ["p4", "p3", "p2"]
    assert catalog.session_ids() == {r.session_id for r in rollouts}


@pytest.mark.parametrize(
    ("cwd", "shown"),
    [
        ("{root}", True),
        ("{root}/src", True),
        ("{root}/src/../src", True),
        ("{root}/not-created-yet", True),
        ("/", False),
        ("{root}2", False),
        ("{root}/..", False),
        ("{root}/../app2", False),
        ("{root}/src/../../app2", False),
        ("work/app", False),
        ("./src", False),
        ("", False),
    ],
)
def test_catalog_shows_only_cwds_under_root(
    home: Path, root: Path, cwd: str, shown: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only sessions recorded under workspaceRoot are listed or resumable (R13)."""
    (root.parent / "app2").mkdir()
    # Run from inside the root, so a relative cwd would land there if it were resolved.
    monkeypatch.chdir(root)
    rollout = Rollout(cwd=cwd.format(root=root)).turn("hello", "hi")
    rollout.write(home)
    catalog = catalog_of(home, root)
    assert bool(catalog.sessions()) is shown
    assert catalog.has_session(rollout.session_id) is shown


def test_catalog_resolves_symlinks_in_recorded_cwd(home: Path, root: Path) -> None:
    """A cwd reached through a symlink counts where the link points, in or out (R13)."""
    outside = root.parent / "secrets"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root.parent / "into-app").symlink_to(root / "src")
    escaping = Rollout(cwd=str(root / "escape")).turn("leak", "no")
    inside = Rollout(cwd=str(root.parent / "into-app")).turn("fine", "yes")
    escaping.write(home)
    inside.write(home)
    catalog = catalog_of(home, root)
    assert catalog.session_ids() == {inside.session_id}
    assert not catalog.has_session(escaping.session_id)


def test_catalog_resolves_a_symlinked_workspace_root(home: Path, root: Path) -> None:
    """workspaceRoot given through a symlink matches cwds recorded by either path (R13)."""
    link = root.parent / "app-link"
    link.symlink_to(root)
    by_link = Rollout(cwd=str(link / "src")).turn("via link", "a")
    by_real = Rollout(cwd=str(root)).turn("via real path", "a")
    sibling = Rollout(cwd=str(root.parent)).turn("parent", "a")
    for rollout in (by_link, by_real, sibling):
        rollout.write(home)
    catalog = catalog_of(home, link)
    assert catalog.session_ids() == {by_link.session_id, by_real.session_id}


def test_catalog_drops_a_session_when_its_link_is_repointed(home: Path, root: Path) -> None:
    """Re-pointing a cwd symlink out of the root hides its sessions on the next refresh (R13)."""
    (root.parent / "elsewhere").mkdir()
    link = root / "current"
    link.symlink_to(root / "src")
    rollout = Rollout(cwd=str(link)).turn("in a link", "a")
    rollout.write(home)
    catalog = catalog_of(home, root)
    assert catalog.has_session(rollout.session_id)
    link.unlink()
    link.symlink_to(root.parent / "elsewhere")
    assert catalog.refresh() is True
    assert catalog.sessions() == []
    assert not catalog.has_session(rollout.session_id)


def test_catalog_refresh_reports_only_visible_changes(home: Path, root: Path) -> None:
    """refresh() is True for an added, grown or removed session and False otherwise."""
    catalog = SessionCatalog(codex_home=home, workspace_root=root)
    assert catalog.refresh() is False
    first = Rollout(cwd=str(root)).turn("one", "a")
    path = first.write(home)
    assert catalog.refresh() is True
    assert catalog.refresh() is False
    outside = Rollout(cwd=str(root.parent)).turn("not ours", "a")
    outside.write(home)
    assert catalog.refresh() is False
    first.turn("two", "b").write(home)
    assert catalog.refresh() is True
    assert catalog.sessions()[0].preview[-1].text == "b"
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert catalog.refresh() is False
    path.unlink()
    assert catalog.refresh() is True
    assert catalog.sessions() == []
    assert not catalog.has_session(first.session_id)


def test_catalog_rereads_only_files_whose_stamp_changed(home: Path, root: Path) -> None:
    """A file with the same size and mtime is not read again; a new mtime makes it re-read."""
    rollout = Rollout(cwd=str(root)).turn("AAAA", "a")
    path = rollout.write(home)
    stat = path.stat()
    catalog = catalog_of(home, root)
    path.write_bytes(path.read_bytes().replace(b"AAAA", b"BBBB"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert catalog.refresh() is False
    assert catalog.sessions()[0].title == "AAAA"
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert catalog.refresh() is True
    assert catalog.sessions()[0].title == "BBBB"


def test_catalog_skips_bad_lines_but_keeps_the_session(home: Path, root: Path) -> None:
    """Malformed JSON, non-UTF-8 bytes, odd JSON values and a truncated last line are skipped."""
    rollout = Rollout(cwd=str(root)).meta()
    good = rollout.body()
    rollout.lines.clear()
    rollout.turn("prompt", "answer")
    junk = b'{"timestamp": "2026-11-29T18:00:00.000Z", "type": "event_msg", "payl\n'
    junk += b"\xff\xfe not utf-8 \xc3\x28\n[1, 2, 3]\n" + b"[" * 100_000 + b"\n\n"
    truncated = b'{"timestamp":"2030-01-01T00:00:00.000Z","type":"event_msg","payload":{"ty'
    rollout.write(home, body=good + junk + rollout.body() + truncated)
    [summary] = catalog_of(home, root).sessions()
    assert summary.title == "prompt"
    assert summary.updated_at == rollout.updated
    assert [p.text for p in summary.preview] == ["prompt", "answer"]


@pytest.mark.parametrize(
    "damage",
    ["empty", "no-meta", "meta-payload-not-object", "id-mismatch", "id-not-uuid", "cwd-missing"],
)
def test_catalog_ignores_unusable_files(home: Path, root: Path, damage: str) -> None:
    """Files without a usable session_meta are skipped without failing the refresh."""
    rollout = Rollout(cwd=str(root)).turn("prompt", "answer")
    meta = rollout.lines[0]["payload"]
    body = None
    if damage == "empty":
        body = b""
    elif damage == "no-meta":
        del rollout.lines[0]
    elif damage == "meta-payload-not-object":
        rollout.lines[0]["payload"] = [meta]
    elif damage == "id-mismatch":
        meta["id"] = new_id()
    elif damage == "id-not-uuid":
        meta["id"] = "thread-1"
    elif damage == "cwd-missing":
        del meta["cwd"]
    rollout.write(home, body=body)
    good = Rollout(cwd=str(root), start=START - timedelta(days=1)).turn("fine", "ok")
    good.write(home)
    catalog = catalog_of(home, root)
    assert catalog.session_ids() == {good.session_id}


def test_catalog_ignores_non_canonical_and_linked_files(home: Path, root: Path) -> None:
    """Only regular files named rollout-<time>-<lower-case uuid>.jsonl count, as for Codex."""
    rollout = Rollout(cwd=str(root)).turn("prompt", "a")
    path = rollout.write(home)
    day = path.parent
    (day / "rollout-renamed.jsonl").write_bytes(path.read_bytes())
    upper = path.name.replace(rollout.session_id, rollout.session_id.upper())
    (day / upper).write_bytes(path.read_bytes())
    linked = Rollout(cwd=str(root)).turn("linked", "a")
    target = linked.write(home / "elsewhere")
    linked.path_in(home).symlink_to(target)
    (day / "rollout-2026-11-29T00-00-00-00000000-0000-7000-8000-000000000000.jsonl").mkdir()
    found = scan_rollouts(str(home / "sessions"))
    assert list(found) == [str(path)]
    assert catalog_of(home, root).session_ids() == {rollout.session_id}


def test_catalog_does_not_follow_directory_links(home: Path, root: Path) -> None:
    """A linked directory under sessions/ is not walked: no loop, no sessions from elsewhere."""
    path = Rollout(cwd=str(root)).turn("real", "a").write(home)
    elsewhere = Rollout(cwd=str(root)).turn("elsewhere", "a")
    elsewhere.write(home / "other-home")
    (home / "sessions" / "linked").symlink_to(home / "other-home" / "sessions")
    (path.parent / "loop").symlink_to(home / "sessions")
    assert [s.title for s in catalog_of(home, root).sessions()] == ["real"]


def test_catalog_lists_a_copied_session_once(home: Path, root: Path) -> None:
    """The same session id in two date directories is listed once, the newer copy winning."""
    rollout = Rollout(cwd=str(root)).turn("old", "a")
    rollout.write(home)
    copy = home / "sessions" / "2020" / "01" / "01" / rollout.path_in(home).name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(rollout.turn("newer", "b").body())
    [summary] = catalog_of(home, root).sessions()
    assert summary.preview[-1].text == "b"


def test_catalog_updated_falls_back_to_file_mtime(home: Path, root: Path) -> None:
    """Without line timestamps the updated time is the file's modification time."""
    rollout = Rollout(cwd=str(root)).turn("prompt", "a")
    for line in rollout.lines:
        del line["timestamp"]
    path = rollout.write(home)
    moment = datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC)
    os.utime(path, (moment.timestamp(), moment.timestamp()))
    [summary] = catalog_of(home, root).sessions()
    assert summary.updated_at == moment
    assert summary.created_at == START


def test_catalog_reads_huge_files_in_bounded_memory(home: Path, root: Path) -> None:
    """A 40 MB session is summarized from its head and tail without loading it whole."""
    rollout = Rollout(cwd=str(root)).turn("first prompt", "first answer")
    output = "y" * (1 << 20)
    for n in range(40):
        rollout.add("response_item", {"type": "function_call_output", "output": f"{n}{output}"})
    rollout.turn("last prompt", "last answer")
    path = rollout.write(home)
    stat = path.stat()
    assert stat.st_size > 40 * HEAD_BYTES
    tracemalloc.start()
    try:
        summary = read_rollout(str(path), rollout.session_id, (stat.st_size, stat.st_mtime_ns))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary is not None
    assert summary.title == "first prompt"
    assert [p.text for p in summary.preview] == ["last prompt", "last answer"]
    assert peak < 4 * (HEAD_BYTES + TAIL_BYTES)


def test_catalog_without_sessions_dir_is_empty(tmp_path: Path, root: Path) -> None:
    """A CODEX_HOME where Codex never ran gives an empty catalog, not an error."""
    catalog = SessionCatalog(codex_home=tmp_path / "nowhere", workspace_root=root)
    assert catalog.refresh() is False
    assert catalog.sessions() == []
    assert catalog.session_ids() == frozenset()


def test_catalog_update_message_round_trips(home: Path, root: Path) -> None:
    """The catalog's message is a valid ``sessions`` protocol message (R12)."""
    Rollout(cwd=str(root)).turn("prompt \u00e9\u00e8 \U0001f600", "answer").write(home)
    message = catalog_of(home, root).update_message()
    parsed = parse_agent_message(dump_message(message))
    assert isinstance(parsed, SessionsUpdate)
    assert parsed.sessions == message.sessions
    assert parsed.sessions[0].title == "prompt \u00e9\u00e8 \U0001f600"


def test_catalog_rejects_bad_settings(home: Path, root: Path) -> None:
    """A relative root or an out-of-range cap is refused when the catalog is made."""
    with pytest.raises(ValueError, match="absolute"):
        SessionCatalog(codex_home=home, workspace_root=Path("work/app"))
    with pytest.raises(ValueError, match="max_sessions"):
        SessionCatalog(codex_home=home, workspace_root=root, max_sessions=501)


@pytest.mark.slow
def test_catalog_refreshes_ten_thousand_files_quickly(home: Path, root: Path) -> None:
    """After the first scan, refreshing 10,000 unchanged files takes well under a second."""
    template = Rollout(cwd=str(root)).turn("prompt", "answer")
    body, placeholder = template.body(), template.session_id.encode()
    for n in range(10_000):
        session_id = new_id()
        path = Rollout(cwd=str(root), session_id=session_id).path_in(home)
        path = path.parent.parent / f"{n % 28 + 1:02d}" / path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.replace(placeholder, session_id.encode()))
    catalog = SessionCatalog(codex_home=home, workspace_root=root)
    catalog.refresh()
    assert len(catalog.session_ids()) == 10_000
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        assert catalog.refresh() is False
        timings.append(time.perf_counter() - began)
    assert min(timings) < 0.5, timings
