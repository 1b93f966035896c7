"""What travels inside a sealed conversation's envelopes, and how a reader reads them
(TRUST.md §4.7, §4.8, §4.13, §5).

A thread has its own key ``K_t`` (the thread id takes the task id's place in every
derivation), so the same envelope format, ``Sealer`` and receiver rules apply. The agent is
the only sender of a thread's stream, signed, with one epoch per sealer it runs (a restart
or a key rotation starts a new one; the first envelope of an epoch carries the key wraps).

- ``task.out`` (the agent): one of ``{"thread": info, "turn": turn?}`` (a state change),
  ``{"item": item}`` (an item's new state) or ``{"delta": delta}`` (streamed text), in the
  shapes of docs/PROTOCOL.md with every text field present.
- ``approval.req`` (the agent): ``{"approval": approval}``, the full approval with its exact
  request bytes (``request``), which a signed decision names by hash.
- ``key.wrap`` (the agent, its own epoch): the thread key wrapped to a reader device that
  asked for it later.

Phone to agent: a thread start, turn or steer is a ``task.submit`` envelope (its ``task`` is
the statement's turn id) holding ``{stmt, input, auth}``; an approval answer is an
``approval.decision`` envelope (its ``task`` is the approval id) holding ``{stmt, auth}``.
Both are wrapped to the agent only: the agent's own stream shows readers what was asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import Field

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import (
    EnvelopeError,
    EnvelopeReason,
    Opened,
    Receiver,
    parse_wire,
    unwrap_task_key,
)
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import B64Text, wraps_digest
from codexrelay.e2e.statements import StatementError, Strict

THREAD_AGENT_KINDS: Final = frozenset({"task.out", "approval.req", "key.wrap"})


class TurnInner(Strict):
    """The plaintext of a phone's sealed thread start, turn or steer."""

    stmt: B64Text
    input: B64Text
    auth: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1)]
    wraps: str | None = None


class DecisionInner(Strict):
    """The plaintext of a phone's sealed approval answer."""

    stmt: B64Text
    auth: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=5)]
    wraps: str | None = None


@dataclass
class ThreadView:
    """What a reader device shows for a sealed thread."""

    thread: dict[str, Any] | None = None
    turns: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    opened: int = 0
    dropped: list[str] = field(default_factory=list)

    def apply(self, record: dict[str, Any]) -> None:
        """One opened record, by the ``seq`` rule of docs/PROTOCOL.md."""
        if "thread" in record:
            self.thread = record["thread"]
            if record.get("turn"):
                self.turns[record["turn"]["id"]] = record["turn"]
        elif "item" in record:
            item = record["item"]
            held = self.items.get(item["id"])
            if held is None or held["seq"] < item["seq"]:
                self.items[item["id"]] = item
        elif "delta" in record:
            delta = record["delta"]
            held = self.items.get(delta["itemId"])
            if held is not None and held["seq"] < delta["seq"]:
                held[delta["field"]] = (held.get(delta["field"]) or "") + delta["delta"]
                held["seq"] = delta["seq"]
        elif "approval" in record:
            self.approvals[record["approval"]["id"]] = record["approval"]
        else:
            raise EnvelopeError(EnvelopeReason.MALFORMED, "an unknown thread record")

    def text(self) -> str:
        """Everything shown, as one string (what a canary search reads)."""
        return json.dumps([self.thread, self.turns, self.items, self.approvals])


def thread_keys(
    envelopes: Iterable[bytes], private: keys.KexKey, *, me: str, ws: str, thread: str
) -> list[bytes]:
    """Every thread key wrapped to ``me`` in these envelopes (one per key rotation)."""
    found: list[bytes] = []
    for data in envelopes:
        try:
            wire, _, _, _ = parse_wire(data)
            for wrap in wire.keys or ():
                if wrap.to == me:
                    key = unwrap_task_key(wrap, private, ws=ws, task=thread)
                    if key not in found:
                        found.append(key)
        except EnvelopeError:
            continue
    return found


def read_thread(
    envelopes: Iterable[bytes],
    private: keys.KexKey,
    *,
    me: str,
    view: LogView,
    agent: str,
    thread: str,
) -> ThreadView:
    """Open a sealed thread's envelopes as a reader device, in the order the relay gave.

    Each envelope must be the agent's (signed by its key in the reader's own verified log),
    for this workspace, agent and thread, next in its epoch's sequence and chain, and open
    under one of the thread keys wrapped to this device; anything else is dropped and named.
    """
    items = list(envelopes)
    ws = view.ws
    member = view.agents[agent]
    agent_key = keys.load_verify_key(member.suite, member.sig_pub)
    receivers = [
        Receiver(task_key=k, ws=ws, agent=agent, task=thread)
        for k in thread_keys(items, private, me=me, ws=ws, thread=thread)
    ]
    if not receivers:
        raise EnvelopeError(EnvelopeReason.NO_KEY, f"nothing is wrapped to {me}")
    out = ThreadView()
    epochs: dict[str, Receiver] = {}
    for data in items:
        try:
            _take(out, receivers, epochs, data, agent, agent_key)
        except (EnvelopeError, StatementError, ValueError, KeyError) as exc:
            out.dropped.append(str(exc))
    return out


def _take(
    out: ThreadView,
    receivers: list[Receiver],
    epochs: dict[str, Receiver],
    data: bytes,
    agent: str,
    agent_key: keys.VerifyKey,
) -> None:
    wire, header, _, _ = parse_wire(data)
    if header.kind not in THREAD_AGENT_KINDS or header.sender != agent:
        raise EnvelopeError(EnvelopeReason.BAD_SIGNATURE, "not from the thread's agent")
    receiver = epochs.get(header.epoch)
    if receiver is None:
        receiver, opened = _first_of_epoch(receivers, data, agent_key, header.epoch)
        epochs[header.epoch] = receiver
    else:
        opened = receiver.open(data, sender_key=agent_key)
    record = json.loads(opened.plaintext)
    if not isinstance(record, dict):
        raise EnvelopeError(EnvelopeReason.MALFORMED, "the plaintext is not an object")
    named = record.get("wraps")
    if (wire.keys is not None or named is not None) and (
        wire.keys is None or named != wraps_digest(wire.keys)
    ):
        raise EnvelopeError(EnvelopeReason.MALFORMED, "the key wraps are not the sender's")
    record.pop("wraps", None)
    out.opened += 1
    if header.kind != "key.wrap":
        out.apply(record)


def _first_of_epoch(
    receivers: list[Receiver], data: bytes, agent_key: keys.VerifyKey, epoch: str
) -> tuple[Receiver, Opened]:
    """An epoch's first envelope: the thread key that opens it (a fresh receiver under it)."""
    last: EnvelopeError | None = None
    for known in receivers:
        receiver = Receiver(
            task_key=known.task_key, ws=known.ws, agent=known.agent, task=known.task
        )
        try:
            return receiver, receiver.open(data, sender_key=agent_key)
        except EnvelopeError as exc:
            if exc.reason is not EnvelopeReason.DECRYPT_FAILED:
                raise
            last = exc
    raise last or EnvelopeError(EnvelopeReason.NO_KEY, f"no key opens epoch {epoch}")
