"""Agent pairing (R06) and agent tokens (R07, I3, I5): plain functions over the ``Store``.

A pairing code is short and typed by a person, so it is single use, short-lived, bound to
one workspace and stored only as an HMAC keyed with ``tokenSecret``. Claiming it creates a
pair request that an admin of that workspace must approve from a phone; only then does the
agent's next poll receive its token, exactly once. Agent tokens carry an HMAC tag under
``tokenSecret`` (rotating it ends them all) and the relay stores only their SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from codexrelay.crypto import (
    TokenSource,
    b64url,
    constant_time_equal,
    keyed_hash,
    new_code,
    new_id,
    new_secret,
    normalize_code,
    sha256_hex,
)
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.storage.records import AgentRecord, PairingCodeRecord, PairRequestRecord
from codexrelay.relay.storage.repositories import Store

AGENT_TOKEN_PREFIX = "cra_"  # noqa: S105 - a prefix, not a secret
CODE_PURPOSE = "pairing-code"
TOKEN_PURPOSE = "agent-token"  # noqa: S105 - an HMAC purpose label
MAX_PAIRING_TTL_SEC = 3600
DECIDED_REQUEST_RETENTION = timedelta(days=1)


def _invalid_code() -> AppError:
    # Wrong, used and expired codes answer the same, so guesses learn nothing (A1).
    return AppError(ErrorCode.INVALID_OR_EXPIRED_CODE, "That pairing code is not valid.")


def create_pairing_code(
    store: Store,
    *,
    workspace_id: str,
    created_by: str,
    note: str,
    ttl_sec: int,
    now: datetime,
    secret: str,
    rand: TokenSource,
) -> tuple[PairingCodeRecord, str]:
    """A new one-time code for ``workspace_id``; the plain code is returned, never stored."""
    code = new_code(rand)
    record = PairingCodeRecord(
        id=new_id("pc", rand),
        code_hash=keyed_hash(secret, CODE_PURPOSE, code),
        workspace_id=workspace_id,
        note=note,
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(seconds=min(ttl_sec, MAX_PAIRING_TTL_SEC)),
    )
    store.pairing_codes.add(record)
    return record, code


def find_agent(store: Store, workspace_id: str, agent_id: str) -> AgentRecord | None:
    """The live (not revoked) agent named ``agent_id`` in ``workspace_id``, if any."""
    for agent in store.agents.named(workspace_id, agent_id):
        if agent.revoked_at is None:
            return agent
    return None


def claim_pairing_code(
    store: Store,
    *,
    code: str,
    agent_id: str,
    label: str,
    hostname: str,
    workspace_root_name: str,
    now: datetime,
    secret: str,
    rand: TokenSource,
    e2e: tuple[str, str] | None = None,
    pin_for: AgentRecord | None = None,
) -> tuple[PairRequestRecord, str]:
    """Use up a pairing code and open a pair request; returns it and its poll secret.

    The code is marked used before anything else, so a second claim fails even while the
    first request still waits for approval. ``e2e`` is the agent's key claim and its MAC
    (TRUST.md §4.2), kept for the approving phone. ``pin_for`` makes a ``pin`` request: an
    agent that is already paired asks to pin its protected workspace, and gets no new token.
    """
    # The lookup key is an HMAC of the code under tokenSecret: a guess reveals nothing.
    pairing = store.pairing_codes.by_code_hash(
        keyed_hash(secret, CODE_PURPOSE, normalize_code(code))
    )
    if pairing is None or pairing.used_at is not None or pairing.expires_at <= now:
        raise _invalid_code()
    if store.workspaces.get(pairing.workspace_id) is None:
        raise _invalid_code()
    if pin_for is not None and pin_for.workspace_id != pairing.workspace_id:
        raise _invalid_code()
    if not store.spend_once("pairing-code", pairing.id):
        raise _invalid_code()  # another relay instance took it a moment ago
    pairing.used_at = now
    store.pairing_codes.save(pairing)
    poll_secret = new_secret(rand)
    request = PairRequestRecord(
        id=new_id("pr", rand),
        pairing_id=pairing.id,
        workspace_id=pairing.workspace_id,
        agent_id=agent_id,
        label=label,
        hostname=hostname,
        workspace_root_name=workspace_root_name,
        poll_secret_hash=sha256_hex(poll_secret),
        # An agent id already live in the workspace is flagged, never silently overwritten.
        replaces_agent=pin_for is None
        and find_agent(store, pairing.workspace_id, agent_id) is not None,
        created_at=now,
        expires_at=pairing.expires_at,
        kind="pair" if pin_for is None else "pin",
        agent_key=None if pin_for is None else pin_for.key,
        key_claim=e2e[0] if e2e else None,
        key_claim_mac=e2e[1] if e2e else None,
    )
    store.pair_requests.add(request)
    return request, poll_secret


def expire_pair_requests(store: Store, now: datetime) -> list[PairRequestRecord]:
    """Mark overdue pending or unclaimed approved requests expired; drop old decided ones."""
    changed = []
    for request in store.pair_requests.all():
        if request.status in {"pending", "approved"} and request.expires_at <= now:
            request.status = "expired"
            store.pair_requests.save(request)
            changed.append(request)
        elif request.status != "pending" and request.expires_at + DECIDED_REQUEST_RETENTION < now:
            store.pair_requests.remove(request)
    for pairing in store.pairing_codes.all():
        if pairing.expires_at + DECIDED_REQUEST_RETENTION < now:
            store.pairing_codes.remove(pairing)
    return changed


def workspace_pair_requests(store: Store, workspace_id: str) -> list[PairRequestRecord]:
    """Pair requests of one workspace (R04), newest first."""
    return store.pair_requests.of_workspace(workspace_id)[::-1]


def decide_pair_request(
    store: Store,
    *,
    workspace_id: str,
    request_id: str,
    approve: bool,
    decided_by: str,
    now: datetime,
) -> PairRequestRecord:
    """Approve or reject a pending request of ``workspace_id`` (R06: explicit approval)."""
    request = store.pair_requests.get(request_id)
    if request is None or request.workspace_id != workspace_id:
        raise AppError(ErrorCode.NOT_FOUND, "No such pair request.")
    if request.status == "pending" and request.expires_at <= now:
        request.status = "expired"
        store.pair_requests.save(request)
    if request.status != "pending":
        raise AppError(ErrorCode.CONFLICT, f"This pair request is already {request.status}.")
    request.status = "approved" if approve else "rejected"
    request.decided_by = decided_by
    request.decided_at = now
    store.pair_requests.save(request)
    return request


@dataclass(frozen=True)
class PollResult:
    """What the agent's poll sees; ``agent_token`` is set exactly once, on completion."""

    status: str
    agent_token: str | None = None
    agent: AgentRecord | None = None
    replaced: AgentRecord | None = None
    grant: str | None = None
    grant_mac: str | None = None


def poll_pair_request(
    store: Store,
    *,
    request_id: str,
    poll_secret: str,
    now: datetime,
    secret: str,
    rand: TokenSource,
    token_ttl_sec: int,
) -> PollResult:
    """The agent's view of its request; the first poll after approval mints the token."""
    request = store.pair_requests.get(request_id)
    if request is None or not constant_time_equal(
        request.poll_secret_hash, sha256_hex(poll_secret)
    ):
        raise AppError(ErrorCode.UNAUTHENTICATED, "Unknown pair request or wrong poll secret.")
    if request.status in {"pending", "approved"} and request.expires_at <= now:
        request.status = "expired"
        store.pair_requests.save(request)
    if request.status != "approved":
        return PollResult(status=request.status)
    if request.kind == "pin":
        request.status = "completed"
        store.pair_requests.save(request)
        return PollResult(status="approved", grant=request.grant, grant_mac=request.grant_mac)
    replaced = find_agent(store, request.workspace_id, request.agent_id)
    if replaced is not None:
        replaced.revoked_at = now
        store.agents.save(replaced)
    agent = AgentRecord(
        key=new_id("ag", rand),
        agent_id=request.agent_id,
        workspace_id=request.workspace_id,
        label=request.label,
        hostname=request.hostname,
        workspace_root_name=request.workspace_root_name,
        token_hash="",
        token_issued_at=now,
        paired_by=request.decided_by or "",
        created_at=now,
    )
    token = issue_agent_token(agent, now=now, secret=secret, rand=rand, ttl_sec=token_ttl_sec)
    store.agents.add(agent)
    request.status = "completed"
    request.agent_key = agent.key
    store.pair_requests.save(request)
    return PollResult(
        status="approved",
        agent_token=token,
        agent=agent,
        replaced=replaced,
        grant=request.grant,
        grant_mac=request.grant_mac,
    )


def _token_tag(secret: str, body: str) -> str:
    return keyed_hash(secret, TOKEN_PURPOSE, body)


def issue_agent_token(
    agent: AgentRecord, *, now: datetime, secret: str, rand: TokenSource, ttl_sec: int
) -> str:
    """Mint a new token for ``agent`` (replacing any earlier one) and store only its hash."""
    body = f"{agent.key}.{b64url(rand(32))}"
    token = f"{AGENT_TOKEN_PREFIX}{body}.{_token_tag(secret, body)}"
    agent.token_hash = sha256_hex(token)
    agent.token_issued_at = now
    agent.token_expires_at = now + timedelta(seconds=ttl_sec) if ttl_sec else None
    return token


def authenticate_agent(store: Store, token: str, *, secret: str, now: datetime) -> AgentRecord:
    """The agent a token belongs to, or 401: bad tag (old tokenSecret), unknown, revoked,
    expired, or a token that was replaced by a renewal or a re-pairing."""
    refused = AppError(ErrorCode.UNAUTHENTICATED, "This agent token is not valid.")
    if not token.startswith(AGENT_TOKEN_PREFIX) or len(token) > 300:
        raise refused
    body, _, tag = token[len(AGENT_TOKEN_PREFIX) :].rpartition(".")
    if not body or not constant_time_equal(tag, _token_tag(secret, body)):
        raise refused
    agent = store.agents.get(body.split(".", 1)[0])
    if agent is None or not constant_time_equal(agent.token_hash, sha256_hex(token)):
        raise refused
    if agent.revoked_at is not None or store.workspaces.get(agent.workspace_id) is None:
        raise refused
    if agent.token_expires_at is not None and agent.token_expires_at <= now:
        raise refused
    return agent


def revoke_agent(store: Store, *, workspace_id: str, agent_id: str, now: datetime) -> AgentRecord:
    """R07: the agent's token never works again; the caller closes its socket."""
    agent = find_agent(store, workspace_id, agent_id)
    if agent is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such agent.")
    agent.revoked_at = now
    store.agents.save(agent)
    return agent


def workspace_agents(store: Store, workspace_id: str) -> list[AgentRecord]:
    """Agents of one workspace, one record per agent id (the newest: a re-paired agent
    hides its revoked predecessor), live ones first, by label."""
    newest: dict[str, AgentRecord] = {}
    for agent in store.agents.of_workspace(workspace_id):
        seen = newest.get(agent.agent_id)
        if seen is None or agent.created_at >= seen.created_at:
            newest[agent.agent_id] = agent
    return sorted(
        newest.values(), key=lambda a: (a.revoked_at is not None, a.label.lower(), a.agent_id)
    )
