"""Membership log entries as exact bytes (TRUST.md §4.1, §4.10, §5).

The genesis (``op: "genesis"``) founds a workspace: its name, the origins and rp id every
passkey signature is checked against, the owner and their passkeys, the owner's first
devices and the policy. Each later entry is ``{v, ws, seq, prev, op, body, issuedAt}``;
``body``'s shape depends on ``op`` and is parsed strictly against it. Entries travel as
``{"entry": b64u(bytes), "sigs": [...]}``: a passkey signature ``{credentialId, assertion}``
over ``H(tag(log) ‖ bytes)``, or, for ``agent.rotate`` only, ``{"agentKey": agentId, "sig"}``
by the agent's current signing key over ``tag(log) ‖ bytes``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from codexrelay.e2e.policy import Policy, Role
from codexrelay.e2e.statements import (
    Digest,
    Id,
    Label,
    PublicKeyText,
    Seq,
    Strict,
    Suite,
    UnixTime,
)
from codexrelay.e2e.webauthn_verify import CredentialIdText, PasskeySignature

MAX_ENTRY_BYTES: Final = 64 * 1024
MAX_SIGS: Final = 4
CoseText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,1366}$")]
Origin = Annotated[str, StringConstraints(pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]
RpId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.-]{1,253}$")]
Op = Literal[
    "member.add",
    "member.remove",
    "member.role",
    "passkey.add",
    "passkey.revoke",
    "device.add",
    "device.revoke",
    "agent.add",
    "agent.revoke",
    "agent.rotate",
    "policy.set",
    "checkpoint",
]


class PasskeyKey(Strict):
    """A passkey as the log pins it: id and COSE public key (``b64u``)."""

    cred_id: CredentialIdText
    cose: CoseText


class DeviceKeys(Strict):
    """A device's public keys (§3)."""

    device_id: Id
    label: Label
    sig_pub: PublicKeyText
    kex_pub: PublicKeyText
    suite: Suite


class Owner(Strict):
    """The founding owner."""

    user_id: Id
    name: Label
    passkeys: Annotated[list[PasskeyKey], Field(min_length=1, max_length=8)]


class Genesis(Strict):
    """§4.1: signed by one of the owner's passkeys; its hash is what agents pin."""

    v: Literal[1]
    op: Literal["genesis"]
    ws: Id
    name: Label
    origins: Annotated[list[Origin], Field(min_length=1, max_length=4)]
    rp_id: RpId
    owner: Owner
    devices: Annotated[list[DeviceKeys], Field(max_length=8)]
    policy: Policy
    recovery_key_hash: Digest | None = None
    created_at: UnixTime


class Entry(Strict):
    """One log entry; ``body`` is checked against :data:`BODIES` for its ``op``."""

    v: Literal[1]
    ws: Id
    seq: Annotated[Seq, Field(ge=1)]
    prev: Digest
    op: Op
    body: dict[str, Any]
    issued_at: UnixTime


class MemberAdd(Strict):
    """Add a person with a role, their passkeys and devices (§4.3 step 3)."""

    user_id: Id
    name: Label
    role: Role
    passkeys: Annotated[list[PasskeyKey], Field(max_length=8)]
    devices: Annotated[list[DeviceKeys], Field(max_length=8)]


class MemberRef(Strict):
    """``member.remove``: the person leaving or removed."""

    user_id: Id


class MemberRole(Strict):
    """``member.role``: a new role for a member."""

    user_id: Id
    role: Role


class PasskeyAdd(Strict):
    """``passkey.add``: one more passkey for a user."""

    user_id: Id
    cred_id: CredentialIdText
    cose: CoseText


class PasskeyRevoke(Strict):
    """``passkey.revoke``: one passkey stops counting, from this entry on."""

    user_id: Id
    cred_id: CredentialIdText


class DeviceAdd(Strict):
    """``device.add``: self-certified by a passkey of the same user (§4.4)."""

    user_id: Id
    device_id: Id
    label: Label
    sig_pub: PublicKeyText
    kex_pub: PublicKeyText
    suite: Suite


class DeviceRevoke(Strict):
    """``device.revoke``: nobody seals to the device any more."""

    user_id: Id
    device_id: Id


class AgentAdd(Strict):
    """``agent.add``: an agent approved at pairing (§4.2 step 4)."""

    agent_id: Id
    label: Label
    sig_pub: PublicKeyText
    kex_pub: PublicKeyText
    suite: Suite
    pairing_id: Id


class AgentRef(Strict):
    """``agent.revoke``."""

    agent_id: Id


class AgentRotate(Strict):
    """``agent.rotate``: new keys, signed by the agent's current signing key (§4.10)."""

    agent_id: Id
    sig_pub: PublicKeyText
    kex_pub: PublicKeyText
    suite: Suite


class PolicySet(Strict):
    """``policy.set``: the whole new policy (owner only)."""

    policy: Policy


class Checkpoint(Strict):
    """``checkpoint``: an owner's choice of head after a fork (§4.11)."""

    reason: Annotated[str, StringConstraints(max_length=500)]


BODIES: Final[dict[str, type[Strict]]] = {
    "member.add": MemberAdd,
    "member.remove": MemberRef,
    "member.role": MemberRole,
    "passkey.add": PasskeyAdd,
    "passkey.revoke": PasskeyRevoke,
    "device.add": DeviceAdd,
    "device.revoke": DeviceRevoke,
    "agent.add": AgentAdd,
    "agent.revoke": AgentRef,
    "agent.rotate": AgentRotate,
    "policy.set": PolicySet,
    "checkpoint": Checkpoint,
}


class AgentSignature(Strict):
    """An agent's own signature on an entry (``agent.rotate``)."""

    agent_key: Id
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")]


class SignedEntry(Strict):
    """How an entry (or the genesis) travels and is stored."""

    entry: Annotated[
        str, StringConstraints(min_length=1, max_length=(MAX_ENTRY_BYTES * 4 + 2) // 3)
    ]
    sigs: Annotated[
        list[PasskeySignature | AgentSignature], Field(min_length=1, max_length=MAX_SIGS)
    ]
