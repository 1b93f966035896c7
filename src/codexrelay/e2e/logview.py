"""What a verified membership log says: its people, keys, agents and head (TRUST.md §4).

Frozen values only. :mod:`logstate` builds them while walking the chain and :mod:`log`
returns the final :class:`LogView`; both import this module and never each other's
types, so the three modules form no import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from codexrelay.e2e.logentries import SignedEntry
from codexrelay.e2e.policy import Policy, Role
from codexrelay.e2e.statements import Suite


@dataclass(frozen=True)
class Member:
    """A person in the workspace."""

    user_id: str
    name: str
    role: Role
    since_seq: int


@dataclass(frozen=True)
class Passkey:
    """A pinned passkey; ``revoked_seq`` is set from the entry that revoked it on."""

    cred_id: str
    user_id: str
    cose: bytes
    added_seq: int
    revoked_seq: int | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_seq is None


@dataclass(frozen=True)
class Device:
    """A certified device (reader of sealed content, signer of cancels)."""

    device_id: str
    user_id: str
    label: str
    sig_pub: str
    kex_pub: str
    suite: Suite
    added_seq: int
    revoked_seq: int | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_seq is None


@dataclass(frozen=True)
class Agent:
    """A paired agent and its current keys."""

    agent_id: str
    label: str
    sig_pub: str
    kex_pub: str
    suite: Suite
    pairing_id: str
    added_seq: int
    revoked_seq: int | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_seq is None


@dataclass(frozen=True)
class Head:
    """A position in the chain: ``seq`` and the chain hash there (b64u)."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class Change:
    """Who changed what, for the members screen ("signed by Alice on ...")."""

    seq: int
    op: str
    signer: str
    issued_at: int


@dataclass(frozen=True)
class LogView:
    """The verified state at ``head``: what agents and phones act on."""

    ws: str
    name: str
    rp_id: str
    origins: tuple[str, ...]
    genesis_hash: str
    members: Mapping[str, Member]
    passkeys: Mapping[str, Passkey]
    devices: Mapping[str, Device]
    agents: Mapping[str, Agent]
    policy: Policy
    head: Head
    hashes: tuple[str, ...]
    counters: Mapping[str, int]
    history: tuple[Change, ...]
    entries: tuple[SignedEntry, ...] = field(repr=False)

    def role_of(self, user_id: str) -> str | None:
        """The member's role, or None for a non-member."""
        member = self.members.get(user_id)
        return None if member is None else member.role

    def reader_devices(self) -> list[Device]:
        """Live devices of every member (viewer+): whom content is sealed to (§4.7)."""
        return [d for d in self.devices.values() if d.active and d.user_id in self.members]
