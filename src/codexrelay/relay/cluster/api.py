"""The routes instances call on each other (``/internal/cluster/...``): never routed by the
public proxy, and refused without the cluster's bearer token."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from codexrelay.protocol import TaskDispatch, parse_relay_message
from codexrelay.relay.cluster.peers import INTERNAL
from codexrelay.relay.cluster.shared import SharedMap

if TYPE_CHECKING:
    from codexrelay.relay.cluster.node import Cluster
    from codexrelay.relay.cluster.routing import ClusterDetails, ClusterEvents, ClusterHub


def _authorized(request: Request, cluster: Cluster) -> bool:
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {cluster.token}".encode())


def install_routes(app: FastAPI, cluster: Cluster) -> None:
    """Add the internal routes (excluded from the published schema)."""
    router = APIRouter(prefix=INTERNAL, include_in_schema=False)
    services = cluster.services

    @router.post("/ops")
    async def ops(request: Request) -> JSONResponse:
        if not _authorized(request, cluster):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        body: dict[str, Any] = await request.json()
        events: ClusterEvents = services.events  # type: ignore[assignment]
        details: ClusterDetails = services.details  # type: ignore[assignment]
        for op in body.get("ops", []):
            if op.get("k") == "event":
                events.receive(op)
            elif op.get("k") == "details":
                details.receive(op)
            elif op.get("k") == "map":
                shared = {"catalogs": services.catalogs, "sealed-catalogs": services.trust.catalogs}
                target = shared.get(str(op.get("m")))
                if isinstance(target, SharedMap):
                    target.receive(op)
        return JSONResponse({"ok": True})

    @router.post("/agent-send")
    async def agent_send(request: Request) -> JSONResponse:
        if not _authorized(request, cluster):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        body: dict[str, Any] = await request.json()
        hub: ClusterHub = services.hub  # type: ignore[assignment]
        live = hub.local(str(body.get("agentKey", "")))
        if live is None:
            return JSONResponse({"delivered": False})
        message = parse_relay_message(_dumps(body.get("message")))
        if isinstance(message, TaskDispatch) and not cluster.take_handover(message.task.id):
            return JSONResponse({"delivered": False})
        return JSONResponse({"delivered": await live.send(message)})

    @router.post("/agent-disconnect")
    async def agent_disconnect(request: Request) -> JSONResponse:
        if not _authorized(request, cluster):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        body: dict[str, Any] = await request.json()
        hub: ClusterHub = services.hub  # type: ignore[assignment]
        await hub.disconnect_local(
            str(body.get("agentKey", "")), int(body.get("code", 4000)), str(body.get("reason", ""))
        )
        return JSONResponse({"ok": True})

    app.include_router(router)


def _dumps(value: object) -> str:
    import json  # noqa: PLC0415

    return json.dumps(value)
