"""Domain tags (TRUST.md §4, §5): nothing is hashed, MAC'd or signed without one.

``tag(x)`` is the ASCII string ``codexrelay/v1/x`` followed by NUL, so no tag is a prefix of
another and no message made for one purpose verifies for another (a login can never double
as a task, §4.12). Each tag is used for exactly one purpose.
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal, get_args

TagName = Literal[
    # passkey-signed statements (challenge = H(tag ‖ bytes))
    "login",
    "task",
    "turn",
    "decision",
    "log",
    "enroll",
    "devcert",
    # device-key-signed statements (they can only stop work)
    "cancel",
    "interrupt",
    "keyreq",
    # hashes, MACs and key derivations
    "loghash",
    "invite",
    "pair",
    "pair-claim",
    "pair-grant",
    "taskkey",
    "k",
    "salt",
    "msg",
    "msghash",
    "safety",
    "audit",
    "audithash",
    "logack",
]
TAG_NAMES: Final[frozenset[str]] = frozenset(get_args(TagName))
PREFIX: Final = b"codexrelay/v1/"


def tag(name: TagName) -> bytes:
    """``codexrelay/v1/<name>`` + NUL; refuses names outside the registry above."""
    if name not in TAG_NAMES:
        msg = f"unknown domain tag {name!r}"
        raise ValueError(msg)
    return PREFIX + name.encode("ascii") + b"\x00"


def tagged_hash(name: TagName, data: bytes) -> bytes:
    """``SHA-256(tag(name) ‖ data)``: a statement's WebAuthn challenge, a chain link."""
    return hashlib.sha256(tag(name) + data).digest()
