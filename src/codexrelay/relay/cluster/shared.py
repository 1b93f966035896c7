"""Per-agent state phones read that an agent sends to the one instance holding its socket:
its Codex session catalog and its sealed session catalog. Each is a dictionary in memory
on every instance; a change made here is replayed on every peer over the internal HTTP
links (``peers.py``), never through the database or any disk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from codexrelay.protocol import SessionSummary
from codexrelay.relay.services import AgentCatalog

if TYPE_CHECKING:
    from codexrelay.relay.cluster.peers import PeerLinks

V = TypeVar("V")


class SharedMap(dict[str, V]):
    """A dictionary whose writes and removals are replayed on every peer instance."""

    def __init__(
        self,
        name: str,
        links: PeerLinks,
        encode: Callable[[V], Any],
        decode: Callable[[Any], V],
    ) -> None:
        super().__init__()
        self.name, self.links, self.encode, self.decode = name, links, encode, decode

    def __setitem__(self, key: str, value: V) -> None:
        super().__setitem__(key, value)
        self.links.broadcast({"k": "map", "m": self.name, "key": key, "v": self.encode(value)})

    def pop(self, key: str, *default: Any) -> Any:
        """Remove here and on the peers."""
        self.links.broadcast({"k": "map", "m": self.name, "key": key, "gone": True})
        return super().pop(key, *default)

    def receive(self, op: dict[str, Any]) -> None:
        """A change another instance made."""
        key = str(op["key"])
        if op.get("gone"):
            super().pop(key, None)
        else:
            super().__setitem__(key, self.decode(op["v"]))


def catalog_map(links: PeerLinks) -> SharedMap[AgentCatalog]:
    """Agents' Codex session catalogs (what ``GET .../agents/{id}/sessions`` serves)."""

    def encode(value: AgentCatalog) -> dict[str, Any]:
        sessions = [s.model_dump(mode="json", by_alias=True) for s in value.sessions]
        return {"sessions": sessions, "receivedAt": value.received_at.isoformat()}

    def decode(raw: Any) -> AgentCatalog:
        return AgentCatalog(
            sessions=[SessionSummary.model_validate(s) for s in raw["sessions"]],
            received_at=datetime.fromisoformat(raw["receivedAt"]),
        )

    return SharedMap("catalogs", links, encode, decode)


def sealed_catalog_map(links: PeerLinks) -> SharedMap[str]:
    """Agents' sealed session catalogs (envelopes only the phones can open)."""
    return SharedMap("sealed-catalogs", links, str, str)
