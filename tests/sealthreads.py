"""A phone that seals conversations (TRUST.md §4.7, §4.8, §4.13 under ``content: sealed``),
in Python over the relay's real HTTP API: the reference reader for sealed threads.

Input (a thread start, turn, steer or approval answer) is the usual signed statement, sealed
to the agent's kex key as the phone's own verified log has it; reading opens the agent's
signed thread stream with this device's kex key.
"""

from __future__ import annotations

from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import Kind, Sealer, new_task_key, wrap_task_key
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import seal_record
from codexrelay.e2e.sealedthreads import ThreadView, read_thread
from tests.conversations import threads_url
from tests.trustkit import (
    Book,
    TrustedPhone,
    signed_decision,
    signed_turn,
    signed_turn_statement,
    turn_input,
)


def seal_to_agent(
    phone: TrustedPhone, view: LogView, agent: str, task: str, kind: Kind, inner: dict[str, Any]
) -> str:
    """``inner`` in a one-envelope stream of this device, its key wrapped to the agent only."""
    member = view.agents[agent]
    key = new_task_key()
    wrap = wrap_task_key(
        key,
        keys.load_kex_public(member.suite, member.kex_pub),
        ws=view.ws,
        task=task,
        recipient_key_id=agent,
    )
    sealer = Sealer(key, view.ws, agent, task, phone.device_id)
    return seal_record(sealer, kind, inner, [wrap]).decode("ascii")


def turn_body(
    phone: TrustedPhone,
    book: Book,
    view: LogView,
    agent: str,
    mode: str,
    thread: str | None,
    prompt: str,
    **given: Any,
) -> dict[str, Any]:
    """The body of ``POST /sealed-threads`` (mode ``new``) or ``/sealed-turns``."""
    raw = turn_input(prompt, **given)
    stmt = signed_turn_statement(phone, book, agent, mode, thread, raw)
    signed = signed_turn(phone, stmt, raw)
    envelope = seal_to_agent(phone, view, agent, stmt["turn"], "task.submit", signed)
    body: dict[str, Any] = {"writeAccess": stmt["writeAccess"], "envelope": envelope}
    return body | ({"agentId": agent} if mode == "new" else {"mode": mode})


def decision_body(
    phone: TrustedPhone,
    book: Book,
    view: LogView,
    agent: str,
    approval: dict[str, Any],
    decision: str,
) -> dict[str, Any]:
    """The body of ``POST .../approvals/{id}/sealed``: the decision over the request bytes
    this device decrypted, sealed to the agent."""
    signed = signed_decision(phone, book, agent, approval, decision)
    return {
        "envelope": seal_to_agent(phone, view, agent, approval["id"], "approval.decision", signed)
    }


def thread_envelopes(phone: TrustedPhone, ws: str, tid: str, after: int = -1) -> list[bytes]:
    res = phone.phone.get(threads_url(ws, tid, "envelopes"), params={"after": after})
    assert res.status_code == 200, res.text
    return [e["envelope"].encode("ascii") for e in res.json()["envelopes"]]


def read(phone: TrustedPhone, view: LogView, agent: str, tid: str) -> ThreadView:
    """What this phone's device shows for the thread."""
    items = thread_envelopes(phone, view.ws, tid)
    return read_thread(items, phone.kex_key, me=phone.device_id, view=view, agent=agent, thread=tid)
