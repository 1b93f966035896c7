"""The authorization matrix: every ``/api/v1/workspaces/{wid}/...`` route x every kind of
caller -> the status the relay must answer (R03, R04, R21, A3).

The route list comes from the app itself, so a new workspace route without a row here fails
``test_every_workspace_route_has_a_row``. Minimum roles are read from each route's
``workspace_role(...)`` dependency; a row may state the minimum it expects, and then the test
also checks the route agrees.

Callers:
- anonymous: no cookie -> 401 ``unauthenticated``
- enrollment-locked: an invitee who has not registered a passkey -> 403 ``enrollment-required``
- recovering-admin: an admin of the workspace in a recovery-code session that has not yet
  registered a new passkey -> 403 ``enrollment-required`` (membership alone is not enough)
- viewer / member / admin / owner: 403 ``forbidden`` below the route's minimum role, else the
  row's ``allowed`` status (or, where ``allowed`` is None, anything but an auth refusal)
- outsider: an admin of another workspace -> 404 ``not-found`` (existence not revealed)
- revoked-session: an admin whose sessions the relay owner ended -> 401
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from codexrelay.relay.app import create_app
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.storage.backends import open_configured_store
from codexrelay.relay.storage.records import ROLE_ORDER, Role
from tests.helpers import FakeClock, write_relay_config
from tests.softauthn import COOKIE, Phone, join_by_invite

PREFIX = "/api/v1/workspaces/{wid}"
WORKSPACE_NOT_FOUND = "No such workspace."
ROLE_CALLERS: dict[str, Role] = {r.value: r for r in ROLE_ORDER}
CALLERS = (
    "anonymous",
    "enrollment-locked",
    "recovering-admin",
    *ROLE_CALLERS,
    "outsider",
    "revoked-session",
)
PER_ROUTE = None  # the row takes the minimum role from the route's own dependency


@dataclass(frozen=True)
class Row:
    """What one route must answer. Path parameters other than ``{wid}`` get dummy values."""

    minimum: Role | None = PER_ROUTE
    body: dict[str, Any] | None = field(default_factory=dict)
    allowed: int | None = None


# One row per workspace route. When you add a route under /api/v1/workspaces/{wid}, add its
# row here: say the minimum role you mean (or PER_ROUTE) and, if it is deterministic with
# dummy ids, the status a permitted caller gets.
ROWS: dict[tuple[str, str], Row] = {
    # people (R03, B7, R21)
    ("GET", f"{PREFIX}/members"): Row(Role.VIEWER, body=None, allowed=200),
    ("PATCH", f"{PREFIX}/members/{{user_id}}"): Row(Role.ADMIN, {"role": "viewer"}, 404),
    ("DELETE", f"{PREFIX}/members/{{user_id}}"): Row(Role.VIEWER, body=None, allowed=404),
    ("POST", f"{PREFIX}/members/{{user_id}}/recovery-code"): Row(Role.ADMIN, allowed=404),
    ("POST", f"{PREFIX}/invites"): Row(Role.ADMIN, {"role": "viewer"}, 201),
    ("GET", f"{PREFIX}/invites"): Row(Role.ADMIN, body=None, allowed=200),
    ("DELETE", f"{PREFIX}/invites/{{invite_id}}"): Row(Role.ADMIN, body=None, allowed=404),
    # pairing (R04, R06)
    ("POST", f"{PREFIX}/pairings"): Row(Role.ADMIN, allowed=201),
    ("GET", f"{PREFIX}/pair-requests"): Row(Role.ADMIN, body=None, allowed=200),
    ("POST", f"{PREFIX}/pair-requests/{{request_id}}/approve"): Row(Role.ADMIN),
    ("POST", f"{PREFIX}/pair-requests/{{request_id}}/reject"): Row(Role.ADMIN),
    # agents (R04, R07)
    ("GET", f"{PREFIX}/agents"): Row(Role.VIEWER, body=None, allowed=200),
    ("DELETE", f"{PREFIX}/agents/{{agent_id}}"): Row(Role.ADMIN, body=None),
    ("GET", f"{PREFIX}/agents/{{agent_id}}/sessions"): Row(Role.VIEWER, body=None),
    # tasks (R09, R04): an unknown agent is 409 agent-not-available once the role passes
    ("POST", f"{PREFIX}/tasks"): Row(
        Role.MEMBER, {"agentId": "nope", "type": "run_action", "actionId": "x"}, 409
    ),
    ("GET", f"{PREFIX}/tasks"): Row(Role.VIEWER, body=None, allowed=200),
    ("GET", f"{PREFIX}/tasks/{{task_id}}"): Row(Role.VIEWER, body=None, allowed=404),
    ("POST", f"{PREFIX}/tasks/{{task_id}}/cancel"): Row(Role.MEMBER, body=None, allowed=404),
    # live conversations (R09, R17): viewers watch, members start and drive; an unknown
    # agent is 409 agent-not-available, an unknown thread 404
    ("GET", f"{PREFIX}/threads"): Row(Role.VIEWER, body=None, allowed=200),
    ("POST", f"{PREFIX}/threads"): Row(Role.MEMBER, {"agentId": "nope", "prompt": "hi"}, 409),
    ("GET", f"{PREFIX}/threads/{{thread_id}}"): Row(Role.VIEWER, body=None, allowed=404),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/resume"): Row(Role.MEMBER, {"agentId": "nope"}, 409),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/turns"): Row(Role.MEMBER, {"prompt": "hi"}, 404),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/steer"): Row(Role.MEMBER, {"prompt": "hi"}, 404),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/interrupt"): Row(Role.MEMBER, body=None, allowed=404),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/approvals/{{approval_id}}"): Row(
        Role.MEMBER, {"decision": "accept"}, 404
    ),
    ("GET", f"{PREFIX}/agents/{{agent_id}}/models"): Row(Role.VIEWER, body=None, allowed=200),
    # live events (viewers+)
    ("GET", f"{PREFIX}/events"): Row(Role.VIEWER, body=None, allowed=200),
    # protected workspaces (TRUST.md): the log, signed tasks, approvals, signed cancel
    ("GET", f"{PREFIX}/e2e/log"): Row(Role.VIEWER, body=None, allowed=200),
    ("POST", f"{PREFIX}/e2e/log"): Row(Role.VIEWER, {"entry": "x", "sigs": [{}]}, 400),
    ("GET", f"{PREFIX}/e2e/genesis-draft"): Row(Role.OWNER, body=None, allowed=200),
    ("POST", f"{PREFIX}/signed-tasks"): Row(
        Role.MEMBER, {"stmt": "x", "body": "x", "auth": [{}]}, 409
    ),
    ("GET", f"{PREFIX}/signed-tasks/pending"): Row(Role.VIEWER, body=None, allowed=200),
    ("POST", f"{PREFIX}/signed-tasks/{{task_id}}/approve"): Row(Role.MEMBER, {"auth": {}}, 404),
    ("POST", f"{PREFIX}/tasks/{{task_id}}/signed-cancel"): Row(
        Role.MEMBER, {"stmt": "x", "sig": "x"}, 409
    ),
    ("POST", f"{PREFIX}/agents/{{agent_id}}/log-push"): Row(
        Role.MEMBER, {"start": 0, "entries": [{}]}, 409
    ),
    # sealed tasks (TRUST.md §4.5, §4.7): submit, read envelopes, the catalog, key requests
    ("POST", f"{PREFIX}/sealed-tasks"): Row(
        Role.MEMBER, {"agentId": "x", "type": "codex_exec", "envelope": "{}"}, 409
    ),
    ("GET", f"{PREFIX}/tasks/{{task_id}}/envelopes"): Row(Role.VIEWER, body=None, allowed=404),
    ("GET", f"{PREFIX}/agents/{{agent_id}}/sealed-catalog"): Row(
        Role.VIEWER, body=None, allowed=404
    ),
    ("POST", f"{PREFIX}/tasks/{{task_id}}/key-requests"): Row(
        Role.VIEWER, {"stmt": "x", "sig": "x"}, 409
    ),
    # sealed conversations (TRUST.md §4.7, §4.8, §4.13): input, envelopes, key requests
    ("POST", f"{PREFIX}/sealed-threads"): Row(Role.MEMBER, {"agentId": "x", "envelope": "{}"}, 409),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/sealed-turns"): Row(
        Role.MEMBER, {"mode": "start", "envelope": "{}"}, 404
    ),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/approvals/{{approval_id}}/sealed"): Row(
        Role.MEMBER, {"envelope": "{}"}, 404
    ),
    ("GET", f"{PREFIX}/threads/{{thread_id}}/envelopes"): Row(Role.VIEWER, body=None, allowed=404),
    ("POST", f"{PREFIX}/threads/{{thread_id}}/key-requests"): Row(
        Role.VIEWER, {"stmt": "x", "sig": "x"}, 409
    ),
    # audit trail (B2): admins read and export their workspace's records
    ("GET", f"{PREFIX}/audit"): Row(Role.ADMIN, body=None, allowed=200),
    ("GET", f"{PREFIX}/audit/export"): Row(Role.ADMIN, body=None, allowed=200),
}


@dataclass(frozen=True)
class WorkspaceRoute:
    """One method of one workspace route, as the app serves it."""

    method: str
    path: str
    route: APIRoute

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


def workspace_routes(app: Any) -> list[WorkspaceRoute]:
    """Every HTTP method of every route under /api/v1/workspaces/{wid}, from the app."""
    found = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path or ""
        if isinstance(route, APIRoute) and path.startswith(PREFIX + "/"):
            found.extend(
                WorkspaceRoute(method, path, route) for method in sorted(context.methods or ())
            )
    return found


def minimum_role(route: APIRoute) -> Role | None:
    """The role the route's ``workspace_role(...)`` dependency demands, if it has one."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        found = getattr(dependant.call, "minimum_role", None)
        if isinstance(found, Role):
            return found
        pending.extend(dependant.dependencies)
    return None


# --- the world every row runs against ---


@dataclass
class World:
    """One relay, one workspace, and a phone for each kind of caller."""

    client: TestClient
    wid: str
    cookies: dict[str, str | None]
    snapshot: Any

    def reset(self) -> None:
        """Every row starts from the same state, whatever the previous row changed."""
        self.client.app.state.services.store.load(self.snapshot.model_copy(deep=True))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Build the callers once for the whole matrix (it is all in-process)."""
    clock = FakeClock()
    setup = write_relay_config(Path(tmp_path_factory.mktemp("matrix")) / "relay")
    config = load_relay_config(setup.config_path)
    app = create_app(config, open_configured_store(config, now=clock), clock=clock)
    with TestClient(app, base_url=setup.base_url, headers={"Origin": setup.origin}) as client:
        owner = Phone(client).bootstrap(setup.token)
        wid = owner.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        phones = {role: join_by_invite(owner, wid, role, role.title()) for role in ROLE_CALLERS}
        phones["owner"] = owner

        locked = Phone(client)
        res = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "admin"})
        locked.post("/api/v1/invites/accept", json={"code": res.json()["code"], "name": "Lock"})

        recovering, recovering_admin = Phone(client), join_by_invite(owner, wid, "admin", "Rec")
        uid = recovering_admin.get("/api/v1/me").json()["user"]["id"]
        code = owner.post(f"/api/v1/users/{uid}/recovery-code").json()["code"]
        recovering.post("/api/v1/auth/recovery/redeem", json={"code": code})

        other = owner.post("/api/v1/workspaces", json={"name": "Elsewhere"}).json()["workspace"]
        outsider = join_by_invite(owner, other["id"], "admin", "Out")

        revoked = join_by_invite(owner, wid, "admin", "Gone")
        revoked_id = revoked.get("/api/v1/me").json()["user"]["id"]
        assert owner.delete(f"/api/v1/users/{revoked_id}/sessions").status_code == 204

        cookies = {
            "anonymous": None,
            "enrollment-locked": locked.cookie,
            "recovering-admin": recovering.cookie,
            **{name: phone.cookie for name, phone in phones.items()},
            "outsider": outsider.cookie,
            "revoked-session": revoked.cookie,
        }
        assert all(cookies[name] for name in CALLERS if name != "anonymous")
        snapshot = client.app.state.services.store.document().model_copy(deep=True)
        yield World(client=client, wid=wid, cookies=cookies, snapshot=snapshot)


def probe(world: World, caller: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    """Send one request as ``caller``; an event stream is closed once its status is known."""
    cookie = world.cookies[caller]
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
    world.client.cookies.clear()
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    with world.client.stream(method, path, **kwargs) as res:
        if res.headers.get("content-type", "").startswith(
            ("text/event-stream", "application/x-ndjson")
        ):
            return res.status_code, None
        res.read()
        payload = res.json() if res.content else None
    world.client.cookies.clear()
    return res.status_code, payload


def expected(caller: str, minimum: Role, row: Row) -> int | None:
    """The status ``caller`` must get; None means "gets past authorization"."""
    fixed = {
        "anonymous": 401,
        "enrollment-locked": 403,
        "recovering-admin": 403,
        "outsider": 404,
        "revoked-session": 401,
    }
    if caller in fixed:
        return fixed[caller]
    return row.allowed if ROLE_CALLERS[caller].at_least(minimum) else 403


def _fill(path: str, wid: str) -> str:
    filled = path.replace("{wid}", wid)
    while "{" in filled:
        start = filled.index("{")
        filled = filled[:start] + "x-unknown" + filled[filled.index("}", start) + 1 :]
    return filled


def _check(caller: str, want: int | None, status: int, payload: Any) -> str | None:
    """A description of what is wrong, or None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if want is None:
        refused = status in (401, 403) or (
            status == 404 and payload.get("message") == WORKSPACE_NOT_FOUND
        )
        return f"{caller}: refused with {status} {error}" if refused else None
    if status != want:
        return f"{caller}: expected {want}, got {status} {payload}"
    codes = {
        "anonymous": "unauthenticated",
        "revoked-session": "unauthenticated",
        "enrollment-locked": "enrollment-required",
        "recovering-admin": "enrollment-required",
        "outsider": "not-found",
    }
    if caller in codes and error != codes[caller]:
        return f"{caller}: expected error {codes[caller]}, got {error}"
    if caller == "outsider" and payload.get("message") != WORKSPACE_NOT_FOUND:
        return f"outsider: got a 404 that is not the workspace check: {payload}"
    if caller in ROLE_CALLERS and want == 403 and error != "forbidden":
        return f"{caller}: expected error forbidden, got {error}"
    return None


# --- the tests ---


def test_every_workspace_route_has_a_row(world):
    """R03: no workspace route ships without a row in this authorization matrix."""
    missing = [r.key for r in workspace_routes(world.client.app) if r.key not in ROWS]
    assert not missing, (
        "These workspace routes have no row in ROWS in tests/api/test_authz_matrix.py; add "
        "one per route (minimum role, body, allowed status): "
        + ", ".join(f"{m} {p}" for m, p in missing)
    )


def test_every_row_names_a_real_route(world):
    """Rows for routes that no longer exist are removed, so the table stays true."""
    served = {r.key for r in workspace_routes(world.client.app)}
    stale = sorted(set(ROWS) - served)
    assert not stale, f"ROWS names routes the app does not serve: {stale}"


def test_every_workspace_route_declares_its_minimum_role(world):
    """R03: each workspace route goes through the one role check, with the role its row says."""
    problems = []
    for route in workspace_routes(world.client.app):
        found = minimum_role(route.route)
        row = ROWS.get(route.key)
        if found is None:
            problems.append(f"{route.method} {route.path}: no workspace_role(...) dependency")
        elif row is not None and row.minimum is not None and row.minimum != found:
            problems.append(
                f"{route.method} {route.path}: route needs {found}, row says {row.minimum}"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("method", "path"), sorted(ROWS), ids=lambda v: v)
def test_authz_matrix(world, method, path):
    """R03, R04, R21: every caller kind gets exactly the status the matrix names."""
    served = {r.key: r for r in workspace_routes(world.client.app)}
    if (method, path) not in served:
        pytest.fail(f"{method} {path} is not served (see test_every_row_names_a_real_route)")
    row = ROWS[(method, path)]
    minimum = minimum_role(served[(method, path)].route)
    assert minimum is not None, f"{method} {path} has no workspace_role(...) dependency"
    url = _fill(path, world.wid)
    problems = []
    for caller in CALLERS:
        world.reset()
        status, payload = probe(world, caller, method, url, row.body)
        problem = _check(caller, expected(caller, minimum, row), status, payload)
        if problem:
            problems.append(problem)
    assert not problems, f"{method} {path}:\n" + "\n".join(problems)


def test_matrix_is_not_vacuous(world):
    """The probe really distinguishes callers: a viewer lists members, an outsider cannot."""
    url = _fill(f"{PREFIX}/members", world.wid)
    assert probe(world, "viewer", "GET", url, None)[0] == 200
    assert probe(world, "outsider", "GET", url, None)[0] == 404
    assert (
        probe(world, "viewer", "POST", _fill(f"{PREFIX}/invites", world.wid), {"role": "viewer"})[0]
        == 403
    )
