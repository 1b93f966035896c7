"""Workspaces and their members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.api.deps import ActiveCallerDep, ServicesDep, Viewer
from codexrelay.relay.audit.context import AuditDep
from codexrelay.relay.storage.records import Role, UserStatus
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])


class WorkspaceItem(CamelModel):
    id: str
    name: str
    role: Role


class WorkspacesOut(CamelModel):
    workspaces: list[WorkspaceItem]


class WorkspaceEnvelope(CamelModel):
    workspace: WorkspaceItem


class CreateWorkspaceBody(CamelModel):
    name: Annotated[str, Field(min_length=1, max_length=80)]


class MemberOut(CamelModel):
    user_id: str
    name: str
    role: Role
    status: UserStatus


class MembersOut(CamelModel):
    members: list[MemberOut]


@router.get("", response_model=WorkspacesOut)
async def list_workspaces(caller: ActiveCallerDep, services: ServicesDep) -> WorkspacesOut:
    """Only the workspaces the caller is a member of (R03)."""
    found = identity.user_workspaces(services.state, caller.user.id)
    return WorkspacesOut(
        workspaces=[WorkspaceItem(id=ws.id, name=ws.name, role=role) for ws, role in found]
    )


@router.post("", status_code=201, response_model=WorkspaceEnvelope)
async def create_workspace(
    body: CreateWorkspaceBody, caller: ActiveCallerDep, services: ServicesDep, audit: AuditDep
) -> WorkspaceEnvelope:
    """The instance owner (or anyone, if ``allowUserWorkspaces``) creates a workspace."""
    if not (caller.user.is_owner or services.config.allow_user_workspaces):
        raise AppError(ErrorCode.FORBIDDEN, "Only the relay owner can create workspaces.")
    workspace = identity.create_workspace(
        services.state,
        name=body.name.strip() or body.name,
        owner_id=caller.user.id,
        now=services.now(),
        rand=services.rand,
    )
    await audit.record("workspace.created", workspace=workspace.id, name=workspace.name)
    await services.store.commit()
    return WorkspaceEnvelope(
        workspace=WorkspaceItem(id=workspace.id, name=workspace.name, role=Role.OWNER)
    )


@router.get("/{wid}/members", response_model=MembersOut)
async def list_members(
    access: Annotated[WorkspaceAccess, Viewer], services: ServicesDep
) -> MembersOut:
    """Everyone in the workspace with their role and status."""
    members = identity.workspace_members(services.state, access.workspace.id)
    return MembersOut(
        members=[
            MemberOut(user_id=u.id, name=u.name, role=role, status=u.status) for u, role in members
        ]
    )
