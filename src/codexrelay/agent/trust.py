"""What the agent trusts: its own keys and the workspace it pinned (TRUST.md §3, §4.2).

Everything lives in ``stateDir`` (0700), each file 0600 and replaced atomically:

- ``agent-keys.json``: the agent's Ed25519 signing key and X25519 key-agreement key;
- ``trust.json``: the pinned workspace: its id, name, genesis hash, the relay it came through,
  who approved the pin and when;
- ``membership-log.jsonl``: the log entries verified so far, one signed entry per line, so
  every start re-verifies the whole chain from the pinned genesis;
- this agent's own last-seen passkey counters (each verifier keeps its own; replay
  protection rests on run-once ids and expiry, never on them) are read back from its audit
  log, where every accepted assertion is recorded durably before its work starts.

Nothing here talks to the relay; fetching entries is the caller's job (``logsync``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from codexrelay.agent.auditlog import AUDIT_FILE, sign_counts
from codexrelay.e2e import keys
from codexrelay.e2e.log import LogError, LogReason, LogView, extend, parse_signed, verify_log
from codexrelay.e2e.logentries import SignedEntry
from codexrelay.e2e.safety import format_safety_number, safety_number
from codexrelay.e2e.wire import b64u, b64u_decode
from codexrelay.fileio import PRIVATE_FILE, ensure_private_dir, write_private_file

KEYS_FILE = "agent-keys.json"
TRUST_FILE = "trust.json"
LOG_FILE = "membership-log.jsonl"
FORK_FILE = "fork.json"


class TrustError(Exception):
    """The pinned state cannot be used; the message says why and what to do."""


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class AgentKeys:
    """The agent's key pair (c25519 suite): signs outputs and audit records, opens task keys."""

    signing: Ed25519PrivateKey
    kex: X25519PrivateKey

    @property
    def sig_pub(self) -> str:
        return keys.public_text(self.signing)

    @property
    def kex_pub(self) -> str:
        return keys.public_text(self.kex)

    @classmethod
    def load_or_create(cls, state_dir: Path) -> AgentKeys:
        """The keys in ``stateDir``, made on first use (0600)."""
        path = state_dir / KEYS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            path.chmod(PRIVATE_FILE)
            return cls(
                Ed25519PrivateKey.from_private_bytes(b64u_decode(data["sig"], max_bytes=32)),
                X25519PrivateKey.from_private_bytes(b64u_decode(data["kex"], max_bytes=32)),
            )
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = f"{path} is unreadable ({type(exc).__name__}); restore it or reset trust"
            raise TrustError(msg) from None
        made = cls.generate()
        made.save(path)
        return made

    @classmethod
    def generate(cls) -> AgentKeys:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    def save(self, path: Path) -> None:
        """Write the keys to ``path`` (0600, replaced atomically)."""
        ensure_private_dir(path.parent)
        body = {
            "suite": "c25519",
            "sig": b64u(_raw_private(self.signing)),
            "kex": b64u(_raw_private(self.kex)),
        }
        write_private_file(path, (json.dumps(body) + "\n").encode("utf-8"))


@dataclass(frozen=True)
class Pin:
    """The workspace this agent pinned, and how."""

    workspace_id: str
    name: str
    genesis_hash: str
    relay_base_url: str
    agent_id: str
    approved_by: str
    pinned_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "workspaceId": self.workspace_id,
            "name": self.name,
            "genesisHash": self.genesis_hash,
            "relayBaseUrl": self.relay_base_url,
            "agentId": self.agent_id,
            "approvedBy": self.approved_by,
            "pinnedAt": self.pinned_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pin:
        return cls(
            workspace_id=str(data["workspaceId"]),
            name=str(data["name"]),
            genesis_hash=str(data["genesisHash"]),
            relay_base_url=str(data["relayBaseUrl"]),
            agent_id=str(data["agentId"]),
            approved_by=str(data["approvedBy"]),
            pinned_at=int(data["pinnedAt"]),
        )


class TrustStore:
    """The pinned workspace and its verified log, re-read when the files change (so a
    ``trust pin`` made while the agent runs takes effect without a restart)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._stamp: tuple[float, float] | None = None
        self._pin: Pin | None = None
        self._view: LogView | None = None
        self._counts: dict[str, int] | None = None
        # Looked at once or twice per statement: joined once, not on every look.
        self._stamped = (state_dir / TRUST_FILE, state_dir / LOG_FILE)

    def _files_stamp(self) -> tuple[float, float]:
        stamps = []
        for path in self._stamped:
            try:
                stamps.append(path.stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return stamps[0], stamps[1]

    def pin(self) -> Pin | None:
        """The pinned workspace, or None (the agent then runs plain tasks as before)."""
        self._refresh()
        return self._pin

    def view(self) -> LogView:
        """The verified log view of the pinned workspace."""
        self._refresh()
        return self._current_view()

    def _current_view(self) -> LogView:
        if self._pin is None or self._view is None:
            msg = "this agent has not pinned a workspace"
            raise TrustError(msg)
        return self._view

    def current(self) -> tuple[Pin, LogView] | None:
        """The pin and its view, read once (one look at the files per statement)."""
        self._refresh()
        if self._pin is None:
            return None
        return self._pin, self._current_view()

    def _refresh(self) -> None:
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return
        self._stamp, self._pin, self._view, self._counts = stamp, None, None, None
        try:
            raw = (self.state_dir / TRUST_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            pin = Pin.from_json(json.loads(raw))
            entries = self._read_log()
            view = verify_log(entries, pinned=pin.genesis_hash)
        except (OSError, ValueError, KeyError, TypeError, LogError) as exc:
            msg = f"the pinned trust state in {self.state_dir} does not verify: {exc}"
            raise TrustError(msg) from None
        self._pin, self._view = pin, view

    def _read_log(self) -> list[SignedEntry]:
        lines = (self.state_dir / LOG_FILE).read_text(encoding="utf-8").splitlines()
        return [parse_signed(json.loads(line), seq) for seq, line in enumerate(lines) if line]

    # --- changes ---

    def save_pin(self, pin: Pin, view: LogView) -> None:
        """Pin a workspace with a log that verified from its genesis."""
        ensure_private_dir(self.state_dir)
        self._write_log(view)
        data = json.dumps(pin.to_json(), indent=2) + "\n"
        write_private_file(self.state_dir / TRUST_FILE, data.encode("utf-8"))
        self._stamp = None

    def extend(self, entries: list[SignedEntry]) -> LogView:
        """Verify ``entries`` on top of the pinned view and keep them."""
        view = extend(self.view(), entries)
        self._write_log(view)
        self._stamp = None
        return self.view()

    # --- forks (TRUST.md §4.11) ---

    def fork(self) -> dict[str, Any] | None:
        """The fork this agent detected and still waits on, or None."""
        try:
            data = json.loads((self.state_dir / FORK_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"reason": "the fork record is unreadable"}
        return data if isinstance(data, dict) else {"reason": "the fork record is unreadable"}

    def mark_fork(self, reason: str, now: int) -> None:
        """Freeze log updates: from now on only entries that carry an owner's checkpoint
        on top of the chain this agent holds are adopted. Statements on the chain it holds
        (the common prefix) are still accepted."""
        if self.fork() is not None:
            return
        view = self.view()
        body = {"detectedAt": now, "head": {"seq": view.head.seq, "hash": view.head.hash}}
        body["reason"] = reason[:300]
        ensure_private_dir(self.state_dir)
        write_private_file(self.state_dir / FORK_FILE, (json.dumps(body) + "\n").encode())

    def adopt(self, entries: list[SignedEntry]) -> LogView:
        """Verify ``entries`` on the pinned chain and keep them, unless a fork froze the log
        and they carry no owner-signed ``checkpoint`` (then ``LogError``, nothing kept)."""
        view = self.view()
        candidate = extend(view, entries)
        if self.fork() is not None:
            newer = [c for c in candidate.history if c.seq > view.head.seq]
            if not any(c.op == "checkpoint" for c in newer):
                msg = "log updates are frozen after a fork until an owner signs a checkpoint"
                raise LogError(LogReason.FROZEN, view.head.seq + 1, msg)
        kept = self.extend(entries)
        (self.state_dir / FORK_FILE).unlink(missing_ok=True)
        return kept

    def _write_log(self, view: LogView) -> None:
        lines = [
            json.dumps(e.model_dump(by_alias=True, exclude_none=True), separators=(",", ":"))
            for e in view.entries
        ]
        write_private_file(self.state_dir / LOG_FILE, ("\n".join(lines) + "\n").encode("utf-8"))

    def reset(self) -> bool:
        """Forget the pinned workspace (the keys stay). True if something was pinned."""
        found = False
        for name in (TRUST_FILE, LOG_FILE, FORK_FILE):
            path = self.state_dir / name
            if path.exists():
                path.unlink()
                found = True
        self._stamp = None
        return found

    # --- this verifier's passkey counters ---

    def count(self, credential_id: str) -> int:
        """The last sign count this agent accepted for a credential (0 if never)."""
        return self._load_counts().get(credential_id, 0)

    def record_count(self, credential_id: str, count: int) -> None:
        """Keep a higher count (it becomes durable with the statement's audit record)."""
        counts = self._load_counts()
        counts[credential_id] = max(count, counts.get(credential_id, 0))

    def _load_counts(self) -> dict[str, int]:
        if self._counts is None:
            self._counts = sign_counts(self.state_dir / AUDIT_FILE)
        return self._counts


def agent_safety_number(genesis_hash: str, agent_id: str, agent_keys: AgentKeys) -> str:
    """The 60-digit number the phone shows for this agent in this workspace (§7)."""
    groups = safety_number(
        b64u_decode(genesis_hash, max_bytes=32), agent_id, keys.public_raw(agent_keys.signing)
    )
    return format_safety_number(groups)
