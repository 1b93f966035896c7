"""What the surviving instances do for the tasks of one that stopped without leaving
(``kill -9``, a lost host): nothing in flight stays ``dispatched`` for ever, nothing runs twice.

Where a task in flight can be when its instance dies, and who settles it:

- *The agent has it* (accepted, running, or finished with its report lost in the dead
  process's socket): the agent reconnects to a live instance within seconds; its hello
  names the tasks it holds and its final reports of the last seconds go out again
  (``agent/connection.py``), so the task completes once, through the new instance. A task
  still ``queued`` in the database that the agent names (the dead instance handed it over
  before saving ``dispatched``) becomes ``dispatched`` rather than being sent again.
- *The agent never got it* (the hand-over died with the instance, or with the socket
  buffer): the agent's hello does not name it, so it is interrupted with the reason
  ``relay-instance-lost`` when the agent reconnects. If the agent stayed connected to a
  live instance, that instance sweeps its own agents (``sweep_handovers``): a task
  ``dispatched`` for longer than ``HANDOVER_SEC`` that it never handed to the agent on
  this connection, and that the agent's hello did not name, was lost the same way. The
  agent dedupes by task id, so even a late copy would never run twice.
- *The agent is gone too*: once the dead instance's registration has lapsed (``LEASE_SEC``),
  one survivor (the one whose ``DELETE ... RETURNING`` gets the row) takes its leases over
  and starts the usual grace period for each agent not connected anywhere: after it, the
  agent's tasks are interrupted (``agent-vanished``; a late report from the agent still
  corrects that).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from codexrelay.relay.tasks import lifecycle

if TYPE_CHECKING:
    from codexrelay.relay.services import Services
    from codexrelay.relay.storage.records import TaskRecord


class Cluster(Protocol):
    """What the sweeps use of ``node.Cluster`` (which runs them on its heartbeat)."""

    services: Services

    async def run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
    def reread(self, task_id: str) -> TaskRecord | None: ...


log = logging.getLogger("codexrelay.cluster")

# How long a task may stay ``dispatched`` without the holder having handed it to the agent
# (longer than any live instance's hand-over takes: its request gives up after 5 s).
HANDOVER_SEC = 10


async def sweep_dead_instances(cluster: Cluster) -> list[str]:
    """Take over the leases of instances whose registration lapsed; the agents they held
    that are not back anywhere get the grace period. Returns the dead instances' ids."""
    # Spent one-time codes and dispatch claims matter for the moment two instances race
    # for them; the records themselves say "spent" from then on.
    await cluster.run("DELETE FROM spent_codes WHERE spent_at < now() - interval '1 day'")
    rows = await cluster.run("DELETE FROM instances WHERE expires_at < now() RETURNING id")
    dead = [str(row[0]) for row in rows]
    if not dead:
        return []
    leases = await cluster.run(
        "DELETE FROM agent_leases WHERE instance_id = ANY(%s) RETURNING agent_key", (dead,)
    )
    from codexrelay.relay.tasks import flow  # noqa: PLC0415 - flow imports the services

    services = cluster.services
    waiting = 0
    for (key,) in leases:
        agent = services.store.agents.get(str(key))
        if agent is not None and not services.hub.is_online(agent.key):
            await flow.on_agent_gone(services, agent)
            waiting += 1
    log.info(
        "instance(s) %s stopped without leaving: %d lease(s) taken over, %d agent(s) not back",
        ", ".join(dead),
        len(leases),
        waiting,
    )
    return dead


async def sweep_handovers(cluster: Cluster) -> list[TaskRecord]:
    """Tasks dispatched to an agent connected here that never reached it: interrupted."""
    services = cluster.services
    hub: Any = services.hub  # the ClusterHub ``enable`` installed
    now = services.now()
    cutoff = now - timedelta(seconds=HANDOVER_SEC)
    lost: list[TaskRecord] = []
    for key in hub.local_keys():
        live = hub.local(key)
        if live is None:
            continue
        unfinished = services.store.tasks.unfinished(key)
        live.holds.intersection_update(t.id for t in unfinished)
        for candidate in unfinished:
            if (
                candidate.status != "dispatched"
                or candidate.id in live.holds
                or candidate.updated_at >= cutoff
            ):
                continue
            task = cluster.reread(candidate.id)  # not on a stale copy: as saved now
            if (
                task is not None
                and task.status == "dispatched"
                and lifecycle.advance(task, "interrupted", now=now)
            ):
                task.reason = lifecycle.HANDOVER_LOST
                services.store.tasks.save(task)
                lost.append(task)
    if lost:
        from codexrelay.relay.tasks import flow  # noqa: PLC0415 - flow imports the services

        log.info("%d task(s) whose hand-over was lost are interrupted", len(lost))
        await flow.settle(services, lost)
    return lost
