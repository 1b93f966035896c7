"""Reading ``codex exec --json`` output: JSONL events in, capped progress events out.

Pure bookkeeping, no I/O, so each event shape from the CLI reference (section 3) can be
fed in directly. It remembers the thread id, the last agent message (the final answer),
whether the turn completed or failed, and a readable transcript tail for the phone.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from codexrelay.agent.runners.text import TailBuffer, cap_head, cap_tail
from codexrelay.protocol import UUID_PATTERN, FileChangeInfo, ProgressEvent

EVENT_TEXT_BYTES = 16384
COMMAND_BYTES = 2048
FINAL_MESSAGE_BYTES = 200_000
MAX_CHANGES = 200
UUID_RE = re.compile(UUID_PATTERN)

Handler = Callable[[dict[str, Any]], list[ProgressEvent]]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _status(value: Any) -> str | None:
    return value[:20] if isinstance(value, str) else None


class CodexEventParser:
    """Turns one run's JSONL lines into progress events and an outcome summary."""

    def __init__(self, *, expected_session_id: str | None, max_output_bytes: int) -> None:
        self.expected_session_id = expected_session_id
        self.session_id: str | None = None
        self.final_message: str | None = None
        self.completed = False
        self.failure: str | None = None
        self.last_error: str | None = None
        self.wrong_session = asyncio.Event()
        self._transcript = TailBuffer(max_output_bytes)
        self._events: dict[str, Handler] = {
            "thread.started": self._thread_started,
            "turn.completed": self._turn_completed,
            "turn.failed": self._turn_failed,
            "error": self._error,
            "item.started": self._item_started,
            "item.completed": self._item_completed,
        }
        self._items: dict[str, Handler] = {
            "agent_message": self._agent_message,
            "reasoning": self._reasoning,
            "command_execution": self._command,
            "file_change": self._file_change,
            "web_search": self._web_search,
            "error": self._error_item,
        }

    def feed(self, line: str) -> list[ProgressEvent]:
        """Handle one stdout line; anything that is not an event goes to the transcript."""
        line = line.strip()
        if not line:
            return []
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            self._note(line)
            return []
        if not isinstance(event, dict):
            return []
        handler = self._events.get(_text(event.get("type")))
        return handler(event) if handler else []

    def output_tail(self) -> str:
        """The transcript's newest part, within the output cap."""
        return self._transcript.text()

    def _note(self, text: str) -> None:
        self._transcript.append((text.rstrip("\n") + "\n").encode("utf-8", "replace"))

    # ---- top-level events -------------------------------------------------------------

    def _thread_started(self, event: dict[str, Any]) -> list[ProgressEvent]:
        thread_id = _text(event.get("thread_id"))
        self.session_id = thread_id if UUID_RE.match(thread_id) else None
        if self.expected_session_id and thread_id != self.expected_session_id:
            self.wrong_session.set()
        return []

    def _turn_completed(self, _event: dict[str, Any]) -> list[ProgressEvent]:
        self.completed = True
        return []

    def _turn_failed(self, event: dict[str, Any]) -> list[ProgressEvent]:
        error = event.get("error")
        message = _text(error.get("message")) if isinstance(error, dict) else ""
        self.failure = message or self.last_error or "the Codex turn failed"
        if message and message != self.last_error:
            return self._error({"message": message})
        return []

    def _error(self, event: dict[str, Any]) -> list[ProgressEvent]:
        message = _text(event.get("message"))
        self.last_error = message
        self._note(f"error: {message}")
        return [ProgressEvent(kind="error", text=cap_head(message, EVENT_TEXT_BYTES)[0])]

    def _item_started(self, event: dict[str, Any]) -> list[ProgressEvent]:
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "command_execution":
            command = cap_head(_text(item.get("command")), COMMAND_BYTES)[0]
            return [ProgressEvent(kind="command", command=command, status="in_progress")]
        return []  # other items are reported once, when they complete

    def _item_completed(self, event: dict[str, Any]) -> list[ProgressEvent]:
        item = event.get("item")
        if not isinstance(item, dict):
            return []
        handler = self._items.get(_text(item.get("type")))
        return handler(item) if handler else []

    # ---- items ------------------------------------------------------------------------

    def _agent_message(self, item: dict[str, Any]) -> list[ProgressEvent]:
        text = _text(item.get("text"))
        self.final_message = cap_head(text, FINAL_MESSAGE_BYTES)[0]
        self._note(text)
        return [ProgressEvent(kind="message", text=cap_head(text, EVENT_TEXT_BYTES)[0])]

    def _reasoning(self, item: dict[str, Any]) -> list[ProgressEvent]:
        text = _text(item.get("text"))
        self._note(f"(reasoning) {text}")
        return [ProgressEvent(kind="reasoning", text=cap_head(text, EVENT_TEXT_BYTES)[0])]

    def _command(self, item: dict[str, Any]) -> list[ProgressEvent]:
        command = _text(item.get("command"))
        output = _text(item.get("aggregated_output"))
        code = item.get("exit_code")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        self._note(f"$ {command}\n{output}(exit {exit_code})")
        return [
            ProgressEvent(
                kind="command",
                command=cap_head(command, COMMAND_BYTES)[0],
                text=cap_tail(output, EVENT_TEXT_BYTES)[0],
                exit_code=exit_code,
                status=_status(item.get("status")),
            )
        ]

    def _file_change(self, item: dict[str, Any]) -> list[ProgressEvent]:
        raw = item.get("changes")
        changes = [
            FileChangeInfo(
                path=cap_head(_text(change.get("path")), 4000)[0],
                kind=_text(change.get("kind"))[:20],
            )
            for change in (raw if isinstance(raw, list) else [])[:MAX_CHANGES]
            if isinstance(change, dict)
        ]
        for change in changes:
            self._note(f"{change.kind}: {change.path}")
        return [
            ProgressEvent(kind="file_change", changes=changes, status=_status(item.get("status")))
        ]

    def _web_search(self, item: dict[str, Any]) -> list[ProgressEvent]:
        # The CLI writes the key "id" twice in this item; json keeps the last, which is fine
        # because only the query is used.
        query = _text(item.get("query"))
        action = item.get("action")
        if not query and isinstance(action, dict):
            query = _text(action.get("query"))
        self._note(f"(web search) {query}")
        return [ProgressEvent(kind="web_search", text=cap_head(query, EVENT_TEXT_BYTES)[0])]

    def _error_item(self, item: dict[str, Any]) -> list[ProgressEvent]:
        message = _text(item.get("message"))
        self._note(f"error: {message}")
        return [ProgressEvent(kind="error", text=cap_head(message, EVENT_TEXT_BYTES)[0])]
