"""What the relay holds about live conversations besides its records: the requests in
flight, the content of threads (memory only, R10), answers being delivered, and each
agent's model list."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from codexrelay.crypto import TokenSource
from codexrelay.protocol_threads import ModelOption
from codexrelay.relay.conversations.content import ContentStore
from codexrelay.relay.conversations.envelopes import ThreadEnvelopes
from codexrelay.relay.conversations.requests import AgentRequests


@dataclass
class ModelCatalog:
    """The models an agent's Codex offered, and when it was asked."""

    models: list[ModelOption]
    fetched_at: datetime


@dataclass
class ConversationState:
    """Per relay process; built by ``Services``."""

    requests: AgentRequests
    content: ContentStore
    envelopes: ThreadEnvelopes  # sealed threads' streams (memory only)
    # Approvals whose answer is on its way to the agent: a second answer meanwhile is
    # refused at once (the first valid answer wins).
    deciding: set[str] = field(default_factory=set)
    models: dict[str, ModelCatalog] = field(default_factory=dict)
    listed_at: dict[str, datetime] = field(default_factory=dict)
    jobs: set[asyncio.Task[None]] = field(default_factory=set)  # reads after a reconnect

    @classmethod
    def create(cls, rand: TokenSource, max_bytes: int) -> ConversationState:
        return cls(
            requests=AgentRequests(rand),
            content=ContentStore(max_bytes),
            envelopes=ThreadEnvelopes(max_bytes),
        )
