"""Safety numbers for agents and devices (TRUST.md §7), Signal's construction.

libsignal's fingerprint (``rust/protocol/src/fingerprint.rs``) hashes
``version ‖ key ‖ stableId ‖ key`` with SHA-512, then ``iterations - 1`` more times
``SHA-512(previous ‖ key)``, and reads the digest in 5-byte big-endian chunks mod 100000.
:func:`signal_fingerprint` is exactly that (tested against Signal's published vector).

Ours names one key in one workspace, so its stable id is
``tag(safety) ‖ genesisHash(32 bytes) ‖ UTF-8(id)`` and the key is the raw signing public
key; the 60 displayed digits are 12 chunks of one 5,200-iteration digest (Signal shows two
30-digit halves from two digests). The agent CLI, the phone and offline verifiers show the
same 12 groups.
"""

from __future__ import annotations

import hashlib
from typing import Final

from codexrelay.e2e.tags import tag

ITERATIONS: Final = 5200
VERSION: Final = b"\x00\x00"
GROUPS: Final = 12


def signal_fingerprint(stable_id: bytes, key: bytes, iterations: int = ITERATIONS) -> bytes:
    """libsignal's ``Fingerprint::get_fingerprint``: the 64-byte iterated SHA-512 digest."""
    if not 1 < iterations <= 1_000_000:
        msg = "iterations must be in (1, 1000000]"
        raise ValueError(msg)
    digest = hashlib.sha512(VERSION + key + stable_id + key).digest()
    for _ in range(1, iterations):
        digest = hashlib.sha512(digest + key).digest()
    return digest


def chunks(digest: bytes, groups: int) -> list[str]:
    """Each 5-byte big-endian chunk mod 100000, as five digits."""
    return [
        f"{int.from_bytes(digest[i * 5 : i * 5 + 5], 'big') % 100_000:05d}" for i in range(groups)
    ]


def safety_number(genesis_hash: bytes, entity_id: str, sig_pub: bytes) -> list[str]:
    """Twelve 5-digit groups for an agent or device key within one workspace."""
    if len(genesis_hash) != 32:
        msg = "the genesis hash is 32 bytes"
        raise ValueError(msg)
    stable_id = tag("safety") + genesis_hash + entity_id.encode("utf-8")
    return chunks(signal_fingerprint(stable_id, sig_pub), GROUPS)


def format_safety_number(groups: list[str]) -> str:
    """``48213 90177 20931 …`` on one line (the UI may wrap it in three rows of four)."""
    return " ".join(groups)
