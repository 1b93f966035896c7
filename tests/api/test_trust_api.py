"""Protected workspaces over HTTP, in-process: the membership log the relay stores but
cannot write, plaintext refused, sudo mode, signed tasks forwarded byte for byte, the
two-person rule's waiting state, and pairing that authenticates both sides (TRUST.md)."""

from __future__ import annotations

import contextlib
import json

import pytest

from codexrelay.e2e import keys
from codexrelay.e2e.pairing import claim_mac, pairing_key
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.wire import b64u, b64u_decode
from tests.api.test_pairing_api import _hello
from tests.softauthn import LOGIN_TAG, Phone, join_by_invite
from tests.trustkit import Book, TrustedPhone, dumps


def _seconds(clock):
    """The relay's fake clock as the phone reads it (Unix seconds)."""

    def now() -> float:
        return float(clock.now.timestamp())

    return now


@pytest.fixture
def owner(app_client, relay_setup, clock) -> TrustedPhone:
    phone = Phone(app_client).bootstrap(relay_setup.token)
    return TrustedPhone.enroll(phone, "localhost", clock=_seconds(clock))


@pytest.fixture
def wid(owner) -> str:
    return owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]


@pytest.fixture
def token(app_client, owner, wid) -> str:
    """An agent paired before protection was turned on (not yet pinned)."""
    return _pair_plain(app_client, owner, wid)


@pytest.fixture
def book(owner, wid, token) -> Book:
    return owner.genesis(wid)[0]


def _pair_plain(client, owner: TrustedPhone, wid: str, agent_id: str = "devbox") -> str:
    code = owner.phone.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
    claim = client.post(
        "/api/v1/agent/pair", json={"code": code, "agentId": agent_id, "label": agent_id}
    ).json()
    path = f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}/approve"
    assert owner.phone.post(path).status_code == 200
    poll = client.get(
        f"/api/v1/agent/pair/{claim['requestId']}",
        headers={"Authorization": f"Bearer {claim['pollSecret']}"},
    )
    return str(poll.json()["agentToken"])


def _error(res, status: int, code: str) -> None:
    assert res.status_code == status, res.text
    assert res.json()["error"] == code, res.text


def _person(owner: TrustedPhone, wid: str, role: str, name: str, clock) -> TrustedPhone:
    phone = join_by_invite(owner.phone, wid, role, name)
    me = phone.get("/api/v1/me").json()["user"]
    return TrustedPhone(phone, me["id"], me["name"], "localhost", _seconds(clock))


@contextlib.contextmanager
def _agent(client, token, agent_id="devbox"):
    with client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        features = {"codexExec": True, "codexExecWrite": True, "runAction": True}
        ws.send_json(_hello(agent_id, features=features))
        ws.receive_json()
        yield ws, token


# --- the log ---


def test_genesis_protects_the_workspace_and_the_log_is_served(app_client, owner, wid, book):
    """After the genesis the log is served as signed, and plaintext tasks are refused."""
    log = owner.phone.get(f"/api/v1/workspaces/{wid}/e2e/log").json()
    assert log["protected"] is True
    assert log["head"] == {"seq": 0, "hash": book.genesis_hash}
    assert log["entries"][0]["op"] == "genesis"
    res = owner.phone.post(
        f"/api/v1/workspaces/{wid}/tasks",
        json={"agentId": "devbox", "type": "run_action", "actionId": "x"},
    )
    _error(res, 409, "signature-required")


def test_conversations_are_refused_in_a_protected_workspace(owner, wid, book):
    """Conversation turns carry no signed statement yet: the relay refuses them first (the
    agent refuses them too)."""
    res = owner.phone.post(
        f"/api/v1/workspaces/{wid}/threads", json={"agentId": "devbox", "prompt": "hi"}
    )
    _error(res, 409, "signature-required")


def test_an_unprotected_workspace_is_unchanged(owner, wid):
    """Without a genesis the log is empty and plain tasks go on as before."""
    log = owner.phone.get(f"/api/v1/workspaces/{wid}/e2e/log").json()
    assert log == {"protected": False, "entries": [], "head": None}
    res = owner.phone.post(
        f"/api/v1/workspaces/{wid}/tasks",
        json={"agentId": "nope", "type": "run_action", "actionId": "x"},
    )
    _error(res, 409, "agent-not-available")


def test_genesis_must_be_the_owners_over_their_own_passkey(app_client, owner, wid, clock):
    """An admin cannot found the log; a passkey the relay never registered is refused."""
    admin = _person(owner, wid, "admin", "Ada", clock)
    res = admin.phone.post(f"/api/v1/workspaces/{wid}/e2e/log", json={"entry": "e30", "sigs": []})
    assert res.status_code in {400, 422}
    stranger = owner.phone.authenticator.new_credential("localhost", owner.user_id.encode())
    genesis = {
        "v": 1,
        "op": "genesis",
        "ws": wid,
        "name": "Default",
        "origins": [owner.origin],
        "rpId": "localhost",
        "owner": {
            "userId": owner.user_id,
            "name": owner.name,
            "passkeys": [
                {"credId": b64u(stranger.credential_id), "cose": b64u(stranger.cose_public_key())}
            ],
        },
        "devices": [],
        "policy": json.loads(
            json.dumps(
                __import__("codexrelay.e2e.policy", fromlist=["x"])
                .default_policy()
                .model_dump(by_alias=True)
            )
        ),
        "createdAt": owner.now(),
    }
    raw = dumps(genesis)
    posted = {"entry": b64u(raw), "sigs": [owner.sign("log", raw, credential=stranger)]}
    res = owner.phone.post(f"/api/v1/workspaces/{wid}/e2e/log", json=posted)
    _error(res, 400, "invalid-log-entry")
    posted = {"entry": b64u(raw), "sigs": [owner.sign("log", raw, credential=stranger)]}
    res = admin.phone.post(f"/api/v1/workspaces/{wid}/e2e/log", json=posted)
    _error(res, 403, "forbidden")


def test_stale_prev_is_409_and_the_phone_resigns(app_client, owner, wid, book, clock):
    """Two changes signed on one head: the second is refused with stale-log-head."""
    ada = _person(owner, wid, "member", "Ada", clock)
    bob = _person(owner, wid, "member", "Bob", clock)
    first = owner.entry(book, "member.add", _member_body(ada, "member"))
    second = owner.entry(book, "member.add", _member_body(bob, "member"))
    assert owner.post_entry(book, first).status_code == 201
    _error(owner.post_entry(book, second), 409, "stale-log-head")
    owner.add(book, "member.add", _member_body(bob, "member"))
    assert owner.phone.get(f"/api/v1/workspaces/{wid}/e2e/log").json()["head"]["seq"] == 2


def test_the_log_refuses_what_the_role_rules_refuse(app_client, owner, wid, book, clock):
    """A member cannot add an agent or raise themself; a signature without UV is refused."""
    ada = _person(owner, wid, "member", "Ada", clock)
    owner.add_member(book, ada, "member")
    _error(
        ada.post_entry(
            book, ada.entry(book, "member.role", {"userId": ada.user_id, "role": "admin"})
        ),
        400,
        "invalid-log-entry",
    )
    posted = owner.entry(book, "member.role", {"userId": ada.user_id, "role": "admin"})
    raw = b64u_decode(posted["entry"], max_bytes=1 << 20)
    posted["sigs"] = [owner.sign("log", raw, user_verified=False)]
    res = owner.post_entry(book, posted)
    _error(res, 400, "invalid-log-entry")
    assert "user-not-verified" in res.json()["message"]


def test_log_changes_keep_the_relay_members_in_step(app_client, owner, wid, book, clock):
    """member.role and member.remove in the log change the relay's member list too."""
    ada = _person(owner, wid, "member", "Ada", clock)
    owner.add_member(book, ada, "member")
    owner.add(book, "member.role", {"userId": ada.user_id, "role": "viewer"})
    members = owner.phone.get(f"/api/v1/workspaces/{wid}/members").json()["members"]
    assert {m["userId"]: m["role"] for m in members}[ada.user_id] == "viewer"
    owner.add(book, "member.remove", {"userId": ada.user_id})
    members = owner.phone.get(f"/api/v1/workspaces/{wid}/members").json()["members"]
    assert ada.user_id not in {m["userId"] for m in members}


def test_an_old_signature_needs_signing_again(app_client, owner, wid, book, clock):
    """An entry signed more than five minutes before it arrives is refused (sudo window)."""
    posted = owner.entry(book, "checkpoint", {"reason": "test"}, issuedAt=owner.now() - 301)
    _error(owner.post_entry(book, posted), 403, "reauth-required")


def _member_body(person: TrustedPhone, role: str) -> dict:
    return {
        "userId": person.user_id,
        "name": person.name,
        "role": role,
        "passkeys": [person.passkey()],
        "devices": [person.device()],
    }


# --- sudo mode ---


def test_sudo_mode_guards_pairing_in_a_protected_workspace(app_client, owner, wid, book, clock):
    """A pairing code needs a passkey ceremony within five minutes; it lapses."""
    _error(owner.phone.post(f"/api/v1/workspaces/{wid}/pairings", json={}), 403, "reauth-required")
    assert owner.phone.get("/api/v1/auth/sudo").json() == {"sudoUntil": None}
    verified = owner.sudo()
    assert verified.status_code == 200, verified.text
    assert owner.phone.post(f"/api/v1/workspaces/{wid}/pairings", json={}).status_code == 201
    clock.advance(301)
    _error(owner.phone.post(f"/api/v1/workspaces/{wid}/pairings", json={}), 403, "reauth-required")


def test_sudo_ceremony_refuses_a_login_tagged_or_unverified_assertion(owner, book):
    """The sudo ceremony has its own tag and needs user verification."""
    _error(owner.sudo(tag=LOGIN_TAG), 400, "invalid-passkey")
    _error(owner.sudo(user_verified=False), 400, "invalid-passkey")
    assert owner.phone.get("/api/v1/auth/sudo").json() == {"sudoUntil": None}


def test_a_passkey_login_counts_as_a_fresh_verification(app_client, owner, wid, book):
    """Signing in with a passkey opens sudo mode for that session."""
    fresh = Phone(app_client, owner.phone.authenticator)
    assert fresh.login().status_code == 200
    assert fresh.get("/api/v1/auth/sudo").json()["sudoUntil"] is not None
    assert fresh.post(f"/api/v1/workspaces/{wid}/pairings", json={}).status_code == 201


def test_raising_a_role_and_adding_a_passkey_need_sudo(app_client, owner, wid, book, clock):
    """In a protected workspace: raising a role and a second passkey need sudo; lowering
    a role does not."""
    ada = _person(owner, wid, "member", "Ada", clock)
    path = f"/api/v1/workspaces/{wid}/members/{ada.user_id}"
    _error(owner.phone.patch(path, json={"role": "admin"}), 403, "reauth-required")
    assert owner.phone.patch(path, json={"role": "viewer"}).status_code == 200
    _error(
        owner.phone.post("/api/v1/auth/passkeys/register/options", json={}), 403, "reauth-required"
    )
    assert owner.sudo().status_code == 200
    assert owner.phone.patch(path, json={"role": "admin"}).status_code == 200
    assert owner.phone.register("second").status_code == 201


# --- signed tasks ---


def test_signed_task_reaches_the_agent_byte_for_byte(app_client, owner, wid, token, book):
    """The relay checks the statement and forwards stmt, body and auth unchanged."""
    with _agent(app_client, token) as (ws, _):
        stmt, body = owner.task(book, "devbox", "codex_exec", prompt="hello there")
        request = owner.signed_task(stmt, body)
        res = owner.submit(book, request)
        assert res.status_code == 201, res.text
        task = res.json()["task"]
        assert task["id"] == stmt["task"]
        sent = ws.receive_json()["task"]
        assert sent["signed"] == request
        assert sent["prompt"] == "hello there"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"ws": "ws_other"}, 400, "invalid-signature"),
        ({"expiresAt": 1}, 400, "invalid-signature"),
        ({"logHead": {"seq": 9, "hash": "A" * 43}}, 409, "stale-log-head"),
        ({"cwd": "src/"}, 400, "invalid-cwd"),
    ],
    ids=["workspace", "expired", "unknown-head", "cwd-not-plain"],
)
def test_signed_task_first_filter(app_client, owner, wid, token, book, change, status, code):
    """What every agent would refuse, the relay refuses first."""
    with _agent(app_client, token):
        stmt, body = owner.task(book, "devbox", **change)
        stmt.setdefault("actionId", "x")
        stmt["actionId"] = stmt["actionId"] or "x"
        _error(owner.submit(book, owner.signed_task(stmt, body)), status, code)


def test_signed_task_by_someone_else_or_without_uv_is_refused(
    app_client, owner, wid, token, book, clock
):
    """The first signature must be the caller's and user-verified."""
    ada = _person(owner, wid, "member", "Ada", clock)
    owner.add_member(book, ada, "member")
    with _agent(app_client, token):
        stmt, body = owner.task(book, "devbox", actionId="x")
        _error(ada.submit(book, owner.signed_task(stmt, body)), 403, "forbidden")
        stmt, body = owner.task(book, "devbox", actionId="x")
        _error(
            owner.submit(book, owner.signed_task(stmt, body, user_verified=False)),
            400,
            "invalid-signature",
        )


def test_two_person_rule_waits_for_a_second_approver(app_client, owner, wid, token, clock):
    """Write mode under a two-person rule: 202 waiting, then the second signature sends it
    with both signatures over the same statement."""
    policy = default_policy().model_dump(by_alias=True)
    policy["codexWrite"] = {"minRole": "admin", "twoPerson": {"k": 2, "within": 600}}
    book, _ = owner.genesis(wid, policy)
    ada = _person(owner, wid, "admin", "Ada", clock)
    owner.add_member(book, ada, "admin")
    with _make_write_relay(app_client), _agent(app_client, token) as (ws, _):
        stmt, body = owner.task(book, "devbox", "codex_exec", prompt="fix it", writeAccess=True)
        res = owner.submit(book, owner.signed_task(stmt, body))
        assert res.status_code == 202, res.text
        assert res.json()["pendingTask"]["missing"] == 1
        pending = ada.phone.get(f"/api/v1/workspaces/{wid}/signed-tasks/pending").json()
        item = pending["pendingTasks"][0]
        raw = b64u_decode(item["stmt"], max_bytes=1 << 16)
        assert json.loads(raw) == stmt
        approve = {"auth": ada.sign("task", raw)}
        path = f"/api/v1/workspaces/{wid}/signed-tasks/{stmt['task']}/approve"
        _error(ada.phone.post(path, json={"auth": owner.sign("task", raw)}), 403, "forbidden")
        _error(owner.phone.post(path, json={"auth": owner.sign("task", raw)}), 409, "conflict")
        res = ada.phone.post(path, json=approve)
        assert res.status_code == 201, res.text
        sent = ws.receive_json()["task"]
        assert len(sent["signed"]["auth"]) == 2
        assert res.json()["task"]["createdBy"] == owner.user_id


@contextlib.contextmanager
def _make_write_relay(client):
    """Write mode on at the relay for this test."""
    services = client.app.state.services
    features = services.config.features
    old = features.codex_exec_write
    object.__setattr__(features, "codex_exec_write", True)
    try:
        yield
    finally:
        object.__setattr__(features, "codex_exec_write", old)


def test_signed_cancel_reaches_the_agent_and_plain_cancel_is_refused(
    app_client, owner, wid, token, book
):
    """Cancel is device-signed in a protected workspace."""
    with _agent(app_client, token) as (ws, _):
        stmt, body = owner.task(book, "devbox", "codex_exec", prompt="long")
        assert owner.submit(book, owner.signed_task(stmt, body)).status_code == 201
        ws.receive_json()
        ws.send_json({"type": "task.started", "taskId": stmt["task"]})
        path = f"/api/v1/workspaces/{wid}/tasks/{stmt['task']}"
        _error(owner.phone.post(path + "/cancel"), 409, "signature-required")
        cancel = owner.cancel(book, "devbox", stmt["task"])
        forged = {**cancel, "sig": b64u(bytes(64))}
        _error(owner.phone.post(path + "/signed-cancel", json=forged), 400, "invalid-signature")
        assert owner.phone.post(path + "/signed-cancel", json=cancel).status_code == 200
        sent = ws.receive_json()
        assert sent["type"] == "task.cancel"
        assert sent["signed"] == cancel


# --- pairing (§4.2) and the agent's view of the log ---


def test_pairing_carries_claim_and_grant_and_the_agent_reads_the_log(app_client, owner, wid, book):
    """The claim and its MAC reach the phone; an approval without agent.add and grant is
    refused; with them the agent's poll returns the grant, and the agent reads the log."""
    assert owner.sudo().status_code == 200
    pairing = owner.pairing_code(wid)
    claim = {
        "agentId": "build-01",
        "label": "build-01",
        "hostname": "host",
        "workspaceRootName": "app",
        "sigPub": b64u(bytes(32)),
        "kexPub": b64u(bytes(31) + b"\x09"),
        "suite": "c25519",
        "nonce": b64u(bytes(32)),
    }
    sig_key, kex_key = keys.generate_signing_key("c25519"), keys.generate_kex_key("c25519")
    claim["sigPub"], claim["kexPub"] = keys.public_text(sig_key), keys.public_text(kex_key)
    raw = dumps(claim)
    e2e = {"claim": b64u(raw), "mac": claim_mac(pairing_key(pairing.secret, pairing.code), raw)}
    body = {
        "code": pairing.code,
        "agentId": "build-01",
        "label": "build-01",
        "hostname": "host",
        "workspaceRootName": "app",
        "e2e": e2e,
    }
    claimed = app_client.post("/api/v1/agent/pair", json=body)
    assert claimed.status_code == 202, claimed.text
    listed = owner.phone.get(f"/api/v1/workspaces/{wid}/pair-requests").json()["pairRequests"][0]
    assert (listed["keyClaim"], listed["keyClaimMac"], listed["kind"]) == (
        e2e["claim"],
        e2e["mac"],
        "pair",
    )
    _error(
        owner.phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{listed['id']}/approve"),
        409,
        "signature-required",
    )
    assert owner.approve(book, listed, pairing).status_code == 200
    poll = app_client.get(
        f"/api/v1/agent/pair/{claimed.json()['requestId']}",
        headers={"Authorization": f"Bearer {claimed.json()['pollSecret']}"},
    ).json()
    assert poll["status"] == "approved"
    assert poll["grant"]
    assert poll["grantMac"]
    assert poll["agentToken"]
    log = app_client.get(
        "/api/v1/agent/e2e/log", headers={"Authorization": f"Bearer {poll['agentToken']}"}
    ).json()
    assert [e["op"] for e in log["entries"]] == ["genesis", "agent.add"]
    owner.add(book, "agent.revoke", {"agentId": "build-01"})
    refused = app_client.get(
        "/api/v1/agent/e2e/log", headers={"Authorization": f"Bearer {poll['agentToken']}"}
    )
    _error(refused, 401, "unauthenticated")
    agents = owner.phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
    assert next(a for a in agents if a["agentId"] == "build-01")["revokedAt"] is not None


def test_claim_that_names_another_agent_is_refused(app_client, owner, wid):
    """The relay refuses a claim whose agent id differs from the request's."""
    res = owner.phone.post(f"/api/v1/workspaces/{wid}/pairings", json={})
    code = res.json()["code"]
    claim = dumps(
        {
            "agentId": "other",
            "label": "x",
            "hostname": "h",
            "workspaceRootName": "w",
            "sigPub": "A" * 43,
            "kexPub": "A" * 43,
            "suite": "c25519",
            "nonce": "A" * 43,
        }
    )
    body = {
        "code": code,
        "agentId": "devbox",
        "label": "x",
        "hostname": "h",
        "workspaceRootName": "w",
        "e2e": {"claim": b64u(claim), "mac": "A" * 43},
    }
    _error(app_client.post("/api/v1/agent/pair", json=body), 400, "invalid-request")
