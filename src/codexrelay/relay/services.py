"""The per-process service container the HTTP layer hands to domain code."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from codexrelay.crypto import TokenSource
from codexrelay.protocol import SessionSummary
from codexrelay.relay.access.passkeys import ChallengeStore
from codexrelay.relay.agents.hub import AgentHub
from codexrelay.relay.audit.trail import AuditTrail
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.conversations.state import ConversationState
from codexrelay.relay.events import EventBus
from codexrelay.relay.http.ratelimit import AttemptLimiter, IPNetwork, parse_networks
from codexrelay.relay.push.sender import PushSender
from codexrelay.relay.storage.repositories import Store
from codexrelay.relay.tasks.details import DetailsStore
from codexrelay.relay.trust.state import TrustState

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock, millisecond precision, UTC."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class AgentCatalog:
    """The last session catalog an agent sent, and when (memory only, R12)."""

    sessions: list[SessionSummary]
    received_at: datetime


@dataclass
class Services:
    """Everything a request handler may use; built once per process by ``create_app``."""

    config: RelayConfig
    store: Store
    clock: Clock = utc_now
    rand: TokenSource = secrets.token_bytes
    login_limiter: AttemptLimiter = field(init=False)
    pair_limiter: AttemptLimiter = field(init=False)
    trusted_proxies: tuple[IPNetwork, ...] = field(init=False)
    # R05: WebAuthn challenges live in this process's memory only.
    passkey_challenges: ChallengeStore = field(default_factory=ChallengeStore)
    hub: AgentHub = field(default_factory=AgentHub)
    events: EventBus = field(default_factory=EventBus)
    # R12: each agent's Codex session catalog, in memory only, keyed by agent key.
    catalogs: dict[str, AgentCatalog] = field(default_factory=dict)
    # R10: task texts, in memory only.
    details: DetailsStore = field(init=False)
    # Agents that dropped off mid-task: their in-flight tasks are interrupted unless they
    # come back within the grace period.
    agent_grace: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Agent reports waiting to be durable before phones are told (never the socket's loop).
    background: set[asyncio.Task[None]] = field(default_factory=set)
    # B2: the signed, hash-chained audit trail in dataDir/audit/.
    audit: AuditTrail = field(init=False)
    # Protected workspaces: verified log views and tasks waiting for approvers (memory).
    trust: TrustState = field(default_factory=TrustState)
    # Content-free Web Push: the VAPID key and the sending queue (memory only).
    push: PushSender = field(init=False)
    push_test_limiter: AttemptLimiter = field(init=False)
    # Live conversations: requests to agents and thread content (memory only, R10).
    conversations: ConversationState = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        self.login_limiter = AttemptLimiter(
            "login",
            per_address=cfg.max_login_attempts_per_minute,
            global_factor=cfg.global_attempts_factor,
        )
        self.pair_limiter = AttemptLimiter(
            "pair",
            per_address=cfg.max_pair_attempts_per_minute,
            global_factor=cfg.global_attempts_factor,
        )
        self.trusted_proxies = parse_networks(cfg.trusted_proxies)
        self.details = DetailsStore(
            ttl_sec=cfg.task_details_ttl_sec, max_bytes=cfg.task_details_max_bytes
        )
        self.audit = AuditTrail(cfg.data_path)
        self.push = PushSender(
            settings=cfg.push, store=self.store, contact=cfg.push_contact, clock=self.clock
        )
        # "Send a test notification": a few a minute per person, so a stuck button cannot
        # make the relay hammer a push service.
        self.push_test_limiter = AttemptLimiter("push-test", per_address=6, global_factor=100)
        self.conversations = ConversationState.create(self.rand, cfg.conversation_memory_bytes)

    @property
    def token_secret(self) -> str:
        """The key for every HMAC'd credential (rotating it ends them all, I3)."""
        return self.config.token_secret.get_secret_value()

    def now(self) -> datetime:
        """The current time from the injected clock."""
        return self.clock()
