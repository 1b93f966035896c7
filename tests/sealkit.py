"""A phone that seals (TRUST.md §4.5, §4.7), in Python over the relay's real HTTP API.

It builds on ``trustkit.TrustedPhone``: the same statement and passkey signature, then the
``task.submit`` envelope with the task key wrapped to the agent (and to the phone's own
device) as the agent's keys stand in the phone's own verified copy of the log, never as the
relay says. Reading a task opens the submission and the agent's signed stream with this
device's kex key, exactly as a reader device would.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import Sealer, new_task_key, wrap_task_key
from codexrelay.e2e.log import parse_signed, verify_log
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import TaskView, read_task, seal_record
from codexrelay.e2e.wire import b64u
from tests.trustkit import Book, TrustedPhone, dumps


def verified_view(phone: TrustedPhone, book: Book) -> LogView:
    """The log from the relay, verified from the genesis this phone made or pinned, up to
    the head the phone knows (entries past it are the relay's word until checked)."""
    res = phone.phone.get(f"/api/v1/workspaces/{book.ws}/e2e/log")
    assert res.status_code == 200, res.text
    found = res.json()["entries"][: book.seq + 1]
    entries = [
        parse_signed({"entry": e["entry"], "sigs": e["sigs"]}, i) for i, e in enumerate(found)
    ]
    return verify_log(entries, pinned=book.genesis_hash)


def seal(
    phone: TrustedPhone,
    view: LogView,
    stmt: dict[str, Any],
    body: bytes,
    *,
    auth: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """``POST /sealed-tasks`` body for a statement, and the task key it drew."""
    raw = dumps(stmt)
    inner = {"stmt": b64u(raw), "body": b64u(body), "auth": auth or [phone.sign("task", raw)]}
    agent_id, task_id = stmt["agent"], stmt["task"]
    agent = view.agents[agent_id]
    task_key = new_task_key()
    wraps = [
        wrap_task_key(
            task_key,
            keys.load_kex_public(agent.suite, agent.kex_pub),
            ws=view.ws,
            task=task_id,
            recipient_key_id=agent_id,
        ),
        wrap_task_key(
            task_key,
            phone.kex_key.public_key(),
            ws=view.ws,
            task=task_id,
            recipient_key_id=phone.device_id,
        ),
    ]
    sealer = Sealer(task_key, view.ws, agent_id, task_id, phone.device_id)
    envelope = seal_record(sealer, "task.submit", inner, wraps)
    request = {
        "agentId": agent_id,
        "type": stmt["type"],
        "writeAccess": stmt["writeAccess"],
        "envelope": envelope.decode("ascii"),
    }
    return request, task_key


def submit(phone: TrustedPhone, ws: str, request: dict[str, Any]) -> Any:
    return phone.phone.post(f"/api/v1/workspaces/{ws}/sealed-tasks", json=request)


def envelopes(phone: TrustedPhone, ws: str, task_id: str) -> list[bytes]:
    """The submission first, then the agent's stream, as the relay serves them."""
    res = phone.phone.get(f"/api/v1/workspaces/{ws}/tasks/{task_id}/envelopes")
    assert res.status_code == 200, res.text
    data = res.json()
    found = [data["submission"]] if data["submission"] else []
    return [e.encode("ascii") for e in found + [x["envelope"] for x in data["envelopes"]]]


def read(phone: TrustedPhone, view: LogView, agent: str, task_id: str) -> TaskView:
    """What this phone's device shows for the task."""
    items = envelopes(phone, view.ws, task_id)
    return read_task(items, phone.kex_key, me=phone.device_id, view=view, agent=agent, task=task_id)


def key_request(phone: TrustedPhone, view: LogView, agent: str, task_id: str) -> dict[str, str]:
    """A device-signed request for a task's key (for a device certified after the task)."""
    stmt = {
        "v": 1,
        "kind": "key.req",
        "ws": view.ws,
        "agent": agent,
        "task": task_id,
        "device": phone.device_id,
        "kexPub": keys.public_text(phone.kex_key),
        "issuedAt": int(time.time()),
    }
    raw = dumps(stmt)
    return {"stmt": b64u(raw), "sig": phone.device_sign("keyreq", raw)}


def salt() -> str:
    return b64u(secrets.token_bytes(16))
