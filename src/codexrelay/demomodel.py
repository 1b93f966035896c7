"""The offline demo model: a loopback stand-in for the model server that the real Codex CLI
talks to in ``codexrelay demo`` when no Codex login is available.

It is not a model. It answers the Responses API (``POST /v1/responses`` as a server-sent
event stream) with a fixed script, so a newcomer sees a whole live conversation on the
phone without an account or a network: it says what it is, reads a file, asks to run the
tests (a command approval), proposes a patch (a file-change approval), then sums up. Every
reply starts by saying it comes from the offline demo model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

LABEL = "Offline demo model"
MAX_BODY_BYTES = 64 << 20
PATCH = (
    "*** Begin Patch\n*** Add File: mode.py\n"
    '+"""The most common value, for the sample project."""\n+\n'
    "+from collections import Counter\n+\n+\n"
    "+def mode(values: list[float]) -> float:\n"
    '+    """The value seen most often (the first of them on a tie)."""\n'
    "+    return Counter(values).most_common(1)[0][0]\n"
    "*** End Patch\n"
)
SUMMARY = (
    f"**{LABEL}: done.** Here is what happened, step by step:\n\n"
    "1. I read `README.md` (no approval needed: reading stays inside the sandbox).\n"
    "2. I asked to run `python3 -m unittest -v` outside the sandbox; your answer decided it.\n"
    "3. I proposed `mode.py`; the file exists only if you accepted the patch.\n\n"
    "Sign in to Codex on this computer (`codex login`) and run the demo again to talk to a "
    "real model."
)


def _last_tool_call(body: dict[str, Any]) -> str:
    """The call id of the tool result this request reports, when its newest input is one."""
    history = body.get("input") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    if last.get("type") in {"function_call_output", "custom_tool_call_output"}:
        return str(last.get("call_id") or "")
    return ""


def _shell(call_id: str, cmd: str, **extra: str) -> dict[str, Any]:
    arguments = json.dumps({"cmd": cmd, **extra})
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "exec_command",
        "arguments": arguments,
    }


def script_step(body: dict[str, Any], number: int) -> tuple[str, dict[str, Any] | None]:
    """What the demo model says next, and the tool call it makes (None at the end)."""
    done = _last_tool_call(body)
    if not done:
        text = (f"**{LABEL}** (a scripted stand-in, not a real model). I will read a file, "
                "ask you to let me run the tests, and propose a small patch.")  # fmt: skip
        return text, _shell(f"demo_read_{number}", "cat README.md")
    if done.startswith("demo_read"):
        text = f"**{LABEL}:** the README says there are tests. May I run them?"
        call = _shell(
            f"demo_test_{number}",
            "python3 -m unittest -v",
            sandbox_permissions="require_escalated",
            justification="Run the sample project's tests (the demo model asks so you can answer)",
        )
        return text, call
    if done.startswith("demo_test"):
        text = f"**{LABEL}:** a `mode()` helper is missing. Here is a patch that adds it."
        patch = {"type": "custom_tool_call", "call_id": f"demo_patch_{number}",
                 "name": "apply_patch", "input": PATCH, "status": "completed"}  # fmt: skip
        return text, patch
    return SUMMARY, None


def _events(text: str, call: dict[str, Any] | None, response_id: str) -> Iterator[dict[str, Any]]:
    yield {"type": "response.created", "response": {"id": response_id}}
    message = {"type": "message", "role": "assistant", "id": f"msg_{response_id}",
               "content": [{"type": "output_text", "text": text}]}  # fmt: skip
    yield {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {**message, "content": []},
    }
    words = text.split(" ")
    for index, word in enumerate(words):  # streamed a word at a time, as a model streams
        delta = word if index == len(words) - 1 else f"{word} "
        yield {"type": "response.output_text.delta", "item_id": message["id"],
               "output_index": 0, "content_index": 0, "delta": delta}  # fmt: skip
    yield {"type": "response.output_item.done", "output_index": 0, "item": message}
    if call is not None:
        yield {"type": "response.output_item.done", "output_index": 1, "item": call}
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 10,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 20}  # fmt: skip
    yield {"type": "response.completed", "response": {"id": response_id, "usage": usage}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if not self.path.endswith("/responses") or length > MAX_BODY_BYTES:
            self._send(HTTPStatus.NOT_FOUND, b'{"error":"not found"}', "application/json")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, b'{"error":"bad json"}', "application/json")
            return
        number = next(self.server.numbers)
        text, call = script_step(body, number)
        frames = _events(text, call, f"resp_demo_{number}")
        stream = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in frames)
        self._send(HTTPStatus.OK, stream, "text/event-stream")

    def do_GET(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, b'{"error":"not found"}', "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the demo prints its own lines."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.numbers = count(1)


class DemoModel:
    """The offline demo model serving on a free loopback port from a background thread."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-model", daemon=True
        )

    @property
    def base_url(self) -> str:
        """The provider's ``base_url`` (the CLI appends ``/responses``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> DemoModel:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
