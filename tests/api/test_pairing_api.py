"""Pairing and the agent socket in-process: expiry, roles, isolation, protocol (R04, R06)."""

from __future__ import annotations

import pytest
from starlette.websockets import WebSocketDisconnect

from codexrelay.protocol import PROTOCOL_VERSION
from codexrelay.relay.storage.records import Role
from tests.api.conftest import login, sign_in_with_role
from tests.helpers import both_backends


def _wid(client) -> str:
    return client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]


def _code(client, wid, **body) -> dict:
    res = client.post(f"/api/v1/workspaces/{wid}/pairings", json=body)
    assert res.status_code == 201, res.text
    return res.json()


def _claim(client, code, agent_id="devbox"):
    return client.post(
        "/api/v1/agent/pair",
        json={
            "code": code,
            "agentId": agent_id,
            "label": "Dev box",
            "hostname": "h",
            "workspaceRootName": "app",
        },
    )


def _poll(client, claim):
    return client.get(
        f"/api/v1/agent/pair/{claim['requestId']}",
        headers={"Authorization": f"Bearer {claim['pollSecret']}"},
    )


def _paired_token(client, wid, agent_id="devbox") -> str:
    claim = _claim(client, _code(client, wid)["code"], agent_id).json()
    request_id = claim["requestId"]
    assert (
        client.post(f"/api/v1/workspaces/{wid}/pair-requests/{request_id}/approve").status_code
        == 200
    )
    return _poll(client, claim).json()["agentToken"]


def _assert_socket_refused(client, *, headers: dict[str, str]) -> None:
    """The agent socket is denied (before or right after the upgrade)."""
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/api/v1/agent/connect", headers=headers) as ws,
    ):
        ws.receive_json()


def _hello(agent_id="devbox", **extra):
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "version": "test",
        "agentId": agent_id,
        "features": {"codexExec": True, "runAction": True, "readLog": False},
        "actions": [{"id": "tests", "label": "Run tests"}],
        **extra,
    }


@both_backends
def test_pairing_code_shape(app_client):
    """A code is XXXX-XXXX with the exact command to run; only its HMAC is stored."""
    login(app_client)
    wid = _wid(app_client)
    created = _code(app_client, wid, note="laptop", ttlSec=120)
    assert created["command"] == f"codexrelay agent pair --pair-code {created['code']}"
    assert len(created["code"]) == 9
    assert created["code"] not in app_client.setup.stored_text()


def test_code_expires(app_client, clock):
    """R06: a code past its TTL is refused like a wrong one."""
    login(app_client)
    code = _code(app_client, _wid(app_client), ttlSec=60)["code"]
    clock.advance(61)
    res = _claim(app_client, code)
    assert res.status_code == 400
    assert res.json()["error"] == "invalid-or-expired-code"


def test_ttl_bounds(app_client):
    """Pairing codes live at most 60 minutes."""
    login(app_client)
    wid = _wid(app_client)
    res = app_client.post(f"/api/v1/workspaces/{wid}/pairings", json={"ttlSec": 3601})
    assert res.status_code == 422


def test_pair_request_names_the_code_it_claimed(app_client):
    """The phone that shows a code learns it was used: the request carries its pairing id."""
    login(app_client)
    wid = _wid(app_client)
    made = _code(app_client, wid)
    other = _code(app_client, wid)
    _claim(app_client, made["code"])
    listed = app_client.get(f"/api/v1/workspaces/{wid}/pair-requests").json()["pairRequests"]
    assert [r["pairingId"] for r in listed] == [made["pairing"]["id"]]
    assert other["pairing"]["id"] != made["pairing"]["id"]


def test_code_accepts_typing_variants(app_client):
    """A code typed in lower case without the dash still works."""
    login(app_client)
    code = _code(app_client, _wid(app_client))["code"]
    assert _claim(app_client, code.lower().replace("-", "")).status_code == 202


def test_pairings_flag_off(make_client):
    """R09: with features.pairings off no code can be made or claimed."""
    with make_client(features={"pairings": False}) as client:
        login(client)
        res = client.post(f"/api/v1/workspaces/{_wid(client)}/pairings", json={})
        assert res.status_code == 403
        assert res.json()["error"] == "feature-disabled"


@both_backends
def test_token_handed_over_exactly_once(app_client):
    """The first poll after approval gets the token; later polls see completed."""
    login(app_client)
    wid = _wid(app_client)
    claim = _claim(app_client, _code(app_client, wid)["code"]).json()
    assert _poll(app_client, claim).json() == {"status": "pending"}
    app_client.post(f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}/approve")
    first = _poll(app_client, claim).json()
    assert first["status"] == "approved"
    assert first["agentToken"].startswith("cra_")
    assert _poll(app_client, claim).json() == {"status": "completed"}
    assert first["agentToken"] not in app_client.setup.stored_text()


def test_poll_needs_the_poll_secret(app_client):
    """A poll with a wrong secret is 401 and reveals nothing."""
    login(app_client)
    claim = _claim(app_client, _code(app_client, _wid(app_client))["code"]).json()
    res = app_client.get(
        f"/api/v1/agent/pair/{claim['requestId']}", headers={"Authorization": "Bearer nope"}
    )
    assert res.status_code == 401
    assert app_client.get(f"/api/v1/agent/pair/{claim['requestId']}").status_code == 401


def test_unclaimed_approval_expires(app_client, clock):
    """An approval the agent never collects expires; no agent is created."""
    login(app_client)
    wid = _wid(app_client)
    claim = _claim(app_client, _code(app_client, wid, ttlSec=60)["code"]).json()
    app_client.post(f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}/approve")
    clock.advance(61)
    assert _poll(app_client, claim).json() == {"status": "expired"}
    assert app_client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"] == []


def test_decided_request_cannot_be_decided_again(app_client):
    """Approve or reject happens once."""
    login(app_client)
    wid = _wid(app_client)
    claim = _claim(app_client, _code(app_client, wid)["code"]).json()
    url = f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}"
    assert app_client.post(f"{url}/reject").json()["pairRequest"]["status"] == "rejected"
    res = app_client.post(f"{url}/approve")
    assert res.status_code == 409
    assert _poll(app_client, claim).json() == {"status": "rejected"}


def test_member_cannot_create_codes_or_approve(app_client):
    """R06: only admin+ make codes and decide requests."""
    login(app_client)
    wid = _wid(app_client)
    claim = _claim(app_client, _code(app_client, wid)["code"]).json()
    sign_in_with_role(app_client, wid, Role.MEMBER)
    assert app_client.post(f"/api/v1/workspaces/{wid}/pairings", json={}).status_code == 403
    url = f"/api/v1/workspaces/{wid}/pair-requests"
    assert app_client.get(url).status_code == 403
    assert app_client.post(f"{url}/{claim['requestId']}/approve").status_code == 403


def test_admin_of_other_workspace_sees_nothing(app_client):
    """R04: an admin of workspace A cannot see or approve workspace B's requests."""
    login(app_client)
    wid_b = _wid(app_client)
    claim = _claim(app_client, _code(app_client, wid_b)["code"]).json()
    wid_a = app_client.post("/api/v1/workspaces", json={"name": "A"}).json()["workspace"]["id"]
    sign_in_with_role(app_client, wid_a, Role.ADMIN)
    assert app_client.get(f"/api/v1/workspaces/{wid_b}/pair-requests").status_code == 404
    res = app_client.post(f"/api/v1/workspaces/{wid_b}/pair-requests/{claim['requestId']}/approve")
    assert res.status_code == 404
    res = app_client.post(f"/api/v1/workspaces/{wid_a}/pair-requests/{claim['requestId']}/approve")
    assert res.status_code == 404
    assert app_client.get(f"/api/v1/workspaces/{wid_a}/pair-requests").json() == {
        "pairRequests": []
    }


def test_agent_socket_hello_welcome_and_advertised_catalog(app_client):
    """The socket authenticates, exchanges hello/welcome and records ids and labels only."""
    login(app_client)
    wid = _wid(app_client)
    token = _paired_token(app_client, wid)
    with app_client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send_json(_hello(workspaceRootName="app"))
        welcome = ws.receive_json()
        assert welcome["type"] == "welcome"
        assert welcome["workspaceId"] == wid
        assert welcome["features"]["codexExecWrite"] is False
        agent = app_client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"][0]
        assert agent["online"] is True
        assert agent["actions"] == [{"id": "tests", "label": "Run tests"}]
        assert agent["workspaceRootName"] == "app"
    agent = app_client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"][0]
    assert agent["online"] is False


@pytest.mark.parametrize(
    "token", ["", "cra_nothing", "Bearer", "cra_ag_x.y.zzzz"], ids=["empty", "junk", "word", "tag"]
)
def test_agent_socket_refuses_bad_tokens(app_client, token):
    """Bad tokens are denied before the upgrade is accepted."""
    _assert_socket_refused(app_client, headers={"Authorization": f"Bearer {token}"})


def test_agent_socket_refuses_wrong_agent_id_and_bad_messages(app_client):
    """A hello for another agent id, or a message of an unknown type, closes the socket."""
    login(app_client)
    wid = _wid(app_client)
    token = _paired_token(app_client, wid)
    headers = {"Authorization": f"Bearer {token}"}
    with app_client.websocket_connect("/api/v1/agent/connect", headers=headers) as ws:
        ws.send_json(_hello("someone-else"))
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == 4400
    with app_client.websocket_connect("/api/v1/agent/connect", headers=headers) as ws:
        ws.send_json(_hello())
        ws.receive_json()
        ws.send_json({"type": "exec", "command": "rm -rf /"})
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == 4400


def test_agent_socket_refuses_foreign_origin(app_client):
    """A browser page on another origin cannot open the agent socket."""
    login(app_client)
    token = _paired_token(app_client, _wid(app_client))
    _assert_socket_refused(
        app_client, headers={"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
    )


def test_revoke_closes_socket_with_stop_code(app_client):
    """R07: revocation closes the live socket with 4401 and the token is dead after."""
    login(app_client)
    wid = _wid(app_client)
    token = _paired_token(app_client, wid)
    headers = {"Authorization": f"Bearer {token}"}
    with app_client.websocket_connect("/api/v1/agent/connect", headers=headers) as ws:
        ws.send_json(_hello())
        ws.receive_json()
        assert app_client.delete(f"/api/v1/workspaces/{wid}/agents/devbox").status_code == 204
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == 4401
    _assert_socket_refused(app_client, headers=headers)
    assert app_client.delete(f"/api/v1/workspaces/{wid}/agents/devbox").status_code == 404


def test_token_renewal_replaces_token(make_client, clock):
    """Tokens with a lifetime can be renewed over the socket; the old one stops working."""
    with make_client(agentTokenTtlSec=3600) as client:
        login(client)
        wid = _wid(client)
        token = _paired_token(client, wid)
        with client.websocket_connect(
            "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ws.send_json(_hello())
            welcome = ws.receive_json()
            assert welcome["tokenExpiresAt"]
            ws.send_json({"type": "token.renew"})
            renewed = ws.receive_json()
            assert renewed["type"] == "token.renewed"
            new_token = renewed["agentToken"]
        assert new_token != token
        _assert_socket_refused(client, headers={"Authorization": f"Bearer {token}"})
        clock.advance(3601)
        _assert_socket_refused(client, headers={"Authorization": f"Bearer {new_token}"})


@both_backends
def test_sessions_catalog_kept_in_memory_only(app_client):
    """R12: the catalog an agent sends is served from memory and never written to disk."""
    login(app_client)
    wid = _wid(app_client)
    token = _paired_token(app_client, wid)
    canary = "catalog-canary-7f3a"
    with app_client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send_json(_hello())
        ws.receive_json()
        ws.send_json(
            {
                "type": "sessions",
                "sessions": [
                    {
                        "sessionId": "01a2285e-4d34-7503-abfd-c91a7e41551b",
                        "title": f"Fix the {canary}",
                        "cwd": "/work/app",
                        "updatedAt": "2026-11-29T12:00:00Z",
                        "preview": [{"role": "user", "text": canary}],
                    }
                ],
            }
        )
        ws.send_json({"type": "token.renew"})
        ws.receive_json()  # the renewal answer proves the catalog message was handled
        body = app_client.get(f"/api/v1/workspaces/{wid}/agents/devbox/sessions").json()
        assert body["agentOnline"] is True
        assert body["sessions"][0]["title"] == f"Fix the {canary}"
    assert canary not in app_client.setup.stored_text()
