"""The agent's checklist for protected tasks (TRUST.md §4.6), without a server: a real log
written by software passkeys, the agent's pinned store on disk, and every refusal by its
specific reason. Also the trust gate's audit records and signed cancels."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexrelay.agent.gate import TrustGate
from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.trust import AgentKeys, Pin, TrustStore
from codexrelay.agent.verify import StatementChecker
from codexrelay.e2e import keys
from codexrelay.e2e.audit import verify_audit
from codexrelay.e2e.log import parse_signed
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.statements import digest
from codexrelay.e2e.tags import tag, tagged_hash
from codexrelay.e2e.wire import b64u
from codexrelay.protocol import SignedStop, SignedTask, TaskCancel, TaskFinished, TaskSpec
from tests.unit.e2e.builders import NOW, ORIGIN, RP_ID
from tests.unit.e2e.logkit import LogKit, Person, device_keys, dumps

AGENT = "build-01"


class World:
    """A pinned agent's state and the people who sign for it."""

    def __init__(self, tmp: Path, policy: dict[str, Any] | None = None) -> None:
        self.kit = LogKit()
        if policy is not None:
            self.kit.add("policy.set", {"policy": policy}, self.kit.owner)
        self.admin = self.kit.member("u_admin", "admin")
        self.member = self.kit.member("u_member", "member")
        self.viewer = self.kit.member("u_viewer", "viewer")
        self.keys = AgentKeys.load_or_create(tmp)
        self.kit.add(
            "agent.add",
            {
                "agentId": AGENT,
                "label": "build-01",
                "sigPub": self.keys.sig_pub,
                "kexPub": self.keys.kex_pub,
                "suite": "c25519",
                "pairingId": "pc_1",
            },
            self.kit.owner,
        )
        self.store = TrustStore(tmp)
        view = self.kit.view()
        self.store.save_pin(
            Pin(view.ws, view.name, view.genesis_hash, "http://r", AGENT, "Olive", NOW), view
        )
        self.seen: set[str] = set()
        self.clock = float(NOW + 10)
        self.fetched: list[int] = []

    async def fetch(self, start: int) -> list[dict[str, Any]]:
        self.fetched.append(start)
        return self.kit.signed[start:]

    def gate(self) -> TrustGate:
        return TrustGate(
            self.store,
            self.keys,
            agent_id=AGENT,
            seen=self.seen.__contains__,
            clock=lambda: self.clock,
        )

    def checker(self, *, fetch: bool = False) -> StatementChecker:
        return StatementChecker(
            self.store,
            agent_id=AGENT,
            seen=self.seen.__contains__,
            fetch=self.fetch if fetch else None,
            clock=lambda: self.clock,
        )

    def device_of(self, person: Person) -> str:
        return "dv_owner" if person is self.kit.owner else f"dv_{person.user_id}"

    def statement(self, person: Person, **changes: Any) -> tuple[dict[str, Any], bytes]:
        body = dumps({"prompt": "", "salt": b64u(secrets.token_bytes(16))})
        view = self.store.view()
        stmt = {
            "v": 1,
            "kind": "task",
            "ws": "ws_7",
            "agent": AGENT,
            "task": str(uuid.uuid4()),
            "type": "run_action",
            "writeAccess": False,
            "cwd": None,
            "resumeSessionId": None,
            "actionId": "hello",
            "logSourceId": None,
            "bodyHash": digest(body),
            "device": self.device_of(person),
            "logHead": {"seq": view.head.seq, "hash": view.head.hash},
            "issuedAt": NOW,
            "expiresAt": NOW + 300,
        }
        stmt.update(changes)
        return stmt, body

    def spec(
        self,
        stmt: dict[str, Any],
        body: bytes,
        signers: list[Person],
        *,
        raw: bytes | None = None,
        **knobs: Any,
    ) -> TaskSpec:
        raw = raw if raw is not None else dumps(stmt)
        over = knobs.pop("sign_over", raw)
        auth = [
            p.authenticator.sign_statement(
                tagged_hash("task", over),
                rp_id=RP_ID,
                origin=ORIGIN,
                credential=p.credential,
                **knobs,
            )
            for p in signers
        ]
        prompt = json.loads(body)["prompt"] if stmt["type"] == "codex_exec" else None
        return TaskSpec(
            id=stmt["task"],
            type=stmt["type"],
            prompt=prompt,
            cwd=stmt["cwd"],
            write_access=stmt["writeAccess"],
            resume_session_id=stmt["resumeSessionId"],
            action_id=stmt["actionId"],
            log_source_id=stmt["logSourceId"],
            signed=SignedTask(stmt=b64u(raw), body=b64u(body), auth=auth),
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def reason(world: World, spec: TaskSpec, *, fetch: bool = False) -> str:
    with pytest.raises(TaskRefusedError) as caught:
        asyncio.run(world.checker(fetch=fetch).check_task(spec))
    return caught.value.reason.value


def accepts(world: World, spec: TaskSpec, *, fetch: bool = False) -> Any:
    return asyncio.run(world.checker(fetch=fetch).check_task(spec))


def test_a_members_signed_task_is_accepted(world):
    """The member's UV signature over the exact statement, on the pinned chain: accepted,
    with the run-once id kept until the statement expires (plus skew)."""
    stmt, body = world.statement(world.member)
    accepted = accepts(world, world.spec(stmt, body, [world.member]))
    assert accepted.signers == ("u_member",)
    assert accepted.keep_until == NOW + 300 + 300
    assert accepted.counts[0][1] >= 1


def test_unsigned_and_unpinned(world, tmp_path):
    """A pinned agent refuses a plain task; an unpinned one refuses a signed task and runs a
    plain one as before."""
    stmt, body = world.statement(world.member)
    plain = world.spec(stmt, body, [world.member]).model_copy(update={"signed": None})
    assert reason(world, plain) == "signature-required"
    world.store.reset()
    assert asyncio.run(world.checker().check_task(plain)) is None
    assert reason(world, world.spec(stmt, body, [world.member])) == "workspace-not-pinned"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ws": "ws_8"}, "wrong-workspace"),
        ({"agent": "other-agent"}, "wrong-agent"),
        ({"bodyHash": digest(b"other")}, "body-mismatch"),
        ({"issuedAt": NOW - 400, "expiresAt": NOW - 1}, "statement-expired"),
        ({"issuedAt": NOW + 1000, "expiresAt": NOW + 1100}, "statement-not-yet-valid"),
        ({"expiresAt": NOW + 3600}, "statement-ttl-too-long"),
        ({"logHead": {"seq": 2, "hash": "A" * 43}}, "log-fork"),
        ({"logHead": {"seq": 99, "hash": "A" * 43}}, "log-head-unknown"),
        ({"device": "dv_u_admin"}, "unknown-signer"),
        ({"v": 2}, "statement-invalid"),
        ({"actionId": None}, "statement-invalid"),
    ],
)
def test_each_statement_check_has_its_reason(world, change, expected):
    """§4.6 steps 1-7, each with its own reason."""
    stmt, body = world.statement(world.member, **change)
    assert reason(world, world.spec(stmt, body, [world.member])) == expected


@pytest.mark.parametrize(
    "field",
    [
        "id",
        "type",
        "write_access",
        "cwd",
        "resume_session_id",
        "action_id",
        "log_source_id",
        "prompt",
    ],
)
def test_a_relay_copy_that_differs_from_the_signed_one_is_refused(world, field):
    """Step 3: every relay-visible field must equal the signed one."""
    stmt, body = world.statement(world.member)
    spec = world.spec(stmt, body, [world.member])
    values = {
        "id": "tsk_other",
        "type": "read_log",
        "write_access": True,
        "cwd": "src",
        "resume_session_id": str(uuid.uuid4()),
        "action_id": "rm-rf",
        "log_source_id": "app",
        "prompt": "rm -rf /",
    }
    assert reason(world, spec.model_copy(update={field: values[field]})) == "statement-mismatch"


def test_replays_are_refused(world):
    """Step 5: a statement id seen before is refused before any signature check."""
    stmt, body = world.statement(world.member)
    spec = world.spec(stmt, body, [world.member])
    accepts(world, spec)
    world.seen.add(stmt["task"])
    assert reason(world, spec) == "duplicate-task"


def test_signers(world):
    """Step 7-8: unknown, revoked and too-low signers; no UV; a regressed counter; a
    signature over other bytes."""
    stranger = Person("u_stranger", "owner")
    stmt, body = world.statement(world.member)
    assert reason(world, world.spec(stmt, body, [stranger])) == "unknown-signer"
    stmt, body = world.statement(world.viewer)
    assert reason(world, world.spec(stmt, body, [world.viewer])) == "role-too-low"
    stmt, body = world.statement(world.member)
    assert reason(world, world.spec(stmt, body, [world.member], user_verified=False)) == (
        "user-not-verified"
    )
    stmt, body = world.statement(world.member)
    accepts(world, world.spec(stmt, body, [world.member], sign_count=50))
    world.store.record_count(world.member.cred_id, 50)
    stmt, body = world.statement(world.member)
    assert reason(world, world.spec(stmt, body, [world.member], sign_count=49)) == (
        "counter-regressed"
    )
    stmt, body = world.statement(world.member)
    other = dumps({**stmt, "actionId": "other"})
    assert reason(
        world,
        world.spec(stmt, body, [world.member], sign_over=other),
    ) == ("signature-invalid")


def test_a_revoked_passkey_stops_at_once_and_the_log_is_fetched_when_ahead(world):
    """The member's passkey is revoked in a newer entry the agent fetches (the statement
    names that head): from then on the member's tasks are refused."""
    world.kit.add(
        "passkey.revoke", {"userId": "u_member", "credId": world.member.cred_id}, world.kit.owner
    )
    head = world.kit.view().head
    stmt, body = world.statement(world.member, logHead={"seq": head.seq, "hash": head.hash})
    assert reason(world, world.spec(stmt, body, [world.member]), fetch=True) == "revoked-signer"
    assert world.fetched == [head.seq]
    assert world.store.view().head == head


def test_write_mode_needs_two_people_under_a_two_person_rule(tmp_path):
    """B6: the second admin's signature over the same bytes lets the task through."""
    policy = default_policy().model_dump(by_alias=True)
    policy["codexWrite"] = {"minRole": "admin", "twoPerson": {"k": 2, "within": 600}}
    world = World(tmp_path, policy)
    stmt, body = world.statement(
        world.admin, type="codex_exec", actionId=None, writeAccess=True, cwd="src"
    )
    body = dumps({"prompt": "fix", "salt": "AAAAAAAAAAAAAAAAAAAAAA"})
    stmt["bodyHash"] = digest(body)
    assert reason(world, world.spec(stmt, body, [world.admin])) == "needs-more-approvers"
    assert reason(world, world.spec(stmt, body, [world.admin, world.member])) == (
        "needs-more-approvers"
    )
    accepted = accepts(world, world.spec(stmt, body, [world.admin, world.kit.owner]))
    assert set(accepted.signers) == {"u_admin", "u_owner"}


def test_a_revoked_agent_refuses_everything(world):
    """Once the log revokes this agent it runs nothing signed for it."""
    world.kit.add("agent.revoke", {"agentId": AGENT}, world.kit.owner)
    world.store.extend([parse_signed(world.kit.signed[-1], world.kit.seq - 1)])
    stmt, body = world.statement(world.kit.owner)
    assert reason(world, world.spec(stmt, body, [world.kit.owner])) == "wrong-agent"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bit=st.integers(min_value=0))
def test_any_flipped_bit_of_a_statement_is_refused(world, bit):
    """Property: a signed statement with any one bit flipped never passes."""
    stmt, body = world.statement(world.member)
    raw = bytearray(dumps(stmt))
    spec = world.spec(stmt, body, [world.member], raw=bytes(raw))
    index = bit % (len(raw) * 8)
    raw[index // 8] ^= 1 << (index % 8)
    flipped = spec.model_copy(
        update={"signed": spec.signed.model_copy(update={"stmt": b64u(bytes(raw))})}  # type: ignore[union-attr]
    )
    with pytest.raises(TaskRefusedError):
        asyncio.run(world.checker().check_task(flipped))


# --- the gate: audit records and signed cancels ---


def test_gate_records_every_statement_and_checks_cancels(world, tmp_path):
    """Accepted and refused statements are chained and signed in the agent's audit log; a
    cancel needs a live device signature of the submitter or of an admin."""
    gate = TrustGate(
        world.store,
        world.keys,
        agent_id=AGENT,
        seen=world.seen.__contains__,
        clock=lambda: world.clock,
    )
    stmt, body = world.statement(world.member)
    spec = world.spec(stmt, body, [world.member])
    accepted = asyncio.run(gate.admit(spec))
    assert accepted is not None
    gate.accepted(spec, accepted)
    bad = world.spec(*world.statement(world.viewer), [world.viewer])
    with pytest.raises(TaskRefusedError):
        asyncio.run(gate.admit(bad))
    assert not gate.allow_cancel(TaskCancel(task_id=stmt["task"]))
    member_key = keys.generate_signing_key("c25519")
    forged = _cancel(stmt["task"], "dv_u_member", member_key)
    assert not gate.allow_cancel(forged)
    gate.finished(TaskFinished(task_id=stmt["task"], status="completed"))
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines(keepends=True)
    report = verify_audit(lines, keys.load_verify_key("c25519", world.keys.sig_pub))
    assert report.ok
    assert report.records == 5
    kinds = [
        (json.loads(x)["kind"], json.loads(x)["outcome"], json.loads(x)["reason"]) for x in lines
    ]
    assert kinds == [
        ("task", "accepted", None),
        ("task", "refused", "role-too-low"),
        ("cancel", "refused", "signature-required"),
        ("cancel", "refused", "signature-invalid"),
        ("task.result", "accepted", None),
    ]


def test_a_device_signed_cancel_by_the_submitter_is_allowed(tmp_path):
    """The kit's device keys are generated here so the submitter can sign a cancel."""
    world = World(tmp_path)
    key = keys.generate_signing_key("c25519")
    device = device_keys("dv_phone2")
    device["sigPub"] = keys.public_text(key)
    world.kit.add("device.add", {"userId": "u_member", **device}, world.member)
    world.store.extend([parse_signed(world.kit.signed[-1], world.kit.seq - 1)])
    gate = TrustGate(
        world.store,
        world.keys,
        agent_id=AGENT,
        seen=world.seen.__contains__,
        clock=lambda: world.clock,
    )
    stmt, body = world.statement(world.member)
    spec = world.spec(stmt, body, [world.member])
    gate.accepted(spec, asyncio.run(gate.admit(spec)))
    assert gate.allow_cancel(_cancel(stmt["task"], "dv_phone2", key))
    assert not gate.allow_cancel(_cancel(stmt["task"], "dv_phone2", key, ws="ws_8"))


def _cancel(task: str, device: str, key: keys.SigningKey, ws: str = "ws_7") -> TaskCancel:
    raw = dumps(
        {
            "v": 1,
            "kind": "cancel",
            "ws": ws,
            "agent": AGENT,
            "task": task,
            "device": device,
            "issuedAt": NOW,
        }
    )
    sig = b64u(keys.sign(key, tag("cancel") + raw))
    return TaskCancel(task_id=task, signed=SignedStop(stmt=b64u(raw), sig=sig))


def test_run_once_and_counters_come_back_from_the_audit_log(world, tmp_path):
    """A signed task's id and its passkey counter are durable through the audit record
    (fsynced before the task starts): a fresh ledger and store learn them from it."""
    from codexrelay.agent.ledger import TaskLedger  # noqa: PLC0415

    gate = TrustGate(
        world.store,
        world.keys,
        agent_id=AGENT,
        seen=world.seen.__contains__,
        clock=lambda: world.clock,
    )
    stmt, body = world.statement(world.member)
    spec = world.spec(stmt, body, [world.member], sign_count=41)
    gate.accepted(spec, asyncio.run(gate.admit(spec)))
    ledger = TaskLedger.open(tmp_path / "fresh")
    assert stmt["task"] not in ledger
    gate.restore_run_once(ledger)
    assert stmt["task"] in ledger
    fresh = TrustStore(tmp_path)
    assert fresh.count(world.member.cred_id) == 41


def test_an_interrupt_needs_the_starters_or_an_admins_device(tmp_path):
    """Interrupting a conversation turn follows the cancel rule (TRUST.md §4.13)."""
    world = World(tmp_path)
    key = keys.generate_signing_key("c25519")
    device = device_keys("dv_member2")
    device["sigPub"] = keys.public_text(key)
    world.kit.add("device.add", {"userId": "u_member", **device}, world.member)
    world.store.extend([parse_signed(world.kit.signed[-1], world.kit.seq - 1)])
    gate = TrustGate(
        world.store,
        world.keys,
        agent_id=AGENT,
        seen=world.seen.__contains__,
        clock=lambda: world.clock,
    )
    turn = str(uuid.uuid4())
    stmt = {
        "v": 1,
        "kind": "interrupt",
        "ws": "ws_7",
        "agent": AGENT,
        "thread": "th_1",
        "turn": turn,
        "device": "dv_member2",
        "issuedAt": NOW,
    }
    raw = dumps(stmt)
    stop = SignedStop(stmt=b64u(raw), sig=b64u(keys.sign(key, tag("interrupt") + raw)))
    assert gate.allow_interrupt(stop, thread="th_1", turn=turn, starter="u_member")
    assert not gate.allow_interrupt(stop, thread="th_1", turn=turn, starter="u_admin")
    assert not gate.allow_interrupt(stop, thread="th_2", turn=turn, starter="u_member")
    cancel_sig = SignedStop(stmt=b64u(raw), sig=b64u(keys.sign(key, tag("cancel") + raw)))
    assert not gate.allow_interrupt(cancel_sig, thread="th_1", turn=turn, starter="u_member")
