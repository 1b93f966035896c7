"""A compromised relay cannot make an agent run anything (TRUST.md §2 tier A, §10 items 1-4,
6, 7, 8, 9).

The real relay app runs with an attack hook at every boundary (``tests/proof/hostile.py``):
its HTTP answers, every message it sends the agent (rewritten, duplicated or made up, and
renumbered so the link's sequence checks pass), and its own store. A real agent process
paired to a protected workspace through the §4.2 flow faces it. Each scenario asserts the
agent's specific refusal reason, that the refusal is in the agent's signed audit log, and
that nothing ran: the agent's only action appends to a marker file, and the fake ``codex``
leaves a rollout for every run. One honest task proves the harness can see a run.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.trust import TRUST_FILE
from codexrelay.e2e import keys
from codexrelay.e2e.audit import verify_audit
from codexrelay.e2e.log import chain_hash
from codexrelay.e2e.tags import tag, tagged_hash
from codexrelay.e2e.wire import b64u, b64u_decode
from codexrelay.relay.storage.memory import log_key
from codexrelay.relay.storage.records import LogEntryRecord
from tests.agents import AgentProcess, write_agent_config
from tests.helpers import wait_until
from tests.proof.hostile import HostileRelay
from tests.softauthn import LOGIN_TAG, Phone, SoftAuthenticator, join_by_invite
from tests.trustkit import Book, Pairing, TrustedPhone, dumps

AGENT = "build-01"


@dataclass
class World:
    relay: HostileRelay
    owner: TrustedPhone
    book: Book
    wid: str
    agent: AgentProcess
    dir: Path

    @property
    def marker(self) -> Path:
        return self.dir / "marker.txt"

    def runs(self) -> int:
        marks = self.marker.read_text().count("ran") if self.marker.exists() else 0
        rollouts = sum(1 for _ in (self.dir / "codex-home").rglob("rollout-*.jsonl"))
        return marks + rollouts

    def outcome(self, task_id: str) -> dict[str, Any]:
        """The agent's rejection or final report for ``task_id``."""

        def find() -> dict[str, Any] | None:
            for message in list(self.relay.attack.received):
                if message.get("taskId") == task_id and message["type"] in {
                    "task.rejected",
                    "task.finished",
                }:
                    return message
            return None

        return wait_until(find, timeout=20, what=f"the agent's answer on {task_id}")

    def audit(self) -> list[dict[str, Any]]:
        lines = (self.dir / "state" / AUDIT_FILE).read_bytes().splitlines()
        return [json.loads(line) for line in lines]

    def refused(self, task: dict[str, Any], reason: str) -> None:
        """Inject ``task`` as the relay; the agent must refuse it for ``reason``, record the
        refusal in its audit log, and run nothing."""
        before = self.runs()
        self.relay.inject({"type": "task", "task": task})
        answer = self.outcome(task["id"])
        assert answer["type"] == "task.rejected", answer
        assert answer["reason"] == reason, answer
        last = self.audit()[-1]
        assert (last["outcome"], last["reason"]) == ("refused", reason)
        assert self.runs() == before, "something ran"


def spec_of(
    stmt: dict[str, Any], body: bytes, auth: list[dict[str, Any]], raw: bytes | None = None
) -> dict[str, Any]:
    """The relay's ``task`` for a signed statement (what an honest relay would send)."""
    prompt = json.loads(body)["prompt"] if stmt["type"] == "codex_exec" else None
    task = {
        "id": stmt["task"],
        "type": stmt["type"],
        "prompt": prompt,
        "cwd": stmt["cwd"],
        "writeAccess": stmt["writeAccess"],
        "resumeSessionId": stmt["resumeSessionId"],
        "actionId": stmt["actionId"],
        "logSourceId": stmt["logSourceId"],
        "signed": {"stmt": b64u(raw or dumps(stmt)), "body": b64u(body), "auth": auth},
    }
    return {k: v for k, v in task.items() if v is not None}


def _agent_config(directory: Path, relay: HostileRelay, agent_id: str = AGENT) -> Path:
    marker = directory / "marker.txt"
    return write_agent_config(
        directory,
        relay.url,
        agent_id=agent_id,
        actions={
            "mark": {
                "label": "Mark",
                "argv": [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('ran\\n')"],
            }
        },
        features={"codexExec": True, "codexExecWrite": True, "runAction": True, "readLog": True},
    )


def pair(
    owner: TrustedPhone,
    book: Book,
    relay: HostileRelay,
    directory: Path,
    agent_id: str = AGENT,
    *,
    approve: bool = True,
) -> tuple[AgentProcess, Pairing, dict[str, Any]]:
    """``agent pair --pair-code CODE.SECRET`` and, on the phone, the claim check and approval."""
    assert owner.sudo().status_code == 200
    pairing = owner.pairing_code(book.ws)
    config = _agent_config(directory, relay, agent_id)
    process = AgentProcess(config, directory / "agent.log").start(
        "pair", "--pair-code", pairing.shown
    )
    request = _pending(owner, book.ws, agent_id, process)
    if approve:
        assert owner.sudo().status_code == 200
        res = owner.approve(book, request, pairing)
        assert res.status_code == 200, res.text
    return process, pairing, request


def _pending(owner: TrustedPhone, wid: str, agent_id: str, process: AgentProcess) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        listed = owner.phone.get(f"/api/v1/workspaces/{wid}/pair-requests").json()
        return next(
            (
                r
                for r in listed["pairRequests"]
                if r["agentId"] == agent_id and r["status"] == "pending"
            ),
            None,
        )

    try:
        found: dict[str, Any] = wait_until(find, timeout=30, what=f"a pair request of {agent_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{process.logs()}") from None
    return found


def _online(owner: TrustedPhone, wid: str) -> bool:
    agents = owner.phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
    return any(a["agentId"] == AGENT and a["online"] and a.get("trust") for a in agents)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = Path(tmp_path_factory.mktemp("hostile"))
    relay = HostileRelay(directory / "relay").start()
    http = relay.client()
    phone = Phone(http).bootstrap(relay.setup.token)
    owner = TrustedPhone.enroll(phone, "localhost")
    wid = phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
    book, _ = owner.genesis(wid)
    process, _, _ = pair(owner, book, relay, directory / "agent")
    try:
        wait_until(
            (directory / "agent" / "state" / TRUST_FILE).exists,
            timeout=30,
            what="the pin",
        )
        wait_until(lambda: _online(owner, wid), timeout=30, what="the agent online and pinned")
        yield World(relay, owner, book, wid, process, directory / "agent")
    finally:
        process.stop()
        http.close()
        relay.stop()


def signed(
    world: World, kind: str = "run_action", **fields: Any
) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]]:
    """An honest owner-signed statement for this agent."""
    fields.setdefault("actionId", "mark" if kind == "run_action" else None)
    stmt, body = world.owner.task(world.book, AGENT, kind, **fields)
    return stmt, body, [world.owner.sign("task", dumps(stmt))]


# --- the baseline: an honest signed task runs, once ---


def test_an_honest_signed_task_runs_and_is_recorded(world):
    """The harness can see a run: a signed task through the relay's own API runs once, and
    the agent's audit log holds the exact statement and the passkey signature."""
    before = world.runs()
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    res = world.owner.submit(world.book, world.owner.signed_task(stmt, body))
    assert res.status_code == 201, res.text
    assert world.outcome(stmt["task"])["status"] == "completed"
    assert world.runs() == before + 1
    accepted = [r for r in world.audit() if r["kind"] == "task" and r["outcome"] == "accepted"]
    assert b64u_decode(accepted[-1]["stmt"], max_bytes=8192) == dumps(stmt)


# --- §10 item 7 and 2: downgrade and forgery ---


def test_plaintext_tasks_are_refused(world):
    """A protected agent refuses the relay's own plaintext task (no downgrade)."""
    world.refused({"id": "plain-1", "type": "run_action", "actionId": "mark"}, "signature-required")


def test_a_task_forged_from_scratch_is_refused(world):
    """The relay's own passkey is not in the log."""
    attacker = SoftAuthenticator()
    credential = attacker.new_credential("localhost")
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    auth = attacker.sign_statement(
        tagged_hash("task", dumps(stmt)),
        rp_id="localhost",
        origin=world.owner.origin,
        credential=credential,
    )
    world.refused(spec_of(stmt, body, [auth]), "unknown-signer")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"writeAccess": True, "type": "codex_exec", "actionId": None}, "signature-invalid"),
        ({"cwd": "other"}, "signature-invalid"),
        ({"actionId": "other"}, "signature-invalid"),
        ({"type": "read_log", "actionId": None, "logSourceId": "app"}, "signature-invalid"),
        ({"agent": "other-agent"}, "wrong-agent"),
        ({"ws": "ws_other"}, "wrong-workspace"),
        ({"expiresAt": "+60"}, "signature-invalid"),
    ],
    ids=["writeAccess", "cwd", "actionId", "type", "agent", "ws", "expiresAt"],
)
def test_a_changed_field_of_a_signed_statement_is_refused(world, change, reason):
    """The relay changes one field of a genuinely signed statement (and its own copy to
    match): the signature no longer covers it, or the agent sees it is not meant for it."""
    stmt, body, auth = signed(world)
    changed = dict(stmt)
    for key, value in change.items():
        changed[key] = stmt[key] + 60 if value == "+60" else value
    world.refused(spec_of(changed, body, auth), reason)


def test_a_changed_prompt_is_refused(world):
    """The body carries the prompt; the statement commits to its hash."""
    stmt, body, auth = signed(world, "codex_exec", prompt="say hello", actionId=None)
    evil = dumps({"prompt": "rm -rf ~", "salt": json.loads(body)["salt"]})
    task = spec_of(stmt, evil, auth)
    world.refused(task, "body-mismatch")


def test_a_relay_copy_that_disagrees_with_the_statement_is_refused(world):
    """The relay's visible task must equal what was signed (the relay lied otherwise)."""
    stmt, body, auth = signed(world)
    task = spec_of(stmt, body, auth)
    task["actionId"] = "other"
    world.refused(task, "statement-mismatch")


# --- §10 item 3: replays ---


def test_replays_are_refused_even_after_a_restart(world):
    """The same signed task again (duplicated in flight, or sent after the agent restarts)
    is refused by the persisted run-once ledger; it ran once."""
    stmt, body, auth = signed(world)
    before = world.runs()
    task = spec_of(stmt, body, auth)
    world.relay.inject({"type": "task", "task": task})
    world.relay.inject({"type": "task", "task": task})

    def answers() -> list[dict[str, Any]]:
        return [
            m
            for m in world.relay.attack.received
            if m.get("taskId") == stmt["task"] and m["type"] in {"task.rejected", "task.finished"}
        ]

    wait_until(lambda: len(answers()) >= 2, timeout=20, what="both answers")
    assert world.runs() == before + 1
    rejected = [
        m
        for m in world.relay.attack.received
        if m.get("taskId") == stmt["task"] and m["type"] == "task.rejected"
    ]
    assert [m["reason"] for m in rejected] == ["duplicate-task"]
    world.agent.stop()
    links = len(world.relay.middleware.links)
    world.agent.start("start")
    wait_until(lambda: len(world.relay.middleware.links) > links, timeout=30, what="the agent back")
    wait_until(lambda: _online(world.owner, world.wid), timeout=30, what="the agent online")
    world.relay.attack.received.clear()
    world.refused(spec_of(stmt, body, auth), "duplicate-task")


def test_a_statement_for_another_agent_or_workspace_is_refused(world):
    """Genuine signatures, for another agent, or in another protected workspace."""
    stmt, body = world.owner.task(world.book, "build-02", actionId="mark")
    raw = dumps(stmt)
    world.refused(spec_of(stmt, body, [world.owner.sign("task", raw)]), "wrong-agent")
    other = world.owner.phone.post("/api/v1/workspaces", json={"name": "Other"}).json()[
        "workspace"
    ]["id"]
    other_book, _ = world.owner.genesis(other)
    stmt, body = world.owner.task(other_book, AGENT, actionId="mark")
    world.refused(spec_of(stmt, body, [world.owner.sign("task", dumps(stmt))]), "wrong-workspace")


# --- §10 item 4: cross-protocol ---


def test_a_login_the_relay_asked_for_is_no_task_signature(world):
    """The relay sets a login challenge to H(tag(task) ‖ stmt); the phone tags login
    challenges, so what it signs is no task signature."""
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    trap = b64u(tagged_hash("task", dumps(stmt)))
    world.relay.attack.http["/api/v1/auth/passkeys/login/options"] = lambda _p, data: {
        **data,
        "publicKey": {**data["publicKey"], "challenge": trap},
    }
    try:
        options = world.owner.phone.post("/api/v1/auth/passkeys/login/options", json={}).json()
    finally:
        world.relay.attack.http.clear()
    assert options["publicKey"]["challenge"] == trap
    assertion = world.owner.phone.authenticator.get(
        options["publicKey"],
        origin=world.owner.origin,
        tag=LOGIN_TAG,
        credential=world.owner.credential,
    )
    auth = {"credentialId": assertion["id"], "assertion": assertion}
    world.refused(spec_of(stmt, body, [auth]), "signature-invalid")


def test_a_registration_ceremony_is_no_task_signature(world):
    """A passkey creation response is not an assertion at all."""
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    options = {
        "rp": {"id": "localhost"},
        "user": {"id": b64u(b"u")},
        "challenge": b64u(tagged_hash("task", dumps(stmt))),
    }
    created = SoftAuthenticator().create(options, origin=world.owner.origin, tag=None)
    world.refused(
        spec_of(stmt, body, [{"credentialId": created["id"], "assertion": created}]),
        "signature-invalid",
    )


# --- §10 item 8: timing ---


@pytest.mark.parametrize(
    ("issued", "expires", "reason"),
    [(-900, -600, "statement-expired"), (3600, 3900, "statement-not-yet-valid")],
    ids=["expired", "future"],
)
def test_expired_and_future_statements_are_refused(world, issued, expires, reason):
    """Genuinely signed, but outside their window (the relay held them back, or the
    phone's clock is off by more than the 300 s skew)."""
    now = int(time.time())
    stmt, body, auth = signed(world, issuedAt=now + issued, expiresAt=now + expires)
    world.refused(spec_of(stmt, body, auth), reason)


# --- §10 item 9: relay-chosen WebAuthn parameters ---


def test_a_signature_made_for_a_foreign_rp_id_is_refused(world):
    """A phone that followed a relay's foreign rpId produced a signature the log's rp id
    does not accept (the app sets its own rp id and allowCredentials)."""
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    auth = world.owner.phone.authenticator.sign_statement(
        tagged_hash("task", dumps(stmt)),
        rp_id="evil.example",
        origin=world.owner.origin,
        credential=world.owner.credential,
    )
    world.refused(spec_of(stmt, body, [auth]), "signature-invalid")


def test_a_signature_without_user_verification_is_refused(world):
    """A stolen, unlocked phone cannot sign: UV is required."""
    stmt, body = world.owner.task(world.book, AGENT, actionId="mark")
    auth = world.owner.sign("task", dumps(stmt), user_verified=False)
    world.refused(spec_of(stmt, body, [auth]), "user-not-verified")


# --- §10 item 6: a withheld removal ---


def _log_entries(world: World) -> list[dict[str, Any]]:
    """The log as the owner's phone reads it, checked against the phone's own head."""
    page = world.owner.phone.get(f"/api/v1/workspaces/{world.wid}/e2e/log").json()
    entries = [{"entry": e["entry"], "sigs": e["sigs"]} for e in page["entries"]]
    assert chain_hash(b64u_decode(entries[-1]["entry"], max_bytes=1 << 16)) == world.book.head
    return entries


def _push(world: World) -> Any:
    body = {"start": 0, "entries": _log_entries(world)}
    return world.owner.phone.post(
        f"/api/v1/workspaces/{world.wid}/agents/{AGENT}/log-push", json=body, timeout=30
    )


def test_a_withheld_removal_reaches_the_agent_by_a_direct_push(world):
    """The relay hides a member.remove from the agent's log fetches and serves the removed
    member's task signed on the head before it. The remover's phone pushes the log to the
    agent: dropped, the phone gets no acknowledgement (it shows the agent pending); passed
    on, the agent answers with a signed acknowledgement of the head holding the removal and
    refuses the removed member from then on. Nothing ran."""
    bea_phone = join_by_invite(world.owner.phone, world.wid, "member", "Bea")
    bea = TrustedPhone(
        bea_phone, bea_phone.get("/api/v1/me").json()["user"]["id"], "Bea", "localhost"
    )
    world.owner.add_member(world.book, bea, "member")
    stmt, body = bea.task(world.book, AGENT, actionId="mark")
    world.relay.inject(
        {"type": "task", "task": spec_of(stmt, body, [bea.sign("task", dumps(stmt))])}
    )
    assert world.outcome(stmt["task"])["status"] == "completed"
    before_removal = dict(world.book.log_head)

    def withhold(_path: str, data: dict[str, Any]) -> dict[str, Any]:
        kept = []
        for item in data.get("entries", []):
            if item.get("op") == "member.remove":
                break
            kept.append(item)
        return {**data, "entries": kept}

    world.relay.attack.http["/api/v1/agent/e2e/log"] = withhold
    try:
        world.owner.add(world.book, "member.remove", {"userId": bea.user_id})
        world.relay.attack.to_agent = lambda m: [] if m.get("type") == "log.push" else [m]
        dropped = _push(world)
        assert (dropped.status_code, dropped.json()["error"]) == (504, "agent-timeout")
        world.relay.attack.to_agent = None
        pushed = _push(world)
    finally:
        world.relay.attack.http.clear()
        world.relay.attack.to_agent = None
    assert pushed.status_code == 200, pushed.text
    answer = pushed.json()
    trust = world.relay.services.store.agents.named(world.wid, AGENT)[-1].trust
    assert trust is not None
    key = keys.load_verify_key("c25519", trust["sigPub"])
    raw = b64u_decode(answer["ack"], max_bytes=1000)
    assert keys.verify(key, b64u_decode(answer["sig"], max_bytes=64), tag("logack") + raw)
    assert json.loads(raw)["head"] == world.book.log_head
    late, body = bea.task(world.book, AGENT, actionId="mark", logHead=before_removal)
    world.refused(spec_of(late, body, [bea.sign("task", dumps(late))]), "revoked-signer")


# --- §10 item 6: withheld and forked log entries ---


def test_a_withheld_log_entry_fails_closed(world):
    """A statement names a log head the relay will not hand the agent: refused, and
    nothing runs until the agent can verify that head."""
    world.owner.add(world.book, "checkpoint", {"reason": "a change the relay withholds"})
    hidden = world.book.seq
    world.relay.attack.http["/api/v1/agent/e2e/log"] = lambda _p, data: {
        **data,
        "entries": [e for e in data["entries"] if e["seq"] < hidden],
    }
    try:
        stmt, body, auth = signed(world)
        world.refused(spec_of(stmt, body, auth), "log-head-unknown")
    finally:
        world.relay.attack.http.clear()
    stmt, body, auth = signed(world)
    before = world.runs()
    world.relay.inject({"type": "task", "task": spec_of(stmt, body, auth)})
    assert world.outcome(stmt["task"])["status"] == "completed"
    assert world.runs() == before + 1


def test_an_entry_forged_into_the_relays_store_is_refused(world):
    """The relay writes itself into its own store as a member (an entry it signed with its
    own passkey) and signs a task as that member: the agent cannot verify the entry, so
    the statement's head is not on its chain."""
    attacker = SoftAuthenticator()
    credential = attacker.new_credential("localhost", b"usr_attacker")
    head = world.relay.services.store.log_entries.head(world.wid)
    assert head is not None
    body = {
        "userId": "usr_attacker",
        "name": "Mallory",
        "role": "owner",
        "passkeys": [
            {"credId": b64u(credential.credential_id), "cose": b64u(credential.cose_public_key())}
        ],
        "devices": [],
    }
    entry = {
        "v": 1,
        "ws": world.wid,
        "seq": head.seq + 1,
        "prev": head.hash,
        "op": "member.add",
        "body": body,
        "issuedAt": int(time.time()),
    }
    raw = dumps(entry)
    sig = attacker.sign_statement(
        tagged_hash("log", raw), rp_id="localhost", origin=world.owner.origin, credential=credential
    )
    world.relay.services.store.log_entries.add(
        LogEntryRecord(
            key=log_key(world.wid, head.seq + 1),
            workspace_id=world.wid,
            seq=head.seq + 1,
            hash=chain_hash(raw),
            op="member.add",
            entry=b64u(raw),
            sigs=[sig],
            created_at=head.created_at,
        )
    )
    try:
        stmt, body_bytes = world.owner.task(world.book, AGENT, actionId="mark")
        stmt["logHead"] = {"seq": head.seq + 1, "hash": chain_hash(raw)}
        stmt["device"] = world.owner.device_id
        auth = attacker.sign_statement(
            tagged_hash("task", dumps(stmt)),
            rp_id="localhost",
            origin=world.owner.origin,
            credential=credential,
        )
        world.refused(spec_of(stmt, body_bytes, [auth]), "log-fork")
    finally:
        world.relay.services.store.log_entries.remove(
            world.relay.services.store.log_entries.head(world.wid)  # type: ignore[arg-type]
        )


def test_a_forked_log_is_detected(world):
    """Two valid entries on one head: the relay stores one and serves the agent the other.
    Statements on the relay's branch are then refused as a fork."""
    ours = world.owner.entry(world.book, "checkpoint", {"reason": "branch A"})
    theirs = world.owner.entry(world.book, "checkpoint", {"reason": "branch B"})
    assert world.owner.post_entry(world.book, ours).status_code == 201
    seq = world.book.seq

    def fork(_path: str, data: dict[str, Any]) -> dict[str, Any]:
        entries = [e if e["seq"] != seq else {**e, **theirs} for e in data["entries"]]
        return {**data, "entries": entries}

    world.relay.attack.http["/api/v1/agent/e2e/log"] = fork
    try:
        stmt, body, auth = signed(world)
        world.refused(spec_of(stmt, body, auth), "log-fork")
    finally:
        world.relay.attack.http.clear()


# --- §10 item 1: pairing ---


def test_swapped_agent_keys_in_the_claim_leave_approve_disabled(world, tmp_path):
    """The relay shows the phone its own keys in the claim: the MAC with the secret the
    relay never saw does not verify (red badge, Approve disabled); the agent pins nothing."""
    evil = keys.public_text(keys.generate_signing_key("c25519"))

    def swap(_path: str, data: dict[str, Any]) -> dict[str, Any]:
        for request in data.get("pairRequests", []):
            if request.get("keyClaim"):
                claim = json.loads(b64u_decode(request["keyClaim"], max_bytes=8192))
                request["keyClaim"] = b64u(dumps({**claim, "sigPub": evil}))
        return data

    world.relay.attack.http[f"/api/v1/workspaces/{world.wid}/pair-requests"] = swap
    try:
        process, pairing, request = pair(
            world.owner, world.book, world.relay, tmp_path, "build-swap", approve=False
        )
    finally:
        world.relay.attack.http.clear()
    try:
        with pytest.raises(AssertionError, match="unverified"):
            world.owner.approve(world.book, request, pairing)
        path = f"/api/v1/workspaces/{world.wid}/pair-requests/{request['id']}/reject"
        assert world.owner.phone.post(path).status_code == 200
        assert process.wait_exit(30) != 0
        assert not (tmp_path / "state" / TRUST_FILE).exists()
    finally:
        process.stop()


@pytest.mark.parametrize("attack", ["grant", "genesis"])
def test_a_forged_grant_or_genesis_is_never_pinned(world, tmp_path, attack):
    """The relay replaces the grant in the poll answer (it cannot make the MAC), or serves
    a log with another genesis: the agent refuses to pin and stores no token."""
    if attack == "grant":

        def forge(_path: str, data: dict[str, Any]) -> dict[str, Any]:
            if data.get("grant"):
                grant = json.loads(b64u_decode(data["grant"], max_bytes=8192))
                grant["genesisHash"] = b64u(hashlib.sha256(b"attacker").digest())
                data["grant"] = b64u(dumps(grant))
            return data

        world.relay.attack.http["/api/v1/agent/pair/"] = forge
    else:

        def forge(_path: str, data: dict[str, Any]) -> dict[str, Any]:
            entries = data.get("entries", [])
            if entries:
                raw = json.loads(b64u_decode(entries[0]["entry"], max_bytes=1 << 16))
                raw["name"] = "attacker's"
                entries[0]["entry"] = b64u(dumps(raw))
            return data

        world.relay.attack.http["/api/v1/agent/e2e/log"] = forge
    try:
        process, _, _ = pair(world.owner, world.book, world.relay, tmp_path, f"build-{attack}")
        assert process.wait_exit(30) != 0
    finally:
        world.relay.attack.http.clear()
        process.stop()
    assert "nothing was pinned" in process.logs()
    assert not (tmp_path / "state" / TRUST_FILE).exists()
    assert not (tmp_path / "state" / "agent-token.json").exists()


# --- the agent's record ---


def test_the_agents_audit_log_verifies_and_holds_every_decision(world):
    """Every accepted and refused statement above is in a chain signed by the agent."""
    trust = world.relay.services.store.agents.named(world.wid, AGENT)[-1].trust
    assert trust is not None
    lines = (world.dir / "state" / AUDIT_FILE).read_bytes().splitlines(keepends=True)
    report = verify_audit(lines, keys.load_verify_key("c25519", trust["sigPub"]))
    assert report.ok
    outcomes = {(json.loads(x)["outcome"], json.loads(x)["reason"]) for x in lines}
    assert ("refused", "signature-required") in outcomes
    assert ("accepted", None) in outcomes
    assert trust["auditHead"]["seq"] >= 1
