"""Pinning a protected workspace at pairing, or later with a one-time code (TRUST.md §4.2).

The code a phone shows is ``ABCD-EFGH.KQ7M-R2XD-9TPF-WC3H``: the relay's pairing code, a
dot, and an 80-bit secret the relay never sees. The agent sends the relay only the first
part, plus its key claim MAC'd with ``K_pair`` (derived from the secret), so the approving
phone knows the keys are this agent's. The phone answers with a grant MAC'd the same way,
naming the workspace's genesis hash and a log head; the agent checks the MAC, fetches the
log, verifies it from that genesis up to that head, finds its own ``agent.add`` with its
exact keys, and only then pins. A relay that forged the grant or the log gets nothing
pinned: it cannot make the MAC, and cannot sign log entries.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from codexrelay.agent.config import AgentConfig
from codexrelay.agent.enroll import hostname
from codexrelay.agent.logsync import fetch_log
from codexrelay.agent.trust import AgentKeys, Pin, TrustStore, agent_safety_number
from codexrelay.e2e.log import LogError, LogView, parse_signed, verify_log
from codexrelay.e2e.pairing import (
    PairingError,
    claim_mac,
    pairing_key,
    parse_grant,
    parse_pair_code,
    verify_grant,
)
from codexrelay.e2e.statements import MAX_STATEMENT_BYTES, StatementError
from codexrelay.e2e.wire import WireError, b64u, b64u_decode, dumps


class PinError(Exception):
    """Nothing was pinned; the message says why."""


@dataclass(frozen=True)
class PairSecret:
    """The code as typed: the relay's part and the secret part."""

    code: str
    secret: bytes

    @classmethod
    def parse(cls, text: str) -> PairSecret:
        try:
            code, secret = parse_pair_code(text)
        except PairingError as exc:
            raise PinError(str(exc)) from None
        return cls(code, secret)

    @property
    def key(self) -> bytes:
        return pairing_key(self.secret, self.code)


def key_claim(config: AgentConfig, agent_keys: AgentKeys, pair: PairSecret) -> dict[str, str]:
    """The ``e2e`` field of a claim: the claim's bytes and their MAC (§4.2 step 2)."""
    claim = {
        "agentId": config.agent_id,
        "label": config.agent_label,
        "hostname": hostname(),
        "workspaceRootName": config.root.name or "root",
        "sigPub": agent_keys.sig_pub,
        "kexPub": agent_keys.kex_pub,
        "suite": "c25519",
        "nonce": b64u(secrets.token_bytes(32)),
    }
    raw = dumps(claim)
    return {"claim": b64u(raw), "mac": claim_mac(pair.key, raw)}


@dataclass(frozen=True)
class PinReport:
    """What was pinned, for the person at the terminal."""

    pin: Pin
    view: LogView
    approver: str
    role: str
    safety_number: str

    def lines(self) -> list[str]:
        return [
            f'Paired to workspace "{self.pin.name}" · approved by {self.approver} ({self.role}) '
            f"· log head #{self.view.head.seq}",
            f"Safety number: {self.safety_number}",
            "Compare it with the one the phone shows for this agent.",
        ]


def pin_from_grant(
    config: AgentConfig,
    agent_keys: AgentKeys,
    trust: TrustStore,
    *,
    pair: PairSecret,
    token: str,
    grant: str | None,
    grant_mac: str | None,
) -> PinReport:
    """Check the grant, fetch and verify the log, find our own agent.add, pin (§4.2 step 5)."""
    granted = _grant(pair, grant, grant_mac)
    if granted.agent_id != config.agent_id:
        raise PinError("the grant names another agent")
    try:
        entries = fetch_log(config.relay_base_url, token)
    except OSError as exc:
        raise PinError(f"cannot fetch the workspace's log: {exc}") from None
    view = verify_pinned(entries, granted.genesis_hash, granted.ws)
    if view.head.seq < granted.head.seq or view.hashes[granted.head.seq] != granted.head.hash:
        raise PinError("the relay's log does not contain the head the phone granted")
    approver, role = _own_agent_add(view, config.agent_id, agent_keys)
    pin = Pin(
        workspace_id=view.ws,
        name=view.name,
        genesis_hash=view.genesis_hash,
        relay_base_url=config.relay_base_url,
        agent_id=config.agent_id,
        approved_by=approver,
        pinned_at=int(time.time()),
    )
    trust.save_pin(pin, view)
    number = agent_safety_number(view.genesis_hash, config.agent_id, agent_keys)
    return PinReport(pin, view, approver, role, number)


def _grant(pair: PairSecret, grant: str | None, mac: str | None) -> Any:
    if not grant or not mac:
        raise PinError("the approval carries no grant: the phone did not confirm the workspace")
    try:
        raw = b64u_decode(grant, max_bytes=MAX_STATEMENT_BYTES)
    except WireError:
        raise PinError("the grant is malformed") from None
    if not verify_grant(pair.key, raw, mac):
        raise PinError("the grant's MAC does not verify: it did not come from your phone")
    try:
        return parse_grant(raw)
    except StatementError as exc:
        raise PinError(f"the grant is malformed ({exc})") from None


def verify_pinned(entries: list[dict[str, Any]], genesis_hash: str, ws: str) -> LogView:
    """The whole log, verified from the genesis whose hash we trust."""
    try:
        view = verify_log(
            [parse_signed(e, seq) for seq, e in enumerate(entries)], pinned=genesis_hash
        )
    except LogError as exc:
        raise PinError(f"the workspace's log does not verify: {exc}") from None
    if view.ws != ws:
        raise PinError("the log is another workspace's")
    return view


def _own_agent_add(view: LogView, agent_id: str, agent_keys: AgentKeys) -> tuple[str, str]:
    """Our agent.add, with our exact keys; returns who signed it and their role."""
    me = view.agents.get(agent_id)
    if me is None or not me.active:
        raise PinError("the log does not add this agent")
    if (me.sig_pub, me.kex_pub, me.suite) != (agent_keys.sig_pub, agent_keys.kex_pub, "c25519"):
        raise PinError("the log adds this agent with other keys than its own")
    change = view.history[me.added_seq]
    signer = change.signer.split(",")[0]
    member = view.members.get(signer)
    if member is None:
        return signer, "former member"
    return member.name, member.role
