"""Shared set-up for the push tests: a relay whose allowlist holds the loopback stand-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.fakes.push_service import Device, PushServiceStandIn
from tests.helpers import wait_until


def push_config(**push: Any) -> dict[str, Any]:
    """The relay config's ``push`` section with the stand-in's host allowed."""
    return {"push": {"allowedHosts": ["127.0.0.1"], "retryBaseSec": 0.05, **push}}


def subscribe(client: TestClient, device: Device, **extra: Any) -> dict[str, Any]:
    """Subscribe ``device`` on the signed-in ``client``; the new subscription's JSON."""
    body = {"subscription": device.subscription_json(), **extra}
    res = client.post("/api/v1/me/push-subscriptions", json=body)
    assert res.status_code == 201, res.text
    return res.json()["subscription"]


def wait_for_deliveries(
    stand_in: PushServiceStandIn, count: int, *, what: str = "notifications"
) -> list[Any]:
    """Poll until the stand-in holds ``count`` deliveries (more fails later asserts)."""
    return wait_until(lambda: len(d := stand_in.received()) >= count and d, timeout=10, what=what)


def settled(client: TestClient, predicate: Callable[[Any], bool], what: str) -> Any:
    """Poll the relay's push sender until ``predicate(stats)`` holds."""
    stats = client.app.state.services.push.stats  # type: ignore[attr-defined]
    return wait_until(lambda: predicate(stats) and stats, timeout=10, what=what)


def notify_in_loop(client: TestClient, *args: Any, **kwargs: Any) -> int:
    """``push.notify`` on the relay's own event loop, where features call it."""
    from codexrelay.relay.push.notify import notify  # noqa: PLC0415 - keep helpers light

    services = client.app.state.services  # type: ignore[attr-defined]
    result: int = client.portal.call(lambda: notify(services, *args, **kwargs))  # type: ignore[union-attr]
    return result
