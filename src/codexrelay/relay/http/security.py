"""Pure-ASGI guards around every request: headers (R19), origin, media type, body cap.

They are plain ASGI so streaming responses (SSE) and WebSockets pass through untouched.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import traceback
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codexrelay.errors import AppError, ErrorCode

log = logging.getLogger("codexrelay.http")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'; worker-src 'self'; manifest-src 'self'"
)
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=(), "
    "publickey-credentials-create=(self), publickey-credentials-get=(self)"
)
HSTS = "max-age=63072000; includeSubDomains"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AGENT_PREFIX = "/api/v1/agent/"


def security_headers(*, https: bool, api: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response carries."""
    headers = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"permissions-policy", PERMISSIONS_POLICY.encode()),
        (b"x-frame-options", b"DENY"),
    ]
    if https:
        headers.append((b"strict-transport-security", HSTS.encode()))
    if api:
        headers.append((b"cache-control", b"no-store"))
    return headers


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path in {"/healthz", "/openapi.json"}


async def send_error(send: Send, error: AppError, request_id: str | None = None) -> None:
    """Send the API.md error shape directly from middleware."""
    body = error.body()
    if request_id:
        body["requestId"] = request_id
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    headers.extend((k.lower().encode(), v.encode()) for k, v in error.headers.items())
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class SecurityHeadersMiddleware:
    """Adds R19's headers to every HTTP response, errors and static files included."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(https=self.https, api=_is_api(scope["path"]))
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CatchAllMiddleware:
    """Turns any unexpected exception into a 500 with a request id and no exception text.

    It also writes the one access-log line per request: method, path, status, time; never
    query strings, headers or bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence by design
            frames = "".join(traceback.format_tb(exc.__traceback__))
            # The exception's own text may quote request data, so only its type is logged.
            log.error(  # noqa: TRY400 - log.exception would print the exception text
                "request %s failed: %s\n%s", request_id, type(exc).__name__, frames
            )
            if status == 0:
                status = 500
                error = AppError(ErrorCode.INTERNAL_ERROR, "Something went wrong on the relay.")
                await send_error(send, error, request_id)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            log.info("%s %s %s %.1fms", scope["method"], scope["path"], status, elapsed)


class RequestGuardMiddleware:
    """Origin check, JSON-only bodies and the body cap for every state-changing request.

    The whole body is read (up to ``max_body_bytes``, chunked uploads included) before the
    app sees it, so an oversize request is refused before any handler runs.
    """

    def __init__(self, app: ASGIApp, *, origins: frozenset[str], max_body_bytes: int) -> None:
        self.app = app
        self.origins = origins
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        error = self._check_headers(scope, headers)
        if error is not None:
            await send_error(send, error)
            return
        if headers.get("content-length") in {None, "0"} and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        body, error = await self._read_body(receive)
        if error is None and body and headers.get("content-type") is None:
            error = _media_type_error()
        if error is not None:
            await send_error(send, error)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_headers(self, scope: Scope, headers: dict[str, str]) -> AppError | None:
        path: str = scope["path"]
        if scope["method"] in STATE_CHANGING and not path.startswith(AGENT_PREFIX):
            origin = headers.get("origin")
            # API.md: refuse a present Origin that is not ours (the relay's, or the app's
            # static origin when there is one); "null" is never ours.
            if origin is not None and origin not in self.origins:
                return AppError(ErrorCode.FORBIDDEN, "Cross-origin requests are not allowed.")
        content_type = headers.get("content-type")
        if content_type is not None:
            media = content_type.split(";", 1)[0].strip().lower()
            if media != "application/json":
                return _media_type_error()
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return AppError(ErrorCode.INVALID_REQUEST, "Content-Length is not a number.")
            if int(length) > self.max_body_bytes:
                return _too_large(self.max_body_bytes)
        return None

    async def _read_body(self, receive: Receive) -> tuple[bytes, AppError | None]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", AppError(ErrorCode.INVALID_REQUEST, "The client went away.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", _too_large(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


def _media_type_error() -> AppError:
    return AppError(
        ErrorCode.INVALID_REQUEST, "Request bodies must be application/json.", status=415
    )


def _too_large(limit: int) -> AppError:
    return AppError(ErrorCode.PAYLOAD_TOO_LARGE, f"The request body is larger than {limit} bytes.")


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the buffered body to the app once, then the real channel (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
