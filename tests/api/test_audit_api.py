"""Every security event leaves exactly one audit record with the right actor, driven through
the real endpoints in-process; reads, filters, exports and access rules of the audit API
(B2, O4, R03, I2, I3)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from codexrelay.auditverify import GENESIS, iter_dir, parse_public_key, verify_bundle, verify_dir
from codexrelay.relay.app import create_app
from codexrelay.relay.audit import ref
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.storage.backends import open_configured_store
from tests.api.conftest import services_of
from tests.api.test_pairing_api import _claim, _hello, _poll
from tests.helpers import FakeClock, write_relay_config
from tests.softauthn import Phone, join_by_invite

PROMPT_CANARY = "PROMPT-CANARY-7f3a9c"
OUTPUT_CANARY = "OUTPUT-CANARY-41be0d"


def trail(client: TestClient) -> list[dict]:
    """Every complete record on disk, oldest first."""
    directory = services_of(client).audit.directory
    return [json.loads(line) for _, _, line, _ in iter_dir(directory) if line is not None]


class Watch:
    """The records that appeared since the last look."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.seen = len(trail(client))

    def new(self) -> list[dict]:
        records = trail(self.client)
        fresh, self.seen = records[self.seen :], len(records)
        return fresh

    def one(self, event: str) -> dict:
        """Exactly one new record, of type ``event``."""
        fresh = self.new()
        assert [r["event"] for r in fresh] == [event], fresh
        return fresh[0]


def session_of(phone: Phone) -> dict:
    """The actor a phone's requests are recorded under."""
    me = phone.get("/api/v1/me").json()
    return {
        "type": "user",
        "userId": me["user"]["id"],
        "session": ref(me["session"]["id"]),
        "via": me["session"]["via"],
    }


@pytest.fixture
def owner(app_client) -> Phone:
    """The instance owner, signed in with the recovery token."""
    return Phone(app_client).bootstrap(app_client.setup.token)


@pytest.fixture
def wid(owner) -> str:
    """The default workspace."""
    return owner.get("/api/v1/me").json()["memberships"][0]["workspaceId"]


def _key(client: TestClient) -> object:
    return parse_public_key(services_of(client).audit.signer.public_text)


def test_audit_start_creates_private_key_files_and_started_record(app_client):
    """B2: a first start makes the key (0600) and a 0700 chain dir of 0600 files whose first
    record is relay.started, chained from the genesis hash."""
    data = app_client.setup.data_dir
    key = data / "audit-signing-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "audit").stat().st_mode) == 0o700
    files = list((data / "audit").iterdir())
    assert files
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    first = trail(app_client)[0]
    assert first["event"] == "relay.started"
    assert (first["seq"], first["prev"], first["wseq"]) == (1, GENESIS, 1)
    assert first["target"]["keyCreated"] is True
    assert first["actor"] == {"type": "relay"}


def test_bootstrap_login_failure_and_success(app_client):
    """O4: every bootstrap login is audited, failed ones as anonymous with the address."""
    watch = Watch(app_client)
    phone = Phone(app_client)
    assert phone.post("/api/v1/auth/bootstrap", json={"token": "crb_wrong"}).status_code == 401
    failed = watch.one("auth.bootstrap.failed")
    assert failed["actor"] == {"type": "anonymous"}
    assert failed["client"] == "testclient"
    assert failed["workspace"] == "instance"
    phone.bootstrap(app_client.setup.token)
    login = watch.one("auth.bootstrap.login")
    assert login["actor"] == session_of(phone)
    assert login["actor"]["via"] == "bootstrap"


def test_passkey_registration_login_failure_and_revocation(owner, app_client):
    """B2, I2: passkey registration, login, a failed login and a revocation: one record each,
    each by the session that did it; credential ids appear only hashed."""
    watch = Watch(app_client)
    owner.enroll("Phone")
    registered = watch.one("passkey.registered")
    assert registered["actor"] == session_of(owner)
    credential_id = owner.get("/api/v1/me/passkeys").json()["passkeys"][0]["credentialId"]
    assert registered["target"]["credential"] == ref(credential_id)
    watch.new()

    phone = Phone(app_client, authenticator=owner.authenticator)
    assert phone.login().status_code == 200
    login = watch.one("auth.passkey.login")
    assert login["actor"] == session_of(phone)
    assert login["actor"]["via"] == "passkey"
    watch.new()

    stranger = Phone(app_client, authenticator=owner.authenticator)
    assert stranger.login(origin="https://evil.example").status_code == 400
    assert watch.one("auth.passkey.failed")["actor"] == {"type": "anonymous"}

    assert phone.delete(f"/api/v1/me/passkeys/{credential_id}").status_code == 204
    revoked = watch.one("passkey.revoked")
    assert revoked["actor"] == session_of(phone)
    assert revoked["target"]["credential"] == ref(credential_id)
    assert credential_id not in json.dumps(trail(app_client))


def test_session_ends_logout_revoke_and_revoke_all(owner, wid, app_client):
    """I2: logout, ending one's own other session and the owner ending all of a user's."""
    second = Phone(app_client).bootstrap(app_client.setup.token)
    second_session = second.get("/api/v1/me").json()["session"]["id"]
    watch = Watch(app_client)
    assert owner.delete(f"/api/v1/me/sessions/{second_session}").status_code == 204
    ended = watch.one("session.ended")
    assert ended["actor"] == session_of(owner)
    assert ended["target"]["session"] == ref(second_session)
    assert ended["target"]["reason"] == "revoked"

    member = join_by_invite(owner, wid, "member", "Mia")
    member_id = member.get("/api/v1/me").json()["user"]["id"]
    member_actor = session_of(member)
    watch.new()
    assert member.post("/api/v1/auth/logout").status_code == 204
    logout = watch.one("session.ended")
    assert logout["actor"] == member_actor
    assert logout["target"] == {
        "userId": member_id,
        "session": member_actor["session"],
        "reason": "logout",
    }

    Phone(app_client, authenticator=member.authenticator).login()
    watch.new()
    assert owner.delete(f"/api/v1/users/{member_id}/sessions").status_code == 204
    all_ended = watch.one("session.ended")
    assert all_ended["target"] == {"userId": member_id, "count": 1, "reason": "revoked-all"}


def test_invite_created_accepted_enrolled_cancelled_and_failed(owner, wid, app_client):
    """O5, R21: an invite's life on record; the membership is recorded when it is granted
    (at the invitee's first passkey), and a wrong code is a failed attempt."""
    watch = Watch(app_client)
    res = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "member"})
    invite = res.json()["invite"]
    created = watch.one("invite.created")
    assert created["workspace"] == wid
    assert created["target"] == {"inviteId": invite["id"], "role": "member"}
    assert created["actor"] == session_of(owner)

    invitee = Phone(app_client)
    res = invitee.post("/api/v1/invites/accept", json={"code": res.json()["code"], "name": "Ivy"})
    accepted = watch.one("invite.accepted")
    assert accepted["actor"]["via"] == "invite"
    assert accepted["actor"]["userId"] == res.json()["user"]["id"]
    assert accepted["target"]["newUser"] is True

    invitee.enroll()
    fresh = watch.new()
    assert [r["event"] for r in fresh] == ["passkey.registered", "member.added"]
    assert fresh[1]["workspace"] == wid
    assert fresh[1]["target"]["role"] == "member"

    other = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "viewer"}).json()
    watch.new()
    assert owner.delete(f"/api/v1/workspaces/{wid}/invites/{other['invite']['id']}").status_code
    assert watch.one("invite.cancelled")["target"] == {"inviteId": other["invite"]["id"]}

    body = {"code": "AAAA-BBBB-CCCC", "name": "Eve"}
    bad = Phone(app_client).post("/api/v1/invites/accept", json=body)
    assert bad.json()["error"] == "invalid-or-expired-code"
    assert watch.one("invite.accept-failed")["actor"] == {"type": "anonymous"}


def test_active_user_joining_by_invite_records_the_membership(owner, wid, app_client):
    """O5: an active user accepting an invite joins at once: invite.accepted + member.added."""
    other = owner.post("/api/v1/workspaces", json={"name": "Second"}).json()["workspace"]
    member = join_by_invite(owner, wid, "member", "Max")
    code = owner.post(f"/api/v1/workspaces/{other['id']}/invites", json={"role": "viewer"})
    watch = Watch(app_client)
    assert member.post("/api/v1/invites/accept", json={"code": code.json()["code"]}).status_code
    fresh = watch.new()
    assert [r["event"] for r in fresh] == ["invite.accepted", "member.added"]
    assert all(r["actor"] == session_of(member) for r in fresh)
    assert fresh[1]["workspace"] == other["id"]


def test_recovery_codes_issued_redeemed_and_failed(owner, wid, app_client):
    """I2: recovery codes issued by the owner (instance) or an admin (workspace), redeemed
    (recorded as the new recovery-code session) and a wrong code tried."""
    member = join_by_invite(owner, wid, "member", "Rae")
    admin = join_by_invite(owner, wid, "admin", "Ada")
    uid = member.get("/api/v1/me").json()["user"]["id"]
    watch = Watch(app_client)
    issued = owner.post(f"/api/v1/users/{uid}/recovery-code", json={}).json()
    record = watch.one("recovery.issued")
    assert (record["workspace"], record["target"]["userId"]) == ("instance", uid)
    assert record["target"]["recoveryCodeId"] == issued["recoveryCode"]["id"]

    res = admin.post(f"/api/v1/workspaces/{wid}/members/{uid}/recovery-code", json={})
    assert res.status_code == 201, res.text
    by_admin = watch.one("recovery.issued")
    assert by_admin["workspace"] == wid
    assert by_admin["actor"] == session_of(admin)

    phone = Phone(app_client)
    assert phone.post("/api/v1/auth/recovery/redeem", json={"code": res.json()["code"]}).is_success
    redeemed = watch.one("recovery.redeemed")
    assert redeemed["actor"]["via"] == "recovery-code"
    assert redeemed["actor"]["userId"] == uid

    again = Phone(app_client).post("/api/v1/auth/recovery/redeem", json={"code": issued["code"]})
    assert again.status_code == 400
    watch.one("recovery.redeem-failed")


def test_role_change_removal_and_leaving(owner, wid, app_client):
    """R03, B7: a role change names old and new role; removal and leaving say which."""
    member = join_by_invite(owner, wid, "member", "Moe")
    viewer = join_by_invite(owner, wid, "viewer", "Vic")
    uid = member.get("/api/v1/me").json()["user"]["id"]
    vid = viewer.get("/api/v1/me").json()["user"]["id"]
    watch = Watch(app_client)
    assert owner.patch(f"/api/v1/workspaces/{wid}/members/{uid}", json={"role": "admin"}).is_success
    changed = watch.one("member.role-changed")
    assert changed["target"] == {"userId": uid, "role": "admin", "previousRole": "member"}
    assert changed["workspace"] == wid

    assert owner.delete(f"/api/v1/workspaces/{wid}/members/{uid}").status_code == 204
    assert watch.one("member.removed")["target"] == {"userId": uid, "left": False}
    assert viewer.delete(f"/api/v1/workspaces/{wid}/members/{vid}").status_code == 204
    left = watch.one("member.removed")
    assert left["target"] == {"userId": vid, "left": True}
    assert left["actor"] == session_of(viewer)


def test_pairing_approval_token_issue_renewal_revocation_and_rejection(owner, wid, app_client):
    """R06, R07, I1: pairing code, claim, approval, token issue (by the agent), renewal over
    the socket, revocation; a rejection and a wrong code. Codes and tokens never appear."""
    watch = Watch(app_client)
    created = owner.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()
    assert watch.one("pairing.created")["target"] == {"pairingId": created["pairing"]["id"]}
    claim = _claim(app_client, created["code"]).json()
    claimed = watch.one("pairing.claimed")
    assert claimed["actor"] == {"type": "anonymous"}
    assert (claimed["workspace"], claimed["target"]["agentId"]) == (wid, "devbox")
    approve = f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}/approve"
    assert owner.post(approve).status_code == 200
    assert watch.one("pair-request.approved")["actor"] == session_of(owner)
    app_client.cookies.clear()
    token = _poll(app_client, claim).json()["agentToken"]
    issued = watch.one("agent.token-issued")
    assert issued["actor"]["type"] == "agent"
    assert issued["actor"]["agentId"] == "devbox"

    with app_client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send_json(_hello("devbox"))
        ws.receive_json()
        watch.new()
        ws.send_json({"type": "token.renew"})
        renewed_token = ws.receive_json()["agentToken"]
        assert watch.one("agent.token-renewed")["actor"] == issued["actor"]
        assert owner.delete(f"/api/v1/workspaces/{wid}/agents/devbox").status_code == 204
    revoked = watch.one("agent.revoked")
    assert revoked["target"]["reason"] == "revoked"
    assert revoked["actor"] == session_of(owner)

    second = owner.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()
    other = _claim(app_client, second["code"], "other").json()
    watch.new()
    reject = f"/api/v1/workspaces/{wid}/pair-requests/{other['requestId']}/reject"
    assert owner.post(reject).status_code == 200
    assert watch.one("pair-request.rejected")["target"]["agentId"] == "other"
    assert _claim(app_client, second["code"], "third").status_code == 400
    watch.one("pairing.claim-failed")

    text = b"".join(p.read_bytes() for p in services_of(app_client).audit.directory.iterdir())
    for secret in (created["code"], second["code"], token, renewed_token, claim["pollSecret"]):
        assert secret.encode() not in text


def test_feature_disabled_refusals_are_recorded(make_client):
    """R09: 403 feature-disabled refusals (pairing, a task type) are on record."""
    with make_client(features={"pairings": False, "codexExec": False}) as client:
        phone = Phone(client).bootstrap(client.setup.token)
        wid = phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        watch = Watch(client)
        res = phone.post(f"/api/v1/workspaces/{wid}/pairings", json={})
        assert res.json()["error"] == "feature-disabled"
        refused = watch.one("feature.refused")
        assert refused["workspace"] == wid
        assert refused["target"] == {
            "route": "/api/v1/workspaces/{wid}/pairings",
            "code": "feature-disabled",
        }
        assert refused["actor"] == session_of(phone)
        res = phone.post(
            f"/api/v1/workspaces/{wid}/tasks",
            json={"agentId": "devbox", "type": "codex_exec", "prompt": "x"},
        )
        assert res.json()["error"] == "feature-disabled"
        assert watch.one("feature.refused")["target"]["route"].endswith("/tasks")


def test_write_mode_refusal_is_recorded(owner, wid, app_client):
    """R17, R09: a write-mode task refused with 403 write-mode-disabled is on record."""
    with _agent_socket(app_client, owner, wid) as ws:
        ws.send_json(_hello("devbox"))
        ws.receive_json()
        watch = Watch(app_client)
        res = owner.post(
            f"/api/v1/workspaces/{wid}/tasks",
            json={"agentId": "devbox", "type": "codex_exec", "prompt": "x", "writeAccess": True},
        )
        assert res.json()["error"] == "write-mode-disabled"
        refused = watch.one("feature.refused")
        assert refused["target"]["code"] == "write-mode-disabled"
        assert refused["actor"] == session_of(owner)


def _agent_socket(client: TestClient, owner: Phone, wid: str):
    created = owner.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()
    claim = _claim(client, created["code"]).json()
    owner.post(f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}/approve")
    client.cookies.clear()
    token = _poll(client, claim).json()["agentToken"]
    return client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    )


def test_tasks_created_cancelled_finished_metadata_only(owner, wid, app_client):
    """R10, B2: task records carry ids, type, flags and status; a prompt or output canary
    never reaches an audit file."""
    with _agent_socket(app_client, owner, wid) as ws:
        ws.send_json(_hello("devbox"))
        ws.receive_json()
        watch = Watch(app_client)
        res = owner.post(
            f"/api/v1/workspaces/{wid}/tasks",
            json={"agentId": "devbox", "type": "codex_exec", "prompt": PROMPT_CANARY},
        )
        task = res.json()["task"]
        created = watch.one("task.created")
        assert created["actor"] == session_of(owner)
        assert created["target"] == {
            "taskId": task["id"],
            "agentId": "devbox",
            "type": "codex_exec",
            "actionId": None,
            "logSourceId": None,
            "writeAccess": False,
            "resume": False,
            "status": "queued",
        }
        ws.receive_json()
        ws.send_json(
            {
                "type": "task.finished",
                "taskId": task["id"],
                "status": "completed",
                "exitCode": 0,
                "finalMessage": OUTPUT_CANARY,
                "outputTail": OUTPUT_CANARY,
                "diffText": OUTPUT_CANARY,
            }
        )
        finished = _wait_for(watch, "task.finished")
        assert finished["actor"]["type"] == "agent"
        assert finished["target"]["status"] == "completed"
        assert finished["target"]["exitCode"] == 0

        res = owner.post(
            f"/api/v1/workspaces/{wid}/tasks",
            json={"agentId": "devbox", "type": "run_action", "actionId": "tests"},
        )
        second = res.json()["task"]
        ws.receive_json()
        watch.new()
        assert owner.post(f"/api/v1/workspaces/{wid}/tasks/{second['id']}/cancel").is_success
        cancel = watch.one("task.cancel-requested")
        assert cancel["target"]["actionId"] == "tests"
        ws.receive_json()
        ws.send_json({"type": "task.finished", "taskId": second["id"], "status": "cancelled"})
        assert _wait_for(watch, "task.finished")["target"]["status"] == "cancelled"
    text = b"".join(p.read_bytes() for p in services_of(app_client).audit.directory.iterdir())
    assert PROMPT_CANARY.encode() not in text
    assert OUTPUT_CANARY.encode() not in text


def _wait_for(watch: Watch, event: str) -> dict:
    """Agent reports are recorded without a request waiting; poll for the one record."""
    from tests.helpers import wait_until  # noqa: PLC0415

    found: list[dict] = []

    def arrived() -> bool:
        found.extend(watch.new())
        return bool(found)

    wait_until(arrived, timeout=10, what=event)
    assert [r["event"] for r in found] == [event], found
    return found[0]


def test_rate_limit_trip_is_one_record_a_minute_per_address(make_client, clock):
    """A1, R20: the first 429 of an address in a minute is recorded, the flood after it is
    not; the next minute's first one is."""
    with make_client(maxLoginAttemptsPerMinute=2) as client:
        phone = Phone(client)
        for _ in range(2):
            assert phone.post("/api/v1/auth/bootstrap", json={"token": "x"}).status_code == 401
        watch = Watch(client)
        assert phone.post("/api/v1/auth/bootstrap", json={"token": "x"}).status_code == 429
        tripped = watch.one("ratelimit.tripped")
        assert tripped["target"]["route"] == "/api/v1/auth/bootstrap"
        assert tripped["client"] == "testclient"
        for _ in range(5):
            assert phone.post("/api/v1/auth/bootstrap", json={"token": "x"}).status_code == 429
        assert watch.new() == []
        clock.advance(61)
        assert phone.post("/api/v1/auth/bootstrap", json={"token": "x"}).status_code == 429
        watch.one("ratelimit.tripped")


def _start(setup, clock) -> TestClient:
    config = load_relay_config(setup.config_path)
    store = open_configured_store(config, now=clock)
    return TestClient(create_app(config, store, clock=clock), base_url=setup.base_url)


def test_secret_rotation_is_recorded_at_the_next_start(tmp_path):
    """I3: a changed tokenSecret or recovery token hash is recorded when the relay next
    starts (keyed fingerprints, never the secrets); an unchanged restart records none."""
    clock = FakeClock()
    setup = write_relay_config(tmp_path / "relay")
    for change in (None, "tokenSecret", None, "bootstrapAdminTokenHash"):
        if change == "tokenSecret":
            setup.update_config(tokenSecret="n" * 40)
        elif change is not None:
            setup.update_config(bootstrapAdminTokenHash="ab" * 32)
        with _start(setup, clock):
            pass
    records = [json.loads(line) for _, _, line, _ in iter_dir(setup.data_dir / "audit") if line]
    events = [r["event"] for r in records]
    assert events == [
        "relay.started",
        "secrets.rotated",
        "relay.started",
        "relay.started",
        "secrets.rotated",
        "relay.started",
    ]
    rotations = [r["target"] for r in records if r["event"] == "secrets.rotated"]
    assert rotations == [
        {"bootstrapToken": False, "tokenSecret": True},
        {"bootstrapToken": True, "tokenSecret": False},
    ]
    text = b"".join(p.read_bytes() for p in (setup.data_dir / "audit").iterdir())
    assert b"n" * 40 not in text
    assert b"ab" * 32 not in text
    key = parse_public_key((setup.data_dir / "audit-signing-key.pub").read_text())
    assert verify_dir(setup.data_dir / "audit", [key]).ok


def test_workspace_audit_filters_paging_and_reads_are_audited(owner, wid, app_client):
    """B2: admins page their workspace's records newest first with filters; each read is
    itself recorded."""
    for role in ("viewer", "member", "viewer"):
        owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": role})
    url = f"/api/v1/workspaces/{wid}/audit"
    page = owner.get(url, params={"event": "invite.created", "limit": 2}).json()
    assert [r["event"] for r in page["records"]] == ["invite.created"] * 2
    assert page["records"][0]["seq"] > page["records"][1]["seq"]
    rest = owner.get(url, params={"event": "invite.*", "before": page["nextBefore"]}).json()
    assert [r["target"]["role"] for r in rest["records"]] == ["viewer"]
    assert rest["nextBefore"] is None
    reads = owner.get(url, params={"event": "audit.read"}).json()["records"]
    assert len(reads) == 2
    assert reads[0]["target"]["eventFilter"] == "invite.*"
    assert reads[0]["actor"] == session_of(owner)
    uid = session_of(owner)["userId"]
    mine = owner.get(url, params={"actor": uid, "limit": 500}).json()["records"]
    assert mine
    assert all(r["actor"].get("userId") == uid for r in mine)
    assert all(r["workspace"] == wid for r in mine)
    later = owner.get(url, params={"since": "2100-01-01T00:00:00Z"}).json()["records"]
    assert later == []
    assert owner.get(url, params={"until": "2000-01-01T00:00:00Z"}).json()["records"] == []
    assert owner.get(url, params={"since": "2000-01-01T00:00:00+02:00"}).json()["records"]
    # Only ISO 8601: numbers are not read as Unix times (found by the slow fuzzing proof).
    for bad in ("0.0", "1700000000", "yesterday", "2026-13"):
        for key in ("since", "until"):
            for path in (url, f"{url}/export"):
                res = owner.get(path, params={key: bad})
                assert (res.status_code, res.json()["error"]) == (422, "invalid-request"), (
                    path, key, bad, res.text,
                )  # fmt: skip


def test_audit_access_rules(owner, wid, app_client):
    """R03: members cannot read the trail, other workspaces' admins do not see it exists,
    only the instance owner reads relay-wide records, any active user may fetch the key."""
    member = join_by_invite(owner, wid, "member", "Meg")
    admin = join_by_invite(owner, wid, "admin", "Al")
    assert member.get(f"/api/v1/workspaces/{wid}/audit").status_code == 403
    assert admin.get(f"/api/v1/workspaces/{wid}/audit").status_code == 200
    assert admin.get("/api/v1/audit").status_code == 403
    assert admin.get("/api/v1/audit/export").status_code == 403
    assert Phone(app_client).get("/api/v1/audit").status_code == 401
    records = owner.get("/api/v1/audit", params={"limit": 500}).json()["records"]
    assert records
    assert {r["workspace"] for r in records} == {"instance"}
    key = member.get("/api/v1/audit/public-key").json()
    assert key["publicKey"] == services_of(app_client).audit.signer.public_text
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")


def test_workspace_export_verifies_offline_and_is_recorded(owner, wid, app_client, tmp_path):
    """B2: a workspace export is a signed bundle of that workspace's own chain; it verifies
    with the public key alone, and exporting is itself on record (in the bundle)."""
    owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "viewer"})
    other = owner.post("/api/v1/workspaces", json={"name": "Other"}).json()["workspace"]
    owner.post(f"/api/v1/workspaces/{other['id']}/invites", json={"role": "viewer"})
    res = owner.get(f"/api/v1/workspaces/{wid}/audit/export")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in res.headers["content-disposition"]
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(res.content)
    public = owner.get("/api/v1/audit/public-key").json()["publicKey"]
    report = verify_bundle(path, [parse_public_key(public)])
    assert report.ok, report.lines()
    lines = res.content.decode().splitlines()
    records = [json.loads(line) for line in lines[:-1]]
    assert {r["workspace"] for r in records} == {wid}
    assert [r["wseq"] for r in records] == list(range(1, len(records) + 1))
    assert records[-1]["event"] == "audit.exported"
    manifest = json.loads(lines[-1])["manifest"]
    assert manifest["filters"]["workspace"] == wid
    assert manifest["count"] == len(records)
    whole = owner.get("/api/v1/audit/export")
    path.write_bytes(whole.content)
    assert verify_bundle(path, [_key(app_client)]).ok


def test_trail_holds_no_credentials(owner, wid, app_client):
    """B2: recovery token, cookies, invite and recovery codes never reach an audit file."""
    res = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "member"})
    invite_code = res.json()["code"]
    invitee = Phone(app_client)
    invitee.post("/api/v1/invites/accept", json={"code": invite_code, "name": "Nia"})
    invitee.enroll()
    uid = invitee.get("/api/v1/me").json()["user"]["id"]
    recovery = owner.post(f"/api/v1/users/{uid}/recovery-code", json={}).json()["code"]
    Phone(app_client).post("/api/v1/auth/recovery/redeem", json={"code": recovery})
    directory = services_of(app_client).audit.directory
    text = b"".join(p.read_bytes() for p in directory.iterdir())
    for secret in (app_client.setup.token, owner.cookie, invitee.cookie, invite_code, recovery):
        assert secret
        assert secret.encode() not in text
    assert verify_dir(directory, [_key(app_client)]).ok


def test_audit_public_key_file_matches_served_key(app_client, owner):
    """B2: the .pub file beside the private key is the key the API serves."""
    pub = Path(app_client.setup.data_dir / "audit-signing-key.pub").read_text()
    served = owner.get("/api/v1/audit/public-key").json()
    assert parse_public_key(pub) is not None
    assert pub.strip() == served["publicKeyPem"].strip()


def test_owner_revoking_a_users_passkeys_is_recorded(owner, wid, app_client):
    """I2: the owner revoking one passkey of a user, then all of them, leaves one record each
    by the owner's session."""
    member = join_by_invite(owner, wid, "member", "Pat")
    member.enroll("Second")
    uid = member.get("/api/v1/me").json()["user"]["id"]
    first = member.get("/api/v1/me/passkeys").json()["passkeys"][0]["credentialId"]
    watch = Watch(app_client)
    assert owner.delete(f"/api/v1/users/{uid}/passkeys/{first}").status_code == 204
    one = watch.one("passkey.revoked")
    assert one["actor"] == session_of(owner)
    assert one["target"] == {"userId": uid, "credential": ref(first), "forced": False}
    assert owner.delete(f"/api/v1/users/{uid}/passkeys", params={"force": "true"}).is_success
    assert watch.one("passkey.revoked")["target"] == {"userId": uid, "count": 1, "forced": True}


def test_a_new_signing_key_is_recorded_and_both_keys_verify(tmp_path):
    """B2: if the signing key is replaced, the next start records the change (old and new
    key ids) and the chain verifies with both public keys, not with either alone."""
    clock = FakeClock()
    setup = write_relay_config(tmp_path / "relay")
    with _start(setup, clock):
        pass
    old = parse_public_key((setup.data_dir / "audit-signing-key.pub").read_text())
    (setup.data_dir / "audit-signing-key.pem").unlink()
    with _start(setup, clock):
        pass
    new = parse_public_key((setup.data_dir / "audit-signing-key.pub").read_text())
    records = [json.loads(line) for _, _, line, _ in iter_dir(setup.data_dir / "audit") if line]
    assert [r["event"] for r in records] == ["relay.started", "audit.key-changed", "relay.started"]
    assert records[1]["target"]["previousKeyId"] == records[0]["target"]["keyId"]
    audit_dir = setup.data_dir / "audit"
    assert verify_dir(audit_dir, [old, new]).ok
    assert verify_dir(audit_dir, [old]).problem.seq == 2
    assert verify_dir(audit_dir, [new]).problem.seq == 1


def test_tasks_interrupted_by_a_restart_are_recorded_as_finished(tmp_path):
    """R10, B2: a task in flight when the relay stopped is recorded as finished
    (interrupted) by the relay at the next start."""
    clock = FakeClock()
    setup = write_relay_config(tmp_path / "relay")
    with _start(setup, clock) as client:
        client.headers["Origin"] = setup.origin
        owner = Phone(client).bootstrap(setup.token)
        wid = owner.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        with _agent_socket(client, owner, wid) as ws:
            ws.send_json(_hello("devbox"))
            ws.receive_json()
            res = owner.post(
                f"/api/v1/workspaces/{wid}/tasks",
                json={"agentId": "devbox", "type": "run_action", "actionId": "tests"},
            )
            task_id = res.json()["task"]["id"]
            ws.receive_json()
            ws.send_json({"type": "task.started", "taskId": task_id})
            owner.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}")
    with _start(setup, clock) as client:
        records = trail(client)
    finished = [r for r in records if r["event"] == "task.finished"]
    assert len(finished) == 1
    assert finished[0]["actor"] == {"type": "relay"}
    assert finished[0]["target"]["taskId"] == task_id
    assert finished[0]["target"]["status"] == "interrupted"
    assert finished[0]["target"]["reason"] == "relay-restarted"


def test_workspace_creation_is_recorded(owner, app_client):
    """B2: a new workspace is recorded in its own chain with its creator as the actor."""
    watch = Watch(app_client)
    res = owner.post("/api/v1/workspaces", json={"name": "Team B"})
    assert res.status_code == 201
    record = watch.one("workspace.created")
    assert record["workspace"] == res.json()["workspace"]["id"]
    assert record["actor"] == session_of(owner)
    assert record["target"] == {"name": "Team B"}
