"""The agent's live link to the relay: one outbound WebSocket, reconnected with backoff.

Nothing listens on the development server (A2). Task reports that cannot be sent while the
link is down wait in an outbox and go out, in order, right after the next ``hello``, so
every accepted task still reaches a terminal state on the relay. A 401/403 at the upgrade
or close code 4401 means the token is dead: the agent stops instead of retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from codexrelay import __version__
from codexrelay.agent import logpush
from codexrelay.agent.catalog import SessionCatalog
from codexrelay.agent.config import AgentConfig
from codexrelay.agent.conversations import REQUEST_TYPES, Conversations
from codexrelay.agent.convgate import ConversationGate
from codexrelay.agent.executor import Executor
from codexrelay.agent.gate import TrustGate
from codexrelay.agent.logsync import fetch_log_async
from codexrelay.agent.redaction import Redactor
from codexrelay.agent.sealing import TaskKeys
from codexrelay.agent.status import StatusFile
from codexrelay.agent.threadseal import ThreadSealing
from codexrelay.agent.tokenstore import TokenStore
from codexrelay.agent.trust import AgentKeys, TrustStore
from codexrelay.protocol import (
    CLOSE_SEQUENCE,
    MAX_MESSAGE_BYTES,
    STOP_CLOSE_CODES,
    AgentFeatures,
    CatalogItem,
    Hello,
    LinkCounter,
    LogPush,
    Message,
    ProtocolError,
    SequenceError,
    SessionsUpdate,
    TaskAccepted,
    TaskCancel,
    TaskDispatch,
    TaskFinished,
    TaskRejected,
    TaskStarted,
    TokenRenew,
    TokenRenewed,
    TrustStatus,
    Welcome,
    dump_message,
    parse_relay_frame,
    read_seq,
)
from codexrelay.protocol_sealed import KeyRequest, SealedCatalog, SealedEnvelope

log = logging.getLogger("codexrelay.agent")

BACKOFF_START_SEC = 0.5
BACKOFF_CAP_SEC = 10.0  # API.md: agents are back within ~10 s of the relay being ready
WELCOME_TIMEOUT_SEC = 10.0
CATALOG_INTERVAL_SEC = 5.0
OUTBOX_LIMIT = 10000
TRUST_STATUS_DELAY_SEC = 2.0
# Reports that must survive a dropped link; progress is only a live view and may be lost.
DURABLE_TYPES = (TaskAccepted, TaskRejected, TaskStarted, TaskFinished, SealedEnvelope)
# A final report written to a socket whose relay dies before saving it is lost with that
# process (several relay instances: the agent's next connection lands on another one). The
# final reports sent in the last RESEND_SEC of a connection that ended go out again after
# the next hello; the relay ignores a report on a task that already ended.
FINAL_TYPES = (TaskFinished, TaskRejected)
RESEND_SEC = 10.0

EXIT_STOPPED = 0
EXIT_REVOKED = 3


class ResumableIds:
    """The catalog's session ids, refreshed once on a miss so a session recorded moments
    ago (by the task just before) can be resumed without waiting for the next scan."""

    def __init__(self, catalog: SessionCatalog) -> None:
        self._catalog = catalog

    def __contains__(self, session_id: object) -> bool:
        if session_id in self._catalog.session_ids():
            return True
        self._catalog.refresh()
        return session_id in self._catalog.session_ids()


class TokenRevokedError(Exception):
    """The relay refused this agent's token; retrying cannot help."""


def socket_url(relay_base_url: str) -> str:
    """The WebSocket URL of the relay's agent endpoint."""
    base = relay_base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return f"{base}/api/v1/agent/connect"


def next_backoff(current: float, rng: random.Random) -> tuple[float, float]:
    """(sleep now, next base): exponential with full jitter, capped at 10 s."""
    sleep = rng.uniform(current / 2, current)
    return sleep, min(current * 2, BACKOFF_CAP_SEC)


class AgentConnection:
    """Owns the executor, the catalog and the socket for one running agent."""

    def __init__(
        self,
        config: AgentConfig,
        tokens: TokenStore,
        *,
        redactor: Redactor | None = None,
        catalog: SessionCatalog | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.catalog = catalog or SessionCatalog(
            codex_home=config.codex_home, workspace_root=config.root
        )
        self.redactor = redactor or Redactor(config.redaction)
        self._redact = self.redactor.redact
        self.executor = Executor(
            config, self.send, session_ids=self._resumable_ids, redactor=self.redactor
        )
        self.conversations = Conversations(config, self.send, redactor=self.redactor)
        # TRUST.md: a pinned workspace's tasks and cancels pass the trust gate first.
        self.gate = TrustGate(
            TrustStore(config.state_path),
            AgentKeys.load_or_create(config.state_path),
            agent_id=config.agent_id,
            seen=lambda task_id: task_id in self.executor.ledger,
            fetch=self._fetch_log,
            on_change=self._trust_changed,
            task_keys=TaskKeys(config.state_path, keep_days=config.task_key_retention_days),
        )
        self.executor.gate = self.gate
        self.gate.restore_run_once(self.executor.ledger)
        self.conversations.trust = ConversationGate(self.gate, self.executor.ledger)
        self.conversations.sealing = ThreadSealing(self.gate)
        self._trust_sent: TrustStatus | None = None
        self._trust_due: asyncio.TimerHandle | None = None
        self._trust_job: asyncio.Future[None] | None = None
        self.status = StatusFile(config.state_path)
        self._on_state = on_state
        self._ws: ClientConnection | None = None
        self._outbox: deque[Message] = deque()
        self._sent_finals: deque[tuple[float, Message]] = deque(maxlen=OUTBOX_LIMIT)
        self._stop = asyncio.Event()
        self._catalog_sent: list[Any] | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._renewals: asyncio.Queue[datetime | None] = asyncio.Queue()
        # B4: every message both ways carries a per-connection linkSeq.
        self._send_lock = asyncio.Lock()
        self._out = LinkCounter()
        self._in = LinkCounter()

    def _resumable_ids(self) -> ResumableIds:
        return ResumableIds(self.catalog)

    async def _fetch_log(self, start: int) -> list[Any]:
        """Log entries from the relay (untrusted: the gate verifies them)."""
        stored = self.tokens.usable_for(self.config.relay_base_url, self.config.agent_id)
        if stored is None:
            msg = "no agent token to fetch the log with"
            raise OSError(msg)
        return await fetch_log_async(self.config.relay_base_url, stored.token, start)

    def _trust_changed(self) -> None:
        """Report the new heads soon: at most one ``trust.status`` per couple of seconds, so
        a burst of tasks costs the relay one update, not one each."""
        if self._ws is None or self._trust_due is not None:
            return
        loop = asyncio.get_running_loop()
        self._trust_due = loop.call_later(TRUST_STATUS_DELAY_SEC, self._trust_now)

    def _trust_now(self) -> None:
        self._trust_due = None
        self._trust_job = asyncio.ensure_future(self._send_trust())

    async def _send_trust(self) -> None:
        status = self.gate.status()
        if status is None or self._ws is None:
            return
        message = TrustStatus(trust=status)
        if message != self._trust_sent:
            self._trust_sent = message
            with contextlib.suppress(ConnectionClosed):
                await self._send_on(self._ws, message)

    # ---- sending ------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send now if connected; keep task reports for later if not."""
        ws = self._ws
        if ws is not None and not self._outbox:
            try:
                await self._send_on(ws, message)
            except ConnectionClosed:
                pass
            else:
                return
        if isinstance(message, DURABLE_TYPES) and len(self._outbox) < OUTBOX_LIMIT:
            self._outbox.append(message)

    async def _send_on(self, ws: ClientConnection, message: Message) -> None:
        """Number and send one message; the lock keeps numbers in the order they leave."""
        async with self._send_lock:
            await ws.send(dump_message(message, self._out.next()))
        if isinstance(message, FINAL_TYPES):
            self._sent_finals.append((time.monotonic(), message))

    def _resend_recent_finals(self) -> None:
        """The connection ended: final reports it carried lately go out again, first."""
        cutoff = time.monotonic() - RESEND_SEC
        recent = [m for sent, m in self._sent_finals if sent >= cutoff]
        self._sent_finals.clear()
        room = max(0, OUTBOX_LIMIT - len(self._outbox))
        self._outbox.extendleft(reversed(recent[-room:] if room else []))

    async def _flush_outbox(self, ws: ClientConnection) -> None:
        while self._outbox:
            await self._send_on(ws, self._outbox[0])
            self._outbox.popleft()

    # ---- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the agent to stop (signal handlers call this)."""
        self._stop.set()

    def _set_state(self, state: str, **details: Any) -> None:
        self.status.write(
            state,
            relay=self.config.relay_base_url,
            agentId=self.config.agent_id,
            **details,
        )
        if self._on_state is not None:
            self._on_state(state)

    async def run(self) -> int:
        """Connect and serve until stopped (0) or the token is refused (3)."""
        backoff = BACKOFF_START_SEC
        self.conversations.start()
        try:
            while not self._stop.is_set():
                self._set_state("connecting")
                try:
                    served = await self._connect_once()
                except TokenRevokedError as exc:
                    log.error("%s", exc)  # noqa: TRY400 - the reason is the whole story
                    self._set_state("revoked", error=str(exc))
                    return EXIT_REVOKED
                except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                    log.info("relay unreachable (%s); retrying", type(exc).__name__)
                    served = False
                if served:
                    backoff = BACKOFF_START_SEC
                if self._stop.is_set():
                    break
                sleep, backoff = next_backoff(backoff, self._rng)
                self._set_state("waiting", retryInSec=round(sleep, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), sleep)
            return EXIT_STOPPED
        finally:
            await self.executor.shutdown()
            await self.conversations.stop()
            self._set_state("stopped")

    async def _connect_once(self) -> bool:
        """One connection's life; True if it got as far as a welcome."""
        stored = self.tokens.usable_for(self.config.relay_base_url, self.config.agent_id)
        if stored is None:
            msg = "no agent token for this relay and agent id; pair first"
            raise TokenRevokedError(msg)
        try:
            ws = await websockets.connect(
                socket_url(self.config.relay_base_url),
                additional_headers={"Authorization": f"Bearer {stored.token}"},
                user_agent_header=f"codexrelay-agent/{__version__}",
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=10,
                ping_timeout=10,
                open_timeout=10,
                close_timeout=5,
            )
        except InvalidStatus as exc:
            if exc.response.status_code in {401, 403}:
                msg = "the relay refused this agent's token (revoked or replaced); pair again"
                raise TokenRevokedError(msg) from None
            raise
        try:
            return await self._serve(ws)
        finally:
            self._ws = None
            self._resend_recent_finals()
            with contextlib.suppress(Exception):
                await ws.close()

    def _hello(self) -> Hello:
        cfg = self.config
        pending = [m.task_id for m in self._outbox if isinstance(m, FINAL_TYPES)]
        return Hello(
            version=__version__,
            agent_id=cfg.agent_id,
            hostname=socket.gethostname()[:255],
            workspace_root_name=cfg.root.name,
            features=AgentFeatures(
                codex_exec=cfg.features.codex_exec,
                codex_exec_write=cfg.features.codex_exec_write,
                run_action=cfg.features.run_action and bool(cfg.actions),
                read_log=cfg.features.read_log and bool(cfg.log_sources),
                conversations=cfg.features.conversations,
            ),
            actions=[CatalogItem(id=k, label=v.label) for k, v in cfg.actions.items()],
            log_sources=[CatalogItem(id=k, label=v.label) for k, v in cfg.log_sources.items()],
            running_task_ids=[*self.executor.running_ids(), *pending],
        )

    async def _serve(self, ws: ClientConnection) -> bool:
        self._out, self._in = LinkCounter(), LinkCounter()
        await self._send_on(ws, self._hello())
        frame = parse_relay_frame(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT_SEC))
        welcome = frame.message
        if not isinstance(welcome, Welcome):
            msg = "the relay did not answer hello with welcome"
            raise ProtocolError(msg)
        try:
            self._in.accept(frame.seq)
        except SequenceError as exc:
            log.warning("the relay's welcome is not numbered (%s); reconnecting", exc)
            await ws.close(CLOSE_SEQUENCE, "welcome must carry linkSeq 1")
            return False
        await self._flush_outbox(ws)
        self._ws = ws
        self.conversations.relay_accepts = welcome.features.conversations
        self._catalog_sent = None
        self._trust_sent = None
        await self._send_trust()
        self._set_state("connected", workspaceId=welcome.workspace_id)
        log.info("connected to %s", self.config.relay_base_url)
        background = [
            asyncio.create_task(self._catalog_loop(ws)),
            asyncio.create_task(self.conversations.announce()),
        ]
        if welcome.token_expires_at is not None:
            self._renewals = asyncio.Queue()
            background.append(asyncio.create_task(self._renew_loop(ws, welcome.token_expires_at)))
        stopper = asyncio.create_task(self._stop.wait())
        try:
            receiver = asyncio.create_task(self._receive_loop(ws))
            done, _ = await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                receiver.result()  # re-raise how the link ended
            else:
                receiver.cancel()
        except SequenceError as exc:
            log.warning("a relay message arrived out of sequence (%s); reconnecting", exc)
            await ws.close(CLOSE_SEQUENCE, f"linkSeq {exc.kind}")
        finally:
            for job in (*background, stopper):
                job.cancel()
        return True

    async def _receive_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    frame = parse_relay_frame(raw)
                except SequenceError:
                    raise
                except ProtocolError as exc:
                    self._in.accept(read_seq(raw))  # it still took its place in the sequence
                    log.warning("ignoring a malformed relay message: %s", exc)
                    continue
                self._in.accept(frame.seq)
                await self._handle(frame.message)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in STOP_CLOSE_CODES:
                msg = "the relay revoked this agent; pair again with a new code"
                raise TokenRevokedError(msg) from None
            raise

    async def _handle(self, message: Message) -> None:
        if isinstance(message, TaskDispatch):
            # Not waiting for the ledger's fsync: the next message is read meanwhile.
            await self.executor.take(message.task)
        elif isinstance(message, TaskCancel):
            if self.gate.allow_cancel(message):
                self.executor.cancel(message.task_id)
        elif isinstance(message, KeyRequest):
            answer = await self.gate.key_request(message.stmt, message.sig)
            if answer is not None:
                task, device, envelope = answer
                self.conversations.handed_out(task, device)  # a thread's key counts as given
                await self.send(SealedEnvelope(task_id=task, envelope=envelope))
        elif isinstance(message, REQUEST_TYPES):
            await self.conversations.handle(message)
        elif isinstance(message, LogPush):
            ack = logpush.answer(self.gate.trust, self.gate.keys, self.config.agent_id, message)
            if ack.reason is None:
                self._trust_changed()
            await self.send(ack)
        elif isinstance(message, TokenRenewed):
            self.tokens.save(
                message.agent_token,
                relay_base_url=self.config.relay_base_url,
                agent_id=self.config.agent_id,
            )
            log.info("agent token renewed")
            self._renewals.put_nowait(message.expires_at)

    async def _catalog_loop(self, ws: ClientConnection) -> None:
        """Send the session catalog on connect and whenever it changes (R12: agent-side)."""
        first = True
        while True:
            changed = await asyncio.to_thread(self.catalog.refresh)
            if changed or first:
                with contextlib.suppress(ConnectionClosed):
                    await self._send_on(ws, self._catalog_update())
                first = False
            await asyncio.sleep(CATALOG_INTERVAL_SEC)

    def _catalog_update(self) -> Message:
        """The catalog in the clear, or sealed where the workspace's policy says so: then
        the relay hears an empty list and holds only the envelope (TRUST.md §4.7)."""
        sessions = self._redacted_sessions()
        data = [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in sessions]
        envelope = self.gate.sealed_catalog(data)
        return (
            SessionsUpdate(sessions=sessions)
            if envelope is None
            else SealedCatalog(envelope=envelope)
        )

    def _redacted_sessions(self) -> list[Any]:
        """Titles and previews pass through the same redaction as task output (B3)."""
        summaries = []
        for summary in self.catalog.sessions():
            title, _ = self._redact(summary.title)
            preview = [
                p.model_copy(update={"text": self._redact(p.text)[0][:320]})
                for p in summary.preview
            ]
            summaries.append(summary.model_copy(update={"title": title[:180], "preview": preview}))
        return summaries

    async def _renew_loop(self, ws: ClientConnection, expires_at: datetime) -> None:
        """Renew the token when a third of its life is left, so it never lapses silently."""
        while True:
            stored = self.tokens.load()
            now = datetime.now(UTC)
            issued = stored.saved_at if stored else now
            lifetime = max((expires_at - issued).total_seconds(), 0.0)
            remaining = (expires_at - now).total_seconds()
            await asyncio.sleep(max(0.0, remaining - lifetime / 3))
            with contextlib.suppress(ConnectionClosed):
                await self._send_on(ws, TokenRenew())
            renewed = await self._renewals.get()
            if renewed is None:
                return
            expires_at = renewed
