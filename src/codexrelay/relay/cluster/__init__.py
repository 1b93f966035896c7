"""Several relay instances on one PostgreSQL database (see docs/DEPLOYMENT.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from codexrelay.relay.cluster.node import Cluster
    from codexrelay.relay.services import Services


def enable(app: FastAPI, services: Services) -> Cluster | None:
    """On a shared (PostgreSQL) store: swap in the cluster-aware hub, event bus and task
    texts, and add the internal routes. On any other store: nothing (one instance)."""
    try:
        from codexrelay.relay.storage.postgres import PostgresStore  # noqa: PLC0415
    except ImportError:  # psycopg not installed: no PostgreSQL, so no cluster
        return None
    if not isinstance(services.store, PostgresStore):
        return None
    from codexrelay.relay.cluster.api import install_routes  # noqa: PLC0415
    from codexrelay.relay.cluster.node import Cluster  # noqa: PLC0415
    from codexrelay.relay.cluster.routing import (  # noqa: PLC0415
        ClusterDetails,
        ClusterEvents,
        ClusterHub,
    )

    cluster = Cluster(services, services.store)
    cfg = services.config
    services.hub = ClusterHub(cluster)
    services.events = ClusterEvents(cluster)
    services.details = ClusterDetails(
        cluster, ttl_sec=cfg.task_details_ttl_sec, max_bytes=cfg.task_details_max_bytes
    )
    from codexrelay.relay.cluster.shared import (  # noqa: PLC0415
        catalog_map,
        sealed_catalog_map,
    )

    services.catalogs = catalog_map(cluster.links)
    services.trust.catalogs = sealed_catalog_map(cluster.links)
    install_routes(app, cluster)
    return cluster
