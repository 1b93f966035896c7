"""Workspaces and their members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from codexrelay.relay.access import identity, policy
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import ActiveCallerDep, ServicesDep, Viewer
from codexrelay.relay.storage.records import Role
from codexrelay.relay.views import MemberOut, WorkspaceOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])


class WorkspacesOut(CamelModel):
    workspaces: list[WorkspaceOut]


class WorkspaceEnvelope(CamelModel):
    workspace: WorkspaceOut


class CreateWorkspaceBody(CamelModel):
    name: Annotated[str, Field(min_length=1, max_length=80)]


class MembersOut(CamelModel):
    members: list[MemberOut]


@router.get("", response_model=WorkspacesOut)
async def list_workspaces(caller: ActiveCallerDep, services: ServicesDep) -> WorkspacesOut:
    """Only the workspaces the caller is a member of (R03)."""
    found = identity.user_workspaces(services.store, caller.user.id)
    return WorkspacesOut(workspaces=[WorkspaceOut.of(ws, role=role) for ws, role in found])


@router.post("", status_code=201, response_model=WorkspaceEnvelope)
async def create_workspace(
    body: CreateWorkspaceBody, caller: ActiveCallerDep, services: ServicesDep, audit: AuditDep
) -> WorkspaceEnvelope:
    """The instance owner (or anyone, if ``allowUserWorkspaces``) creates a workspace."""
    decision = policy.can_create_workspace(
        is_relay_owner=caller.user.is_owner,
        user_workspaces_allowed=services.config.allow_user_workspaces,
    )
    policy.enforce(decision)
    workspace = identity.create_workspace(
        services.store,
        name=body.name.strip() or body.name,
        owner_id=caller.user.id,
        now=services.now(),
        rand=services.rand,
    )
    await audit.record("workspace.created", workspace=workspace.id, name=workspace.name)
    await services.store.commit()
    return WorkspaceEnvelope(
        workspace=WorkspaceOut(id=workspace.id, name=workspace.name, role=Role.OWNER)
    )


@router.get("/{wid}/members", response_model=MembersOut)
async def list_members(
    access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> MembersOut:
    """Everyone in the workspace with their role and status."""
    members = identity.workspace_members(services.store, access.workspace.id)
    return MembersOut(members=[MemberOut.of(u, user_id=u.id, role=role) for u, role in members])
