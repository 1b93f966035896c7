"""Agent <-> relay messages of sealed tasks (TRUST.md §4.5, §4.7, §7): the relay carries
envelopes it cannot open, byte for byte.

- relay -> agent: a sealed task rides on ``task`` as ``TaskSpec.sealed`` (the phone's
  ``task.submit`` envelope); ``e2e.keyreq`` forwards a reader device's signed key request.
- agent -> relay: ``e2e.envelope`` carries one envelope of a task's stream (``task.out``,
  ``task.done``, ``key.wrap``); ``e2e.catalog`` the sealed session catalog;
  ``e2e.thread`` one envelope of a sealed conversation's stream (items, deltas, thread
  states, approval requests, key wraps). The relay keeps them in memory and hands them to
  phones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from codexrelay.protocol_base import Message

MAX_ENVELOPE_CHARS = 1_000_000  # inside the 1 MiB message cap with the message's own fields


class SealedTask(Message):
    """The phone's ``task.submit`` envelope, as JSON text."""

    envelope: Annotated[str, Field(min_length=2, max_length=MAX_ENVELOPE_CHARS)]


class SealedEnvelope(Message):
    """One envelope the agent sends for a task (agent -> relay)."""

    type: Literal["e2e.envelope"] = "e2e.envelope"
    task_id: Annotated[str, Field(min_length=1, max_length=64)]
    envelope: Annotated[str, Field(min_length=2, max_length=MAX_ENVELOPE_CHARS)]


class SealedCatalog(Message):
    """The agent's session catalog and previews (R12) as one ``catalog`` envelope under a
    fresh key wrapped to the reader devices (agent -> relay; TRUST.md §4.7)."""

    type: Literal["e2e.catalog"] = "e2e.catalog"
    envelope: Annotated[str, Field(min_length=2, max_length=MAX_ENVELOPE_CHARS)]


class KeyRequest(Message):
    """A reader device's signed request for a task's key (relay -> agent)."""

    type: Literal["e2e.keyreq"] = "e2e.keyreq"
    stmt: Annotated[str, Field(min_length=1, max_length=2_000)]
    sig: Annotated[str, Field(min_length=1, max_length=200)]


class SealedThreadEnvelope(Message):
    """One envelope of a sealed thread's stream (agent -> relay; TRUST.md §4.7, §4.8)."""

    type: Literal["e2e.thread"] = "e2e.thread"
    thread_id: Annotated[str, Field(min_length=1, max_length=64)]
    envelope: Annotated[str, Field(min_length=2, max_length=MAX_ENVELOPE_CHARS)]
