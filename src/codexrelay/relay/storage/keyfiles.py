"""The relay's own private keys on disk (audit signing, VAPID): one way to read them, so each
refuses the same things the same way — unreadable, readable by others, not PEM."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from codexrelay.relay.storage.errors import StateError


def load_private_key(path: Path, what: str) -> PrivateKeyTypes:
    """The PEM private key at ``path`` (``what`` names it in errors); ``StateError`` if it
    cannot be read, is readable by group or others, or is not a PEM private key. The caller
    checks the key type."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the {what}: {exc.strerror}"
        raise StateError(msg) from None
    if mode & 0o077:
        msg = f"{path}: the {what} is readable by others; run chmod 600 on it"
        raise StateError(msg)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except ValueError:
        msg = f"{path}: not a PEM private key"
        raise StateError(msg) from None
