"""Pairing that authenticates both sides across the relay (TRUST.md §4.2).

The admin's phone adds an 80-bit secret ``s`` to the relay's pairing code and shows
``ABCD-EFGH.KQ7M-R2XD-9TPF-WC3H``; the relay only ever sees ``ABCD-EFGH``. Both ends derive
``K_pair = HKDF-SHA256(s, salt=H(code), info=tag(pair))``. The agent MACs its key claim
with it and the phone MACs the grant that pins the workspace's genesis, so the relay can
neither swap the agent's keys nor hand the agent another workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from codexrelay.e2e.statements import (
    MAX_STATEMENT_BYTES,
    Digest,
    Id,
    Label,
    LogHead,
    PublicKeyText,
    Strict,
    Suite,
    decode_object,
)
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import b64u

SECRET_BYTES: Final = 10  # 80 bits: 16 Crockford base32 characters, no padding bits
ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOOKALIKES: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})


class PairingError(ValueError):
    """A pairing code or secret that does not parse."""


def new_secret(rand: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """80 random bits."""
    return rand(SECRET_BYTES)


def format_secret(secret: bytes) -> str:
    """``KQ7M-R2XD-9TPF-WC3H``: the 80 bits in four groups of four Crockford characters."""
    if len(secret) != SECRET_BYTES:
        raise PairingError("a pairing secret is 80 bits")
    number = int.from_bytes(secret, "big")
    chars = [ALPHABET[(number >> (5 * (15 - i))) & 31] for i in range(16)]
    return "-".join("".join(chars[i : i + 4]) for i in range(0, 16, 4))


def parse_secret(text: str) -> bytes:
    """Inverse of :func:`format_secret`; lower case, missing dashes and look-alikes accepted."""
    cleaned = "".join(ch for ch in text.upper() if ch not in "- ").translate(_LOOKALIKES)
    if len(cleaned) != 16 or any(ch not in ALPHABET for ch in cleaned):
        raise PairingError("the secret is 16 characters of Crockford base32")
    number = 0
    for ch in cleaned:
        number = number << 5 | ALPHABET.index(ch)
    return number.to_bytes(SECRET_BYTES, "big")


def normalize_code(code: str) -> str:
    """The relay's code as ``ABCD-EFGH`` (the salt is over this exact form)."""
    cleaned = "".join(ch for ch in code.upper() if ch not in "- ").translate(_LOOKALIKES)
    if len(cleaned) != 8 or any(ch not in ALPHABET for ch in cleaned):
        raise PairingError("the pairing code is 8 characters of Crockford base32")
    return f"{cleaned[:4]}-{cleaned[4:]}"


def format_pair_code(code: str, secret: bytes) -> str:
    """What the phone shows: ``ABCD-EFGH.KQ7M-R2XD-9TPF-WC3H``."""
    return f"{normalize_code(code)}.{format_secret(secret)}"


def parse_pair_code(text: str) -> tuple[str, bytes]:
    """Split what the person typed into the relay's code and the secret."""
    code, dot, secret = text.strip().partition(".")
    if not dot:
        raise PairingError("the pairing code has no secret part (CODE.SECRET)")
    return normalize_code(code), parse_secret(secret)


def pairing_key(secret: bytes, code: str) -> bytes:
    """``K_pair = HKDF-SHA256(ikm=s, salt=H(code), info=tag(pair), L=32)``."""
    salt = hashlib.sha256(normalize_code(code).encode("ascii")).digest()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=tag("pair")).derive(secret)


class Claim(Strict):
    """The agent's key claim (§4.2 step 2)."""

    agent_id: Id
    label: Label
    hostname: Label
    workspace_root_name: Label
    sig_pub: PublicKeyText
    kex_pub: PublicKeyText
    suite: Suite
    nonce: Digest


class Grant(Strict):
    """The phone's grant, pinning the workspace (§4.2 step 4)."""

    ws: Id
    genesis_hash: Digest
    head: LogHead
    agent_id: Id
    pairing_id: Id


def claim_mac(key: bytes, claim: bytes) -> str:
    """``b64u(HMAC-SHA256(K_pair, tag(pair-claim) ‖ claimBytes))``."""
    return b64u(hmac.new(key, tag("pair-claim") + claim, hashlib.sha256).digest())


def grant_mac(key: bytes, grant: bytes) -> str:
    """``b64u(HMAC-SHA256(K_pair, tag(pair-grant) ‖ grantBytes))``."""
    return b64u(hmac.new(key, tag("pair-grant") + grant, hashlib.sha256).digest())


def verify_claim(key: bytes, claim: bytes, mac: str) -> bool:
    """Constant-time check of a claim MAC (the phone's green or red badge)."""
    return hmac.compare_digest(claim_mac(key, claim).encode(), mac.encode("utf-8", "replace"))


def verify_grant(key: bytes, grant: bytes, mac: str) -> bool:
    """Constant-time check of a grant MAC (the agent pins only a grant that verifies)."""
    return hmac.compare_digest(grant_mac(key, grant).encode(), mac.encode("utf-8", "replace"))


def parse_claim(raw: bytes) -> Claim:
    """Strictly parse claim bytes (after the MAC verified)."""
    return decode_object(raw, Claim, max_bytes=MAX_STATEMENT_BYTES)


def parse_grant(raw: bytes) -> Grant:
    """Strictly parse grant bytes (after the MAC verified)."""
    return decode_object(raw, Grant, max_bytes=MAX_STATEMENT_BYTES)
