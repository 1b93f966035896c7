"""Sealed tasks on the relay: what it can check without reading (TRUST.md §4.5, §4.7, §6).

The relay sees an envelope's header (kind, workspace, agent, task id, sender, counters,
padded size) and the key wraps' recipient ids, never the content. It checks that a phone's
``task.submit`` is addressed to this workspace and comes from a live device of the caller
in the log, applies the log's policy to the visible type and write mode as a first filter,
and that what an agent sends back is its own stream for its own task. The agent and the
reader devices check everything again; nothing here is a guarantee.
"""

from __future__ import annotations

import re
from typing import Final

from codexrelay.e2e import policy as rules
from codexrelay.e2e.envelope import EnvelopeError, Header, Kind, parse_wire
from codexrelay.e2e.log import LogView
from codexrelay.e2e.sealed import AGENT_KINDS
from codexrelay.e2e.sealedthreads import THREAD_AGENT_KINDS
from codexrelay.e2e.statements import TaskType
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import UUID_PATTERN

UUID_RE: Final = re.compile(UUID_PATTERN)


def _bad(message: str) -> AppError:
    return AppError(ErrorCode.INVALID_REQUEST, message)


def submission(
    view: LogView,
    *,
    workspace_id: str,
    agent_id: str,
    user_id: str,
    envelope: str,
    kind: Kind = "task.submit",
) -> Header:
    """The header of a phone's ``task.submit`` (or sealed ``approval.decision``), checked
    as far as the relay can."""
    try:
        _, header, _, _ = parse_wire(envelope.encode("utf-8"))
    except EnvelopeError as exc:
        raise _bad(f"The envelope is refused: {exc.reason.value}.") from None
    if header.kind != kind or header.seq != 0:
        raise _bad(f"The envelope is not a {kind}.")
    if (header.ws, header.agent) != (workspace_id, agent_id):
        raise _bad("The envelope names another workspace or agent.")
    if kind == "task.submit" and not UUID_RE.fullmatch(header.task):
        raise _bad("A sealed task's id is a lower-case UUID.")
    device = view.devices.get(header.sender)
    if device is None or not device.active or device.user_id != user_id:
        raise AppError(ErrorCode.FORBIDDEN, "Seal the task on one of your own devices.")
    return header


def role_allows(view: LogView, user_id: str, task_type: TaskType, *, write_access: bool) -> bool:
    """The log's policy on the visible type and write mode: the lowest role any rule for
    that type asks (the action or log id is sealed, so the agent decides the rest)."""
    member = view.members.get(user_id)
    if member is None:
        return False
    policy = view.policy
    if task_type == "run_action":
        candidates = [policy.action_default, *policy.actions.values()]
    elif task_type == "read_log":
        candidates = [policy.log_default, *policy.logs.values()]
    else:
        candidates = [policy.codex_write if write_access else policy.codex_read]
    return any(rules.at_least(member.role, rule.min_role) for rule in candidates)


def agent_header(envelope: str, *, workspace_id: str, agent_id: str, task_id: str) -> Header | None:
    """The header of an envelope an agent sent for its own task, or None to drop it."""
    try:
        _, header, _, _ = parse_wire(envelope.encode("utf-8"))
    except EnvelopeError:
        return None
    ok = header.kind in AGENT_KINDS and (header.ws, header.agent, header.task, header.sender) == (
        workspace_id,
        agent_id,
        task_id,
        agent_id,
    )
    return header if ok else None


def thread_header(
    envelope: str, *, workspace_id: str, agent_id: str, thread_id: str
) -> Header | None:
    """The header of an envelope an agent sent for its own sealed thread, or None."""
    try:
        _, header, _, _ = parse_wire(envelope.encode("utf-8"))
    except EnvelopeError:
        return None
    mine = (header.ws, header.agent, header.task, header.sender) == (
        workspace_id,
        agent_id,
        thread_id,
        agent_id,
    )
    return header if mine and header.kind in THREAD_AGENT_KINDS else None


def is_catalog(envelope: str, workspace_id: str, agent_id: str) -> bool:
    """An agent's own ``catalog`` envelope for its own workspace."""
    try:
        _, header, _, _ = parse_wire(envelope.encode("utf-8"))
    except EnvelopeError:
        return False
    return (header.kind, header.ws, header.agent, header.sender) == (
        "catalog",
        workspace_id,
        agent_id,
        agent_id,
    )
