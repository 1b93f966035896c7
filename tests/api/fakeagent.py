"""A scripted agent on the relay's own socket, for in-process conversation tests.

It speaks the conversation messages of docs/PROTOCOL.md as an agent would: it answers the
relay's requests from a background thread (threads, turns, steering, interrupts, reads,
approvals), keeps its own items with per-thread ``seq``, and lets a test play Codex (stream
an item, ask for an approval, end a turn). ``settle()`` waits until the relay has handled
everything sent so far (the relay handles an agent's messages in order).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.websockets import WebSocketDisconnect

from tests.api.test_pairing_api import _hello, _paired_token

Json = dict[str, Any]
NOW = "2026-11-29T12:00:00Z"
ALL_DECISIONS = ["accept", "acceptForSession", "decline", "cancel"]


class FakeAgent:
    """One agent connection; ``hold`` names request types left unanswered."""

    def __init__(self, ws: Any, token: str = "") -> None:
        self.ws = ws
        self.token = token  # the current one: settle() renews it
        self.requests: list[Json] = []
        self.hold: set[str] = set()
        self.threads: dict[str, Json] = {}
        self.items: dict[str, dict[str, Json]] = {}
        self.seq: dict[str, int] = {}
        self.approvals: dict[str, Json] = {}
        self.before_read: Callable[[str], None] | None = None
        self._send_lock = threading.Lock()
        self._settled = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # ---- plumbing ----------------------------------------------------------------------

    def send(self, message: Json) -> None:
        with self._send_lock:
            self.ws.send_json(message)

    def settle(self) -> None:
        """Return once the relay handled every message sent so far."""
        self._settled.clear()
        self.send({"type": "token.renew"})
        assert self._settled.wait(10), "the relay did not answer token.renew"

    def _run(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = self.ws.receive_json()
                if message["type"] == "token.renewed":
                    self.token = message["agentToken"]
                    self._settled.set()
                    continue
                self.requests.append(message)
                if message["type"] not in self.hold:
                    self.answer(message)

    def asked(self, kind: str) -> list[Json]:
        return [r for r in self.requests if r["type"] == kind]

    def answer(self, request: Json) -> None:
        handler = getattr(self, "_" + request["type"].replace(".", "_"))
        result = handler(request)
        if isinstance(result, str):
            self.send(
                {"type": "thread.refused", "requestId": request["requestId"], "reason": result}
            )
        else:
            self.send({"type": "thread.reply", "requestId": request["requestId"], **result})

    # ---- playing Codex -----------------------------------------------------------------

    def next_seq(self, tid: str) -> int:
        self.seq[tid] = self.seq.get(tid, 0) + 1
        return self.seq[tid]

    def item(self, tid: str, **fields: Any) -> Json:
        """An item appears or changes (sent as thread.item with the next seq)."""
        held = self.items.setdefault(tid, {}).get(fields.get("id", ""), {})
        item = {**held, **fields, "seq": self.next_seq(tid)}
        item.setdefault("turnId", self.threads[tid].get("activeTurnId"))
        self.items[tid][item["id"]] = item
        self.send({"type": "thread.item", "threadId": tid, "item": item})
        return item

    def delta(self, tid: str, item_id: str, text: str, field: str = "text") -> int:
        seq = self.next_seq(tid)
        held = self.items[tid][item_id]
        held[field] = held.get(field, "") + text
        held["seq"] = seq
        self.send(
            {
                "type": "thread.delta",
                "threadId": tid,
                "itemId": item_id,
                "seq": seq,
                "field": field,
                "delta": text,
            }
        )
        return seq

    def ask_approval(
        self, tid: str, kind: str = "command", decisions: list[str] | None = None, **fields: Any
    ) -> Json:
        """Codex asks to run a command (or write files)."""
        now = datetime.now(UTC)
        approval = {
            "id": f"apr_{uuid.uuid4().hex[:12]}",
            "threadId": tid,
            "turnId": self.threads[tid].get("activeTurnId") or "turn-x",
            "itemId": f"call_{uuid.uuid4().hex[:8]}",
            "kind": kind,
            "availableDecisions": decisions or ["accept", "decline", "cancel"],
            "status": "pending",
            "requestedAt": now.isoformat(),
            "expiresAt": (now + timedelta(minutes=10)).isoformat(),
            **({"command": "pytest -x", "cwd": "/ws"} if kind == "command" else {}),
            **fields,
        }
        self.approvals[approval["id"]] = approval
        self.update(tid, status="waitingForApproval")
        self.send({"type": "approval.update", "approval": approval})
        return approval

    def update(self, tid: str, turn: Json | None = None, **changes: Any) -> None:
        self.threads[tid].update(changes)
        message: Json = {"type": "thread.update", "thread": self.threads[tid]}
        if turn is not None:
            message["turn"] = turn
        self.send(message)

    def end_turn(self, tid: str, status: str = "completed") -> None:
        turn_id = self.threads[tid].get("activeTurnId")
        self.threads[tid].pop("activeTurnId", None)
        self.update(tid, {"id": turn_id, "threadId": tid, "status": status}, status="idle")

    def add_thread(self, source: str = "terminal", **fields: Any) -> Json:
        tid = str(uuid.uuid4())
        self.threads[tid] = {
            "id": tid,
            "source": source,
            "status": "notLoaded",
            "cwd": "/ws",
            "writeAccess": False,
            "preview": "terminal prompt",
            **fields,
        }
        return self.threads[tid]

    # ---- answering the relay -----------------------------------------------------------

    def _start_turn(self, tid: str) -> Json:
        turn = {"id": f"turn_{uuid.uuid4().hex[:8]}", "threadId": tid, "status": "inProgress"}
        self.update(tid, turn, status="running", activeTurnId=turn["id"])
        return turn

    def _thread_start(self, request: Json) -> Json:
        thread = self.add_thread(
            "phone",
            cwd="/ws/" + (request.get("cwd") or ""),
            writeAccess=request.get("writeAccess", False),
            preview=request["prompt"][:100],
        )
        turn = self._start_turn(thread["id"])
        self.item(
            thread["id"],
            id=f"user_{uuid.uuid4().hex[:6]}",
            type="userMessage",
            text=request["prompt"],
        )
        return {"thread": self.threads[thread["id"]], "turn": turn}

    def _thread_turn(self, request: Json) -> Json | str:
        thread = self.threads.get(request["threadId"])
        if thread is None:
            return "unknown-thread"
        if thread.get("activeTurnId"):
            return "turn-running"
        return {"turn": self._start_turn(thread["id"])}

    def _thread_steer(self, request: Json) -> Json | str:
        thread = self.threads.get(request["threadId"])
        if thread is None:
            return "unknown-thread"
        if not thread.get("activeTurnId"):
            return "no-running-turn"
        return {
            "turn": {"id": thread["activeTurnId"], "threadId": thread["id"], "status": "inProgress"}
        }

    def _thread_interrupt(self, request: Json) -> Json | str:
        tid = request["threadId"]
        thread = self.threads.get(tid)
        if thread is None or not thread.get("activeTurnId"):
            return "no-running-turn"
        turn_id = thread["activeTurnId"]
        for approval in self.approvals.values():
            if approval["threadId"] == tid and approval["status"] == "pending":
                approval.update(status="cancelled", decision="cancel", decidedAt=NOW)
                self.send({"type": "approval.update", "approval": approval})
        self.end_turn(tid, "interrupted")
        return {"turn": {"id": turn_id, "threadId": tid, "status": "interrupted"}}

    def _thread_resume(self, request: Json) -> Json | str:
        thread = self.threads.get(request["threadId"])
        if thread is None:
            return "unknown-thread"
        thread["status"] = "idle"
        return {"thread": thread}

    def _thread_read(self, request: Json) -> Json | str:
        tid = request["threadId"]
        if tid not in self.threads:
            return "unknown-thread"
        if self.before_read is not None:
            self.before_read(tid)
        after = request.get("afterSeq", 0)
        items = sorted(
            (i for i in self.items.get(tid, {}).values() if i["seq"] > after),
            key=lambda i: i["seq"],
        )
        pending = [
            a for a in self.approvals.values() if a["threadId"] == tid and a["status"] == "pending"
        ]
        return {
            "thread": self.threads[tid],
            "items": items,
            "approvals": pending,
            "seq": self.seq.get(tid, 0),
            "more": False,
        }

    def _thread_list(self, _request: Json) -> Json:
        return {"threads": list(self.threads.values())}

    def _approval_decide(self, request: Json) -> Json | str:
        approval = self.approvals.get(request["approvalId"])
        if approval is None:
            return "unknown-approval"
        if approval["status"] != "pending":
            return "approval-resolved"
        if request["decision"] not in approval["availableDecisions"]:
            return "decision-not-offered"
        status = {"accept": "accepted", "acceptForSession": "acceptedForSession",
                  "decline": "declined", "cancel": "cancelled"}[request["decision"]]  # fmt: skip
        approval.update(
            status=status,
            decision=request["decision"],
            decidedBy=request.get("decidedBy"),
            decidedAt=NOW,
        )
        self.send({"type": "approval.update", "approval": approval})
        self.update(approval["threadId"], status="running")
        return {"approval": approval}

    def _models_list(self, _request: Json) -> Json:
        return {
            "models": [
                {"id": "gpt-5.5", "displayName": "GPT-5.5", "isDefault": True,
                 "defaultEffort": "medium", "efforts": ["low", "medium", "high"]},
            ]
        }  # fmt: skip


@contextlib.contextmanager
def connected(
    client: Any, wid: str, agent_id: str = "devbox", *, write: bool = False, token: str = ""
) -> Iterator[FakeAgent]:
    """Pair ``agent_id`` (or reconnect with ``token``) with conversations on; yields the
    scripted agent."""
    token = token or _paired_token(client, wid, agent_id)
    with client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        features = {"codexExec": True, "codexExecWrite": write, "conversations": True}
        ws.send_json(_hello(agent_id, features=features))
        welcome = ws.receive_json()
        assert welcome["features"]["conversations"] is True
        agent = FakeAgent(ws, token)
        try:
            yield agent
        finally:
            agent.hold.clear()
