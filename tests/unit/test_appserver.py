"""Live conversations without the CLI: item mapping, seq, redaction, approvals and checks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from codexrelay.agent.config import AgentConfig, ConversationSettings
from codexrelay.agent.conversations import Conversations
from codexrelay.agent.redaction import Redactor
from codexrelay.agent.runners.appserver.approvals import check_decision, offered_decisions
from codexrelay.agent.runners.appserver.events import EventRouter
from codexrelay.agent.runners.appserver.history import idle_threads
from codexrelay.agent.runners.appserver.items import Outbound, map_item
from codexrelay.agent.runners.appserver.origins import PhoneThreads
from codexrelay.agent.runners.appserver.registry import Registry, map_status
from codexrelay.agent.runners.appserver.state import ThreadState
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.protocol import ProtocolError, parse_relay_message
from codexrelay.protocol_threads import ThreadResume, ThreadStart
from tests.appserver import Recorder

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
TID = "01a24196-0f63-71d3-ae01-5d9d35c62259"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def outbound(output_bytes: int = 65536, diff_bytes: int = 262144) -> Outbound:
    return Outbound(Redactor(), output_bytes=output_bytes, diff_bytes=diff_bytes)


def test_map_item_gives_the_api_shapes():
    """Each known app-server item becomes the API.md item shape; others carry ``raw``."""
    user = {
        "type": "userMessage",
        "id": "u1",
        "content": [{"type": "text", "text": "hi"}, {"type": "image", "url": "x"}],
    }
    assert map_item(user, turn_id="t1", done=True) == {
        "id": "u1",
        "turn_id": "t1",
        "type": "userMessage",
        "status": "completed",
        "text": "hi\n[image]",
    }
    reasoning = {"type": "reasoning", "id": "r", "summary": ["one", "two"], "content": []}
    assert map_item(reasoning, turn_id=None, done=False)["summary"] == "one\n\ntwo"
    command = {
        "type": "commandExecution",
        "id": "c",
        "command": "/bin/bash -lc ls",
        "cwd": "/w",
        "status": "declined",
        "aggregatedOutput": None,
        "exitCode": None,
        "durationMs": 7,
    }
    mapped = map_item(command, turn_id="t", done=True)
    assert (mapped["status"], mapped["output"], mapped["exit_code"], mapped["duration_ms"]) == (
        "declined",
        "",
        None,
        7,
    )
    change = {
        "type": "fileChange",
        "id": "f",
        "status": "inProgress",
        "changes": [{"path": "/w/a.txt", "kind": {"type": "add"}, "diff": "new\n"}],
    }
    assert map_item(change, turn_id="t", done=False)["changes"] == [
        {"path": "/w/a.txt", "kind": "add", "diff": "new\n"}
    ]
    other = {"type": "webSearch", "id": "w", "query": "codex"}
    assert map_item(other, turn_id="t", done=True)["raw"] == {"query": "codex"}


def test_outbound_redacts_and_caps_every_text():
    """Secrets in output, diffs, commands and raw fields are hidden; output keeps its tail
    (B3, R18)."""
    out = outbound(output_bytes=2048, diff_bytes=1024)
    item = {
        "id": "c",
        "type": "commandExecution",
        "command": f"curl -H 'Authorization: token {TOKEN}'",
        "output": "x" * 5000 + f"\nkey {TOKEN}\n",
        "changes": [
            {"path": "/w/a", "kind": "add", "diff": f"+{TOKEN}\n" + "y" * 3000},
            {"path": "/w/b", "kind": "add", "diff": "z" * 100},
        ],
        "raw": {"deep": [{"value": TOKEN}]},
    }
    clean = out.item(item)
    text = repr(clean)
    assert TOKEN not in text
    assert "[REDACTED:github_token]" in clean["output"]
    assert len(clean["output"].encode()) <= 2048
    assert clean["output"].endswith("\n")
    assert sum(len(c["diff"].encode()) for c in clean["changes"]) <= 1024
    assert clean["raw"] == {"deep": [{"value": "[REDACTED:github_token]"}]}


def test_state_seq_grows_and_a_snapshot_plus_live_events_is_the_whole_thread():
    """Every change takes the next seq; page(after) + later events never miss or repeat."""
    state = ThreadState(id=TID, source="phone", cwd="/w")
    state.put({"id": "a", "type": "agentMessage", "status": "inProgress", "text": ""})
    delta_seq = state.append("a", "text", "hello ", 100)
    assert delta_seq == 2
    snapshot, more = state.page(0, 10)
    assert not more
    assert [(i.id, i.seq, i.text) for i in snapshot] == [("a", 2, "hello ")]
    cut = state.seq
    live = [("delta", state.append("a", "text", "world", 100), "world")]
    final = state.put(
        {"id": "a", "type": "agentMessage", "status": "completed", "text": "hello world"}
    )
    assert final.seq > live[0][1] > cut
    assert state.append("missing", "text", "x", 100) is None
    later, _ = state.page(cut, 10)
    assert [(i.id, i.text, i.status) for i in later] == [("a", "hello world", "completed")]


def test_state_pages_by_count():
    """A page holds at most ``limit`` items; ``more`` says another page follows."""
    state = ThreadState(id=TID, source="phone", cwd="/w")
    for n in range(5):
        state.put({"id": f"i{n}", "type": "plan", "text": str(n)})
    first, more = state.page(0, 2)
    assert [i.id for i in first] == ["i0", "i1"]
    assert more
    rest, more = state.page(first[-1].seq, 10)
    assert [i.id for i in rest] == ["i2", "i3", "i4"]
    assert not more


def test_thread_status_badges():
    """The app-server's statuses map to the phone's badges."""
    assert (
        map_status({"type": "active", "activeFlags": ["waitingOnApproval"]}) == "waitingForApproval"
    )
    assert map_status({"type": "active", "activeFlags": []}) == "running"
    assert map_status({"type": "notLoaded"}) == "notLoaded"
    assert map_status({"type": "systemError"}) == "error"
    assert map_status(None) == "idle"


@pytest.mark.parametrize(
    ("setting", "write", "session"),
    [
        ("readOnly", False, True),
        ("readOnly", True, False),
        ("never", False, False),
        ("always", True, True),
    ],
)
def test_accept_for_session_offered_as_configured(setting, write, session):
    """acceptForSession only where the config allows it; never the rule-writing decisions."""
    offered = offered_decisions(ConversationSettings(accept_for_session=setting), write=write)
    assert ("acceptForSession" in offered) is session
    assert {"accept", "decline", "cancel"} <= set(offered)


class FakeClient:
    """Stands in for the app-server link: records answers, can refuse to deliver them."""

    def __init__(self) -> None:
        self.connection = 1
        self.answers: list[tuple[int | str, dict]] = []
        self.deliver = True

    async def respond(self, connection: int, request_id: int | str, result: dict) -> bool:
        if self.deliver:
            self.answers.append((request_id, result))
        return self.deliver

    async def respond_error(self, connection: int, request_id: int | str, message: str) -> bool:
        self.answers.append((request_id, {"error": message}))
        return True


def router(
    tmp_path: Path, **settings: object
) -> tuple[EventRouter, Registry, FakeClient, Recorder, ThreadState]:
    relay = Recorder()
    registry = Registry(
        tmp_path, outbound(), relay.send, lambda: NOW, phone_threads=PhoneThreads(tmp_path)
    )
    state = ThreadState(id=TID, source="phone", cwd=str(tmp_path), loaded=True)
    registry.threads[TID] = state
    client = FakeClient()
    events = EventRouter(
        registry, client, ConversationSettings(**settings), on_unknown_thread=_nothing
    )  # type: ignore[arg-type]
    return events, registry, client, relay, state


async def _nothing(thread_id: str) -> None:
    return None


COMMAND = {
    "threadId": TID,
    "turnId": "t1",
    "itemId": "call_1",
    "command": f"echo {TOKEN}",
    "cwd": "/w",
    "reason": "why",
}


async def test_unanswered_approval_declines_at_the_deadline(tmp_path):
    """No answer within approvalTimeoutSec: Codex gets a decline and the approval expires."""
    events, _, client, relay, _ = router(tmp_path, approval_timeout_sec=1)
    await events.server_request(1, 7, "item/commandExecution/requestApproval", COMMAND)
    asked = await relay.wait_for(lambda m: m["type"] == "approval.update")
    assert TOKEN not in asked["approval"]["command"]
    assert asked["approval"]["expiresAt"].startswith("2026-12-01T00:00:01")
    expired = await relay.wait_for(
        lambda m: m["type"] == "approval.update" and m["approval"]["status"] == "expired",
        timeout=10,
    )
    assert expired["approval"]["decision"] == "decline"
    assert client.answers == [(7, {"decision": "decline"})]


async def test_decision_passes_as_received_and_only_once(tmp_path):
    """The offered decision goes to Codex unchanged; a second answer is refused (409)."""
    events, _, client, _, state = router(tmp_path)
    await events.server_request(1, 3, "item/commandExecution/requestApproval", COMMAND)
    [approval] = state.pending_approvals()
    with pytest.raises(TaskRefusedError) as bad:
        check_decision(approval, "acceptWithExecpolicyAmendment")
    assert bad.value.reason == "decision-not-offered"
    done = await events.decide(state, approval, "acceptForSession", "u1")
    assert (done.status, done.decision, done.decided_by) == (
        "acceptedForSession",
        "acceptForSession",
        "u1",
    )
    assert client.answers == [(3, {"decision": "acceptForSession"})]
    with pytest.raises(TaskRefusedError) as twice:
        check_decision(state.approvals[approval.id], "decline")
    assert twice.value.reason == "approval-resolved"
    events.cancel_timers()


async def test_undelivered_decision_keeps_the_approval_pending(tmp_path):
    """If Codex cannot be reached the answer is refused and the approval stays open."""
    events, _, client, _, state = router(tmp_path)
    await events.server_request(1, 3, "item/commandExecution/requestApproval", COMMAND)
    [approval] = state.pending_approvals()
    client.deliver = False
    with pytest.raises(TaskRefusedError) as down:
        await events.decide(state, approval, "accept", None)
    assert down.value.reason == "codex-unavailable"
    assert state.approvals[approval.id].status == "pending"
    events.cancel_timers()


async def test_replayed_request_keeps_its_approval_and_another_client_can_answer(tmp_path):
    """A request replayed after a reconnect is the same approval; an answer from the
    terminal marks it answeredElsewhere."""
    events, _, client, relay, state = router(tmp_path)
    await events.server_request(1, 0, "item/commandExecution/requestApproval", COMMAND)
    client.connection = 2
    await events.server_request(2, 5, "item/commandExecution/requestApproval", COMMAND)
    [approval] = state.pending_approvals()
    assert len({m["approval"]["id"] for m in relay.of("approval.update")}) == 1
    await events.notification("serverRequest/resolved", {"threadId": TID, "requestId": 5})
    assert state.approvals[approval.id].status == "answeredElsewhere"
    assert client.answers == []


async def test_unsupported_server_requests_are_refused_on_phone_threads(tmp_path):
    """A request the phone cannot answer gets an error at once, so the turn goes on."""
    events, _, client, _, _ = router(tmp_path)
    await events.server_request(1, 9, "item/tool/requestUserInput", {"threadId": TID})
    assert client.answers[0][0] == 9
    assert "error" in client.answers[0][1]


async def test_streamed_secret_split_between_deltas_is_redacted(tmp_path):
    """A secret cut in two by the stream still never leaves the agent (B3)."""
    events, _, _, relay, state = router(tmp_path)
    await events.notification(
        "item/started",
        {"threadId": TID, "turnId": "t", "item": {"type": "commandExecution", "id": "c"}},
    )
    half = len(TOKEN) // 2
    for piece in (f"out {TOKEN[:half]}", f"{TOKEN[half:]} done\n"):
        await events.notification(
            "item/commandExecution/outputDelta",
            {"threadId": TID, "turnId": "t", "itemId": "c", "delta": piece},
        )
    streamed = "".join(m["delta"] for m in relay.of("thread.delta"))
    assert streamed == "out [REDACTED:github_token] done\n"
    assert TOKEN not in state.items["c"].output


def config(tmp_path: Path, **features: bool) -> AgentConfig:
    (tmp_path / "w").mkdir(exist_ok=True)
    return AgentConfig.model_validate(
        {
            "relayBaseUrl": "http://127.0.0.1:9",
            "agentId": "a",
            "agentLabel": "a",
            "stateDir": str(tmp_path / "s"),
            "workspaceRoot": str(tmp_path / "w"),
            "features": features,
        }
    )


@pytest.mark.parametrize(
    ("features", "message", "reason"),
    [
        ({}, ThreadStart(request_id="r", prompt="x"), "feature-disabled"),
        (
            {"conversations": True, "codexExecWrite": True},
            ThreadResume(request_id="r", thread_id=TID, write_access=True),
            "write-on-resume-disabled",
        ),
        (
            {"conversations": True},
            ThreadResume(request_id="r", thread_id=TID, write_access=True),
            "write-mode-disabled",
        ),
    ],
    ids=["disabled", "write-on-resume", "write"],
)
async def test_conversations_refuse_what_the_config_forbids(tmp_path, features, message, reason):
    """The agent's own flags decide (R09, R14, R17), whatever the relay asked."""
    relay = Recorder()
    conversations = Conversations(config(tmp_path, **features), relay.send, redactor=Redactor())
    conversations.relay_accepts = True
    await conversations.handle(message)
    refused = await relay.wait_for(lambda m: m["type"] == "thread.refused")
    assert refused["reason"] == reason
    await conversations.stop()


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"thread.start","requestId":"r","prompt":"' + "x" * 131073 + '"}',
        '{"type":"approval.decide","requestId":"r","threadId":"'
        + TID
        + '","approvalId":"a","decision":"bogus"}',
        '{"type":"thread.read","requestId":"r","threadId":"not-a-uuid"}',
        '{"type":"thread.start","requestId":"r","prompt":"x","shell":"rm -rf /"}',
    ],
    ids=["oversized", "decision", "thread-id", "unknown-field"],
)
def test_conversation_messages_are_strict(raw):
    """Oversized, unknown or malformed requests never reach the agent's logic."""
    with pytest.raises(ProtocolError):
        parse_relay_message(raw)


async def test_timers_do_not_outlive_the_router(tmp_path):
    """Stopping cancels every approval deadline."""
    events, _, _, _, _ = router(tmp_path, approval_timeout_sec=60)
    await events.server_request(1, 1, "item/commandExecution/requestApproval", COMMAND)
    events.cancel_timers()
    await asyncio.sleep(0)
    assert not events.requests


def test_forgetting_keeps_busy_threads():
    """Only idle threads without a pending approval are let go, the least recent first."""
    threads = {}
    for n, (turn, stamp) in enumerate([(None, 3), ("t", 1), (None, 2)]):
        tid = f"{TID[:-1]}{n}"
        threads[tid] = ThreadState(
            id=tid,
            source="phone",
            cwd="/w",
            active_turn=turn,
            updated_at=datetime(2026, 1, stamp, tzinfo=UTC),
        )
    assert [s.updated_at.day for s in idle_threads(threads, 2)] == [2, 3]
    assert [s.updated_at.day for s in idle_threads(threads, 3)] == [2]


async def test_no_conversation_message_reaches_a_relay_that_does_not_speak_them(tmp_path):
    """Until the relay's welcome turns conversations on, the agent sends none of them."""
    relay = Recorder()
    conversations = Conversations(config(tmp_path), relay.send, redactor=Redactor())
    await conversations.handle(ThreadStart(request_id="r", prompt="x"))
    await conversations.announce()
    await asyncio.sleep(0.05)
    assert relay.messages == []
    await conversations.stop()
