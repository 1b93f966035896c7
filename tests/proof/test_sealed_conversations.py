"""Sealed conversations (TRUST.md §4.7, §4.8, §4.13, §10 items 5 and 10): in a protected
workspace whose policy says ``content: sealed``, the relay carries a live Codex thread it
cannot read.

The real relay app (behind the attack hooks of ``tests/proof/hostile.py``, so it can also
act as a hostile relay) sits behind a capturing TCP proxy; the phones and a real agent
process (the pinned Codex CLI over ``codex app-server``, offline against the scripted
loopback model) talk only through it. Canaries in the prompt, the reply, the reasoning, the
command output, the approval request and the diff never appear in any byte the relay
receives or sends, its log or its data dir, while a viewer's device, reading with the
Python reference reader, decrypts them all. A flipped bit is refused on both sides, and
plaintext input is refused by the relay (409) and by the agent (a relay that downgrades).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.runners.appserver.supervisor import SOCKET_NAME
from codexrelay.agent.trust import TRUST_FILE
from codexrelay.e2e.envelope import EnvelopeError
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.sealedthreads import ThreadView, read_thread
from codexrelay.e2e.wire import b64u, b64u_decode
from tests import sealkit, sealthreads
from tests.agents import AgentProcess, pair_pinned, write_agent_config
from tests.conversations import idle, read, threads_url
from tests.fakes.capture_proxy import CaptureProxy
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import wait_until
from tests.proof.hostile import HostileRelay
from tests.proof.test_leak_canaries import _data_files, _hits, canary, fragments
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)
from tests.softauthn import Phone, join_by_invite
from tests.trustkit import Book, TrustedPhone, signed_turn, signed_turn_statement, turn_input

pytestmark = [pytest.mark.realcodex, pytest.mark.timeout(420)]

AGENT = "conv-01"
KINDS = ("prompt", "reasoning", "output", "approval", "diff")


@dataclass
class World:
    relay: HostileRelay
    proxy: CaptureProxy
    owner: TrustedPhone
    viewer: TrustedPhone
    book: Book
    agent: AgentProcess
    dir: Path
    model: ModelServer
    log_path: Path
    c: dict[str, str]
    threads: dict[str, str] = field(default_factory=dict)

    @property
    def ws(self) -> str:
        return self.book.ws

    def view(self) -> Any:
        return sealkit.verified_view(self.owner, self.book)

    def audit(self) -> list[dict[str, Any]]:
        lines = (self.dir / "state" / AUDIT_FILE).read_bytes().splitlines()
        return [json.loads(line) for line in lines]

    def prompts(self) -> list[str]:
        return [text for request in self.model.requests for text in request.user_texts]

    def start(self, prompt: str) -> str:
        body = sealthreads.turn_body(self.owner, self.book, self.view(), AGENT, "new", None, prompt)
        res = self.owner.phone.post(f"/api/v1/workspaces/{self.ws}/sealed-threads", json=body)
        assert res.status_code == 201, res.text
        return str(res.json()["thread"]["id"])

    def turn(self, tid: str, prompt: str) -> Any:
        body = sealthreads.turn_body(
            self.owner, self.book, self.view(), AGENT, "start", tid, prompt
        )
        return self.owner.phone.post(threads_url(self.ws, tid, "sealed-turns"), json=body)

    def shown(self, tid: str, reader: TrustedPhone | None = None) -> ThreadView:
        return sealthreads.read(reader or self.viewer, self.view(), AGENT, tid)

    def pending(self, tid: str) -> dict[str, Any]:
        """The pending approval as the viewer's device decrypts it (the relay's is bare)."""

        def find() -> dict[str, Any] | None:
            bare = list(read(self.owner.phone, self.ws, tid)["approvals"])
            waiting = [a for a in bare if a["status"] == "pending"]
            if not waiting:
                return None
            assert all(a.get("command") is None and a.get("request") is None for a in bare)
            return self.shown(tid).approvals.get(waiting[0]["id"])

        found: dict[str, Any] = wait_until(find, timeout=60, what="a pending sealed approval")
        return found

    def accept(self, tid: str, approval: dict[str, Any]) -> Any:
        body = sealthreads.decision_body(
            self.owner, self.book, self.view(), AGENT, approval, "accept"
        )
        url = threads_url(self.ws, tid, "approvals", approval["id"], "sealed")
        return self.owner.phone.post(url, json=body)


def _online(owner: TrustedPhone, wid: str) -> bool:
    agents = owner.phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
    return any(a["agentId"] == AGENT and a["online"] and a.get("trust") for a in agents)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    directory = Path(tmp_path_factory.mktemp("sealed-conv"))
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    c = {k: canary(k) for k in (*KINDS, "control")}
    # The relay runs in this process: its log (debug level) goes to a file searched below.
    log_path = directory / "relay.log"
    handler = logging.FileHandler(log_path)
    handler.setLevel(logging.DEBUG)
    relay_log = logging.getLogger("codexrelay")
    relay_log.addHandler(handler)
    level = relay_log.level
    relay_log.setLevel(logging.DEBUG)
    with ModelServer(responder=scripted_reply) as model:
        relay = HostileRelay(directory / "relay").start()
        proxy = CaptureProxy(relay.setup.port).start()
        # Every byte the phones send and receive passes the proxy.
        http = httpx.Client(base_url=proxy.url, headers={"Origin": relay.setup.origin}, timeout=15)
        agent = None
        try:
            owner = TrustedPhone.enroll(Phone(http).bootstrap(relay.setup.token), "localhost")
            wid = owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
            policy = default_policy().model_dump(by_alias=True) | {"content": "sealed"}
            book, _ = owner.genesis(wid, policy)
            viewer_phone = join_by_invite(owner.phone, wid, "viewer", "Vic")
            me = viewer_phone.get("/api/v1/me").json()["user"]
            viewer = TrustedPhone(viewer_phone, me["id"], me["name"], "localhost")
            owner.add_member(book, viewer, "viewer")
            agent_dir = directory / "agent"
            config = write_agent_config(
                agent_dir,
                proxy.url,
                agent_id=AGENT,
                agentLabel=c["control"],
                features={"codexExec": True, "conversations": True},
                codex={
                    "command": [str(launcher)],
                    "home": str(write_codex_home(directory / "codex-home", model.base_url)),
                },
                conversations={"approvalTimeoutSec": 120},
            )
            env = {API_KEY_ENV: "mock-key", "NO_COLOR": "1", "TMPDIR": str(codex_tmp)}
            agent = pair_pinned(owner, book, config, env)
            wait_until((agent_dir / "state" / TRUST_FILE).exists, timeout=30, what="the pin")
            wait_until(lambda: _online(owner, wid), timeout=30, what="the agent pinned")
            socket = agent_dir / "state" / SOCKET_NAME
            wait_until(socket.exists, timeout=60, what="the agent's app-server")
            yield World(relay, proxy, owner, viewer, book, agent, agent_dir, model, log_path, c)
        finally:
            if agent is not None:
                agent.stop()
            http.close()
            proxy.stop()
            relay.stop()
            relay_log.removeHandler(handler)
            handler.close()
            relay_log.setLevel(level)
            shutil.rmtree(codex_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def conversation(world: World) -> str:
    """A sealed thread whose every kind of content carries a canary: a started thread with
    reasoning, a turn whose command waits for a sealed approval and prints a canary, and a
    turn whose patch (a diff) waits for one too."""
    c = world.c
    tid = world.start(f"Look at {c['prompt']}\nMOCK_REASON: {c['reasoning']}")
    idle(world.owner.phone, world.ws, tid)
    reversed_output = c["output"][::-1]  # the command prints the canary; its text does not hold it
    command = f"echo {c['approval']} > /dev/null; echo {reversed_output} | rev"
    for prompt in (f"MOCK_ESCALATE: {command}", f"MOCK_PATCH: sealed.txt {c['diff']}"):
        res = world.turn(tid, prompt)
        assert res.status_code == 201, res.text
        res = world.accept(tid, world.pending(tid))
        assert res.status_code == 200, res.text
        idle(world.owner.phone, world.ws, tid)
    world.threads["canaries"] = tid
    return tid


def test_every_canary_reaches_the_reader_and_none_the_relay(world: World, conversation: str):
    """The viewer's device decrypts each canary (prompt, reply, reasoning, command output,
    approval request, diff); zero hits of any canary in the relay's traffic both ways
    (HTTP and the agent's WebSocket, decoded), its log and its data dir; the control (the
    agent's label) and the thread id are found, so the searches see what passes."""
    c = world.c
    shown = world.shown(conversation)
    assert shown.dropped == []
    text = shown.text()
    missing = [k for k in KINDS if c[k] not in text]
    assert not missing, f"the reader never saw: {missing}"
    replies = [i for i in shown.items.values() if i["type"] == "agentMessage"]
    assert any(c["prompt"] in i.get("text", "") for i in replies), "no sealed reply"
    commands = [i for i in shown.items.values() if i["type"] == "commandExecution"]
    assert any(c["output"] in (i.get("output") or "") for i in commands)
    approvals = list(shown.approvals.values())
    assert {a["kind"] for a in approvals} == {"command", "fileChange"}
    assert all(a["status"] == "accepted" for a in approvals)
    assert (world.dir / "workspace" / "sealed.txt").read_text().strip() == c["diff"]
    time.sleep(1.5)  # the relay's coalesced state write
    captured = world.proxy.readable()
    places = {f"traffic {name}": data for name, data in captured.items()}
    places["relay log"] = world.log_path.read_bytes()
    places.update({f"data dir {k}": v for k, v in _data_files(world.relay.setup.data_dir).items()})
    places["relay's agent link"] = json.dumps(
        [world.relay.attack.received, world.relay.attack.sent]
    ).encode()

    def seen(prefix: str, needle: str) -> bool:
        return any(needle.encode() in v for k, v in captured.items() if k.startswith(prefix))

    assert seen("ws-up", conversation), "the capture missed what the agent sent"
    assert seen("ws-down", conversation), "the capture missed what the relay sent the agent"
    assert seen("http-down", conversation), "the capture missed the relay's answers"
    assert seen("http-down", c["control"])
    assert any(c["control"].encode() in v for k, v in places.items() if k.startswith("data dir"))
    leaks = _hits(places, {k: fragments(c[k]) for k in KINDS})
    print(f"searched {len(places)} places ({sum(map(len, places.values()))} bytes)")
    assert not leaks, "\n".join(leaks)


def _flip(envelope: bytes, part: str) -> bytes:
    """The envelope with one bit flipped in its header, ciphertext or signature."""
    wire = json.loads(envelope)
    raw = bytearray(b64u_decode(wire[part], max_bytes=2 << 20))
    raw[len(raw) // 2] ^= 0x01
    wire[part] = b64u(bytes(raw))
    return json.dumps(wire, separators=(",", ":")).encode()


@pytest.mark.parametrize("part", ["hdr", "ct", "sig"])
def test_a_flipped_bit_in_a_thread_envelope_is_refused(world: World, conversation: str, part):
    """Any flipped bit drops that envelope (and, the chain broken, the rest of its epoch),
    so nothing the relay altered is ever shown."""
    items = sealthreads.thread_envelopes(world.viewer, world.ws, conversation)
    view = world.view()
    whole = read_thread(
        items, world.viewer.kex_key, me=world.viewer.device_id, view=view, agent=AGENT,
        thread=conversation,
    )  # fmt: skip
    assert whole.dropped == []
    assert whole.opened == len(items)
    at = len(items) // 2
    tampered = [*items[:at], _flip(items[at], part), *items[at + 1 :]]
    shown = read_thread(
        tampered, world.viewer.kex_key, me=world.viewer.device_id, view=view, agent=AGENT,
        thread=conversation,
    )  # fmt: skip
    assert shown.opened == at, shown.dropped
    assert shown.dropped[0].split(":")[0] in {"malformed", "bad-signature", "decrypt-failed"}


def test_plaintext_input_is_refused_by_relay_and_agent(world: World, conversation: str):
    """A downgrade: the relay answers a plain start, turn, steer or approval answer with 409
    ``e2e-required``; a hostile relay that sends the agent a plain (even validly signed)
    thread start gets ``e2e-required`` from the agent, recorded, and Codex sees nothing."""
    owner, ws = world.owner, world.ws
    raw = turn_input("a plain prompt")
    stmt = signed_turn_statement(owner, world.book, AGENT, "new", None, raw)
    signed = signed_turn(owner, stmt, raw)
    plain = {"agentId": AGENT, "prompt": "a plain prompt", "signed": signed}
    for path, body in (
        (threads_url(ws), plain),
        (threads_url(ws, conversation, "turns"), {"prompt": "x", "signed": signed}),
        (threads_url(ws, conversation, "steer"), {"prompt": "x", "signed": signed}),
        (threads_url(ws, conversation, "approvals", "apr_x"), {"decision": "accept"}),
    ):
        res = owner.phone.post(path, json=body)
        assert (res.status_code, res.json()["error"]) == (409, "e2e-required"), path
    before = len(world.model.requests)
    request_id = "evil-plain-start"
    world.relay.inject(
        {"type": "thread.start", "requestId": request_id, "prompt": "a plain prompt",
         "signed": signed}
    )  # fmt: skip
    answer = wait_until(
        lambda: next(
            (m for m in list(world.relay.attack.received) if m.get("requestId") == request_id),
            None,
        ),
        timeout=30,
        what="the agent's answer",
    )
    assert (answer["type"], answer["reason"]) == ("thread.refused", "e2e-required")
    last = world.audit()[-1]
    assert (last["kind"], last["outcome"], last["reason"]) == ("turn", "refused", "e2e-required")
    assert len(world.model.requests) == before, "Codex ran a plain turn"


def test_a_flipped_bit_in_sealed_input_is_refused_by_the_agent(world: World, conversation: str):
    """The relay forwards a sealed turn whose ciphertext was altered; the agent refuses it
    (``sealed-invalid``), records the refusal, and Codex sees nothing."""
    body = sealthreads.turn_body(
        world.owner, world.book, world.view(), AGENT, "start", conversation, "MOCK_SHELL: id"
    )
    body["envelope"] = _flip(body["envelope"].encode(), "ct").decode()
    before = len(world.model.requests)
    res = world.owner.phone.post(threads_url(world.ws, conversation, "sealed-turns"), json=body)
    assert res.status_code >= 400, res.text
    last = world.audit()[-1]
    assert (last["kind"], last["outcome"], last["reason"]) == ("turn", "refused", "sealed-invalid")
    assert len(world.model.requests) == before


def test_a_later_reader_asks_for_the_key_and_a_removed_one_gets_nothing_new(
    world: World, conversation: str
):
    """A member added after the thread ran has nothing wrapped to them; a device-signed key
    request makes the agent wrap the thread's key (``key.wrap`` in the thread's stream) and
    the whole history opens. Once that member is removed from the log, the agent seals the
    thread's next turn under a new key they never get: its canary is not in what they see."""
    owner, ws = world.owner, world.ws
    lee_phone = join_by_invite(owner.phone, ws, "viewer", "Lee")
    me = lee_phone.get("/api/v1/me").json()["user"]
    lee = TrustedPhone(lee_phone, me["id"], me["name"], "localhost")
    owner.add_member(world.book, lee, "viewer")
    with pytest.raises(EnvelopeError):  # nothing is wrapped to Lee's device yet
        sealthreads.read(lee, world.view(), AGENT, conversation)
    ask = sealkit.key_request(lee, world.view(), AGENT, conversation)
    res = lee.phone.post(threads_url(ws, conversation, "key-requests"), json=ask)
    assert res.status_code == 202, res.text

    def history() -> ThreadView | None:
        try:
            shown = sealthreads.read(lee, world.view(), AGENT, conversation)
        except EnvelopeError:
            return None
        return shown if world.c["diff"] in shown.text() else None

    shown = wait_until(history, timeout=30, what="the history opened on a later device")
    assert shown.dropped == []
    owner.add(world.book, "member.remove", {"userId": lee.user_id})
    secret = canary("afterremoval")
    res = world.turn(conversation, f"After the removal {secret}")
    assert res.status_code == 201, res.text
    idle(owner.phone, ws, conversation)
    wait_until(
        lambda: secret in world.shown(conversation).text(),
        timeout=30,
        what="the new turn for a remaining reader",
    )
    # The relay no longer serves Lee; a relay that still hands them every envelope:
    items = sealthreads.thread_envelopes(world.viewer, ws, conversation)
    after = read_thread(
        items, lee.kex_key, me=lee.device_id, view=world.view(), agent=AGENT, thread=conversation
    )
    assert world.c["diff"] in after.text()  # what Lee could read before stays readable
    assert secret not in after.text()
    assert after.dropped, "the new key's envelopes should not open for a removed member"


def test_a_relay_that_forgot_the_envelopes_gets_the_history_sealed_again(
    world: World, conversation: str
):
    """The relay holds envelopes in memory only; once it has let a thread's go (a restart,
    the memory cap), its next read of the thread makes the agent seal the history it holds
    again, so a reader still opens every item. The relay's own copy of the items stays
    ids and seq numbers (type ``sealed``, no text)."""
    services = world.relay.services
    [record] = [t for t in services.store.threads.of_workspace(world.ws) if t.id == conversation]
    services.conversations.envelopes.drop(record.key)
    services.conversations.content.get(record.key).reset()
    assert sealthreads.thread_envelopes(world.viewer, world.ws, conversation) == []
    items = read(world.owner.phone, world.ws, conversation)["items"]
    assert items, "the relay read the thread from the agent"
    assert {tuple(sorted(i)) for i in items} == {("id", "seq", "type")}
    assert {i["type"] for i in items} == {"sealed"}
    thread = read(world.owner.phone, world.ws, conversation)["thread"]
    assert (thread["sealed"], thread["cwd"], thread["preview"]) == (True, "", "")
    shown = world.shown(conversation)
    assert shown.dropped == []
    text = shown.text()
    assert [k for k in KINDS if world.c[k] not in text] == []
    assert shown.thread is not None
    assert world.c["prompt"] in shown.thread["preview"]


def test_the_relay_filters_sealed_input_it_can_check(world: World, conversation: str):
    """The relay's first filter on what it can see: an envelope for another agent or
    workspace, one not sealed by a live device of the caller, a turn in another write mode
    and a decision envelope for another approval are refused before the agent is asked;
    a viewer cannot send input at all."""
    owner, ws, view = world.owner, world.ws, world.view()
    body = sealthreads.turn_body(owner, world.book, view, AGENT, "new", None, "hi")
    url = f"/api/v1/workspaces/{ws}/sealed-threads"
    res = owner.phone.post(url, json={**body, "agentId": "someone-else"})
    assert (res.status_code, res.json()["error"]) == (400, "invalid-request")
    viewers = sealthreads.turn_body(world.viewer, world.book, view, AGENT, "new", None, "hi")
    res = owner.phone.post(url, json=viewers)  # sealed on another person's device
    assert res.status_code == 403, res.text
    res = world.viewer.phone.post(url, json=viewers)
    assert res.status_code == 403, res.text
    turn = sealthreads.turn_body(owner, world.book, view, AGENT, "start", conversation, "hi")
    res = owner.phone.post(
        threads_url(ws, conversation, "sealed-turns"), json={**turn, "writeAccess": True}
    )
    assert (res.status_code, res.json()["error"]) == (400, "invalid-request")
    approval = {"id": "apr_asked", "threadId": conversation, "request": b64u(b"{}")}
    decision = sealthreads.decision_body(owner, world.book, view, AGENT, approval, "accept")
    other = threads_url(ws, conversation, "approvals", "apr_other", "sealed")
    res = owner.phone.post(other, json=decision)
    assert (res.status_code, res.json()["error"]) == (400, "invalid-request")


def test_a_replayed_sealed_turn_never_runs_twice(world: World, conversation: str):
    """A hostile relay sends the agent a sealed turn it already carried out: the turn id
    inside is run-once, so the agent refuses it (recorded) and Codex sees nothing new."""
    sent = [m for m in list(world.relay.attack.sent) if m.get("type") == "thread.sealed"]
    replayed = {**sent[-1], "requestId": "evil-replay"}
    replayed.pop("linkSeq", None)
    before = len(world.model.requests)
    world.relay.inject(replayed)
    answer = wait_until(
        lambda: next(
            (m for m in list(world.relay.attack.received) if m.get("requestId") == "evil-replay"),
            None,
        ),
        timeout=30,
        what="the agent's answer to the replay",
    )
    assert answer["type"] == "thread.refused"
    # run-once (or, on a run slower than the statement's life, its expiry)
    assert answer["reason"] in {"duplicate-task", "statement-expired"}, answer
    assert world.audit()[-1]["outcome"] == "refused"
    assert len(world.model.requests) == before, "Codex ran a replayed turn"


def test_keys_go_only_to_reader_devices_of_the_agents_own_log(world: World, conversation: str):
    """Every key wrap in the thread's stream names a device of the log the agent verified (a
    device the relay would add is in no verified log: nothing is wrapped to it)."""
    readers = set(world.view().devices)
    wrapped = {
        w["to"]
        for e in sealthreads.thread_envelopes(world.viewer, world.ws, conversation)
        for w in json.loads(e).get("keys", [])
    }
    assert wrapped
    assert wrapped <= readers, wrapped - readers


def test_a_sealed_steer_reaches_codex_and_not_the_relay(world: World, conversation: str):
    """While a turn waits for an approval, a sealed steer goes in: Codex gets its text (the
    model sees it), the relay never does (its agent link and the proxy's capture)."""
    secret = canary("steer")
    res = world.turn(conversation, "MOCK_ESCALATE: echo steered")
    assert res.status_code == 201, res.text
    approval = world.pending(conversation)
    body = sealthreads.turn_body(
        world.owner, world.book, world.view(), AGENT, "steer", conversation, f"Also {secret}"
    )
    res = world.owner.phone.post(threads_url(world.ws, conversation, "sealed-turns"), json=body)
    assert res.status_code == 201, res.text
    decline = sealthreads.decision_body(
        world.owner, world.book, world.view(), AGENT, approval, "decline"
    )
    url = threads_url(world.ws, conversation, "approvals", approval["id"], "sealed")
    assert world.owner.phone.post(url, json=decline).status_code == 200
    idle(world.owner.phone, world.ws, conversation)
    wait_until(
        lambda: any(secret in p for p in world.prompts()), timeout=60, what="the steer in Codex"
    )
    places = {f"traffic {k}": v for k, v in world.proxy.readable().items()}
    places["relay's agent link"] = json.dumps(
        [world.relay.attack.received, world.relay.attack.sent]
    ).encode()
    assert not _hits(places, {"steer": fragments(secret)})
    shown = world.shown(conversation)
    assert shown.approvals[approval["id"]]["status"] == "declined"
