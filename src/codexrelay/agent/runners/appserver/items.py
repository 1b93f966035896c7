"""App-server thread items in the API.md "Conversations" shape, redacted and capped.

``map_item`` is a pure translation of one ``ThreadItem`` the app-server sent (section 5 of
codex-app-server.md) into the fields of ``protocol_threads.ThreadItem``; ``Outbound`` then
passes every text in it through the agent's redactor (B3) and cuts it to the agent's size
caps (R18) before it may leave the agent. Unknown item types travel as ``{type, raw}`` with
every string in ``raw`` redacted and the whole of it bounded.
"""

from __future__ import annotations

import json
from typing import Any

from codexrelay.agent.redaction import Redactor, StreamRedactor
from codexrelay.agent.runners.text import cap_head, cap_tail

Json = dict[str, Any]

TEXT_BYTES = 192 << 10
SHORT_BYTES = 4000
COMMAND_BYTES = 16000
RAW_BYTES = 32 << 10
RAW_STRING_CHARS = 4096
RAW_LIST_ITEMS = 50
RAW_DEPTH = 6
MAX_CHANGES = 200
KNOWN_STATUSES = {"inProgress", "completed", "failed", "declined", "interrupted"}


def _text_parts(content: object) -> str:
    parts = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text") or ""))
        elif isinstance(part, dict) and part.get("type") in {"image", "localImage"}:
            parts.append("[image]")
    return "\n".join(parts)


def _change(change: object) -> Json | None:
    if not isinstance(change, dict):
        return None
    kind = change.get("kind")
    kind_name = kind.get("type") if isinstance(kind, dict) else kind
    return {
        "path": str(change.get("path") or ""),
        "kind": str(kind_name or "update")[:20],
        "diff": str(change.get("diff") or ""),
    }


def map_changes(changes: object) -> list[Json]:
    """The ``[{path, kind, diff}]`` of a fileChange item (``kind`` flattened to its type)."""
    items = changes if isinstance(changes, list) else []
    return [c for c in (_change(item) for item in items[:MAX_CHANGES]) if c is not None]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def map_item(raw: Json, *, turn_id: str | None, done: bool) -> Json:
    """One app-server item as ``ThreadItem`` fields (without ``seq``)."""
    kind = str(raw.get("type") or "unknown")
    status = raw.get("status")
    if status not in KNOWN_STATUSES:
        status = "completed" if done else "inProgress"
    item: Json = {"id": str(raw.get("id") or ""), "turn_id": turn_id, "type": kind}
    item["status"] = status
    if kind == "userMessage":
        item["text"] = _text_parts(raw.get("content"))
    elif kind in {"agentMessage", "plan"}:
        item["text"] = str(raw.get("text") or "")
    elif kind == "reasoning":
        summary = raw.get("summary")
        parts = summary if isinstance(summary, list) else []
        item["summary"] = "\n\n".join(str(part) for part in parts)
    elif kind == "commandExecution":
        item |= {
            "command": str(raw.get("command") or ""),
            "cwd": str(raw.get("cwd") or ""),
            "output": str(raw.get("aggregatedOutput") or ""),
            "exit_code": _int(raw.get("exitCode")),
            "duration_ms": _int(raw.get("durationMs")),
        }
    elif kind == "fileChange":
        item["changes"] = map_changes(raw.get("changes"))
    else:
        item["raw"] = {k: v for k, v in raw.items() if k not in {"type", "id"}}
    return item


def error_item(item_id: str, turn_id: str | None, message: str) -> Json:
    """An ``error`` item for a turn-level error the app-server reported."""
    return {
        "id": item_id,
        "turn_id": turn_id,
        "type": "error",
        "status": "failed",
        "message": message,
    }


class Outbound:
    """The redaction and caps every conversation text passes before it leaves the agent."""

    def __init__(self, redactor: Redactor, *, output_bytes: int, diff_bytes: int) -> None:
        self._redactor = redactor
        self.output_bytes = min(output_bytes, 256 << 10)
        self.diff_bytes = min(diff_bytes, 512 << 10)

    def redact(self, text: str) -> str:
        """``text`` with its secrets replaced (B3)."""
        return self._redactor.redact(text)[0]

    def head(self, text: str, max_bytes: int) -> str:
        """Redacted, then the start of it within ``max_bytes`` (R18)."""
        return cap_head(self.redact(text), max_bytes)[0]

    def tail(self, text: str, max_bytes: int) -> str:
        """Redacted, then the end of it within ``max_bytes`` (output keeps its latest part)."""
        return cap_tail(self.redact(text), max_bytes)[0]

    def stream(self) -> StreamRedactor:
        """A redactor for one streamed field (message text, command output)."""
        return self._redactor.stream()

    def item(self, item: Json) -> Json:
        """Every text field of a mapped item, redacted and capped."""
        out = dict(item)
        for key, limit in (("text", TEXT_BYTES), ("summary", TEXT_BYTES), ("message", SHORT_BYTES)):
            if isinstance(out.get(key), str):
                out[key] = self.head(out[key], limit)
        if isinstance(out.get("command"), str):
            out["command"] = self.head(out["command"], COMMAND_BYTES)
        if isinstance(out.get("cwd"), str):
            out["cwd"] = self.head(out["cwd"], SHORT_BYTES)
        if isinstance(out.get("output"), str):
            out["output"] = self.tail(out["output"], self.output_bytes)
        if isinstance(out.get("changes"), list):
            out["changes"] = self.changes(out["changes"])
        if isinstance(out.get("raw"), dict):
            out["raw"] = self.raw(out["raw"])
        return out

    def changes(self, changes: list[Json]) -> list[Json]:
        """Paths and diffs redacted; all diffs together within the diff cap."""
        budget = self.diff_bytes
        out = []
        for change in changes:
            diff = self.head(change["diff"], max(budget, 0))
            budget -= len(diff.encode("utf-8"))
            out.append({**change, "path": self.head(change["path"], SHORT_BYTES), "diff": diff})
        return out

    def raw(self, raw: Json) -> Json:
        """An unknown item's fields: strings redacted and shortened, the whole bounded."""
        value = self._bounded(raw, RAW_DEPTH)
        if len(json.dumps(value)) > RAW_BYTES:
            return {"truncated": True}
        return value if isinstance(value, dict) else {}

    def _bounded(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.head(value, RAW_STRING_CHARS)
        if depth <= 0:
            return None
        if isinstance(value, dict):
            return {str(k)[:100]: self._bounded(v, depth - 1) for k, v in list(value.items())[:100]}
        if isinstance(value, list):
            return [self._bounded(v, depth - 1) for v in value[:RAW_LIST_ITEMS]]
        return value if isinstance(value, int | float | bool) or value is None else str(value)
