"""The published schema's caps are the enforced ones: for every capped field of every request
(body fields and query parameters), a value at the cap is not refused for its length and one
past it is. A new capped field without a row here fails the coverage test."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from codexrelay.relay.app import create_app
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.storage.backends import open_configured_store
from codexrelay.relay.storage.records import PUSH_KINDS, Role
from tests.api.conftest import login, make_user
from tests.api.test_pairing_api import _code, _paired_token, _wid
from tests.api.test_tasks_api import _agent
from tests.helpers import FakeClock, write_relay_config

LENGTH_REFUSALS = {413, 422}
# A browser's subscription at a push service this relay does not send to (400 at the cap).
PUSH_SUBSCRIPTION = {
    "endpoint": "https://push.example/x",
    "keys": {"p256dh": "BA", "auth": "AA"},
}


@dataclass(frozen=True)
class Row:
    """How to send one capped field: the request, with the field set to ``value``."""

    model: str
    field: str
    send: Callable[[TestClient, str, Any], Any]
    sample: Callable[[int], Any] = lambda n: "a" * n


def _uuid_of_length(n: int) -> str:
    text = str(uuid.uuid4())
    return text if n == len(text) else text + "0" * (n - len(text))


def _post(path: str, base: dict[str, Any], field: str) -> Callable[[TestClient, str, Any], Any]:
    def send(client: TestClient, wid: str, value: Any) -> Any:
        return client.post(path.format(wid=wid), json={**base, field: value})

    return send


def _get(path: str, param: str) -> Callable[[TestClient, str, Any], Any]:
    def send(client: TestClient, wid: str, value: Any) -> Any:
        return client.get(path.format(wid=wid), params={param: value})

    return send


def _claim(field: str) -> Callable[[TestClient, str, Any], Any]:
    def send(client: TestClient, wid: str, value: Any) -> Any:
        body = {"code": _code(client, wid)["code"], "agentId": "box", "label": "Box", field: value}
        return client.post("/api/v1/agent/pair", json=body)

    return send


def _accept(field: str) -> Callable[[TestClient, str, Any], Any]:
    def send(client: TestClient, wid: str, value: Any) -> Any:
        made = client.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "viewer"})
        body = {"code": made.json()["code"], "name": "Bo", field: value}
        client.cookies.clear()  # accepting signs the client in as the invitee
        try:
            return client.post("/api/v1/invites/accept", json=body)
        finally:
            client.cookies.clear()
            login(client)

    return send


def _recovery(client: TestClient, wid: str, value: Any) -> Any:
    user_id = make_user(client, wid, Role.MEMBER)
    return client.post(f"/api/v1/users/{user_id}/recovery-code", json={"ttlSec": value})


def _task(field: str, base: dict[str, Any]) -> Callable[[TestClient, str, Any], Any]:
    def send(client: TestClient, wid: str, value: Any) -> Any:
        with _agent(client, wid):
            body = {"agentId": "devbox", **base, field: value}
            return client.post(f"/api/v1/workspaces/{wid}/tasks", json=body)

    return send


def _pin(client: TestClient, wid: str, value: Any) -> Any:
    token = _paired_token(client, wid, f"pin{uuid.uuid4().hex[:6]}")
    body = {"code": value, "e2e": {"claim": "e30", "mac": "A" * 43}}
    return client.post("/api/v1/agent/pin", json=body, headers={"Authorization": f"Bearer {token}"})


AUDIT = "/api/v1/workspaces/{wid}/audit"
E2E_LOG = "/api/v1/workspaces/{wid}/e2e/log"
SIGNED = "/api/v1/workspaces/{wid}/signed-tasks"
SIGNED_CANCEL = "/api/v1/workspaces/{wid}/tasks/nope/signed-cancel"
LOG_PUSH = "/api/v1/workspaces/{wid}/agents/nope/log-push"
SEALED = "/api/v1/workspaces/{wid}/sealed-tasks"
SEALED_BODY = {"agentId": "x", "type": "codex_exec", "envelope": "{}"}
KEY_REQUEST = "/api/v1/workspaces/{wid}/tasks/nope/key-requests"
SEALED_THREADS = "/api/v1/workspaces/{wid}/sealed-threads"
SEALED_THREAD_BODY = {"agentId": "x", "envelope": "{}"}
APPROVE_PAIR = "/api/v1/workspaces/{wid}/pair-requests/nope/approve"
TASKS = "/api/v1/workspaces/{wid}/tasks"
INVITES = "/api/v1/workspaces/{wid}/invites"
PASSKEYS = "/api/v1/auth/passkeys"
MY_PASSKEYS = "/api/v1/me/passkeys"
CODEX = {"type": "codex_exec", "prompt": "hi"}
THREADS = "/api/v1/workspaces/{wid}/threads"
THREAD = THREADS + "/" + str(uuid.uuid4())
START = {"agentId": "nope", "prompt": "hi"}
PHOTO = "data:image/png;base64,iVBORw0KGgo="
ROWS = [
    Row("CreateWorkspaceBody", "name", _post("/api/v1/workspaces", {}, "name")),
    Row(
        "InviteBody", "note", _post("/api/v1/workspaces/{wid}/invites", {"role": "viewer"}, "note")
    ),
    Row(
        "InviteBody",
        "ttlSec",
        _post(INVITES, {"role": "viewer"}, "ttlSec"),
        lambda n: n,
    ),
    Row("AcceptBody", "code", _post("/api/v1/invites/accept", {"name": "Bo"}, "code")),
    Row("AcceptBody", "name", _accept("name")),
    Row("RecoveryIssueBody", "ttlSec", _recovery, lambda n: n),
    Row("RedeemBody", "code", _post("/api/v1/auth/recovery/redeem", {}, "code")),
    Row("CreatePairingBody", "note", _post("/api/v1/workspaces/{wid}/pairings", {}, "note")),
    Row(
        "CreatePairingBody",
        "ttlSec",
        _post("/api/v1/workspaces/{wid}/pairings", {}, "ttlSec"),
        lambda n: n,
    ),
    Row("ClaimBody", "code", _post("/api/v1/agent/pair", {"agentId": "b", "label": "B"}, "code")),
    Row("ClaimBody", "agentId", _claim("agentId")),
    Row("ClaimBody", "label", _claim("label")),
    Row("ClaimBody", "hostname", _claim("hostname")),
    Row("ClaimBody", "workspaceRootName", _claim("workspaceRootName")),
    Row(
        "RegisterOptionsBody", "label", _post("/api/v1/auth/passkeys/register/options", {}, "label")
    ),
    Row(
        "RegisterVerifyBody",
        "challengeId",
        _post("/api/v1/auth/passkeys/register/verify", {"credential": {}}, "challengeId"),
    ),
    Row(
        "RegisterVerifyBody",
        "label",
        _post(
            "/api/v1/auth/passkeys/register/verify",
            {"credential": {}, "challengeId": "x"},
            "label",
        ),
    ),
    Row(
        "LoginVerifyBody",
        "challengeId",
        _post("/api/v1/auth/passkeys/login/verify", {"credential": {}}, "challengeId"),
    ),
    Row(
        "RenameBody",
        "label",
        lambda c, _w, v: c.patch("/api/v1/me/passkeys/nope", json={"label": v}),
    ),
    Row("TaskBody", "agentId", _task("agentId", CODEX)),
    Row("TaskBody", "prompt", _task("prompt", {"type": "codex_exec"})),
    Row("TaskBody", "cwd", _task("cwd", CODEX)),
    Row("TaskBody", "resumeSessionId", _task("resumeSessionId", CODEX), _uuid_of_length),
    Row("TaskBody", "actionId", _task("actionId", {"type": "run_action"})),
    Row("TaskBody", "logSourceId", _task("logSourceId", {"type": "read_log"})),
    Row("TaskBody", "queueTtlSec", _task("queueTtlSec", CODEX), lambda n: n),
    Row(
        "SubscribeBody",
        "kinds",
        _post("/api/v1/me/push-subscriptions", {"subscription": PUSH_SUBSCRIPTION}, "kinds"),
        lambda n: (list(PUSH_KINDS) * 2)[:n],
    ),
    Row(
        "KindsBody",
        "kinds",
        lambda c, _w, v: c.patch("/api/v1/me/push-subscriptions/nope", json={"kinds": v}),
        lambda n: (list(PUSH_KINDS) * 2)[:n],
    ),
    Row("ThreadBody", "agentId", _post(THREADS, {"prompt": "hi"}, "agentId")),
    Row("ThreadBody", "prompt", _post(THREADS, {"agentId": "nope"}, "prompt")),
    Row("ThreadBody", "cwd", _post(THREADS, START, "cwd")),
    Row("ThreadBody", "model", _post(THREADS, START, "model")),
    Row("ThreadBody", "images", _post(THREADS, START, "images"), lambda n: [PHOTO] * n),
    Row("TurnBody", "prompt", _post(f"{THREAD}/turns", {}, "prompt")),
    Row(
        "TurnBody",
        "images",
        _post(f"{THREAD}/turns", {"prompt": "x"}, "images"),
        lambda n: [PHOTO] * n,
    ),
    Row("SteerBody", "prompt", _post(f"{THREAD}/steer", {}, "prompt")),
    Row("ResumeBody", "agentId", _post(f"{THREAD}/resume", {}, "agentId")),
    Row("PostEntryBody", "entry", _post(E2E_LOG, {"sigs": [{}]}, "entry")),
    Row("PostEntryBody", "sigs", _post(E2E_LOG, {"entry": "e30"}, "sigs"), lambda n: [{}] * n),
    Row("SignedTaskBody", "stmt", _post(SIGNED, {"body": "e30", "auth": [{}]}, "stmt")),
    Row("SignedTaskBody", "body", _post(SIGNED, {"stmt": "e30", "auth": [{}]}, "body")),
    Row(
        "SignedTaskBody",
        "auth",
        _post(SIGNED, {"stmt": "e30", "body": "e30"}, "auth"),
        lambda n: [{}] * n,
    ),
    Row(
        "LogPushBody",
        "entries",
        _post(LOG_PUSH, {"start": 0}, "entries"),
        lambda n: [{}] * n,
    ),
    Row("SealedTaskBody", "agentId", _post(SEALED, SEALED_BODY, "agentId")),
    Row("SealedTaskBody", "envelope", _post(SEALED, SEALED_BODY, "envelope")),
    Row("SealedTaskBody", "queueTtlSec", _post(SEALED, SEALED_BODY, "queueTtlSec"), lambda n: n),
    Row("SealedThreadBody", "agentId", _post(SEALED_THREADS, SEALED_THREAD_BODY, "agentId")),
    Row("SealedThreadBody", "envelope", _post(SEALED_THREADS, SEALED_THREAD_BODY, "envelope")),
    Row(
        "SealedTurnBody",
        "envelope",
        _post(f"{THREAD}/sealed-turns", {"mode": "start", "envelope": "{}"}, "envelope"),
    ),
    Row(
        "SealedDecisionBody",
        "envelope",
        _post(f"{THREAD}/approvals/nope/sealed", {"envelope": "{}"}, "envelope"),
    ),
    Row("KeyRequestBody", "stmt", _post(KEY_REQUEST, {"sig": "x"}, "stmt")),
    Row("KeyRequestBody", "sig", _post(KEY_REQUEST, {"stmt": "e30"}, "sig")),
    Row("SignedCancelBody", "stmt", _post(SIGNED_CANCEL, {"sig": "x"}, "stmt")),
    Row("SignedCancelBody", "sig", _post(SIGNED_CANCEL, {"stmt": "e30"}, "sig")),
    Row("PairApproveBody", "grant", _post(APPROVE_PAIR, {}, "grant")),
    Row("PinBody", "code", _pin),
    Row(
        "SudoVerifyBody",
        "challengeId",
        _post("/api/v1/auth/sudo/verify", {"credential": {}}, "challengeId"),
    ),
    Row("audit", "event", _get(AUDIT, "event")),
    Row("audit", "actor", _get(AUDIT, "actor")),
    Row("audit", "limit", _get(AUDIT, "limit"), lambda n: n),
    Row(TASKS, "limit", _get(TASKS, "limit"), lambda n: n),
    Row(TASKS, "before", _get(TASKS, "before")),
]


def _caps(option: dict[str, Any]) -> dict[str, int]:
    """The upper bounds a schema option states, by kind."""
    found = {}
    for key in ("maxLength", "maxItems", "maximum"):
        if key in option:
            found[key] = int(option[key])
    if option.get("pattern") == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$":
        found["maxLength"] = 64  # ID_PATTERN: the pattern itself caps the length
    if option.get("pattern", "").startswith("^[0-9a-f]{8}-"):
        found["maxLength"] = 36  # a canonical UUID
    return found


def _published(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, int]]:
    """(model or route group, field) -> caps, for every request body field and query
    parameter that states an upper bound."""
    components = schema["components"]["schemas"]
    found: dict[tuple[str, str], dict[str, int]] = {}
    for path, item in schema["paths"].items():
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            refs = (
                [o["$ref"] for o in body["schema"].get("anyOf", [body["schema"]]) if "$ref" in o]
                if body
                else []
            )
            for ref in refs:
                name = ref.rsplit("/", 1)[1]
                for field, prop in components[name].get("properties", {}).items():
                    for option in prop.get("anyOf", [prop]):
                        if caps := _caps(option):
                            found[(name, field)] = caps
            for param in operation.get("parameters", []):
                prop = param.get("schema", {})
                for option in prop.get("anyOf", [prop]):
                    if param["in"] == "query" and (caps := _caps(option)):
                        group = "audit" if path.endswith("/audit") else path
                        found[(group, param["name"])] = caps
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One relay for every row: each row makes what it needs, and nothing a row does at
    the cap changes what the next row sees."""
    setup = write_relay_config(
        tmp_path_factory.mktemp("limits"),
        maxPairAttemptsPerMinute=1000,
        maxLoginAttemptsPerMinute=1000,
    )
    config = load_relay_config(setup.config_path)
    app = create_app(
        config,
        open_configured_store(config, now=FakeClock()),
        clock=FakeClock(),
    )
    with TestClient(
        app, base_url=setup.base_url, headers={"Origin": config.public_origin}
    ) as client:
        client.setup = setup  # type: ignore[attr-defined]
        login(client)
        yield client, _wid(client), client.get("/openapi.json").json()


def test_every_published_cap_has_a_boundary_row(world):
    """No capped request field escapes the boundary test."""
    _, _, schema = world
    covered = {(row.model, row.field) for row in ROWS}
    assert set(_published(schema)) == covered


def test_prompt_cap_is_the_configured_one(make_client):
    """The schema states this relay's maxPromptBytes, not the code's backstop."""
    with make_client(maxPromptBytes=2048) as client:
        prompt = client.get("/openapi.json").json()["components"]["schemas"]["TaskBody"]
        option = next(o for o in prompt["properties"]["prompt"]["anyOf"] if o["type"] == "string")
        assert option["maxLength"] == 2048
        assert option["x-max-utf8-bytes"] == 2048


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.model}.{r.field}" for r in ROWS])
def test_cap_accepted_and_cap_plus_one_refused(world, row: Row):
    """At the published cap the field is not refused for its size; one past it, it is."""
    client, wid, schema = world
    caps = _published(schema)[(row.model, row.field)]
    cap = next(iter(caps.values()))
    at_cap = row.send(client, wid, row.sample(cap))
    named = at_cap.status_code in LENGTH_REFUSALS and row.field in at_cap.text
    assert not named, (at_cap.status_code, at_cap.text)
    assert at_cap.status_code < 500, at_cap.text
    past = row.send(client, wid, row.sample(cap + 1))
    assert past.status_code in {*LENGTH_REFUSALS, 400}, (past.status_code, past.text)
    assert past.json()["error"] in {"invalid-request", "payload-too-large", "invalid-cwd"}


def test_prompt_cap_counts_utf8_bytes(world):
    """A prompt under the character cap but over the byte cap is refused with 413."""
    client, wid, _ = world
    with _agent(client, wid):
        res = client.post(
            f"/api/v1/workspaces/{wid}/tasks",
            json={"agentId": "devbox", "type": "codex_exec", "prompt": "é" * 40000},
        )
    assert res.status_code == 413
    assert res.json()["error"] == "payload-too-large"
