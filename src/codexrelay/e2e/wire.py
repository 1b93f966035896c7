"""Exact bytes on the wire: strict base64url and strict JSON (TRUST.md §4, §5).

Signed objects travel as ``b64u(bytes)``. The receiver decodes exactly one spelling of those
bytes (no padding, no foreign characters, no stray low bits), checks the size cap before it
parses, and rejects JSON that two parsers could read differently: duplicate keys, ``NaN``,
lone surrogates, a BOM. Nobody re-serialises a signed object, so these bytes are what was
hashed and signed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final

_TO_STANDARD = str.maketrans("-_", "+/")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_STRAY_BITS = {0: 0, 2: 0b1111, 3: 0b11}  # low bits of the last character that must be 0


class WireReason(StrEnum):
    """Why bytes were refused before any model looked at them."""

    NOT_BASE64URL = "not-base64url"
    TOO_LARGE = "too-large"
    NOT_UTF8 = "not-utf8"
    NOT_JSON = "not-json"
    DUPLICATE_KEY = "duplicate-key"
    NOT_AN_OBJECT = "not-an-object"


class WireError(ValueError):
    """Bytes that are not one unambiguous JSON object; ``reason`` is stable."""

    def __init__(self, reason: WireReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


def b64u(data: bytes) -> str:
    """Unpadded base64url, the one spelling this package writes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str, *, max_bytes: int) -> bytes:
    """Decode canonical unpadded base64url of at most ``max_bytes`` bytes.

    The length is checked before decoding, so an oversized value costs nothing; a
    non-canonical spelling (padding, ``+``/``/``, non-zero trailing bits) is refused, so each
    byte string has exactly one accepted text.
    """
    if not isinstance(text, str):
        raise WireError(WireReason.NOT_BASE64URL, "not text")
    if len(text) > (max_bytes * 4 + 2) // 3:
        raise WireError(WireReason.TOO_LARGE, f"more than {max_bytes} bytes")
    if not text.isascii() or len(text) % 4 == 1 or any(ch in text for ch in "+/="):
        raise WireError(WireReason.NOT_BASE64URL)
    try:
        # strict_mode refuses anything outside the (translated) alphabet, and whitespace.
        padded = (text + "=" * (-len(text) % 4)).translate(_TO_STANDARD)
        data = binascii.a2b_base64(padded.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(WireReason.NOT_BASE64URL) from exc
    if text and _STRAY_BITS[len(text) % 4] & _ALPHABET.index(text[-1]):
        raise WireError(WireReason.NOT_BASE64URL, "non-canonical")  # a second spelling
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise WireError(WireReason.DUPLICATE_KEY, repr(key)[:80])
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise WireError(WireReason.NOT_JSON, f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
_SURROGATE = re.compile("[\ud800-\udfff]")
# The only ways a surrogate reaches a decoded value: one in the text itself, or a
# "\\uD800".."\\uDFFF" escape (JSON escapes are lowercase "u", hex digits either case).
_SURROGATE_SOURCE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


def loads_object(data: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Parse UTF-8 JSON bytes that must hold exactly one object, strictly."""
    if len(data) > max_bytes:
        raise WireError(WireReason.TOO_LARGE, f"{len(data)} > {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(WireReason.NOT_UTF8) from exc
    if text.startswith("\ufeff"):
        raise WireError(WireReason.NOT_JSON, "byte order mark")
    value = _parse(_DECODER.decode, text)
    if not isinstance(value, dict):
        raise WireError(WireReason.NOT_AN_OBJECT)
    return value


def _parse(decode: Callable[[str], Any], text: str) -> Any:
    try:
        value = decode(text)
    except WireError:
        raise
    except (json.JSONDecodeError, RecursionError) as exc:
        raise WireError(WireReason.NOT_JSON) from exc
    if _SURROGATE_SOURCE.search(text) is not None and _has_surrogate(value):
        # "\ud800" escapes decode to text that is not valid Unicode: two parsers disagree.
        raise WireError(WireReason.NOT_JSON, "lone surrogate")
    return value


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON for objects this package *creates* (never to re-encode a signed one)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )
