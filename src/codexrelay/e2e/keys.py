"""Device and agent keys in their two suites (TRUST.md §3): Curve25519 first, P-256 fallback.

``c25519`` is Ed25519 for signatures and X25519 for key agreement; ``p256`` is ECDSA P-256
(SHA-256) and ECDH P-256, for browsers without the Curve25519 algorithms. Public keys travel
as unpadded base64url of what WebCrypto's ``exportKey("raw")`` gives: 32 bytes for the
Curve25519 keys, the 65-byte uncompressed point for P-256. ECDSA signatures are the 64-byte
``r ‖ s`` (IEEE P1363) form WebCrypto makes, converted to DER only at ``cryptography``'s door.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from codexrelay.e2e.statements import Suite
from codexrelay.e2e.wire import WireError, b64u, b64u_decode

SigningKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
VerifyKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
KexKey = X25519PrivateKey | ec.EllipticCurvePrivateKey
KexPublic = X25519PublicKey | ec.EllipticCurvePublicKey
SUITES: Final[tuple[Suite, ...]] = ("c25519", "p256")
_P256_POINT: Final = 65


class BadKeyError(ValueError):
    """A public key or signature that does not fit its suite."""


def generate_signing_key(suite: Suite) -> SigningKey:
    """A fresh signing key of ``suite``."""
    return (
        Ed25519PrivateKey.generate()
        if suite == "c25519"
        else ec.generate_private_key(ec.SECP256R1())
    )


def generate_kex_key(suite: Suite) -> KexKey:
    """A fresh key-agreement (HPKE recipient) key of ``suite``."""
    return (
        X25519PrivateKey.generate()
        if suite == "c25519"
        else ec.generate_private_key(ec.SECP256R1())
    )


def public_raw(key: SigningKey | KexKey | VerifyKey | KexPublic) -> bytes:
    """The raw public key bytes (32, or the 65-byte uncompressed P-256 point)."""
    public: VerifyKey | KexPublic
    if isinstance(key, Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey):
        public = key.public_key()
    else:
        public = key
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_text(key: SigningKey | KexKey | VerifyKey | KexPublic) -> str:
    """The public key as it travels: ``b64u(raw)``."""
    return b64u(public_raw(key))


def suite_of(key: SigningKey | KexKey) -> Suite:
    """Which suite a private key belongs to."""
    return "p256" if isinstance(key, ec.EllipticCurvePrivateKey) else "c25519"


def _raw(text: str) -> bytes:
    try:
        return b64u_decode(text, max_bytes=_P256_POINT)
    except WireError as exc:
        raise BadKeyError(f"public key: {exc.reason.value}") from None


def _p256(raw: bytes) -> ec.EllipticCurvePublicKey:
    if len(raw) != _P256_POINT or raw[0] != 4:
        raise BadKeyError("a P-256 public key is a 65-byte uncompressed point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def load_verify_key(suite: Suite, text: str) -> VerifyKey:
    """A signature public key of ``suite`` from its travelling text."""
    raw = _raw(text)
    if suite == "c25519":
        if len(raw) != 32:
            raise BadKeyError("an Ed25519 public key is 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    return _p256(raw)


def load_kex_public(suite: Suite, text: str) -> KexPublic:
    """A key-agreement public key of ``suite`` from its travelling text."""
    raw = _raw(text)
    if suite == "c25519":
        if len(raw) != 32:
            raise BadKeyError("an X25519 public key is 32 bytes")
        return X25519PublicKey.from_public_bytes(raw)
    return _p256(raw)


def sign(key: SigningKey, message: bytes) -> bytes:
    """Ed25519, or ECDSA P-256/SHA-256 in the 64-byte P1363 form WebCrypto uses."""
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(message)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(key: VerifyKey, signature: bytes, message: bytes) -> bool:
    """True only for a valid signature of the key's suite and exact form."""
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if len(signature) != 64:
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
