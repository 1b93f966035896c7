"""Random secrets, hashes and keyed tags: the few primitives every credential is built from.

Tokens carry a short prefix (``crb_`` bootstrap, ``cra_`` agent, ``crs_`` session) so secret
scanners and people can tell what leaked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable

TokenSource = Callable[[int], bytes]
"""Where random bytes come from; injected so tests can be deterministic without patching."""

# Pairing, invite and recovery codes use Crockford's base32: no I, L, O or U, and typed
# look-alikes (O for 0, I or L for 1) are read as the digit they resemble.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def b64url(data: bytes) -> str:
    """Unpadded URL-safe base64, the form every token and id here uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises ``ValueError`` on anything malformed."""
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error) as exc:
        msg = "not base64url"
        raise ValueError(msg) from exc


def new_secret(rand: TokenSource = secrets.token_bytes, nbytes: int = 32) -> str:
    """A URL-safe random secret of ``nbytes`` (256 bits by default)."""
    return b64url(rand(nbytes))


def new_id(prefix: str, rand: TokenSource = secrets.token_bytes) -> str:
    """An opaque id such as ``ws_3k9...``: 96 random bits, never derived from content."""
    return f"{prefix}_{b64url(rand(12))}"


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 text, as lowercase hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def keyed_hash(secret: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``secret``, domain-separated by ``purpose``.

    Used for codes and tokens that must die when ``tokenSecret`` rotates (I3).
    """
    key = hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets or digests without leaking where they differ (R01)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def new_code(rand: TokenSource = secrets.token_bytes, groups: int = 2, size: int = 4) -> str:
    """A human-typable code like ``K7QX-M2PD``: 5 bits a character, 40 bits for 8 characters."""
    raw = rand(groups * size)
    chars = [CODE_ALPHABET[b % 32] for b in raw]
    return "-".join("".join(chars[i : i + size]) for i in range(0, len(chars), size))


def normalize_code(code: str) -> str:
    """Accept codes typed in lower case, with spaces, or without the dash."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum()).translate(_LOOKALIKES)
    if len(cleaned) == 8:
        return f"{cleaned[:4]}-{cleaned[4:]}"
    return cleaned
