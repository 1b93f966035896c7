"""The relay's audit signing key (B2): Ed25519, made once, private key 0600 in ``dataDir``.

The key sits in ``dataDir`` beside ``state.json``, not in ``dataDir/audit/``, so copying the
audit directory for analysis never copies the key. It is made by ``relay init`` (or at the
first start of a relay whose config predates the audit trail) and never replaced by the
relay; the public key is printed at init and served at ``GET /api/v1/audit/public-key``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codexrelay.auditverify import (
    b64,
    key_id,
    manifest_message,
    public_key_text,
    record_message,
)
from codexrelay.fileio import ensure_private_dir, write_private_file
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.keyfiles import load_private_key

SIGNING_KEY_NAME = "audit-signing-key.pem"
PUBLIC_KEY_NAME = "audit-signing-key.pub"
_FINGERPRINT_CONTEXT = b"codexrelay/audit/secret-fingerprint/v1\x00"


class Signer:
    """Signs records and manifests; also keys the fingerprints of the relay's secrets."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)
        self.public_text = public_key_text(self.public_key)
        raw = private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._fingerprint_key = hashlib.sha256(_FINGERPRINT_CONTEXT + raw).digest()

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @property
    def public_pem(self) -> str:
        """The public key as a PEM SubjectPublicKeyInfo block."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def sign_record(self, hash_hex: str) -> str:
        """The ``sig`` of the record whose hash is ``hash_hex``."""
        return b64(self._key.sign(record_message(hash_hex)))

    def sign_manifest(self, manifest: Mapping[str, Any]) -> str:
        """The signature line's value for an export manifest."""
        return b64(self._key.sign(manifest_message(manifest)))

    def fingerprint(self, name: str, value: str) -> str:
        """A keyed fingerprint of a secret: tells a changed secret from an unchanged one
        without giving anyone reading the audit trail something to test guesses against."""
        message = name.encode("utf-8") + b"\x00" + value.encode("utf-8")
        return hmac.new(self._fingerprint_key, message, hashlib.sha256).hexdigest()[:32]


def signing_key_path(data_dir: Path) -> Path:
    """Where the private key lives."""
    return data_dir / SIGNING_KEY_NAME


def load_signer(data_dir: Path) -> Signer:
    """Load the key; ``StateError`` if it is missing, unreadable or readable by others."""
    path = signing_key_path(data_dir)
    key = load_private_key(path, "audit signing key")
    if not isinstance(key, Ed25519PrivateKey):
        msg = f"{path}: the audit signing key is not an Ed25519 key"
        raise StateError(msg)
    return Signer(key)


def ensure_signer(data_dir: Path) -> tuple[Signer, bool]:
    """The relay's signer, making the key first if there is none; (signer, created)."""
    ensure_private_dir(data_dir)
    path = signing_key_path(data_dir)
    if path.exists():
        return load_signer(data_dir), False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written whole or not at all (temp file, fsync, rename), so a crash never leaves
    # half a key that would stop the next start.
    write_private_file(path, pem)
    signer = Signer(key)
    write_private_file(data_dir / PUBLIC_KEY_NAME, signer.public_pem.encode("ascii"))
    return signer, True
