"""One Web Push message as bytes on the wire: the content-free payload, encrypted for one
subscription (RFC 8291 by ``http_ece``), and the RFC 8030 headers around it.

Every payload is padded to the same length before encryption, so the push service cannot
tell one kind of notification from another by its size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from codexrelay.relay.push.endpoints import b64url_decode

PADDED_BYTES = 160  # every payload is at most {kind, ws, id}; ids are short


def payload(kind: str, workspace_id: str | None, object_id: str | None) -> bytes:
    """The whole plaintext a device receives: at most ``{"kind","ws","id"}`` (API.md),
    JSON padded with spaces to a fixed length (JSON ignores trailing whitespace)."""
    body: dict[str, str] = {"kind": kind}
    if workspace_id:
        body["ws"] = workspace_id
    if object_id:
        body["id"] = object_id
    data = json.dumps(body, separators=(",", ":")).encode("ascii")
    size = PADDED_BYTES if len(data) <= PADDED_BYTES else -(-len(data) // 64) * 64
    return data.ljust(size, b" ")


def encrypt(plaintext: bytes, *, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body for one subscription: a fresh sender key per message, ECDH with
    the browser's key, HKDF with its auth secret (RFC 8291 section 3.4, by http_ece)."""
    sender = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        plaintext,
        private_key=sender,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    return body


def audience(endpoint: str) -> str:
    """The push service's origin, the VAPID token's ``aud`` (RFC 8292 section 2)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class PushRequest:
    """Everything one POST to a push service carries."""

    url: str
    body: bytes
    headers: dict[str, str]


def build_request(
    endpoint: str,
    body: bytes,
    *,
    authorization: str,
    ttl_sec: int,
    urgency: str,
) -> PushRequest:
    """RFC 8030 section 5: TTL and Urgency; no Topic, which would let the push service
    link notifications about one task or thread together."""
    headers = {
        "TTL": str(ttl_sec),
        "Urgency": urgency,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Authorization": authorization,
    }
    return PushRequest(url=endpoint, body=body, headers=headers)
