"""Pairing that authenticates both sides, the relay's part (TRUST.md §4.2).

The relay only carries: the agent's key claim and its MAC go to the approving phone, the
phone's grant and its MAC go back to the agent with the poll. Neither MAC can be checked
here (the secret never reaches the relay); what the relay can check is that the claim
names the same agent as the request, and that the ``agent.add`` entry the phone signed
names the keys of that claim, so a mismatch is refused before anyone is misled.
"""

from __future__ import annotations

from typing import Any

from codexrelay.e2e.logentries import MAX_ENTRY_BYTES, AgentAdd, Entry
from codexrelay.e2e.pairing import Claim, Grant, parse_claim, parse_grant
from codexrelay.e2e.statements import MAX_STATEMENT_BYTES, StatementError, decode_object, validate
from codexrelay.e2e.wire import WireError, b64u_decode
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.storage.records import PairRequestRecord


def _invalid(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_REQUEST, message)


def read_claim(text: str) -> Claim:
    """The claim's bytes, strictly parsed (the MAC is the phone's to check)."""
    try:
        return parse_claim(b64u_decode(text, max_bytes=MAX_STATEMENT_BYTES))
    except (WireError, StatementError) as exc:
        raise _invalid(f"The key claim is malformed ({exc}).") from None


def check_claim(
    claim: Claim, *, agent_id: str, label: str, hostname: str, workspace_root_name: str
) -> None:
    """The claim must name what the request names (the phone shows the claim's values)."""
    shown = (claim.agent_id, claim.label, claim.hostname, claim.workspace_root_name)
    if shown != (agent_id, label, hostname or claim.hostname, workspace_root_name):
        raise _invalid("The key claim names another agent than the request.")


def read_grant(text: str, request: PairRequestRecord) -> Grant:
    """The phone's grant must be for this request's workspace, agent and pairing."""
    try:
        grant = parse_grant(b64u_decode(text, max_bytes=MAX_STATEMENT_BYTES))
    except (WireError, StatementError) as exc:
        raise _invalid(f"The grant is malformed ({exc}).") from None
    wanted = (request.workspace_id, request.agent_id, request.pairing_id)
    if (grant.ws, grant.agent_id, grant.pairing_id) != wanted:
        raise _invalid("The grant names another workspace, agent or pairing.")
    return grant


def check_agent_add(body: Any, request: PairRequestRecord) -> None:
    """The entry the phone signed adds exactly the agent whose claim it approved."""
    if not isinstance(body, AgentAdd) or body.agent_id != request.agent_id:
        raise _invalid("Approving needs an agent.add entry for this agent.")
    if body.pairing_id != request.pairing_id:
        raise _invalid("The agent.add entry names another pairing.")
    if request.key_claim is None:
        raise _invalid("This request carries no key claim to approve.")
    claim = read_claim(request.key_claim)
    if (body.sig_pub, body.kex_pub, body.suite) != (claim.sig_pub, claim.kex_pub, claim.suite):
        raise _invalid("The agent.add entry names other keys than the agent claimed.")


def peek_agent_add(posted: Any) -> AgentAdd:
    """The ``agent.add`` body of a posted entry, read before the log verifies it (so a
    mismatch is refused before anything is stored)."""
    try:
        raw = b64u_decode(str(posted.get("entry", "")), max_bytes=MAX_ENTRY_BYTES)
        entry = decode_object(raw, Entry, max_bytes=MAX_ENTRY_BYTES)
        if entry.op != "agent.add":
            raise _invalid("Approving needs an agent.add entry for this agent.")
        body = validate(AgentAdd, entry.body)
    except (WireError, StatementError, AttributeError) as exc:
        raise _invalid(f"The agent.add entry is malformed ({exc}).") from None
    return body
