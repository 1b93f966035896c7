"""Who did it: the ``actor`` of an audit record, built from ids and hashes only (B2).

A signed-in person is their user id, a hash of their session id and how that session was
opened (so a bootstrap or recovery-code session stands out, O4); an agent is its relay
key and agent id; anyone else is ``anonymous`` (the record's ``client`` has the address).
"""

from __future__ import annotations

from codexrelay.crypto import sha256_hex
from codexrelay.relay.storage.records import AgentRecord, SessionRecord

Actor = dict[str, str]

RELAY: Actor = {"type": "relay"}
ANONYMOUS: Actor = {"type": "anonymous"}


def ref(value: str) -> str:
    """A stable, one-way reference to an id that should not itself be written down."""
    return sha256_hex(value)[:32]


def session_actor(session: SessionRecord) -> Actor:
    """A person, through one of their sessions."""
    return {
        "type": "user",
        "userId": session.user_id,
        "session": ref(session.id),
        "via": session.via,
    }


def agent_actor(agent: AgentRecord) -> Actor:
    """A paired agent (or one collecting its token)."""
    return {"type": "agent", "agentKey": agent.key, "agentId": agent.agent_id}
