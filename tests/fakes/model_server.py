"""A loopback stand-in for the model server the Codex CLI talks to (Responses API over SSE).

The real CLI, configured with a custom provider whose ``base_url`` points here, POSTs
``{base_url}/responses`` and reads ``text/event-stream`` frames: ``response.created``, one
``response.output_item.done`` per assistant message, then ``response.completed``
(reference: codex-cli.md sections 1 and 9). The reply is chosen per request by a
``Responder`` so tests can echo the prompt, fail with an HTTP status, or fail the stream.
``scripted_reply`` also makes tool calls on cue, so a test can drive a shell command or a
patch through Codex's approval flow: the newest prompt line ``MOCK_SHELL: <cmd>`` runs a
command, ``MOCK_ESCALATE: <cmd>`` asks to run it outside the sandbox (with a reason),
``MOCK_PATCH: <path> <content>`` adds a file with apply_patch, ``MOCK_REASON: <text>`` adds a
reasoning summary; the call's output comes back as ``MOCK_TOOL_RESULT ...``.

Run from a test (``with ModelServer() as server: server.base_url``) or on its own:
``python -m tests.fakes.model_server`` prints the base URL and serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

ENV_CONTEXT_PREFIX = "<environment_context>"
MAX_BODY_BYTES = 64 << 20


@dataclass(frozen=True)
class ModelRequest:
    """One POST the CLI made: its path, headers (lower-cased names) and JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def thread_id(self) -> str | None:
        """The Codex thread (session) id the CLI sends with every request."""
        return self.headers.get("thread-id") or self.headers.get("session-id")

    @property
    def user_texts(self) -> list[str]:
        """Every user message text in the request history, harness context left out."""
        texts = []
        for item in self.body.get("input") or []:
            if not isinstance(item, dict) or item.get("role") != "user":
                continue
            text = "".join(
                part.get("text", "")
                for part in item.get("content") or []
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
            if text and not text.lstrip().startswith(ENV_CONTEXT_PREFIX):
                texts.append(text)
        return texts

    @property
    def last_user_prompt(self) -> str:
        """The newest user prompt: what this turn asks."""
        texts = self.user_texts
        return texts[-1] if texts else ""


@dataclass(frozen=True)
class ModelReply:
    """What to answer: assistant messages, or an HTTP error status, or a failed stream."""

    messages: tuple[str, ...] = ()
    status: int = 200
    fail_message: str | None = None
    items: tuple[dict[str, Any], ...] = ()  # raw output items sent before the messages


Responder = Callable[[ModelRequest], ModelReply]


def echo_reply(request: ModelRequest) -> ModelReply:
    """Answer with the last user prompt, so a test can see its prompt went through."""
    return ModelReply(messages=(f"MOCK_REPLY: {request.last_user_prompt}",))


_CALLS = count(1)


def _tool_output(request: ModelRequest) -> dict[str, Any] | None:
    """The tool result this request reports back, when its newest input item is one."""
    history = request.body.get("input") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    if last.get("type") in {"function_call_output", "custom_tool_call_output"}:
        return last
    return None


def _tool_call(cue: str, arg: str) -> dict[str, Any]:
    call_id = f"call_mock_{next(_CALLS)}"
    if cue == "MOCK_PATCH":
        path, _, content = arg.partition(" ")
        patch = f"*** Begin Patch\n*** Add File: {path}\n+{content}\n*** End Patch\n"
        return {
            "type": "custom_tool_call",
            "call_id": call_id,
            "name": "apply_patch",
            "input": patch,
            "status": "completed",
        }
    args: dict[str, Any] = {"cmd": arg}
    if cue == "MOCK_ESCALATE":
        args |= {
            "sandbox_permissions": "require_escalated",
            "justification": f"MOCK_REASON run {arg}",
        }
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "exec_command",
        "arguments": json.dumps(args),
    }


def scripted_reply(request: ModelRequest) -> ModelReply:
    """Echo the prompt, or make the tool call its last line asks for (see the module doc)."""
    if (done := _tool_output(request)) is not None:
        output = done.get("output")
        text = output if isinstance(output, str) else json.dumps(output)
        return ModelReply(
            messages=(f"MOCK_TOOL_RESULT call_id={done.get('call_id')} output={text[-400:]}",)
        )
    prompt = request.last_user_prompt.strip()
    cue, _, arg = prompt.splitlines()[-1].partition(": ") if prompt else ("", "", "")
    if cue in {"MOCK_SHELL", "MOCK_ESCALATE", "MOCK_PATCH"}:
        return ModelReply(items=(_tool_call(cue, arg.strip()),))
    if cue == "MOCK_REASON":
        summary = [{"type": "summary_text", "text": arg}]
        reasoning = {"type": "reasoning", "id": f"rs_mock_{next(_CALLS)}", "summary": summary}
        return ModelReply(messages=(f"MOCK_REPLY: {prompt}",), items=(reasoning,))
    return echo_reply(request)


def _streamed_message(item: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """``output_item.added`` then the text in two deltas, before the item's ``done``."""
    text = item["content"][0]["text"]
    half = len(text) // 2
    added = {**item, "content": []}
    common = {"item_id": item["id"], "output_index": index, "content_index": 0}
    return [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        *(
            {"type": "response.output_text.delta", **common, "delta": part}
            for part in (text[:half], text[half:])
            if part
        ),
    ]


def sse_frames(reply: ModelReply, response_id: str, model: str) -> bytes:
    """The event stream for ``reply``, one ``event:``/``data:`` frame per event."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response_id, "model": model}}
    ]
    outputs = [*reply.items]
    for index, text in enumerate(reply.messages):
        outputs.append(
            {
                "type": "message",
                "role": "assistant",
                "id": f"msg_{response_id}_{index}",
                "content": [{"type": "output_text", "text": text}],
            }
        )
    for index, item in enumerate(outputs):
        if item["type"] == "message":  # streamed in two pieces, as a real model streams
            events.extend(_streamed_message(item, index))
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    if reply.fail_message is not None:
        error = {"code": "server_error", "message": reply.fail_message}
        events.append({"type": "response.failed", "response": {"id": response_id, "error": error}})
    else:
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4 * max(1, len(reply.messages)),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 10 + 4 * max(1, len(reply.messages)),
        }
        completed = {"id": response_id, "model": model, "usage": usage}
        events.append({"type": "response.completed", "response": completed})
    return b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events
    )


class _Handler(BaseHTTPRequestHandler):
    """Serves POST .../responses; everything else is 404."""

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
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = ModelRequest(path=self.path, headers=headers, body=body)
        reply = self.server.owner.record(request)
        if reply.status != 200:
            error = json.dumps({"error": {"message": f"mock status {reply.status}"}}).encode()
            self._send(reply.status, error, "application/json")
            return
        response_id = f"resp_mock_{self.server.owner.next_id()}"
        stream = sse_frames(reply, response_id, str(body.get("model", "")))
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
        """Stay quiet: tests read ``ModelServer.requests`` instead of access logs."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ModelServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


@dataclass
class ModelServer:
    """The stand-in, serving on a free loopback port from a background thread."""

    responder: Responder = echo_reply
    requests: list[ModelRequest] = field(default_factory=list)
    _server: _Server | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _ids: count[int] = field(default_factory=lambda: count(1), init=False, repr=False)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("model server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What goes into the provider's ``base_url`` (the CLI appends ``/responses``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ModelServer:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def record(self, request: ModelRequest) -> ModelReply:
        """Keep ``request`` for the test and pick the reply for it."""
        with self._lock:
            self.requests.append(request)
        return self.responder(request)

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Serve the echo stand-in until interrupted, printing its base URL."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    server = ModelServer().start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
