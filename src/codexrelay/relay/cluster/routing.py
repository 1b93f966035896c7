"""The cluster-aware hub, event bus and task-text store: the same interfaces the domain
uses on one instance, reaching across instances underneath.

- ``ClusterHub``: an agent connected here is a ``LiveAgent`` as before; one connected to
  another instance is a ``RemoteAgent`` whose ``send`` hands the message to that instance.
- ``ClusterEvents``: an event published here is also delivered, with the same id, by every
  peer to its phones, so a stream resumes from ``Last-Event-ID`` on any instance.
- ``ClusterDetails``: task texts held here are held by every peer too (memory only).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from codexrelay.protocol import Message, SignedTask, dump_message
from codexrelay.protocol_sealed import SealedTask
from codexrelay.relay.agents.hub import AgentHub, LiveAgent
from codexrelay.relay.events import Event, EventBus
from codexrelay.relay.tasks.details import DetailsStore

if TYPE_CHECKING:
    from codexrelay.relay.cluster.node import Cluster

log = logging.getLogger("codexrelay.cluster")


class RemoteAgent(LiveAgent):
    """An agent whose socket another instance holds."""

    def __init__(
        self, key: str, address: str, cluster: Cluster, before_send: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(key=key, workspace_id="", websocket=None)  # type: ignore[arg-type]
        self.address = address
        self.cluster = cluster
        self.before_send = before_send

    async def send(self, message: Message) -> bool:
        """Make what this instance changed durable first (so the holder reads the task as
        it is now), then hand the message over; False if it could not be delivered."""
        await self.before_send()
        body = json.loads(dump_message(message))
        return await self.cluster.links.send(self.address, self.key, body)

    async def close(self, code: int, reason: str = "") -> None:
        """Ask the holder to close the socket."""
        await self.cluster.links.disconnect(self.address, self.key, code, reason)


class ClusterHub(AgentHub):
    """Live agents here, and a way to reach those connected elsewhere."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self.cluster = cluster
        self._moved: set[str] = set()

    def local(self, key: str) -> LiveAgent | None:
        """The agent's socket, if this instance holds it."""
        return super().get(key)

    def local_keys(self) -> list[str]:
        """The agents whose sockets this instance holds."""
        return [key for key, live in self._live.items() if not live.closed.is_set()]

    def get(self, key: str) -> LiveAgent | None:
        """The agent's socket here, or a handle on the instance that holds it."""
        live = super().get(key)
        if live is not None:
            return live
        holder = self.cluster.holder(key)
        if holder is None or holder[0] == self.cluster.node_id:
            return None
        if self.cluster.links.is_down(holder[1]):
            return None  # its instance stopped answering: offline until the agent is back
        return RemoteAgent(key, holder[1], self.cluster, self.cluster.store.commit)

    def is_online(self, key: str) -> bool:
        """Connected here or to another live instance."""
        return super().is_online(key) or self.get(key) is not None

    def attach(self, live: LiveAgent) -> LiveAgent | None:
        """Register a socket here and take the agent's lease."""
        previous = super().attach(live)
        holder = self.cluster.previous_holder(live.key)
        if holder is not None and holder != self.cluster.node_id:
            self._moved.add(live.key)
        self.cluster.claim(live.key)
        return previous

    def moved_from_lost_instance(self, key: str) -> bool:
        """The agent's previous connection was on another instance (one that stopped, or
        that it lost): in-flight tasks it does not hold were lost with that hand-over."""
        if key in self._moved:
            self._moved.discard(key)
            return True
        return False

    def detach(self, live: LiveAgent) -> bool:
        """Forget a socket; the lease goes too unless another instance took it."""
        gone = super().detach(live)
        if gone:
            self.cluster.release(live.key)
        return gone

    async def disconnect(self, key: str, code: int, reason: str = "") -> None:
        """Close the agent's socket wherever it is (revocation)."""
        remote = None if super().get(key) is not None else self.get(key)
        await super().disconnect(key, code, reason)
        if remote is not None:
            await remote.close(code, reason)

    async def disconnect_local(self, key: str, code: int, reason: str = "") -> None:
        """Close the socket if it is here (another instance took the lease)."""
        await super().disconnect(key, code, reason)

    def online_count(self) -> int:
        """Agents connected to this instance."""
        return super().online_count()


# Every instance keeps this many recent events per workspace for streams that resume.
CLUSTER_BUFFER = 5000
# A resumed stream gets every buffered event made up to this long before the last one it
# saw: what another instance made just before may have arrived after it (notices and
# peer requests take milliseconds; instances on several hosts add their clock skew).
REPLAY_MARGIN_MS = 3000


def event_time(event_id: str) -> int | None:
    """The milliseconds (Unix time) a cluster event id starts with, if it is one."""
    head = event_id.split("-", 1)[0]
    return int(head, 16) if head and len(head) <= 16 and _is_hex(head) else None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _task_of(event: Event) -> str | None:
    """The task a ``task`` event is about."""
    if event.type != "task":
        return None
    try:
        task = json.loads(event.data).get("task")
    except ValueError:
        return None
    return str(task["id"]) if isinstance(task, dict) and "id" in task else None


def _latest_task_states(events: list[Event]) -> list[Event]:
    """``events`` without the ``task`` events a later one about the same task supersedes
    (an instance's task events follow the database's commit order)."""
    last: dict[str, int] = {}
    tasks = [_task_of(e) for e in events]
    for index, task in enumerate(tasks):
        if task is not None:
            last[task] = index
    pairs = enumerate(zip(events, tasks, strict=True))
    return [e for i, (e, t) in pairs if t is None or last[t] == i]


class ClusterEvents(EventBus):
    """Events delivered by every instance, each under the id it was made with. Ids start
    with the time they were made (``<ms hex>-<boot id>-<counter>``), so a stream resumes on
    any instance from where it was, whichever instance made the events on either side."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(buffer_size=CLUSTER_BUFFER)
        self.cluster = cluster

    def new_id(self) -> str:
        """A time before which every other instance's change has been published here too
        (now, unless this instance's view of their changes runs behind), then this
        process's boot id and counter."""
        now = time.time_ns() // 1_000_000
        caught_up = self.cluster.store.caught_up_ms or now
        return f"{min(now, caught_up):x}-{super().new_id()}"

    def publish(self, workspace_id: str, event_type: str, payload: dict[str, Any]) -> Event:
        """Deliver here and on every peer. A task's metadata (``task``) is the exception:
        each instance publishes it from the database's change notice (``Cluster``), so a
        change committed just before its instance died still reaches every phone."""
        event = super().publish(workspace_id, event_type, payload)
        if event_type != "task":
            self.cluster.links.broadcast(
                {"k": "event", "w": workspace_id, "id": event.id, "t": event.type, "d": event.data}
            )
        return event

    def missed(self, workspace_id: str, last_event_id: str | None) -> list[Event]:
        """Every buffered event made from ``REPLAY_MARGIN_MS`` before the last one the
        phone saw (on this instance or another), except that one. Each instance makes the
        ``task`` events of every change itself, and events from peers arrive a moment after
        they were made, so the order of a buffer differs between instances: time, not
        position, says what the phone may not have seen. Some events come twice; the phone
        applies a repeated event as it would the first (task states, numbered progress),
        but an older state of a task never follows a newer one: of a task's ``task`` events
        only the last this instance holds is sent, and none if that is the phone's last.
        An id without a time (a stream from before an upgrade): the whole buffer."""
        if not last_event_id:
            return []
        recent = self.recent(workspace_id)
        seen = event_time(last_event_id)
        if seen is None:
            return _latest_task_states(recent)
        cutoff = seen - REPLAY_MARGIN_MS
        window = [e for e in recent if (event_time(e.id) or 0) >= cutoff]
        return [e for e in _latest_task_states(window) if e.id != last_event_id]

    def receive(self, op: dict[str, Any]) -> None:
        """An event another instance made."""
        self.deliver(str(op["w"]), Event(id=str(op["id"]), type=str(op["t"]), data=str(op["d"])))


class ClusterDetails(DetailsStore):
    """Task texts held by every instance (memory only), each change replayed on the peers."""

    def __init__(self, cluster: Cluster, *, ttl_sec: int, max_bytes: int) -> None:
        super().__init__(ttl_sec=ttl_sec, max_bytes=max_bytes)
        self.cluster = cluster

    def _share(self, op: str, task_id: str, **args: Any) -> None:
        self.cluster.links.broadcast({"k": "details", "op": op, "task": task_id, "a": args})

    def start(
        self,
        task_id: str,
        prompt: str | None,
        signed: SignedTask | None = None,
        sealed: SealedTask | None = None,
    ) -> Any:
        """Hold a new task's prompt (or its phone's envelope) here and on the peers."""
        details = super().start(task_id, prompt, signed, sealed)
        sig = None if signed is None else signed.model_dump(mode="json", by_alias=True)
        seal = None if sealed is None else sealed.envelope
        self._share("start", task_id, prompt=prompt, signed=sig, sealed=seal)
        return details

    def add_envelope(self, task_id: str, envelope: str) -> int | None:
        """One sealed envelope the agent sent, here and on the peers (in the order sent)."""
        index = super().add_envelope(task_id, envelope)
        if index is not None:
            self._share("envelope", task_id, envelope=envelope)
        return index

    def add_progress(self, task_id: str, event: dict[str, Any]) -> None:
        """One progress step, here and on the peers."""
        super().add_progress(task_id, event)
        self._share("progress", task_id, event=event)

    def finish(self, task_id: str, now: datetime, **texts: Any) -> None:
        """The final texts, here and on the peers."""
        super().finish(task_id, now, **texts)
        self._share("finish", task_id, now=now.isoformat(), texts=texts)

    def mark_finished(self, task_id: str, now: datetime) -> None:
        """The TTL starts, here and on the peers."""
        super().mark_finished(task_id, now)
        self._share("mark", task_id, now=now.isoformat())

    def receive(self, op: dict[str, Any]) -> None:
        """A change another instance made."""
        task_id, args = str(op["task"]), op.get("a", {})
        kind = op.get("op")
        if kind == "start":
            raw = args.get("signed")
            signed = None if raw is None else SignedTask.model_validate(raw)
            seal = args.get("sealed")
            sealed = None if seal is None else SealedTask(envelope=str(seal))
            DetailsStore.start(self, task_id, args.get("prompt"), signed, sealed)
        elif kind == "envelope":
            DetailsStore.add_envelope(self, task_id, str(args["envelope"]))
        elif kind == "progress":
            DetailsStore.add_progress(self, task_id, dict(args["event"]))
        elif kind == "finish":
            DetailsStore.finish(
                self, task_id, datetime.fromisoformat(args["now"]), **dict(args["texts"])
            )
        elif kind == "mark":
            DetailsStore.mark_finished(self, task_id, datetime.fromisoformat(args["now"]))
