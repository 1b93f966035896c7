"""One relay instance among several on a PostgreSQL database: its registration, its leases on
the agents whose sockets it holds, and what it knows of its peers.

Metadata goes through the database: each instance's row in ``instances`` (its address for
peers, renewed every ``HEARTBEAT_SEC`` and expiring after ``LEASE_SEC``), and one row per
connected agent in ``agent_leases`` naming the instance that holds the socket. A lease the
holder stops renewing (the instance was killed) expires; the agent's reconnection to any
other instance takes it over at once (the newest connection wins, as on one instance).

Content never goes through the database: see ``peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

from codexrelay.relay.cluster import sweep
from codexrelay.relay.cluster.peers import PeerLinks
from codexrelay.relay.storage.records import TaskRecord
from codexrelay.relay.views import TaskOut

if TYPE_CHECKING:
    from codexrelay.relay.services import Services
    from codexrelay.relay.storage.postgres import PostgresStore

log = logging.getLogger("codexrelay.cluster")

LEASE_SEC = 15
HEARTBEAT_SEC = 3
# How often the list of live peers is read again (a new instance gets the task texts and
# events of the others from then on).
PEERS_SEC = 1
# How long a task another instance left queued waits before the agent's holder sends it.
KICK_DELAY_SEC = 1.0


def cluster_token(token_secret: str) -> str:
    """The bearer token instances present to each other (every instance has the same
    ``tokenSecret``; rotating it rotates this)."""
    return hmac.new(token_secret.encode(), b"codexrelay cluster v1", hashlib.sha256).hexdigest()


class Cluster:
    """This instance's place in the cluster."""

    def __init__(self, services: Services, store: PostgresStore) -> None:
        cfg = services.config
        self.services = services
        self.store = store
        self.node_id = store.node_id
        self.address = cfg.storage.instance_url or f"http://{cfg.listen_host}:{cfg.listen_port}"
        self.token = cluster_token(services.token_secret)
        self.links = PeerLinks(self.node_id, self.token)
        self._heartbeat: asyncio.Task[None] | None = None
        self._kicking: set[str] = set()

    # ---- database ----

    def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.store.pg.pool.connection() as conn:
            cur = conn.execute(sql.encode(), args)
            return cur.fetchall() if cur.description else []

    async def run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on a pooled connection, off the event loop."""
        return await asyncio.to_thread(self._sql, sql, args)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Follow the other instances' writes, register, renew every few seconds."""
        self.store.on_remote_task = self._publish_task
        self.store.follow(asyncio.get_running_loop())
        await self.run(
            "INSERT INTO instances (id, address, expires_at) "
            "VALUES (%s, %s, now() + make_interval(secs => %s)) "
            "ON CONFLICT (id) DO UPDATE SET address = excluded.address, "
            "expires_at = excluded.expires_at",
            (self.node_id, self.address, LEASE_SEC),
        )
        await self.refresh()
        self._heartbeat = asyncio.create_task(self._beat())
        log.info("instance %s joined the cluster at %s", self.node_id, self.address)

    def _publish_task(self, task: TaskRecord) -> None:
        """Another instance changed a task: tell this instance's phones."""
        self.services.events.publish(
            task.workspace_id, "task", {"task": TaskOut.of(task).json_data()}
        )
        if task.status == "queued" and task.queued_until is not None:
            self._kick(task.agent_key)

    def _kick(self, agent_key: str) -> None:
        """A task another instance queued for an agent whose socket is here (it thought the
        agent offline, e.g. while it moved here from a stopped instance): send it now."""
        hub: Any = self.services.hub  # the ClusterHub ``enable`` installed
        agent = self.services.store.agents.get(agent_key)
        if hub.local(agent_key) is None or agent is None or agent_key in self._kicking:
            return
        from codexrelay.relay.tasks import flow  # noqa: PLC0415 - flow imports the services

        async def kick() -> None:
            # The instance that queued it may be sending it right now (it saw the agent
            # online after all): its "dispatched" reaches this one well within the wait,
            # and a task no longer queued is not sent again.
            await asyncio.sleep(KICK_DELAY_SEC)
            try:
                if hub.local(agent_key) is not None:
                    await flow.send_queued(self.services, agent)
            finally:
                self._kicking.discard(agent_key)

        self._kicking.add(agent_key)
        job = asyncio.get_running_loop().create_task(kick())
        self.services.background.add(job)
        job.add_done_callback(self.services.background.discard)

    async def stop(self) -> None:
        """Leave: our leases and our row go, so agents are taken over without waiting."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        with contextlib.suppress(Exception):
            await self.run("DELETE FROM agent_leases WHERE instance_id = %s", (self.node_id,))
            await self.run("DELETE FROM instances WHERE id = %s", (self.node_id,))
        await self.links.close()

    async def _beat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(PEERS_SEC)
            beats += 1
            try:
                if beats % round(HEARTBEAT_SEC / PEERS_SEC) == 0:
                    await self.renew()
                    await sweep.sweep_dead_instances(self)
                    await sweep.sweep_handovers(self)
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                log.warning("cluster heartbeat failed: %s", exc)

    async def renew(self) -> None:
        """Extend our registration and the leases of the agents we hold; an agent whose
        lease another instance took (it reconnected there) is dropped here."""
        hub: Any = self.services.hub  # the ClusterHub ``enable`` installed
        held = hub.local_keys()
        await self.run(
            "UPDATE instances SET expires_at = now() + make_interval(secs => %s) WHERE id = %s",
            (LEASE_SEC, self.node_id),
        )
        rows = await self.run(
            "UPDATE agent_leases SET expires_at = now() + make_interval(secs => %s) "
            "WHERE instance_id = %s AND agent_key = ANY(%s) RETURNING agent_key",
            (LEASE_SEC, self.node_id, held),
        )
        renewed = {str(row[0]) for row in rows}
        for key in set(held) - renewed:
            log.info("agent %s is now held by another instance", key)
            await hub.disconnect_local(key, 4001, "replaced by a newer connection")

    async def refresh(self) -> None:
        """Who the live peers are (lapsed ones are swept: ``sweep.py``)."""
        rows = await self.run(
            "SELECT id, address FROM instances WHERE expires_at > now() AND id <> %s",
            (self.node_id,),
        )
        self.links.set_peers({str(i): str(a) for i, a in rows})

    # ---- leases (on the event loop: one indexed statement each) ----

    def claim(self, agent_key: str) -> None:
        """This instance holds the agent's socket now (taking over any other lease)."""
        self.store.pg.reader.execute(
            "INSERT INTO agent_leases (agent_key, instance_id, generation, expires_at) "
            "VALUES (?, ?, 1, now() + make_interval(secs => ?)) ON CONFLICT (agent_key) DO "
            "UPDATE SET instance_id = excluded.instance_id, "
            "generation = agent_leases.generation + 1, expires_at = excluded.expires_at",
            (agent_key, self.node_id, LEASE_SEC),
        )

    def take_handover(self, task_id: str) -> bool:
        """A task another instance hands over for an agent here: read its row as that
        instance saved it (its change notice may still be on the way), so the agent's
        reports on it apply; False if it is no longer ``dispatched`` (never sent then)."""
        task = self.reread(task_id)
        return task is not None and task.status == "dispatched"

    def reread(self, task_id: str) -> TaskRecord | None:
        """A task as the database has it now (this instance's unsaved change, if any, wins)."""
        return self.store.refresh_task(task_id)

    def previous_holder(self, agent_key: str) -> str | None:
        """The instance whose lease on the agent this connection is about to take over."""
        row = self.store.pg.reader.execute(
            "SELECT instance_id FROM agent_leases WHERE agent_key = ?", (agent_key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def release(self, agent_key: str) -> None:
        """The socket closed here: the lease goes unless another instance took it."""
        self.store.pg.reader.execute(
            "DELETE FROM agent_leases WHERE agent_key = ? AND instance_id = ?",
            (agent_key, self.node_id),
        )

    def holder(self, agent_key: str) -> tuple[str, str] | None:
        """The live instance (id, address) holding the agent's socket, if any."""
        row = self.store.pg.reader.execute(
            "SELECT l.instance_id, i.address FROM agent_leases l JOIN instances i "
            "ON i.id = l.instance_id WHERE l.agent_key = ? AND l.expires_at > now() "
            "AND i.expires_at > now()",
            (agent_key,),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))
