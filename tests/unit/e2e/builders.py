"""Statement and signer builders shared by the trust tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from codexrelay.e2e.statements import digest

RP_ID = "relay.example"
ORIGIN = "https://relay.example"
NOW = 1_800_000_000
HEAD = {"seq": 3, "hash": digest(b"head")}


def raw(obj: dict[str, Any]) -> bytes:
    """Compact JSON bytes, as a signer would make them."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def task(**changes: Any) -> dict[str, Any]:
    """A valid read-only Codex task statement; ``changes`` override fields."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": "task",
        "ws": "ws_7",
        "agent": "ag_3",
        "task": str(uuid.UUID(int=7, version=4)),
        "type": "codex_exec",
        "writeAccess": False,
        "cwd": "repo",
        "resumeSessionId": None,
        "actionId": None,
        "logSourceId": None,
        "bodyHash": digest(b'{"prompt":"hi","salt":"AAAAAAAAAAAAAAAAAAAAAA"}'),
        "device": "dv_1",
        "logHead": dict(HEAD),
        "issuedAt": NOW,
        "expiresAt": NOW + 600,
    }
    base.update(changes)
    return base


def turn(**changes: Any) -> dict[str, Any]:
    """A valid turn statement."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": "turn",
        "ws": "ws_7",
        "agent": "ag_3",
        "thread": "th_1",
        "turn": str(uuid.UUID(int=8, version=4)),
        "mode": "steer",
        "inputHash": digest(b"input"),
        "writeAccess": False,
        "device": "dv_1",
        "logHead": dict(HEAD),
        "issuedAt": NOW,
        "expiresAt": NOW + 300,
    }
    base.update(changes)
    return base


def decision(**changes: Any) -> dict[str, Any]:
    """A valid approval decision."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": "decision",
        "ws": "ws_7",
        "agent": "ag_3",
        "task": str(uuid.UUID(int=7, version=4)),
        "requestId": "req_1",
        "reqHash": digest(b"request"),
        "decision": "accept",
        "device": "dv_1",
        "logHead": dict(HEAD),
        "issuedAt": NOW,
        "expiresAt": NOW + 300,
    }
    base.update(changes)
    return base


def cancel(**changes: Any) -> dict[str, Any]:
    """A valid cancel statement."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": "cancel",
        "ws": "ws_7",
        "agent": "ag_3",
        "task": str(uuid.UUID(int=7, version=4)),
        "device": "dv_1",
        "issuedAt": NOW,
    }
    base.update(changes)
    return base


def interrupt(**changes: Any) -> dict[str, Any]:
    """A valid interrupt statement."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": "interrupt",
        "ws": "ws_7",
        "agent": "ag_3",
        "thread": "th_1",
        "turn": str(uuid.UUID(int=8, version=4)),
        "device": "dv_1",
        "issuedAt": NOW,
    }
    base.update(changes)
    return base


def devcert(**changes: Any) -> dict[str, Any]:
    """A valid device certificate."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": "devcert",
        "ws": "ws_7",
        "userId": "u_1",
        "deviceId": "dv_1",
        "label": "Pixel 8",
        "sigPub": "A" * 43,
        "kexPub": "A" * 42 + "E",
        "suite": "c25519",
        "issuedAt": NOW,
    }
    base.update(changes)
    return base
