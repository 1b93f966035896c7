"""Live conversations through a real relay on loopback (figures in docs/BENCHMARKS.md).

1. Relay overhead, agent event -> phone SSE: an agent socket (this process, speaking the
   protocol) sends ``thread.item`` events; the phone's event stream (this process too, same
   clock) stamps each one's arrival. Target p50 <= 5 ms, p99 <= 20 ms.
2. Approval answer, phone -> agent: the phone's POST until the agent socket holds the
   ``approval.decide`` (relay only), and the whole POST round trip.
3. With the real agent and the real pinned Codex CLI (app-server, offline scripted model):
   the phone's answer until it returns, which includes the agent delivering it to the
   app-server (target p50 <= 10 ms); and 20 concurrent threads on one agent, one pending
   approval each, answered at once (even ones accepted, odd ones declined), checked on disk.

Run: ``python -m bench.bench_conversations [N]`` (default 2000 events).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tests.agents import create_code, default_workspace, pair_agent, pending_request
from tests.conversations import decide, idle, pending_approval, start, threads_url
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.realcodex import API_KEY_ENV, ROOT, install_codex, write_codex_home
from websockets.sync.client import connect

LATER = "2126-01-01T00:00:00Z"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, values: list[float]) -> str:
    return (f"  {name:38} p50 {pct(values, 0.5) * 1000:6.2f} ms   p99 "
            f"{pct(values, 0.99) * 1000:6.2f} ms   n={len(values)}")  # fmt: skip


class Stream:
    """The phone's SSE stream: arrival time of each item (by seq) and each event kind."""

    def __init__(self, url: str, cookies: httpx.Cookies) -> None:
        self.items: dict[int, float] = {}
        self.resolved: dict[str, float] = {}  # approval id -> when it came back answered
        self.arrived = threading.Condition()
        self.ready = threading.Event()
        self._url, self._cookies = url, cookies
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            with (
                httpx.Client(cookies=self._cookies, timeout=httpx.Timeout(10, read=None)) as c,
                c.stream("GET", self._url) as res,
            ):
                kind = ""
                for raw in res.iter_lines():
                    self.ready.set()
                    if raw.startswith("event: "):
                        kind = raw[7:]
                    elif raw.startswith("data: ") and kind == "item":
                        now = time.perf_counter()
                        with self.arrived:
                            self.items[json.loads(raw[6:])["item"]["seq"]] = now
                            self.arrived.notify_all()
                    elif raw.startswith("data: ") and kind == "approval":
                        now = time.perf_counter()
                        approval = json.loads(raw[6:])["approval"]
                        if approval["status"] != "pending":
                            self.resolved.setdefault(approval["id"], now)
        except httpx.HTTPError:
            return

    def wait(self, seq: int, timeout: float = 10) -> None:
        """Until the item with ``seq`` arrived."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: seq in self.items, timeout):
                msg = f"item {seq} never arrived"
                raise TimeoutError(msg)


class SocketAgent:
    """An agent of this process on the relay's socket (paired through the real flow)."""

    def __init__(self, relay: RelayProcess, phone: httpx.Client, wid: str) -> None:
        code = create_code(phone, wid)
        body = {"code": code, "agentId": "bench", "label": "Bench"}
        claim = phone.post("/api/v1/agent/pair", json=body).json()
        request = pending_request(phone, wid, "bench")
        phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/approve")
        polled = phone.get(
            f"/api/v1/agent/pair/{claim['requestId']}",
            headers={"Authorization": f"Bearer {claim['pollSecret']}"},
        ).json()
        url = relay.setup.base_url.replace("http", "ws") + "/api/v1/agent/connect"
        self.ws = connect(
            url, additional_headers={"Authorization": f"Bearer {polled['agentToken']}"}
        )
        features = {"codexExec": True, "conversations": True}
        self.ws.send(json.dumps({"type": "hello", "protocol": 1, "version": "bench",
                                 "agentId": "bench", "features": features}))  # fmt: skip
        assert json.loads(self.ws.recv())["type"] == "welcome"
        self.lock = threading.Lock()
        self.decided: dict[str, float] = {}
        self.asked: dict[str, dict[str, Any]] = {}
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        """Answer the relay as an agent would: reads with nothing more, decisions as given."""
        try:
            while True:
                request = json.loads(self.ws.recv())
                received = time.perf_counter()
                reply: dict[str, Any] = {"type": "thread.reply", "requestId": request["requestId"]}
                if request["type"] == "thread.read":
                    held = [a for a in self.asked.values() if a["id"] not in self.decided]
                    reply |= {"items": [], "approvals": held, "seq": 0, "more": False}
                elif request["type"] == "approval.decide":
                    self.decided[request["approvalId"]] = received
                    answered = {**self.asked[request["approvalId"]], "status": "accepted",
                                "decision": "accept"}  # fmt: skip
                    reply["approval"] = answered
                else:
                    continue
                self.send(reply)
        except Exception:  # noqa: BLE001 - the socket closed at the end of the run
            return

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.ws.send(json.dumps(message))


def relay_overhead(count: int) -> None:
    """Parts 1 and 2, against a relay and an agent socket of this process."""
    with tempfile.TemporaryDirectory(prefix="bench-conv-") as tmp:
        setup = write_relay_config(Path(tmp) / "relay")
        relay = RelayProcess(setup, Path(tmp) / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        agent = SocketAgent(relay, phone, wid)
        tid = str(uuid.uuid4())
        thread = {"id": tid, "source": "terminal", "status": "running", "cwd": "/ws"}
        agent.send({"type": "thread.update", "thread": thread})
        stream = Stream(f"{setup.base_url}/api/v1/workspaces/{wid}/events", phone.cookies)
        stream.ready.wait(10)
        sent: dict[int, float] = {}
        try:
            for seq in range(1, count + 1):  # one at a time: latency, not queueing
                item = {"id": f"i{seq % 50}", "seq": seq, "type": "agentMessage",
                        "status": "inProgress", "text": "x" * 200}  # fmt: skip
                sent[seq] = time.perf_counter()
                agent.send({"type": "thread.item", "threadId": tid, "item": item})
                stream.wait(seq)
            overhead = [stream.items[s] - sent[s] for s in sent if s in stream.items]
            print("agent event -> phone SSE (relay + loopback):")
            print(line("thread.item -> item event", overhead))
            answers(phone, wid, tid, agent, min(500, count // 4))
        finally:
            agent.ws.close()
            phone.close()
            relay.stop()


def answers(phone: httpx.Client, wid: str, tid: str, agent: SocketAgent, count: int) -> None:
    """Part 2: the phone answers approvals the socket agent asks for."""
    to_agent, round_trip = [], []
    now = "2026-11-29T12:00:00Z"
    for n in range(count):
        approval = {"id": f"apr_{n}", "threadId": tid, "turnId": "t", "itemId": f"c{n}",
                    "kind": "command", "command": "make test", "availableDecisions": ["accept"],
                    "status": "pending", "requestedAt": now, "expiresAt": LATER}  # fmt: skip
        agent.asked[approval["id"]] = approval
        agent.send({"type": "approval.update", "approval": approval})
        wait_until(lambda a=approval: pending_approval(phone, wid, tid)["id"] == a["id"])
        begin = time.perf_counter()
        res = decide(phone, wid, tid, approval["id"], "accept")
        round_trip.append(time.perf_counter() - begin)
        assert res.status_code == 200, res.text
        to_agent.append(agent.decided[approval["id"]] - begin)
    print("phone answer -> agent (relay only):")
    print(line("POST -> approval.decide on the socket", to_agent))
    print(line("POST round trip", round_trip))


def real_codex(samples: int, threads: int) -> None:
    """Part 3: the real agent and the real Codex app-server."""
    launcher = install_codex()
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-conv-real-") as tmp, \
            tempfile.TemporaryDirectory(prefix="codex-tmp-", dir=ROOT / ".cache") as codex_tmp, \
            ModelServer(responder=scripted_reply) as model:  # fmt: skip
        base = Path(tmp)
        relay = RelayProcess(write_relay_config(base / "relay"), base / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        agent = pair_agent(
            relay, phone, wid, base / "agent",
            process_env={API_KEY_ENV: "mock-key", "TMPDIR": codex_tmp},
            features={"codexExec": True, "conversations": True},
            codex={"command": [str(launcher)],
                   "home": str(write_codex_home(base / "codex-home", model.base_url))},
            conversations={"maxThreads": 200},
        )  # fmt: skip
        workspace = base / "agent" / "workspace"
        try:
            answer_latency(phone, wid, samples)
            concurrent(phone, wid, workspace, threads)
        finally:
            agent.stop()
            phone.close()
            relay.stop()


def answer_latency(phone: httpx.Client, wid: str, samples: int) -> None:
    tid = start(phone, wid, "warm up")["thread"]["id"]
    idle(phone, wid, tid)
    stream = Stream(f"{phone.base_url}/api/v1/workspaces/{wid}/events", phone.cookies)
    stream.ready.wait(10)
    latencies, delivered = [], []
    for n in range(samples):
        res = phone.post(
            threads_url(wid, tid, "turns"), json={"prompt": f"MOCK_ESCALATE: true {n}"}
        )
        assert res.status_code == 201, res.text
        approval = pending_approval(phone, wid, tid)
        begin = time.perf_counter()
        assert decide(phone, wid, tid, approval["id"], "decline").status_code == 200
        latencies.append(time.perf_counter() - begin)
        wait_until(lambda a=approval: a["id"] in stream.resolved)
        delivered.append(stream.resolved[approval["id"]] - begin)
        idle(phone, wid, tid)
    print("phone answer -> app-server (real agent, real codex app-server):")
    print(line("POST -> agent says Codex has it (SSE)", delivered))
    print(line("POST round trip (audit, state durable)", latencies))


def concurrent(phone: httpx.Client, wid: str, workspace: Path, count: int) -> None:
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        prompts = [f"MOCK_ESCALATE: echo {n} >> concurrent-{n}.txt" for n in range(count)]
        started = [r["thread"]["id"] for r in pool.map(lambda p: start(phone, wid, p), prompts)]
        pending = list(pool.map(lambda t: pending_approval(phone, wid, t, timeout=120), started))
        asked = time.perf_counter()
        decisions = ["accept" if n % 2 == 0 else "decline" for n in range(count)]
        codes = list(pool.map(lambda a: decide(phone, wid, a[0], a[1]["id"], a[2]).status_code,
                              zip(started, pending, decisions, strict=True)))  # fmt: skip
        for tid in started:
            idle(phone, wid, tid, timeout=120)
    done = time.perf_counter()
    ran = [n for n in range(count) if (workspace / f"concurrent-{n}.txt").exists()]
    right = all((workspace / f"concurrent-{n}.txt").read_text() == f"{n}\n" for n in ran)
    correct = codes == [200] * count and ran == list(range(0, count, 2)) and right
    print(f"{count} concurrent threads on one agent, one pending approval each:")
    print(f"  all asked after {asked - began:.1f} s; all answered and finished "
          f"{done - asked:.1f} s later; every answer applied correctly: {correct}")  # fmt: skip
    assert correct, (codes, ran)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 2000
    relay_overhead(count)
    real_codex(samples=30, threads=20)


if __name__ == "__main__":
    main()
