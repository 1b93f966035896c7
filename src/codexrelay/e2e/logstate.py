"""The mutable state a log walk builds, and what each op changes (TRUST.md §4.3-§4.10).

Authorisation (who may sign) lives in :mod:`logrules`; this module checks that the change
makes sense (the target exists, ids are new, keys parse) and keeps one invariant: some owner
always holds a live passkey, so no entry can leave a workspace nobody can govern.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography
from webauthn.helpers.exceptions import WebAuthnException

from codexrelay.e2e import keys
from codexrelay.e2e import logentries as le
from codexrelay.e2e.wire import WireError, b64u_decode

if TYPE_CHECKING:
    from codexrelay.e2e.log import Change, LogView
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


class StateError(ValueError):
    """A change that does not fit the state; ``orphan`` if it would leave no owner key."""

    def __init__(self, message: str, *, orphan: bool = False) -> None:
        super().__init__(message)
        self.orphan = orphan


def _cose(text: str) -> bytes:
    try:
        raw = b64u_decode(text, max_bytes=1024)
        decoded_public_key_to_cryptography(decode_credential_public_key(raw))
    except (WireError, WebAuthnException, ValueError, TypeError, KeyError, IndexError) as exc:
        raise StateError("the passkey's COSE key does not parse") from exc
    return raw


def _check_keys(suite: Any, sig_pub: str, kex_pub: str) -> None:
    try:
        keys.load_verify_key(suite, sig_pub)
        keys.load_kex_public(suite, kex_pub)
    except ValueError as exc:
        raise StateError(f"public keys do not fit suite {suite}") from exc


class State:
    """Dictionaries a walk updates; frozen into a ``LogView`` at the end."""

    def __init__(self, genesis: le.Genesis) -> None:
        self.ws = genesis.ws
        self.name = genesis.name
        self.rp_id = genesis.rp_id
        self.origins = list(genesis.origins)
        self.policy: Policy = genesis.policy
        self.members: dict[str, Member] = {}
        self.passkeys: dict[str, Passkey] = {}
        self.devices: dict[str, Device] = {}
        self.agents: dict[str, Agent] = {}
        self.counters: dict[str, int] = {}
        self.hashes: list[str] = []
        self.history: list[Change] = []
        self.entries: list[le.SignedEntry] = []

    @classmethod
    def from_genesis(cls, genesis: le.Genesis, digest: str) -> State:
        """The state the genesis sets up (before it is recorded)."""
        del digest  # recorded by the caller once the owner's signature verified
        state = cls(genesis)
        owner = genesis.owner
        state.members[owner.user_id] = Member(owner.user_id, owner.name, "owner", 0)
        for passkey in owner.passkeys:
            state._add_passkey(owner.user_id, passkey.cred_id, passkey.cose, 0)
        for device in genesis.devices:
            state._add_device(owner.user_id, device, 0)
        return state

    @classmethod
    def from_view(cls, view: LogView) -> State:
        """A mutable copy of a verified view, to extend it."""
        state = cls.__new__(cls)
        state.ws, state.name, state.rp_id = view.ws, view.name, view.rp_id
        state.origins, state.policy = list(view.origins), view.policy
        state.members, state.passkeys = dict(view.members), dict(view.passkeys)
        state.devices, state.agents = dict(view.devices), dict(view.agents)
        state.counters, state.hashes = dict(view.counters), list(view.hashes)
        state.history, state.entries = list(view.history), list(view.entries)
        return state

    @property
    def head_seq(self) -> int:
        """The seq of the last recorded entry (-1 before the genesis is recorded)."""
        return len(self.hashes) - 1

    @property
    def head_hash(self) -> str:
        """The chain hash of the last recorded entry."""
        return self.hashes[-1]

    def record(
        self, seq: int, op: str, signer: str, issued_at: int, digest: str, signed: le.SignedEntry
    ) -> None:
        """Append a verified entry's hash, history line and stored form."""
        from codexrelay.e2e.log import Change  # noqa: PLC0415 - the view module imports this one

        self.hashes.append(digest)
        self.history.append(Change(seq, op, signer, issued_at))
        self.entries.append(signed)

    # --- changes ---

    def apply(self, op: str, body: Any, seq: int) -> None:
        """Apply one authorised change, or raise ``StateError``."""
        getattr(self, "_op_" + op.replace(".", "_"))(body, seq)
        if not any(
            p.active and self.members.get(p.user_id, _NOBODY).role == "owner"
            for p in self.passkeys.values()
        ):
            raise StateError("no owner would hold a live passkey", orphan=True)

    def _member(self, user_id: str) -> Member:
        member = self.members.get(user_id)
        if member is None:
            raise StateError(f"{user_id} is not a member")
        return member

    def _add_passkey(self, user_id: str, cred_id: str, cose: str, seq: int) -> None:
        if cred_id in self.passkeys:
            raise StateError("that passkey was pinned before")
        self.passkeys[cred_id] = Passkey(cred_id, user_id, _cose(cose), seq)

    def _add_device(self, user_id: str, device: Any, seq: int) -> None:
        if device.device_id in self.devices:
            raise StateError("that device id was used before")
        _check_keys(device.suite, device.sig_pub, device.kex_pub)
        self.devices[device.device_id] = Device(
            device.device_id,
            user_id,
            device.label,
            device.sig_pub,
            device.kex_pub,
            device.suite,
            seq,
        )

    def _op_member_add(self, body: le.MemberAdd, seq: int) -> None:
        if body.user_id in self.members:
            raise StateError(f"{body.user_id} is already a member")
        self.members[body.user_id] = Member(body.user_id, body.name, body.role, seq)
        for passkey in body.passkeys:
            self._add_passkey(body.user_id, passkey.cred_id, passkey.cose, seq)
        for device in body.devices:
            self._add_device(body.user_id, device, seq)

    def _op_member_remove(self, body: le.MemberRef, seq: int) -> None:
        self._member(body.user_id)
        del self.members[body.user_id]
        for cred_id, passkey in list(self.passkeys.items()):
            if passkey.user_id == body.user_id and passkey.active:
                self.passkeys[cred_id] = replace(passkey, revoked_seq=seq)
        for device_id, device in list(self.devices.items()):
            if device.user_id == body.user_id and device.active:
                self.devices[device_id] = replace(device, revoked_seq=seq)

    def _op_member_role(self, body: le.MemberRole, seq: int) -> None:
        member = self._member(body.user_id)
        self.members[body.user_id] = replace(member, role=body.role, since_seq=seq)

    def _op_passkey_add(self, body: le.PasskeyAdd, seq: int) -> None:
        self._member(body.user_id)
        self._add_passkey(body.user_id, body.cred_id, body.cose, seq)

    def _op_passkey_revoke(self, body: le.PasskeyRevoke, seq: int) -> None:
        passkey = self.passkeys.get(body.cred_id)
        if passkey is None or passkey.user_id != body.user_id or not passkey.active:
            raise StateError("no such live passkey of that user")
        self.passkeys[body.cred_id] = replace(passkey, revoked_seq=seq)

    def _op_device_add(self, body: le.DeviceAdd, seq: int) -> None:
        self._member(body.user_id)
        self._add_device(body.user_id, body, seq)

    def _op_device_revoke(self, body: le.DeviceRevoke, seq: int) -> None:
        device = self.devices.get(body.device_id)
        if device is None or device.user_id != body.user_id or not device.active:
            raise StateError("no such live device of that user")
        self.devices[body.device_id] = replace(device, revoked_seq=seq)

    def _op_agent_add(self, body: le.AgentAdd, seq: int) -> None:
        current = self.agents.get(body.agent_id)
        if current is not None and current.active:
            raise StateError(f"agent {body.agent_id} is already paired; revoke it first")
        _check_keys(body.suite, body.sig_pub, body.kex_pub)
        self.agents[body.agent_id] = Agent(
            body.agent_id,
            body.label,
            body.sig_pub,
            body.kex_pub,
            body.suite,
            body.pairing_id,
            seq,
        )

    def _live_agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None or not agent.active:
            raise StateError(f"no live agent {agent_id}")
        return agent

    def _op_agent_revoke(self, body: le.AgentRef, seq: int) -> None:
        self.agents[body.agent_id] = replace(self._live_agent(body.agent_id), revoked_seq=seq)

    def _op_agent_rotate(self, body: le.AgentRotate, seq: int) -> None:
        agent = self._live_agent(body.agent_id)
        _check_keys(body.suite, body.sig_pub, body.kex_pub)
        self.agents[body.agent_id] = replace(
            agent, sig_pub=body.sig_pub, kex_pub=body.kex_pub, suite=body.suite
        )
        del seq

    def _op_policy_set(self, body: le.PolicySet, seq: int) -> None:
        self.policy = body.policy
        del seq

    def _op_checkpoint(self, body: le.Checkpoint, seq: int) -> None:
        del body, seq  # the entry itself, on the chosen branch, is the checkpoint


_NOBODY = Member("", "", "viewer", 0)
