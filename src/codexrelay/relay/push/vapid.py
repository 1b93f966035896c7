"""The relay's VAPID key (RFC 8292): one P-256 key pair that identifies this relay to the
push services, private key 0600 in ``dataDir`` beside the audit signing key.

It is made by ``relay init`` or, for a config that predates push, at the first start; it
is replaced only by ``relay rotate-secrets --vapid``. Browsers bind each subscription to
the public key, so a new key means every phone subscribes again (each record notes the
key it was made for, and records of another key are dropped at start).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from codexrelay.crypto import b64url
from codexrelay.fileio import ensure_private_dir, write_private_file
from codexrelay.relay.storage.jsonfile import StateError
from codexrelay.relay.storage.keyfiles import load_private_key

VAPID_KEY_NAME = "vapid-private-key.pem"
# A token is good for 12 hours (RFC 8292 allows up to 24) and reused until 1 hour is left,
# so sending to many devices of one push service signs once.
TOKEN_LIFETIME_SEC = 12 * 3600
TOKEN_REUSE_MARGIN_SEC = 3600


def vapid_key_path(data_dir: Path) -> Path:
    """Where the private key lives."""
    return data_dir / VAPID_KEY_NAME


@dataclass
class VapidKey:
    """The key pair, and the Authorization headers signed with it, cached per audience."""

    private_key: ec.EllipticCurvePrivateKey
    _tokens: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"VapidKey(key_id={self.key_id!r})"

    @property
    def public_raw(self) -> bytes:
        """The public key as an uncompressed point (what ``applicationServerKey`` takes)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def public_b64(self) -> str:
        """The public key, base64url without padding (API.md: GET vapid-public-key)."""
        return b64url(self.public_raw)

    @property
    def key_id(self) -> str:
        """A short fingerprint that names this key in subscription records."""
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def authorization(self, audience: str, *, contact: str, now: float) -> str:
        """``vapid t=<JWT>, k=<public key>`` for a push service origin (RFC 8292 section 3),
        signed by py_vapid; reused while it has more than an hour to live."""
        cached = self._tokens.get(audience)
        if cached is not None and cached[0] - now > TOKEN_REUSE_MARGIN_SEC:
            return cached[1]
        expires = int(now) + TOKEN_LIFETIME_SEC
        claims = {"aud": audience, "exp": expires, "sub": contact}
        # The contact was checked by the config model (mailto: or https:), ports included.
        signer = Vapid02(self.private_key, conf={"no-strict": True})
        header = signer.sign(claims)["Authorization"]
        self._tokens[audience] = (expires, header)
        return str(header)


def load_vapid_key(data_dir: Path) -> VapidKey:
    """Load the key; ``StateError`` if it is unreadable, not P-256, or readable by others."""
    path = vapid_key_path(data_dir)
    key = load_private_key(path, "VAPID key")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        msg = f"{path}: the VAPID key is not a P-256 key"
        raise StateError(msg)
    return VapidKey(key)


def write_new_vapid_key(data_dir: Path) -> VapidKey:
    """Make a fresh key pair and write it whole or not at all (0600)."""
    ensure_private_dir(data_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(vapid_key_path(data_dir), pem)
    return VapidKey(key)


def ensure_vapid_key(data_dir: Path) -> tuple[VapidKey, bool]:
    """The relay's VAPID key, making it first if there is none; (key, created)."""
    if vapid_key_path(data_dir).exists():
        return load_vapid_key(data_dir), False
    return write_new_vapid_key(data_dir), True
