"""Workspaces, memberships and the single role check (R03, R04)."""

from __future__ import annotations

import pytest

from codexrelay.errors import AppError
from codexrelay.relay.access import identity
from codexrelay.relay.storage.records import Role
from tests.api.conftest import login, make_user, services_of, sign_in_as


def test_first_start_creates_owner_and_default_workspace(app_client):
    """The owner user exists with the owner role in a default workspace."""
    login(app_client)
    workspaces = app_client.get("/api/v1/workspaces").json()["workspaces"]
    assert [(w["name"], w["role"]) for w in workspaces] == [("Default", "owner")]


def test_owner_creates_workspace(app_client):
    """The instance owner creates a workspace and becomes its owner."""
    login(app_client)
    res = app_client.post("/api/v1/workspaces", json={"name": "Team B"})
    assert res.status_code == 201
    created = res.json()["workspace"]
    assert created["role"] == "owner"
    names = {w["name"] for w in app_client.get("/api/v1/workspaces").json()["workspaces"]}
    assert names == {"Default", "Team B"}


def test_workspace_name_validated(app_client):
    """An empty or over-long name is 422."""
    login(app_client)
    assert app_client.post("/api/v1/workspaces", json={"name": ""}).status_code == 422
    assert app_client.post("/api/v1/workspaces", json={"name": "x" * 81}).status_code == 422


def test_non_owner_cannot_create_workspace(app_client):
    """Only the instance owner creates workspaces unless allowUserWorkspaces is set."""
    login(app_client)
    wid = app_client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
    sign_in_as(app_client, make_user(app_client, wid, Role.ADMIN))
    res = app_client.post("/api/v1/workspaces", json={"name": "Mine"})
    assert res.status_code == 403
    assert res.json()["error"] == "forbidden"


def test_users_may_create_workspaces_when_allowed(make_client):
    """allowUserWorkspaces lets any active user create a workspace."""
    with make_client(allowUserWorkspaces=True) as client:
        sign_in_as(client, make_user(client, None, Role.VIEWER))
        assert client.post("/api/v1/workspaces", json={"name": "Mine"}).status_code == 201


def test_members_listed_for_viewer(app_client):
    """Viewers see the member list with roles and statuses."""
    login(app_client)
    wid = app_client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
    viewer = make_user(app_client, wid, Role.VIEWER)
    sign_in_as(app_client, viewer)
    members = app_client.get(f"/api/v1/workspaces/{wid}/members").json()["members"]
    assert [m["role"] for m in members] == ["owner", "viewer"]
    assert set(members[0]) == {"userId", "name", "role", "status"}


def test_other_workspace_is_not_found(app_client):
    """R03: a non-member gets 404 on another workspace's routes, revealing nothing."""
    login(app_client)
    wid = app_client.post("/api/v1/workspaces", json={"name": "Secret"}).json()["workspace"]["id"]
    default = next(
        w["id"]
        for w in app_client.get("/api/v1/workspaces").json()["workspaces"]
        if w["name"] == "Default"
    )
    sign_in_as(app_client, make_user(app_client, default, Role.OWNER))
    res = app_client.get(f"/api/v1/workspaces/{wid}/members")
    assert res.status_code == 404
    assert res.json()["error"] == "not-found"
    unknown = app_client.get("/api/v1/workspaces/ws_doesnotexist/members")
    assert unknown.json() == res.json()
    listed = {w["id"] for w in app_client.get("/api/v1/workspaces").json()["workspaces"]}
    assert wid not in listed


def test_role_check_order():
    """The role order is viewer < member < admin < owner."""
    assert Role.OWNER.at_least(Role.ADMIN)
    assert Role.ADMIN.at_least(Role.MEMBER)
    assert Role.MEMBER.at_least(Role.VIEWER)
    assert not Role.VIEWER.at_least(Role.MEMBER)


def test_too_low_role_is_forbidden(app_client):
    """A member whose role is too low gets 403 forbidden from the shared role check."""
    login(app_client)
    wid = app_client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
    services = services_of(app_client)
    viewer = make_user(app_client, wid, Role.VIEWER)
    with pytest.raises(AppError) as exc:
        identity.check_workspace_access(
            services.store, user_id=viewer, workspace_id=wid, minimum=Role.MEMBER
        )
    assert exc.value.code == "forbidden"
    assert exc.value.status == 403
