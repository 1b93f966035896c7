"""Which push endpoints the relay may send to, and what a subscription's keys must be.

A subscription names a URL the relay will POST to later, so it is checked like any
outbound request a client can steer: https to a host on ``push.allowedHosts`` only (plain
http only for a loopback host listed there, which is how tests reach their stand-in), no
credentials in the URL, a bounded length. Nobody can make the relay send requests into
its own network (API.md, Push).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from codexrelay.errors import AppError, ErrorCode

MAX_ENDPOINT_CHARS = 2048
P256_POINT_BYTES = 65  # an uncompressed P-256 point (RFC 8291 section 2)
AUTH_SECRET_BYTES = 16  # RFC 8291 section 3.2
LOOPBACK_NAMES = frozenset({"localhost"})


def _not_allowed(reason: str) -> AppError:
    return AppError(ErrorCode.PUSH_ENDPOINT_NOT_ALLOWED, reason)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """``host`` equals an entry, or falls under a ``*.domain`` entry (not the domain
    itself). Names compare in lower case; IPv6 literals with or without brackets."""
    host = host.lower().strip("[]")
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        elif host == entry.strip("[]"):
            return True
    return False


def check_endpoint(endpoint: str, allowed: Sequence[str]) -> str:
    """The endpoint, if the relay may POST to it; else 400 ``push-endpoint-not-allowed``."""
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise _not_allowed("That push endpoint is too long.")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        raise _not_allowed("That push endpoint is not a URL.") from None
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise _not_allowed("A push endpoint may not carry credentials or a fragment.")
    if not host or not host_allowed(host, allowed):
        raise _not_allowed(
            "This relay does not send to that push service (it is not on push.allowedHosts)."
        )
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return endpoint
    raise _not_allowed("A push endpoint must be https (plain http only on this machine).")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; ``ValueError`` on anything else."""
    if not text or len(text) > 256 or any(c in text for c in "+/ \n"):
        msg = "not base64url"
        raise ValueError(msg)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        msg = "not base64url"
        raise ValueError(msg) from None


def check_keys(p256dh: str, auth: str) -> None:
    """The browser's keys must be a point on P-256 and a 16-byte secret (RFC 8291)."""
    try:
        point = b64url_decode(p256dh)
        secret = b64url_decode(auth)
        if len(point) != P256_POINT_BYTES or len(secret) != AUTH_SECRET_BYTES:
            raise ValueError("wrong length")  # noqa: TRY301 - one message for every fault
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise AppError(
            ErrorCode.INVALID_REQUEST,
            "The subscription's keys are not a P-256 public key and a 16-byte secret.",
        ) from None
