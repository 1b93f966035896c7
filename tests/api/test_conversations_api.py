"""Live conversations in-process, with a scripted agent on the relay's socket (API.md
"Conversations"; R09, R10, R17): routes and shapes, the seq rule for late readers, the
error codes, the first answer winning, timeouts, and a role x action table."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from codexrelay.relay.storage.records import Role
from tests.api.conftest import login, make_user, services_of, sign_in_as
from tests.api.fakeagent import FakeAgent, connected
from tests.api.test_pairing_api import _wid
from tests.helpers import wait_until

SECRET = "cnryprompt7c1f0e9d"  # content that must never reach state.json


def _threads(client, wid):
    return f"/api/v1/workspaces/{wid}/threads"


def _start(client, wid, prompt=f"Look around {SECRET}", **body):
    res = client.post(_threads(client, wid), json={"agentId": "devbox", "prompt": prompt, **body})
    assert res.status_code == 201, res.text
    return res.json()


def _events(client, wid, kind):
    found = services_of(client).events.recent(wid)
    return [json.loads(e.data) for e in found if e.type == kind]


@pytest.fixture
def owner(make_client):
    with make_client(features={"codexExecWrite": True}, agentRequestTimeoutSec=2) as client:
        login(client)
        yield client


def test_start_stream_and_read(owner):
    """A thread starts with its first turn; streamed items reach the phone's event stream and
    the thread read; nothing typed or streamed reaches the relay's disk (R10)."""
    wid = _wid(owner)
    with connected(owner, wid) as agent:
        started = _start(owner, wid, cwd="src")
        thread, turn = started["thread"], started["turn"]
        assert thread["source"] == "phone"
        assert thread["createdBy"] == owner.get("/api/v1/me").json()["user"]["id"]
        assert (thread["status"], thread["cwd"], thread["writeAccess"]) == (
            "running",
            "/ws/src",
            False,
        )
        assert (turn["status"], turn["threadId"]) == ("inProgress", thread["id"])
        tid = thread["id"]
        sent = agent.asked("thread.start")[0]
        assert (sent["prompt"], sent["cwd"], sent["writeAccess"]) == (
            f"Look around {SECRET}",
            "src",
            False,
        )
        agent.item(tid, id="msg_1", type="agentMessage", status="inProgress", text="")
        agent.delta(tid, "msg_1", f"Hello {SECRET}\n")
        agent.delta(tid, "msg_1", "world\n")
        output = f"out {SECRET}\n"
        agent.item(tid, id="cmd_1", type="commandExecution", status="completed",
                   command="ls", cwd="/ws", output=output, exitCode=0, durationMs=5)  # fmt: skip
        agent.end_turn(tid)
        agent.settle()
        read = owner.get(f"{_threads(owner, wid)}/{tid}").json()
        by_id = {i["id"]: i for i in read["items"]}
        assert by_id["msg_1"]["text"] == f"Hello {SECRET}\nworld\n"
        assert by_id["cmd_1"]["output"] == f"out {SECRET}\n"
        assert [i["seq"] for i in read["items"]] == sorted(i["seq"] for i in read["items"])
        assert read["seq"] == agent.seq[tid] == 5
        assert read["thread"]["status"] == "idle"
        later = owner.get(f"{_threads(owner, wid)}/{tid}", params={"after": 3}).json()
        assert {i["id"] for i in later["items"]} == {"msg_1", "cmd_1"}
        assert not agent.asked("thread.read")  # the relay followed it from the start
        deltas = _events(owner, wid, "item-delta")
        assert [d["delta"] for d in deltas] == [f"Hello {SECRET}\n", "world\n"]
        assert {e["item"]["id"] for e in _events(owner, wid, "item")} == {
            by_id["msg_1"]["id"],
            "cmd_1",
            read["items"][0]["id"],
        }
        ended = [
            e
            for e in _events(owner, wid, "thread")
            if e.get("turn", {}).get("status") == "completed"
        ]
        assert ended
        assert ended[-1]["thread"]["status"] == "idle"
        listed = owner.get(_threads(owner, wid), params={"agentId": "devbox"}).json()["threads"]
        assert [t["id"] for t in listed] == [tid]
    state = owner.setup.stored_text()
    assert tid in state
    assert SECRET not in state
    assert "/ws/src" not in state


def test_late_reader_gets_the_snapshot_and_the_live_stream_without_gap(owner):
    """A thread the relay never followed (a terminal's, after a reconnect) is read from the
    agent; live events that race the read merge by seq: nothing missing, nothing twice."""
    wid = _wid(owner)
    with connected(owner, wid) as agent:
        info = agent.add_thread(status="running", activeTurnId="turn_t")
        tid = info["id"]
        for n in range(1, 4):
            agent.items.setdefault(tid, {})[f"i{n}"] = {
                "id": f"i{n}", "turnId": "turn_t", "seq": agent.next_seq(tid),
                "type": "agentMessage", "status": "completed", "text": f"old {n}",
            }  # fmt: skip
        agent.update(tid)  # the relay learns the thread, not its items
        agent.settle()

        def race(thread_id: str) -> None:  # live changes sent while the read is answered
            agent.item(thread_id, id="i3", type="agentMessage", status="inProgress", text="new 3")
            agent.item(thread_id, id="i4", type="agentMessage", status="inProgress", text="")
            agent.delta(thread_id, "i4", "streamed\n")

        agent.before_read = race
        read = owner.get(f"{_threads(owner, wid)}/{tid}").json()
        agent.settle()
        again = owner.get(f"{_threads(owner, wid)}/{tid}").json()
    assert len(agent.asked("thread.read")) == 1
    for snapshot in (read, again):
        by_id = {i["id"]: i for i in snapshot["items"]}
        assert sorted(by_id) == ["i1", "i2", "i3", "i4"]
        assert len(snapshot["items"]) == 4
        assert (by_id["i3"]["text"], by_id["i4"]["text"]) == ("new 3", "streamed\n")
        assert snapshot["seq"] == 6


def test_conversation_errors_have_their_codes(owner, make_client):
    """404 unknown thread and another workspace's thread, 409 turn-running and
    no-running-turn, 422 decision-not-offered, 409 approval-resolved, 413 oversized,
    409 agent-offline, 504 when the agent does not answer; none changes anything."""
    wid = _wid(owner)
    other = owner.post("/api/v1/workspaces", json={"name": "Other"}).json()["workspace"]["id"]
    base = _threads(owner, wid)
    with connected(owner, wid) as agent:
        tid = _start(owner, wid)["thread"]["id"]
        assert owner.get(f"{base}/{uuid.uuid4()}").status_code == 404
        assert owner.get(f"{_threads(owner, other)}/{tid}").json()["error"] == "not-found"
        res = owner.post(f"{base}/{tid}/turns", json={"prompt": "again"})
        assert (res.status_code, res.json()["error"]) == (409, "turn-running")
        approval = agent.ask_approval(tid, decisions=["accept", "decline"])
        agent.settle()
        url = f"{base}/{tid}/approvals/{approval['id']}"
        res = owner.post(url, json={"decision": "acceptForSession"})
        assert (res.status_code, res.json()["error"]) == (422, "decision-not-offered")
        assert not agent.asked("approval.decide")
        res = owner.post(url, json={"decision": "maybe"})
        assert (res.status_code, res.json()["error"]) == (422, "invalid-request")
        assert (
            owner.post(url, json={"decision": "decline"}).json()["approval"]["status"] == "declined"
        )
        res = owner.post(url, json={"decision": "accept"})
        assert (res.status_code, res.json()["error"]) == (409, "approval-resolved")
        assert len(agent.asked("approval.decide")) == 1
        huge = "x" * (services_of(owner).config.max_prompt_bytes + 1)
        res = owner.post(f"{base}/{tid}/steer", json={"prompt": huge})
        assert (res.status_code, res.json()["error"]) == (413, "payload-too-large")
        agent.end_turn(tid)
        agent.settle()
        res = owner.post(f"{base}/{tid}/steer", json={"prompt": "faster"})
        assert (res.status_code, res.json()["error"]) == (409, "no-running-turn")
        agent.hold.add("thread.turn")
        res = owner.post(f"{base}/{tid}/turns", json={"prompt": "slow"})
        assert (res.status_code, res.json()["error"]) == (504, "agent-timeout")
    res = owner.post(f"{base}/{tid}/turns", json={"prompt": "nobody there"})
    assert (res.status_code, res.json()["error"]) == (409, "agent-offline")
    assert len(agent.asked("thread.steer")) == 1


def test_first_answer_wins(owner):
    """Two phones answer one approval: the first valid answer runs, the second gets 409
    approval-resolved and the event stream shows the approval resolved, by whom."""
    wid = _wid(owner)
    with connected(owner, wid) as agent:
        tid = _start(owner, wid)["thread"]["id"]
        approval = agent.ask_approval(tid)
        agent.settle()
        url = f"{_threads(owner, wid)}/{tid}/approvals/{approval['id']}"
        pending = owner.get(f"{_threads(owner, wid)}/{tid}").json()["approvals"]
        assert [(a["id"], a["status"], a["command"]) for a in pending] == [
            (approval["id"], "pending", "pytest -x")
        ]
        admin = make_user(owner, wid, Role.ADMIN)
        agent.hold.add("approval.decide")  # the first answer is on its way...
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(owner.post, url, json={"decision": "accept"})
            wait_until(lambda: agent.asked("approval.decide"), what="the first answer")
            login_user = owner.cookies.get("codexrelay-session")
            sign_in_as(owner, admin)
            second = owner.post(url, json={"decision": "decline"})
            owner.cookies.set("codexrelay-session", login_user)
            assert (second.status_code, second.json()["error"]) == (409, "approval-resolved")
            agent.answer(agent.asked("approval.decide")[0])  # ...and lands
            assert first.result().status_code == 200, first.result().text
        accepted = first.result().json()["approval"]
        assert (accepted["status"], accepted["decision"]) == ("accepted", "accept")
        sign_in_as(owner, admin)
        third = owner.post(url, json={"decision": "decline"})
        assert (third.status_code, third.json()["error"]) == (409, "approval-resolved")
        agent.settle()
        seen = [e["approval"] for e in _events(owner, wid, "approval")]
        assert seen[-1]["status"] == "accepted"
        assert seen[-1]["decidedBy"] == accepted["decidedBy"] != admin
    assert len(agent.asked("approval.decide")) == 1


def test_an_agent_that_goes_away_fails_its_requests_at_once(owner):
    """A request in flight when the agent's socket closes ends with 409 agent-offline, not
    at its deadline."""
    wid = _wid(owner)
    with ThreadPoolExecutor(1) as pool:
        with connected(owner, wid) as agent:
            agent.hold.add("thread.start")
            pending = pool.submit(
                owner.post, _threads(owner, wid), json={"agentId": "devbox", "prompt": "x"}
            )
            wait_until(lambda: agent.asked("thread.start"), what="the request")
        res = pending.result(timeout=10)
    assert (res.status_code, res.json()["error"]) == (409, "agent-offline")


def test_models_and_take_over(owner):
    """The agent's model list reaches the phone; a terminal thread is listed, taken over
    (the taker becomes its owner), and driven."""
    wid = _wid(owner)
    me = owner.get("/api/v1/me").json()["user"]["id"]
    with connected(owner, wid) as agent:
        models = owner.get(f"/api/v1/workspaces/{wid}/agents/devbox/models").json()["models"]
        assert models[0]["id"] == "gpt-5.5"
        assert models[0]["efforts"] == ["low", "medium", "high"]
        terminal = agent.add_thread()
        listed = owner.get(_threads(owner, wid), params={"agentId": "devbox"}).json()["threads"]
        assert [(t["id"], t["source"], t["createdBy"]) for t in listed] == [
            (terminal["id"], "terminal", None)
        ]
        res = owner.post(
            f"{_threads(owner, wid)}/{terminal['id']}/resume", json={"agentId": "devbox"}
        )
        assert res.status_code == 200, res.text
        assert (res.json()["thread"]["takenOverBy"], res.json()["thread"]["status"]) == (me, "idle")
        res = owner.post(f"{_threads(owner, wid)}/{terminal['id']}/turns", json={"prompt": "go on"})
        assert res.status_code == 201, res.text
        assert res.json()["turn"]["startedBy"] == me


# ---- who may do what: viewer, member (the thread's owner), another member, admin, and an
# admin of another workspace, for every conversation action -------------------------------

ACTIONS = ("list", "read", "start", "start-write", "turn", "steer", "interrupt", "accept",
           "decline", "resume")  # fmt: skip
EXPECTED = {  # action -> the callers the relay lets through to the agent
    "list": {"viewer", "owner-member", "other-member", "admin"},
    "read": {"viewer", "owner-member", "other-member", "admin"},
    "start": {"owner-member", "other-member", "admin"},
    "start-write": {"admin"},
    "turn": {"owner-member", "admin"},
    "steer": {"owner-member", "admin"},
    "interrupt": {"owner-member", "admin"},
    "accept": {"owner-member", "admin"},
    "decline": {"owner-member", "admin"},
    "resume": {"owner-member", "other-member", "admin"},
}


def _act(client, wid, agent: FakeAgent, action: str, tid: str) -> tuple[int, str | None]:
    """Do ``action`` on the owner-member's thread ``tid``; the status and the request type
    the agent received (None: the relay refused before asking the agent)."""
    base = _threads(client, wid)
    before = len(agent.requests)
    if action in {"accept", "decline"}:
        approval = agent.ask_approval(tid)
        agent.settle()
        res = client.post(f"{base}/{tid}/approvals/{approval['id']}", json={"decision": action})
    elif action == "list":
        res = client.get(base)
    elif action == "read":
        res = client.get(f"{base}/{tid}")
    elif action in {"start", "start-write"}:
        body = {"agentId": "devbox", "prompt": "x", "writeAccess": action == "start-write"}
        res = client.post(base, json=body)
    elif action == "resume":
        res = client.post(f"{base}/{agent.add_thread()['id']}/resume", json={"agentId": "devbox"})
    elif action == "interrupt":
        res = client.post(f"{base}/{tid}/interrupt")
    else:
        if action == "turn":
            agent.end_turn(tid)
            agent.settle()
        res = client.post(
            f"{base}/{tid}/{'turns' if action == 'turn' else 'steer'}", json={"prompt": "x"}
        )
    agent.settle()
    asked = agent.requests[before:]
    return res.status_code, asked[0]["type"] if asked else None


@pytest.mark.parametrize("action", ACTIONS)
def test_role_by_action_table(make_client, action):
    """Each caller is let through, or refused with 403 (404 for another workspace) before
    anything reaches the agent; reads pass without asking the agent."""
    with make_client(features={"codexExecWrite": True}) as client:
        login(client)
        wid = _wid(client)
        other_ws = client.post("/api/v1/workspaces", json={"name": "Elsewhere"}).json()[
            "workspace"
        ]["id"]
        users = {
            "viewer": make_user(client, wid, Role.VIEWER),
            "owner-member": make_user(client, wid, Role.MEMBER),
            "other-member": make_user(client, wid, Role.MEMBER),
            "admin": make_user(client, wid, Role.ADMIN),
            "outsider": make_user(client, other_ws, Role.ADMIN),
        }
        with connected(client, wid, write=True) as agent:
            sign_in_as(client, users["owner-member"])
            tid = _start(client, wid)["thread"]["id"]
            agent.settle()
            for caller, user_id in users.items():
                sign_in_as(client, user_id)
                if agent.threads[tid].get("activeTurnId") is None:
                    agent._start_turn(tid)  # each caller finds the turn running
                    agent.settle()
                status, asked = _act(client, wid, agent, action, tid)
                allowed = caller in EXPECTED[action]
                if not allowed:
                    assert status == (404 if caller == "outsider" else 403), (caller, status)
                    assert asked is None, (caller, asked)
                else:
                    assert status < 400, (caller, action, status)


def test_answer_counts_and_shapes_follow_the_records(owner):
    """An approval expiring on the agent is shown expired; one answered in the terminal is
    cancelled with resolvedElsewhere; the thread counts its pending approvals."""
    wid = _wid(owner)
    with connected(owner, wid) as agent:
        tid = _start(owner, wid)["thread"]["id"]
        first = agent.ask_approval(tid)
        change = {"path": "/ws/a.txt", "kind": "add", "diff": "hi\n"}
        second = agent.ask_approval(tid, kind="fileChange", changes=[change])
        agent.settle()
        thread = owner.get(f"{_threads(owner, wid)}/{tid}").json()
        assert thread["thread"]["pendingApprovals"] == 2
        assert thread["approvals"][1]["changes"] == [
            {"path": "/ws/a.txt", "kind": "add", "diff": "hi\n"}
        ]
        first.update(status="expired", decision="decline", decidedAt="2026-11-29T12:10:00Z")
        second.update(status="answeredElsewhere", decidedAt="2026-11-29T12:10:00Z")
        agent.send({"type": "approval.update", "approval": first})
        agent.send({"type": "approval.update", "approval": second})
        agent.settle()
        shown = {a["id"]: a for a in owner.get(f"{_threads(owner, wid)}/{tid}").json()["approvals"]}
        assert (shown[first["id"]]["status"], shown[first["id"]]["decision"]) == (
            "expired",
            "decline",
        )
        assert (shown[second["id"]]["status"], shown[second["id"]]["resolvedElsewhere"]) == (
            "cancelled",
            True,
        )
        first.update(status="pending")  # a stale replay never reopens it
        agent.send({"type": "approval.update", "approval": first})
        agent.settle()
        again = owner.get(f"{_threads(owner, wid)}/{tid}").json()
        assert again["thread"]["pendingApprovals"] == 0


def test_reconnect_reads_busy_threads_again(owner):
    """After the agent's link drops, the relay reads its busy threads again on reconnect;
    an approval the agent no longer holds (it restarted) is shown cancelled."""
    wid = _wid(owner)
    with connected(owner, wid) as agent:
        tid = _start(owner, wid)["thread"]["id"]
        approval = agent.ask_approval(tid)
        agent.settle()
        state = dict(agent.threads[tid])
    url = f"{_threads(owner, wid)}/{tid}"
    assert owner.get(url).json()["thread"]["agentOnline"] is False
    with connected(owner, wid, token=agent.token) as restarted:
        restarted.threads[tid] = {**state, "status": "idle"}
        restarted.threads[tid].pop("activeTurnId", None)
        wait_until(lambda: restarted.asked("thread.read"), what="a read after reconnecting")
        wait_until(
            lambda: owner.get(url).json()["approvals"][0]["status"] == "cancelled",
            what="the stale approval cancelled",
        )
        assert owner.get(url).json()["thread"]["agentOnline"] is True
    assert approval["id"] not in restarted.approvals
