"""The ASGI application factory: routes, error translation, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from codexrelay import __version__, webbundle
from codexrelay.crypto import TokenSource
from codexrelay.errors import AppError, ErrorCode
from codexrelay.protocol import (
    CLOSE_SHUTDOWN,
    LogAck,
    TaskAccepted,
    TaskFinished,
    TaskProgress,
    TaskRejected,
    TaskStarted,
    TrustStatus,
)
from codexrelay.protocol_sealed import SealedCatalog, SealedEnvelope, SealedThreadEnvelope
from codexrelay.protocol_threads import (
    ApprovalUpdate,
    ThreadDelta,
    ThreadItemEvent,
    ThreadRefused,
    ThreadReply,
    ThreadsUpdate,
    ThreadUpdate,
)
from codexrelay.relay.access import identity, sessions
from codexrelay.relay.agents import pairing
from codexrelay.relay.agents.link import AgentWiring, serve_agent
from codexrelay.relay.api import agents, auth, events, invites, me, passkeys, people, workspaces
from codexrelay.relay.api import audit as audit_api
from codexrelay.relay.api import conversations as conversations_api
from codexrelay.relay.api import logpush as logpush_api
from codexrelay.relay.api import pairing as pairing_api
from codexrelay.relay.api import push as push_api
from codexrelay.relay.api import sealedtasks as sealed_tasks_api
from codexrelay.relay.api import sealedthreads as sealed_threads_api
from codexrelay.relay.api import signedtasks as signed_tasks_api
from codexrelay.relay.api import tasks as tasks_api
from codexrelay.relay.api import trust as trust_api
from codexrelay.relay.api.auditing import audit_refusal
from codexrelay.relay.api.schemas import ERROR_RESPONSES
from codexrelay.relay.cluster import enable as enable_cluster
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.conversations import reports as conversation_reports
from codexrelay.relay.conversations import sync as conversation_sync
from codexrelay.relay.conversations import threads as conversation_threads
from codexrelay.relay.http.security import (
    CatchAllMiddleware,
    RequestGuardMiddleware,
    SecurityHeadersMiddleware,
)
from codexrelay.relay.services import Clock, Services, utc_now
from codexrelay.relay.storage.records import AgentRecord
from codexrelay.relay.storage.repositories import Store
from codexrelay.relay.tasks import flow as taskflow
from codexrelay.relay.tasks import lifecycle
from codexrelay.relay.trust import link as trustlink

if TYPE_CHECKING:
    from codexrelay.relay.cluster.node import Cluster

log = logging.getLogger("codexrelay.relay")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PRUNE_INTERVAL_SEC = 60.0
# Tasks removed per retention step: a few milliseconds of event-loop time each.
RETENTION_SLICE = 200
# Between slices, so a large backlog (a first start after a long pause) takes a bounded
# share of the writer: at most about 4,000 tasks a second.
RETENTION_PAUSE_SEC = 0.05


def _error_response(error: AppError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # noqa: S101 - registered for AppError only
    return _error_response(await audit_refusal(request, exc))  # B2: refusals on record


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """Describe the first problem by location only; never echo the offending input."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return _error_response(
            AppError(ErrorCode.INVALID_REQUEST, "The request body is not valid JSON.")
        )
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    message = f"{where}: {first.get('msg', 'invalid')}."
    return _error_response(AppError(ErrorCode.INVALID_REQUEST, message, status=422))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type
    if exc.status_code == 404:
        error = AppError(ErrorCode.NOT_FOUND, "Nothing here.")
    elif exc.status_code == 405:
        error = AppError(ErrorCode.METHOD_NOT_ALLOWED, "That method is not allowed here.")
    else:
        error = AppError(
            ErrorCode.INVALID_REQUEST, "The request was refused.", status=exc.status_code
        )
    return _error_response(error)


class WebMount(Mount):
    """The web app's files at ``/``, stepping aside for ``/api/`` so unknown API paths are
    JSON 404s and a wrong method on a known API path is a 405, not a static-file miss."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Never claim API paths."""
        if scope["path"].startswith("/api/"):
            return Match.NONE, {}
        return super().matches(scope)


async def on_agent_connected(services: Services, agent: AgentRecord, running: list[str]) -> None:
    """After a hello: tasks are reconciled, conversations read again."""
    await taskflow.on_agent_connected(services, agent, running)
    await conversation_reports.on_connected(services, agent)


async def on_agent_gone(services: Services, agent: AgentRecord) -> None:
    """The connection ended: the task grace period starts, conversation requests fail."""
    await taskflow.on_agent_gone(services, agent)
    await conversation_reports.on_gone(services, agent)


# Every report an agent sends, and who handles it.
AGENT_WIRING = AgentWiring(
    handlers={
        TaskAccepted: taskflow.on_accepted,
        TaskRejected: taskflow.on_rejected,
        TaskStarted: taskflow.on_started,
        TaskProgress: taskflow.on_progress,
        TaskFinished: taskflow.on_finished,
        TrustStatus: trustlink.on_trust_status,
        LogAck: logpush_api.on_log_ack,
        SealedEnvelope: trustlink.on_envelope,
        SealedCatalog: trustlink.on_catalog,
        SealedThreadEnvelope: trustlink.on_thread_envelope,
        ThreadReply: conversation_reports.on_reply,
        ThreadRefused: conversation_reports.on_refused,
        ThreadUpdate: conversation_reports.on_thread_update,
        ThreadsUpdate: conversation_reports.on_threads_update,
        ThreadItemEvent: conversation_reports.on_item,
        ThreadDelta: conversation_reports.on_delta,
        ApprovalUpdate: conversation_reports.on_approval,
    },
    on_connect=on_agent_connected,
    on_disconnect=on_agent_gone,
)


def run_startup(services: Services, *, shared: bool = False) -> None:
    """Bring loaded state up to date: the audit chain is open, the owner exists, stale
    sessions are gone, and tasks in flight at the last stop are interrupted (not on a
    shared database, where they may be running through another instance: an agent's hello
    interrupts those it no longer runs)."""
    now = services.now()
    services.audit.start(
        bootstrap_hash=services.config.bootstrap_admin_token_hash,
        token_secret=services.token_secret,
        now=now,
    )
    if identity.ensure_owner(services.store, now=now, rand=services.rand):
        log.info("created the owner user and the default workspace")
    sessions.prune_expired(services.store, now)
    if services.push.open(services.config.data_path):
        log.info("made the VAPID key for push notifications")
    if not shared:
        taskflow.interrupt_unfinished(services)


def run_sweep(services: Services) -> None:
    """About once a minute: expired sessions, pair requests and task texts go."""
    now = services.now()
    pruned = sessions.prune_expired(services.store, now)
    if pruned or pairing.expire_pair_requests(services.store, now):
        services.store.touch()
    taskflow.expire_waiting(services)
    services.details.sweep(now)
    services.trust.sweep(now)
    services.push.sweep()
    conversation_threads.expire_overdue(services)


async def run_shutdown(services: Services) -> None:
    """Agents are told the relay is going; no timer outlives it; the audit chain closes."""
    await services.hub.disconnect_all(CLOSE_SHUTDOWN, "relay restarting")
    await taskflow.finish_background(services)
    await taskflow.stop_grace_timers(services)
    await services.push.close()
    await conversation_sync.stop_background(services)
    await services.audit.close()


async def run_retention(services: Services) -> int:
    """Finished tasks older than ``storage.retentionDays`` go, in slices of
    ``RETENTION_SLICE`` with a commit and a pause between them, so a large backlog never
    holds up a request. Returns how many went. The audit trail is untouched."""
    days = services.config.storage.retention_days
    cutoff = services.now() - timedelta(days=days)
    pruned = 0
    while True:
        gone = lifecycle.prune_finished_before(services.store.tasks, cutoff, RETENTION_SLICE)
        if gone:
            await services.store.commit()
            pruned += len(gone)
        if len(gone) < RETENTION_SLICE:
            break
        await asyncio.sleep(RETENTION_PAUSE_SEC)
    if pruned:
        log.info("pruned %d finished tasks older than %d days", pruned, days)
    return pruned


async def _sweep_loop(services: Services) -> None:
    while True:
        try:
            await run_retention(services)
        except AppError:
            log.warning("retention pass could not save; it runs again at the next sweep")
        await asyncio.sleep(PRUNE_INTERVAL_SEC)
        run_sweep(services)


def _publish_limits(app: FastAPI, config: RelayConfig) -> None:
    """The published schema states the caps this relay's config sets, not the code's
    backstops (API.md: the contract matches enforcement)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            tasks_api.publish_limits(schema, config.max_prompt_bytes)
            conversations_api.publish_limits(schema, config.max_prompt_bytes)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


# Every HTTP route module, in the order the published schema lists them.
ROUTERS = (
    auth,
    me,
    workspaces,
    passkeys,
    people,
    invites,
    pairing_api,
    agents,
    tasks_api,
    conversations_api,
    events,
    audit_api,
    push_api,
    trust_api,
    signed_tasks_api,
    logpush_api,
    sealed_tasks_api,
    sealed_threads_api,
)


def _lifespan(
    services: Services, cluster: Cluster | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up before the first request, the sweep while serving, shutdown after."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if cluster is not None:
            await cluster.start()
        run_startup(services, shared=cluster is not None)
        await services.store.commit()
        await services.audit.flush()
        await services.push.start()
        sweeper = asyncio.create_task(_sweep_loop(services))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await run_shutdown(services)
            if cluster is not None:
                await cluster.stop()
            await services.store.close()

    return lifespan


def _add_routes(app: FastAPI, services: Services) -> None:
    """Health, the API routers, the agent socket with its wiring, then the web app."""

    @app.get("/healthz", tags=["health"], responses=ERROR_RESPONSES)
    async def healthz() -> dict[str, bool]:
        """Liveness for load balancers and tests; no auth, no detail."""
        return {"ok": True}

    @app.get("/api/v1/web-bundle", tags=["health"], responses=ERROR_RESPONSES)
    async def web_bundle() -> dict[str, Any]:
        """The app version, web bundle hash and its files' hashes, for About (which hashes
        what the phone is served and names a file that differs) and ``verify-web``."""
        return {
            "version": __version__,
            "bundleHash": webbundle.installed_hash(),
            "files": webbundle.installed_manifest(),
        }

    for module in ROUTERS:
        app.include_router(module.router, responses=ERROR_RESPONSES)

    async def agent_socket(websocket: WebSocket) -> None:
        """The agent's one WebSocket (ARCHITECTURE.md, Agent protocol)."""
        await serve_agent(websocket, services, AGENT_WIRING)

    app.add_api_websocket_route("/api/v1/agent/connect", agent_socket)
    config = services.config

    @app.get("/relay.json", tags=["health"], responses=ERROR_RESPONSES)
    async def relay_json() -> dict[str, str]:
        """Where the app finds the API. A separate static host serves its own copy of this
        file (``codexrelay export-web``); served here, it names this relay."""
        return {"relayOrigin": config.public_origin}

    if config.web.app_origin is None:
        app.router.routes.append(WebMount("/", app=StaticFiles(directory=WEB_DIR, html=True)))
        return

    # The app comes from its own static origin: the relay serves the API only, and sends
    # someone who opens the relay's address to the app.
    @app.get("/", include_in_schema=False)
    async def to_app() -> RedirectResponse:
        return RedirectResponse(f"{config.web.app_origin}/", status_code=308)


def _add_middleware(app: FastAPI, config: RelayConfig) -> None:
    """add_middleware prepends: the last added runs first (outermost)."""
    app.add_middleware(
        RequestGuardMiddleware,
        origins=config.browser_origins,
        max_body_bytes=config.max_body_bytes,
    )
    if config.web.app_origin is not None:
        # The app's static origin calls the API with the session cookie: CORS for exactly
        # that origin, outside the guard so its refusals are readable by the app too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[config.web.app_origin],
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Accept", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, https=config.https)


def create_app(
    config: RelayConfig,
    store: Store,
    *,
    clock: Clock = utc_now,
    rand: TokenSource = secrets.token_bytes,
) -> FastAPI:
    """Build the relay app around an opened store."""
    services = Services(config=config, store=store, clock=clock, rand=rand)
    app = FastAPI(
        title="codexrelay",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    cluster = enable_cluster(app, services)
    app.router.lifespan_context = _lifespan(services, cluster)
    app.state.services = services
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    _add_routes(app, services)
    _publish_limits(app, config)
    _add_middleware(app, config)
    return app
