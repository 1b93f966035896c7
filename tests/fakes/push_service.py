"""A loopback stand-in for a Web Push service (Google's, Apple's, Mozilla's), for tests.

It plays both outer ends the relay does not own: the push service, which takes RFC 8030
POSTs at per-subscription endpoints and checks their VAPID token (RFC 8292, verified with
py_vapid's ``jwt.decode`` over ``cryptography``), and the browser behind it, which holds
each subscription's private key and auth secret and decrypts the RFC 8291 payload (with
``http_ece``). No primitive of its own. Every delivery is kept for the test to read; a
subscription can be told to answer 410 (gone), fail a few times (503), or hang.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

ALLOWED_PAYLOAD_KEYS = frozenset({"kind", "ws", "id"})
MAX_TOKEN_LIFETIME_SEC = 24 * 3600  # RFC 8292 section 2


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """One browser's subscription: the keys only the browser holds, and its endpoint."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return _b64(raw)

    def subscription_json(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the app."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": _b64(self.auth)},
        }


@dataclass(frozen=True)
class Delivery:
    """One notification as the device decrypted it, with what the push service saw."""

    token: str
    payload: dict[str, Any]
    plaintext: bytes
    body: bytes
    headers: dict[str, str]
    claims: dict[str, Any]
    vapid_key: str


@dataclass
class PushServiceStandIn:
    """``start()`` binds 127.0.0.1:0; ``endpoint``s look like ``http://127.0.0.1:P/push/T``."""

    host: str = "127.0.0.1"
    devices: dict[str, Device] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # token -> statuses to answer before accepting (e.g. [503, 503]), or 410 for good
    scripted: dict[str, list[int]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    hang: threading.Event | None = None
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> PushServiceStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real push services offer

            def do_POST(self) -> None:
                stand_in._handle(self)

            def log_message(self, *_: object) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def new_device(self) -> Device:
        """A browser subscribing: fresh P-256 key pair and auth secret (RFC 8291 §2)."""
        token = secrets.token_urlsafe(16)
        device = Device(
            token=token,
            endpoint=f"{self.origin}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=os.urandom(16),
        )
        self.devices[token] = device
        return device

    def received(self, device: Device | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if device is None or d.token == device.token]

    # --- the push service's side ---

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length)
        with self._lock:
            self.requests += 1
        if self.hang is not None:
            self.hang.wait(timeout=60)
        token = request.path.removeprefix("/push/")
        status = self._status_for(token)
        if status == 201:
            status = self._accept(token, body, dict(request.headers.items()))
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _status_for(self, token: str) -> int:
        with self._lock:
            if token not in self.devices:
                return 404
            if token in self.gone:
                return 410
            script = self.scripted.get(token)
            if script:
                return script.pop(0)
        return 201

    def _accept(self, token: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            claims, key = self._check_vapid(headers)
            plaintext = self._decrypt(self.devices[token], body, headers)
            payload = json.loads(plaintext)
        except (ValueError, KeyError, InvalidSignature, http_ece.ECEException) as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            return 400
        extra = set(payload) - ALLOWED_PAYLOAD_KEYS
        if extra:
            self.errors.append(f"payload carries more than kind, ws, id: {sorted(extra)}")
        delivery = Delivery(token, payload, plaintext, body, headers, claims, key)
        with self._lock:
            self.deliveries.append(delivery)
        return 201

    def _check_vapid(self, headers: dict[str, str]) -> tuple[dict[str, Any], str]:
        """RFC 8292 section 3: ``vapid t=<JWT>, k=<key>``; signature, aud, exp, sub."""
        scheme, _, params = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("no vapid Authorization")
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        claims = vapid_jwt.decode(parts["t"], parts["k"])  # raises InvalidSignature
        if claims.get("aud") != self.origin:
            raise ValueError(f"aud {claims.get('aud')!r} is not {self.origin}")
        now = time.time()
        if not now < claims["exp"] <= now + MAX_TOKEN_LIFETIME_SEC + 60:
            raise ValueError("exp out of range")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
            raise ValueError("no sub contact")
        if "TTL" not in headers or headers.get("Content-Encoding") != "aes128gcm":
            raise ValueError("missing TTL or not aes128gcm")
        return claims, parts["k"]

    @staticmethod
    def _decrypt(device: Device, body: bytes, _headers: dict[str, str]) -> bytes:
        """The browser's side of RFC 8291."""
        plaintext: bytes = http_ece.decrypt(
            body, private_key=device.private_key, auth_secret=device.auth, version="aes128gcm"
        )
        return plaintext
