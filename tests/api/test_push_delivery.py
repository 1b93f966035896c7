"""Who hears what: every notification kind reaches exactly the devices it should (a role x
workspace table) and no other, and no notification carries content: canaries planted in
prompts, outputs, commands, file names, labels and host names never reach the push
service or the device. Real loopback push service stand-in; a scripted agent socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import ClientFactory
from tests.api.fakeagent import connected
from tests.api.push_helpers import notify_in_loop, push_config
from tests.api.test_pairing_api import _hello
from tests.fakes.push_service import Device, PushServiceStandIn
from tests.helpers import wait_until
from tests.softauthn import Phone, join_by_invite

SUBS = "/api/v1/me/push-subscriptions"
CANARY = "CANARY-7f3a"


@dataclass
class World:
    """Phones by name, each with its stand-in device; two workspaces."""

    client: TestClient
    stand_in: PushServiceStandIn
    wid: str
    other: str
    phones: dict[str, Phone] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    seen: int = 0

    def add(self, name: str, phone: Phone, kinds: list[str] | None = None) -> None:
        device = self.stand_in.new_device()
        body: dict[str, Any] = {"subscription": device.subscription_json()}
        if kinds is not None:
            body["kinds"] = kinds
        assert phone.post(SUBS, json=body).status_code == 201
        self.phones[name], self.devices[name] = phone, device
        self.users[name] = phone.get("/api/v1/me").json()["user"]["id"]

    def delivered(self) -> list[tuple[str, dict[str, Any]]]:
        """(device name, payload) of every delivery since the last call, once the sender
        has settled everything it was given (nothing is still on its way)."""
        sender = self.client.app.state.services.push
        stats = sender.stats
        wait_until(
            lambda: (
                sender.pending() == 0
                and stats.queued == stats.sent + stats.failed + stats.gone + stats.skipped
            ),
            timeout=10,
            what="the push queue to drain",
        )
        by_token = {d.token: name for name, d in self.devices.items()}
        new = self.stand_in.received()[self.seen :]
        self.seen += len(new)
        return [(by_token[d.token], d.payload) for d in new]


@contextmanager
def _world(
    make_client: ClientFactory, stand_in: PushServiceStandIn, **push: Any
) -> Iterator[World]:
    with make_client(**push_config(**push)) as client:
        owner = Phone(client).bootstrap(client.setup.token)  # type: ignore[attr-defined]
        wid = owner.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        other = owner.post("/api/v1/workspaces", json={"name": "Elsewhere"}).json()
        world = World(client, stand_in, wid, other["workspace"]["id"])
        world.add("owner", owner)
        world.add("admin", join_by_invite(owner, wid, "admin", "Ada"))
        member = join_by_invite(owner, wid, "member", "Mo")
        world.add("member", member)
        second = Phone(client, authenticator=member.authenticator)
        assert second.login().status_code == 200
        world.add("member-2", second, kinds=["failed"])
        world.add("viewer", join_by_invite(owner, wid, "viewer", "Vi"))
        world.add("outsider", join_by_invite(owner, world.other, "admin", "Out"))
        yield world


def _claim(world: World, wid: str, **extra: str) -> dict[str, Any]:
    code = world.phones["owner"].post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()
    body = {"code": code["code"], "agentId": "devbox", "label": "Dev box", **extra}
    world.client.cookies.clear()
    res = world.client.post("/api/v1/agent/pair", json=body)
    assert res.status_code == 202, res.text
    return res.json()


def _agent_token(world: World, claim: dict[str, Any]) -> str:
    owner = world.phones["owner"]
    path = f"/api/v1/workspaces/{world.wid}/pair-requests/{claim['requestId']}/approve"
    assert owner.post(path).status_code == 200
    res = world.client.get(
        f"/api/v1/agent/pair/{claim['requestId']}",
        headers={"Authorization": f"Bearer {claim['pollSecret']}"},
    )
    token: str = res.json()["agentToken"]
    return token


def _task(world: World, ws: Any, who: str, **body: Any) -> str:
    body = body or {"type": "run_action", "actionId": "tests"}
    res = world.phones[who].post(
        f"/api/v1/workspaces/{world.wid}/tasks", json={"agentId": "devbox", **body}
    )
    assert res.status_code == 201, res.text
    assert ws.receive_json()["type"] == "task"
    return str(res.json()["task"]["id"])


def _report(ws: Any, message: dict[str, Any]) -> None:
    """Send an agent report and wait until the relay has handled it (it answers a token
    renewal only after everything sent before)."""
    ws.send_json(message)
    ws.send_json({"type": "token.renew"})
    while ws.receive_json()["type"] != "token.renewed":
        pass


def _names(found: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return sorted(name for name, _ in found)


def test_each_kind_reaches_exactly_the_right_devices(make_client, stand_in):
    """pair-request: admins and owners of that workspace; finished/failed: the task's
    creator, on the devices that chose the kind, not when they cancelled it themselves;
    approval-needed: the addressed members (viewers and outsiders never); new-device:
    the person's other devices. The viewer and the outsider hear nothing of workspace A."""
    with _world(make_client, stand_in) as world:
        wid, users = world.wid, world.users
        claim = _claim(world, wid)
        found = world.delivered()
        assert _names(found) == ["admin", "owner"]
        assert {p["kind"] for _, p in found} == {"pair-request"}
        assert all(p == {"kind": "pair-request", "ws": wid, "id": claim["requestId"]}
                   for _, p in found)  # fmt: skip

        _claim(world, world.other, agentId="otherbox")
        assert _names(world.delivered()) == ["outsider", "owner"]

        token = _agent_token(world, claim)
        world.delivered()  # approving is no notification
        with world.client.websocket_connect(
            "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ws.send_json(_hello("devbox"))
            assert ws.receive_json()["type"] == "welcome"

            done = _task(world, ws, "member")
            _report(ws, {"type": "task.finished", "taskId": done, "status": "completed"})
            found = world.delivered()
            assert found == [("member", {"kind": "finished", "ws": wid, "id": done})]

            failed = _task(world, ws, "member")
            _report(ws, {"type": "task.finished", "taskId": failed, "status": "failed"})
            assert _names(world.delivered()) == ["member", "member-2"]

            own = _task(world, ws, "admin")
            assert (
                world.phones["admin"]
                .post(f"/api/v1/workspaces/{wid}/tasks/{own}/cancel")
                .status_code
                == 200
            )
            assert ws.receive_json()["type"] == "task.cancel"
            _report(ws, {"type": "task.finished", "taskId": own, "status": "cancelled"})
            assert world.delivered() == []

            theirs = _task(world, ws, "member")
            world.phones["admin"].post(f"/api/v1/workspaces/{wid}/tasks/{theirs}/cancel")
            assert ws.receive_json()["type"] == "task.cancel"
            _report(ws, {"type": "task.finished", "taskId": theirs, "status": "cancelled"})
            assert _names(world.delivered()) == ["member", "member-2"]

        addressed = [users["member"], users["viewer"], users["outsider"]]
        notify_in_loop(world.client, "approval-needed", wid, "thr-1", users=addressed)
        assert world.delivered() == [
            ("member", {"kind": "approval-needed", "ws": wid, "id": "thr-1"})
        ]
        notify_in_loop(world.client, "approval-needed", wid, "thr-2")
        assert _names(world.delivered()) == ["admin", "member", "owner"]

        assert world.phones["member"].register("Second key").status_code == 201
        assert world.delivered() == [("member-2", {"kind": "new-device"})]

        assert stand_in.errors == []
        assert not any(d.token == world.devices["viewer"].token for d in stand_in.received())


def test_no_notification_carries_content(make_client, stand_in):
    """Canaries in a prompt, the agent's output, commands, file names, its label and host
    name, and the task's cwd appear in no decrypted payload, ciphertext or header; every
    payload has the same length and only kind, ws and id."""
    with _world(make_client, stand_in) as world:
        claim = _claim(
            world, world.wid, label=f"{CANARY} box", hostname=f"{CANARY}.internal",
            workspaceRootName=f"{CANARY}-repo",
        )  # fmt: skip
        token = _agent_token(world, claim)
        with world.client.websocket_connect(
            "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ws.send_json(_hello("devbox", hostname=f"{CANARY}.internal"))
            assert ws.receive_json()["type"] == "welcome"
            task_id = _task(
                world, ws, "member", type="codex_exec", prompt=f"fix {CANARY} now",
                cwd=f"src/{CANARY}",
            )  # fmt: skip
            for seq, event in enumerate(
                (
                    {"kind": "command", "command": f"rm -rf {CANARY}", "text": CANARY},
                    {"kind": "file_change", "changes": [{"path": f"{CANARY}.py", "kind": "add"}]},
                    {"kind": "output", "text": f"{CANARY} output"},
                ),
                start=1,
            ):
                ws.send_json(
                    {"type": "task.progress", "taskId": task_id, "seq": seq, "event": event}
                )
            _report(
                ws,
                {
                    "type": "task.finished", "taskId": task_id, "status": "failed",
                    "finalMessage": CANARY, "outputTail": CANARY, "error": CANARY,
                    "diffText": f"+++ b/{CANARY}.py",
                },
            )  # fmt: skip
            found = world.delivered()
        kinds = sorted(p["kind"] for _, p in found)
        assert kinds == ["failed", "failed", "pair-request", "pair-request"]
        for delivery in stand_in.received():
            assert set(delivery.payload) <= {"kind", "ws", "id"}
            assert CANARY.encode() not in delivery.plaintext
            assert CANARY.encode() not in delivery.body
            assert CANARY not in repr(delivery.headers)
            assert len(delivery.plaintext) == len(stand_in.received()[0].plaintext)
        assert stand_in.errors == []


class _PhoneAsClient:
    """A signed-in phone with the TestClient's socket, for the scripted agent's pairing."""

    def __init__(self, phone: Phone, client: TestClient) -> None:
        self.phone, self.client = phone, client

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.phone.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.phone.post(path, **kwargs)

    def websocket_connect(self, path: str, **kwargs: Any) -> Any:
        self.client.cookies.clear()
        return self.client.websocket_connect(path, **kwargs)


def test_conversations_notify_who_may_answer_and_who_asked(make_client, stand_in):
    """Codex asking in a member's thread: that member and the workspace's admins and owners
    hear approval-needed (not the member's other threads' readers, viewers or outsiders);
    the turn ending tells its starter finished (an interrupted turn tells no one). Within
    the coalescing window the later notification replaces the earlier one (same thread)."""
    with _world(make_client, stand_in, coalesceSec=0.2) as world:
        wid, member = world.wid, world.phones["member"]
        with connected(_PhoneAsClient(world.phones["owner"], world.client), wid) as agent:
            world.delivered()  # pairing's own notification
            res = member.post(
                f"/api/v1/workspaces/{wid}/threads", json={"agentId": "devbox", "prompt": "hi"}
            )
            assert res.status_code == 201, res.text
            tid = res.json()["thread"]["id"]
            agent.ask_approval(tid)
            agent.settle()
            found = world.delivered()
            assert _names(found) == ["admin", "member", "owner"]
            assert {p["kind"] for _, p in found} == {"approval-needed"}
            assert all(p == {"kind": "approval-needed", "ws": wid, "id": tid} for _, p in found)
            before = len(stand_in.received())
            agent.end_turn(tid)
            agent.settle()
            wait_until(lambda: len(stand_in.received()) > before, what="the held notification")
            assert world.delivered() == [("member", {"kind": "finished", "ws": wid, "id": tid})]
            turn = member.post(
                f"/api/v1/workspaces/{wid}/threads/{tid}/turns", json={"prompt": "more"}
            )
            assert turn.status_code == 201, turn.text
            stats = world.client.app.state.services.push.stats  # type: ignore[attr-defined]
            counts = (stats.queued, stats.coalesced)
            agent.end_turn(tid, status="interrupted")
            agent.settle()  # notify() runs while the report is handled: nothing was given
            assert (stats.queued, stats.coalesced) == counts
            assert world.delivered() == []
