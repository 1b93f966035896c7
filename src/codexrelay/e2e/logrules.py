"""Who may sign which log entry (TRUST.md §4.3, §4.4, §4.10, §4.13).

One rule carries most of it, as the relay applies it today: managing someone whose role is
below admin needs an admin or the owner; managing an admin or an owner needs an owner. On
top of that a person may always act on themselves to shed power (revoke their own passkeys
and devices, leave) or add their own keys (a passkey, a device they certify with one of
their passkeys); agents are added and revoked by admins; the policy and checkpoints are the
owner's. An agent rotates its own keys with its current key, never with a passkey.
"""

from __future__ import annotations

from typing import Final

from codexrelay.e2e.policy import ROLE_RANK, Role, at_least

SELF_OPS: Final = frozenset(
    {"member.remove", "passkey.add", "passkey.revoke", "device.add", "device.revoke"}
)
PERSON_OPS: Final = frozenset(
    {"member.add", "member.remove", "member.role", "passkey.add", "passkey.revoke"}
    | {"device.add", "device.revoke"}
)
ADMIN_OPS: Final = frozenset({"agent.add", "agent.revoke"})
OWNER_OPS: Final = frozenset({"policy.set", "checkpoint"})


def manages(signer: Role, target: Role) -> bool:
    """Admin+ for roles below admin, owner for admin and owner."""
    needed: Role = "owner" if ROLE_RANK[target] >= ROLE_RANK["admin"] else "admin"
    return at_least(signer, needed)


def may_sign(
    op: str,
    signer: Role,
    target: Role | None = None,
    *,
    own: bool = False,
    new_role: Role | None = None,
) -> bool:
    """Whether a passkey of a ``signer``-role member may sign ``op``.

    ``target`` is the affected person's role (for ``member.add``, the role given), ``own``
    whether the signer acts on themselves, ``new_role`` the role ``member.role`` sets.
    """
    if op in OWNER_OPS:
        return signer == "owner"
    if op in ADMIN_OPS:
        return at_least(signer, "admin")
    if op not in PERSON_OPS or target is None:
        return False  # agent.rotate and unknown ops are never passkey-signed
    if op == "device.add" or (own and op in SELF_OPS):
        return own  # a device is self-certified only: nobody plants one for someone else
    if op == "member.role":
        return new_role is not None and manages(signer, target) and manages(signer, new_role)
    return manages(signer, target)
