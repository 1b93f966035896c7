"""The agent's catalog of Codex sessions recorded on this machine, filtered to workspaceRoot.

Codex writes one rollout file per session, ``$CODEX_HOME/sessions/YYYY/MM/DD/
rollout-<local time>-<uuid>.jsonl`` (reference: codex-cli.md sections 5-7). The catalog
keeps one summary per file keyed by ``(size, mtime_ns)``: a refresh stats every file but
reads only new or changed ones, and reads each in bounded pieces (the head for
``session_meta`` and the first prompt, the tail for the latest messages), so a large tree
or a huge session never costs more than a few hundred KiB per changed file.

Only sessions whose recorded cwd resolves inside workspaceRoot are listed or resumable
(R13). Summaries live in agent memory and are sent to the relay's memory only (R12).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError

from codexrelay.protocol import SessionPreview, SessionSummary, SessionsUpdate

DEFAULT_MAX_SESSIONS = 200
MAX_SESSIONS_LIMIT = 500  # what one SessionsUpdate message may carry
HEAD_BYTES = 1 << 20  # session_meta (~22 KB of instructions) + harness messages + first prompt
TAIL_BYTES = 256 << 10
TITLE_CHARS = 180
PREVIEW_CHARS = 320
PREVIEW_MESSAGES = 6
UNTITLED = "Untitled session"

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Codex only resumes files with this canonical name (codex-cli.md section 7).
ROLLOUT_NAME_RE = re.compile(
    rf"rollout-\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}-\d{{2}}-\d{{2}}-({_UUID})\.jsonl"
)
# User-role messages the harness writes into the history; they are not the person's prompt.
HARNESS_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md instructions")

Stamp = tuple[int, int]
Line = dict[str, Any]
Role = Literal["user", "assistant"]
_ROLES: dict[str, Role] = {
    "UserMessage": "user",
    "AgentMessage": "assistant",
    "user": "user",
    "assistant": "assistant",
}


def collapse(text: str) -> str:
    """One line, single spaces: titles and previews are shown in a narrow phone list."""
    return " ".join(text.split())


def cap(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def parse_time(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string (Codex writes ``...Z``), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def is_inside(path: str, root: str) -> bool:
    """True when resolved ``path`` is resolved ``root`` or below it (not a same-prefix sibling)."""
    return path == root or path.startswith(root if root.endswith("/") else root + "/")


def is_usable_cwd(path: str) -> bool:
    """Only absolute cwds are judged: a relative one has no meaning outside Codex's process."""
    return path.startswith("/") and "\x00" not in path  # the agent runs on POSIX hosts


def resolve_dir(path: str) -> str | None:
    """``os.path.realpath`` of an absolute path, or None when it cannot be resolved."""
    if not is_usable_cwd(path):
        return None
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def _load(raw: bytes) -> Line | None:
    """One rollout line as a dict; malformed JSON or non-UTF-8 bytes make it None."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _payload(line: Line) -> dict[str, Any]:
    payload = line.get("payload")
    return payload if isinstance(payload, dict) else {}


def _content_text(content: object) -> str:
    """The text parts of a message's ``content`` list, joined."""
    if not isinstance(content, list):
        return ""
    parts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(parts)


def message_of(line: Line) -> tuple[Role, str, bool] | None:
    """(role, text, is_event) for a user or assistant message line, else None.

    Codex records each message twice: as a raw ``response_item`` (which also carries
    harness context as role=user) and as an ``event_msg/item_completed`` item
    (``UserMessage``/``AgentMessage``, only what the person and the model said).
    """
    payload = _payload(line)
    kind = line.get("type")
    if kind == "event_msg" and payload.get("type") == "item_completed":
        item = payload.get("item")
        if not isinstance(item, dict):
            return None
        role = _ROLES.get(str(item.get("type")))
        text = _content_text(item.get("content")).strip()
        return (role, text, True) if role and text else None
    if kind == "response_item" and payload.get("type") == "message":
        role = _ROLES.get(str(payload.get("role")))
        text = _content_text(payload.get("content")).strip()
        if role is None or not text or (role == "user" and text.startswith(HARNESS_PREFIXES)):
            return None
        return (role, text, False)
    return None


def _tail_lines(fh: IO[bytes], size: int, floor: int) -> list[bytes]:
    """Complete lines from the last ``TAIL_BYTES`` of the file, never before ``floor``.

    ``floor`` is a line start the head already read up to, so small files are not parsed
    twice; a window starting mid-line drops that partial line.
    """
    start = max(floor, size - TAIL_BYTES)
    fh.seek(start if start == floor else start - 1)
    data = fh.read(max(0, size - fh.tell()))
    if start != floor:
        data = data.partition(b"\n")[2]
    return data.splitlines()


@dataclass(frozen=True, slots=True)
class _Head:
    meta: Line | None = None
    prompt: str | None = None
    floor: int = 0  # where the tail may start: the prompt's line, else the meta line


def _read_head(fh: IO[bytes]) -> _Head:
    """``session_meta`` and the first real user prompt, reading at most ``HEAD_BYTES``."""
    meta: Line | None = None
    meta_at = used = 0
    while used < HEAD_BYTES:
        raw = fh.readline(HEAD_BYTES - used)
        if not raw:
            break
        at, used = used, used + len(raw)
        line = _load(raw)
        if line is None:
            continue
        if meta is None:
            meta, meta_at = (line, at) if line.get("type") == "session_meta" else (None, 0)
            continue
        message = message_of(line)
        if message is not None and message[0] == "user":
            return _Head(meta, message[1], at)
    return _Head(meta, None, meta_at)


def _may_be_message(raw: bytes, *, events_only: bool) -> bool:
    """Cheap pre-check before parsing: message lines name one of these (Codex never escapes
    ASCII letters in its JSON), so tool output, usage and, once event items were found,
    raw items are skipped unparsed."""
    return b"item_completed" in raw or (not events_only and b'"message"' in raw)


def _read_tail(lines: list[bytes]) -> tuple[datetime | None, list[SessionPreview]]:
    """The newest line timestamp and the last few messages, oldest first."""
    updated: datetime | None = None
    events: list[SessionPreview] = []
    raw_items: list[SessionPreview] = []
    for raw in reversed(lines):
        if updated is not None and not _may_be_message(raw, events_only=bool(events)):
            continue
        line = _load(raw)
        if line is None:
            continue
        updated = updated or parse_time(line.get("timestamp"))
        message = message_of(line)
        if message is not None:
            role, text, is_event = message
            preview = SessionPreview(role=role, text=cap(collapse(text), PREVIEW_CHARS))
            (events if is_event else raw_items).append(preview)
        if len(events) >= PREVIEW_MESSAGES:
            break
    # Prefer the event items; fall back to raw items for files that carry no events.
    chosen = events or raw_items
    return updated, list(reversed(chosen[:PREVIEW_MESSAGES]))


def read_rollout(path: str, session_id: str, stamp: Stamp) -> SessionSummary | None:
    """Summarize one rollout file, or None when it is not a usable session record.

    ``session_id`` is the id in the file name; ``session_meta`` must name the same
    canonical UUID and an absolute cwd. Bad lines are skipped, never fatal.
    """
    size, mtime_ns = stamp
    if size == 0:
        return None
    try:
        with Path(path).open("rb") as fh:
            head = _read_head(fh)
            if head.meta is None:
                return None
            updated, preview = _read_tail(_tail_lines(fh, size, head.floor))
    except OSError:
        return None
    meta = _payload(head.meta)
    cwd = meta.get("cwd")
    if meta.get("id") != session_id or not isinstance(cwd, str) or not is_usable_cwd(cwd):
        return None
    first_user = head.prompt or next((p.text for p in preview if p.role == "user"), "")
    title = cap(collapse(first_user), TITLE_CHARS) or UNTITLED
    created = parse_time(meta.get("timestamp")) or parse_time(head.meta.get("timestamp"))
    updated = updated or datetime.fromtimestamp(mtime_ns / 1e9, UTC)
    try:
        return SessionSummary(
            session_id=session_id,
            title=title,
            created_at=created,
            updated_at=updated,
            cwd=cwd,
            preview=preview,
        )
    except ValidationError:
        return None


def scan_rollouts(sessions_dir: str) -> dict[str, tuple[str, Stamp]]:
    """Every canonically named rollout file below ``sessions_dir``: path -> (id, stamp).

    Symlinked files and directories are not followed: Codex writes regular files, and a
    link could point the agent at any file on the machine.
    """
    found: dict[str, tuple[str, Stamp]] = {}
    stack = [sessions_dir]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    match = ROLLOUT_NAME_RE.fullmatch(entry.name)
                    if match and entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        found[entry.path] = (match.group(1), (st.st_size, st.st_mtime_ns))
                except OSError:
                    continue
    return found


@dataclass(frozen=True, slots=True)
class _FileState:
    stamp: Stamp
    summary: SessionSummary | None


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the catalog shows; replaced whole so readers on other threads see one state."""

    sessions: tuple[SessionSummary, ...] = ()
    ids: frozenset[str] = frozenset()


def _newest_first(summary: SessionSummary) -> tuple[datetime, datetime, str]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return (summary.updated_at or oldest, summary.created_at or oldest, summary.session_id)


class SessionCatalog:
    """Codex sessions under workspaceRoot, newest first, refreshed incrementally.

    ``refresh()`` does blocking file I/O (run it in a worker thread from async code);
    ``sessions()``, ``has_session()`` and ``session_ids()`` read the last refresh and are
    safe from any thread.
    """

    def __init__(
        self, *, codex_home: Path, workspace_root: Path, max_sessions: int = DEFAULT_MAX_SESSIONS
    ) -> None:
        if not workspace_root.is_absolute():
            raise ValueError("workspace_root must be an absolute path")
        if not 1 <= max_sessions <= MAX_SESSIONS_LIMIT:
            raise ValueError(f"max_sessions must be between 1 and {MAX_SESSIONS_LIMIT}")
        self.codex_home = codex_home
        self.workspace_root = workspace_root
        self.max_sessions = max_sessions
        self._files: dict[str, _FileState] = {}
        self._resolved: dict[str, str | None] = {}
        self._root = ""
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Re-read new and changed rollout files, forget removed ones; True if the list changed."""
        with self._lock:
            files_changed = self._sync_files()
            # Symlinks can be re-pointed at any time, so cwds are resolved on every refresh;
            # there are few distinct cwds, so this stays cheap (R13).
            root = os.path.realpath(self.workspace_root)
            cwds = {s.summary.cwd for s in self._files.values() if s.summary is not None}
            resolved = {cwd: resolve_dir(cwd) for cwd in cwds}
            if not files_changed and root == self._root and resolved == self._resolved:
                return False
            self._root, self._resolved = root, resolved
            snapshot = self._build_snapshot()
            changed = snapshot.sessions != self._snapshot.sessions
            self._snapshot = snapshot
            return changed

    def _sync_files(self) -> bool:
        """Bring the per-file summaries up to date with the disk; True if any file changed."""
        found = scan_rollouts(str(self.codex_home / "sessions"))
        files: dict[str, _FileState] = {}
        changed = len(found) != len(self._files)
        for path, (session_id, stamp) in found.items():
            state = self._files.get(path)
            if state is None or state.stamp != stamp:
                state = _FileState(stamp, read_rollout(path, session_id, stamp))
                changed = True
            files[path] = state
        self._files = files
        return changed

    def _build_snapshot(self) -> _Snapshot:
        """Sessions whose resolved cwd is inside the resolved root, one per id, newest first."""
        newest: dict[str, SessionSummary] = {}
        for state in self._files.values():
            summary = state.summary
            if summary is None:
                continue
            real = self._resolved.get(summary.cwd)
            if real is None or not is_inside(real, self._root):
                continue
            known = newest.get(summary.session_id)
            if known is None or _newest_first(summary) > _newest_first(known):
                newest[summary.session_id] = summary
        ordered = sorted(newest.values(), key=_newest_first, reverse=True)
        return _Snapshot(tuple(ordered[: self.max_sessions]), frozenset(newest))

    def sessions(self) -> list[SessionSummary]:
        """The visible sessions, newest first, at most ``max_sessions``."""
        return list(self._snapshot.sessions)

    def update_message(self) -> SessionsUpdate:
        """The ``sessions`` message the agent sends to the relay."""
        return SessionsUpdate(sessions=self.sessions())

    def session_ids(self) -> frozenset[str]:
        """Ids of every session under workspaceRoot (also those past the list cap)."""
        return self._snapshot.ids

    def has_session(self, session_id: str) -> bool:
        """True when ``session_id`` may be resumed: it is recorded under workspaceRoot (R13)."""
        return session_id in self._snapshot.ids
