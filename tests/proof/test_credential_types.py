"""Each credential opens only its own door (R02, R03, R06, R07, A3).

- A phone's session cookie never works on the agent endpoints: the agent socket and the
  pair-request poll want a Bearer agent token / poll secret, and a cookie (or a cookie
  value sent as a Bearer token) gets 401.
- An agent token or a poll secret never works on a phone endpoint: every ``/api/v1/...``
  route, taken from the app's own routes and filled with ids of real records, answers a
  Bearer agent token (or that token as a cookie) exactly as it answers a caller with no
  credential at all: 401 ``unauthenticated``, or the public answer of a public route.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from tests.proof.apiworld import ApiWorld, api_world, send
from tests.softauthn import COOKIE

AGENT_SOCKET = "/api/v1/agent/connect"
# Routes that answer without any credential (A1: each is rate-limited or harmless).
PUBLIC = {
    ("POST", "/api/v1/auth/bootstrap"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/passkeys/login/options"),
    ("POST", "/api/v1/auth/passkeys/login/verify"),
    ("POST", "/api/v1/auth/recovery/redeem"),
    ("POST", "/api/v1/invites/accept"),
    ("POST", "/api/v1/agent/pair"),
    # the web bundle's hash: public by design, so anyone can compare it (codexrelay verify-web)
    ("GET", "/api/v1/web-bundle"),
}


@dataclass(frozen=True)
class Route:
    """One method of one HTTP route under /api/v1, as the app serves it."""

    method: str
    path: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    """The in-process relay with a paired agent, a pending pair request and phones."""
    with api_world(Path(tmp_path_factory.mktemp("creds")) / "relay") as built:
        yield built


def api_routes(app: Any) -> list[Route]:
    """Every HTTP route and method under /api/v1, from the app itself."""
    found = []
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        if isinstance(context.original_route, APIRoute) and path.startswith("/api/v1/"):
            found.extend(Route(method, path) for method in sorted(context.methods or ()))
    return found


def _fill(world: ApiWorld, path: str) -> str:
    """Put ids of real records in the path (the poll route gets the pending request)."""
    filled = path.replace("{request_id}", world.poll_request_id)
    for name, pool in world.ids.items():
        filled = filled.replace("{" + name + "}", pool[0])
    assert "{" not in filled, f"no id for a parameter of {path}"
    return filled


def _ask(world: ApiWorld, route: Route, headers: dict[str, str]) -> Any:
    world.reset()
    body = {} if route.method in {"POST", "PATCH", "PUT"} else None
    return send(
        world,
        route.method,
        _fill(world, route.path),
        headers={"Origin": world.setup.origin, **headers},
        json=body,
    )


def _same_answer(anonymous: Any, other: Any) -> bool:
    """Same status; for JSON, the same error code or the same top-level keys."""
    if anonymous.status_code != other.status_code:
        return False
    if not anonymous.content or "json" not in anonymous.headers.get("content-type", ""):
        return True
    a, b = anonymous.json(), other.json()
    if isinstance(a, dict) and "error" in a:
        return a == b
    return isinstance(b, dict) and set(a) == set(b)


def foreign_credentials(world: ApiWorld) -> dict[str, dict[str, str]]:
    """Agent-side credentials, presented to phone routes every way a client could."""
    return {
        "bearer agent token": {"Authorization": f"Bearer {world.agent_token}"},
        "bearer poll secret": {"Authorization": f"Bearer {world.poll_secret}"},
        "agent token as cookie": {"Cookie": f"{COOKIE}={world.agent_token}"},
        "poll secret as cookie": {"Cookie": f"{COOKIE}={world.poll_secret}"},
    }


def test_every_api_route_is_probed(world):
    """The probe covers every /api/v1 HTTP route, and the public ones are exactly PUBLIC."""
    routes = api_routes(world.client.app)
    assert len(routes) >= 40
    public = set()
    for route in routes:
        if _ask(world, route, {}).status_code != 401:
            public.add((route.method, route.path))
    assert public == PUBLIC, f"public routes changed: {sorted(public ^ PUBLIC)}"


def test_agent_credentials_never_work_on_phone_routes(world):
    """R02, A3: an agent token or poll secret (bearer or cookie) is no phone credential."""
    problems = []
    probes = 0
    for route in api_routes(world.client.app):
        if route.path.startswith("/api/v1/agent/"):
            continue  # the agent's own endpoints: see the tests below
        anonymous = _ask(world, route, {})
        for name, headers in foreign_credentials(world).items():
            answer = _ask(world, route, headers)
            probes += 1
            if not _same_answer(anonymous, answer):
                problems.append(
                    f"{route.method} {route.path} with {name}: {answer.status_code} "
                    f"{answer.text[:200]} (anonymous got {anonymous.status_code})"
                )
            elif (route.method, route.path) not in PUBLIC and answer.status_code != 401:
                problems.append(f"{route.method} {route.path} with {name}: {answer.status_code}")
    assert probes >= 150
    assert not problems, "\n".join(problems)


def test_session_cookie_value_is_no_bearer_token(world):
    """R02: phone routes read the cookie only; the same value as a Bearer token is refused."""
    cookie = world.cookies["owner"]
    me = _ask(world, Route("GET", "/api/v1/me"), {"Cookie": f"{COOKIE}={cookie}"})
    assert me.status_code == 200
    refused = _ask(world, Route("GET", "/api/v1/me"), {"Authorization": f"Bearer {cookie}"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthenticated"


def _socket_refusal(world: ApiWorld, headers: dict[str, str]) -> int:
    """The status the agent socket upgrade is refused with (fails if it is accepted)."""
    world.reset()
    world.client.cookies.clear()
    try:
        with world.client.websocket_connect(AGENT_SOCKET, headers=headers) as ws:
            ws.send_json({"type": "hello"})
            ws.receive_json()
    except WebSocketDenialResponse as denial:
        return denial.status_code
    except WebSocketDisconnect as exc:
        pytest.fail(f"the socket was accepted, then closed with {exc.code}: {headers}")
    pytest.fail(f"the agent socket accepted {headers}")


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_phone_cookie_never_opens_the_agent_socket(world, role):
    """R07, A3: a session cookie, alone or as a Bearer token, never opens the agent socket."""
    cookie = world.cookies[role]
    assert cookie
    for headers in (
        {"Cookie": f"{COOKIE}={cookie}"},
        {"Cookie": f"{COOKIE}={cookie}", "Origin": world.setup.origin},
        {"Authorization": f"Bearer {cookie}"},
        {"Authorization": f"Bearer {world.poll_secret}"},
    ):
        assert _socket_refusal(world, headers) == 401, headers


def test_agent_token_opens_the_agent_socket(world):
    """The socket probe can tell: the real agent token is accepted and welcomed."""
    world.reset()
    headers = {"Authorization": f"Bearer {world.agent_token}"}
    with world.client.websocket_connect(AGENT_SOCKET, headers=headers) as ws:
        ws.send_json(
            {"type": "hello", "version": "1", "agentId": "fuzzbox", "features": {}, "actions": []}
        )
        assert ws.receive_json()["type"] == "welcome"


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_phone_cookie_never_polls_a_pair_request(world, role):
    """R06: only the poll secret reads a pair request; a cookie (even an admin's) cannot."""
    cookie = world.cookies[role]
    path = Route("GET", "/api/v1/agent/pair/{request_id}")
    for headers in (
        {"Cookie": f"{COOKIE}={cookie}"},
        {"Authorization": f"Bearer {cookie}"},
        {"Authorization": f"Bearer {world.agent_token}"},
        {"Cookie": f"{COOKIE}={cookie}", "Authorization": f"Bearer {world.agent_token}"},
    ):
        res = _ask(world, path, headers)
        assert res.status_code == 401, (headers, res.text)
        assert "status" not in res.json()
    good = _ask(world, path, {"Authorization": f"Bearer {world.poll_secret}"})
    assert good.json() == {"status": "pending"}
