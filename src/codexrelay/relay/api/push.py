"""Push notifications: the relay's VAPID public key and the caller's own subscriptions
(API.md "Push"; docs/API-ADDITIONS.md for PATCH and the shapes)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from pydantic import Field

from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.api.auditing import AuditDep
from codexrelay.relay.api.deps import ActiveCallerDep, Caller, ServicesDep
from codexrelay.relay.audit import ref
from codexrelay.relay.push import subscriptions
from codexrelay.relay.push.endpoints import MAX_ENDPOINT_CHARS
from codexrelay.relay.push.notify import send_test
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import PUSH_KINDS, PushKind, PushSubscriptionRecord
from codexrelay.relay.views import PushSubscriptionOut
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["push"])

Key = Annotated[str, Field(min_length=1, max_length=256)]
Kinds = Annotated[list[PushKind], Field(max_length=len(PUSH_KINDS))]


class PushKeys(CamelModel):
    p256dh: Key
    auth: Key


class PushSubscriptionJson(CamelModel):
    """The browser's ``PushSubscription.toJSON()``."""

    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_CHARS)]
    expiration_time: float | None = None
    keys: PushKeys


class SubscribeBody(CamelModel):
    subscription: PushSubscriptionJson
    kinds: Kinds | None = None


class KindsBody(CamelModel):
    kinds: Kinds


class VapidKeyOut(CamelModel):
    public_key: str


class SubscriptionEnvelope(CamelModel):
    subscription: PushSubscriptionOut


class SubscriptionsOut(CamelModel):
    subscriptions: list[PushSubscriptionOut]


class QueuedOut(CamelModel):
    status: str = "queued"


def _enabled(services: Services) -> None:
    if not services.push.enabled:
        raise AppError(ErrorCode.FEATURE_DISABLED, "Push notifications are turned off.")


def _out(services: Services, sub: PushSubscriptionRecord, caller: Caller) -> PushSubscriptionOut:
    return PushSubscriptionOut.of(
        sub,
        service=urlsplit(sub.endpoint).hostname or "",
        current=sub.session_id == caller.session.id,
        last_success_at=services.push.delivered_at.get(sub.id),
    )


@router.get("/push/vapid-public-key", response_model=VapidKeyOut)
async def vapid_public_key(_: ActiveCallerDep, services: ServicesDep) -> VapidKeyOut:
    """The ``applicationServerKey`` a phone subscribes with (uncompressed P-256)."""
    _enabled(services)
    assert services.push.key is not None  # noqa: S101 - _enabled checked it
    return VapidKeyOut(public_key=services.push.key.public_b64)


@router.post("/me/push-subscriptions", status_code=201, response_model=SubscriptionEnvelope)
async def subscribe(
    body: SubscribeBody,
    request: Request,
    caller: ActiveCallerDep,
    services: ServicesDep,
    audit: AuditDep,
) -> SubscriptionEnvelope:
    """This device session's subscription (replacing its earlier one); 400
    ``push-endpoint-not-allowed`` unless https to a host on ``push.allowedHosts``."""
    _enabled(services)
    assert services.push.key is not None  # noqa: S101 - _enabled checked it
    sub = subscriptions.subscribe(
        services.store,
        session=caller.session,
        endpoint=body.subscription.endpoint,
        p256dh=body.subscription.keys.p256dh,
        auth=body.subscription.keys.auth,
        kinds=body.kinds,
        user_agent=request.headers.get("user-agent"),
        allowed_hosts=services.config.push.allowed_hosts,
        vapid_key_id=services.push.key.key_id,
        now=services.now(),
        rand=services.rand,
    )
    await audit.record("push.subscribed", userId=caller.user.id, subscription=ref(sub.id))
    await services.store.commit()
    return SubscriptionEnvelope(subscription=_out(services, sub, caller))


@router.get("/me/push-subscriptions", response_model=SubscriptionsOut)
async def list_subscriptions(caller: ActiveCallerDep, services: ServicesDep) -> SubscriptionsOut:
    """Every device of the caller that receives notifications, newest first."""
    found = subscriptions.user_subscriptions(services.store, caller.user.id)
    return SubscriptionsOut(subscriptions=[_out(services, s, caller) for s in found])


@router.patch("/me/push-subscriptions/{subscription_id}", response_model=SubscriptionEnvelope)
async def set_kinds(
    subscription_id: str, body: KindsBody, caller: ActiveCallerDep, services: ServicesDep
) -> SubscriptionEnvelope:
    """Choose what one device is told about (``new-device`` stays on)."""
    sub = subscriptions.set_kinds(
        services.store, user_id=caller.user.id, subscription_id=subscription_id, kinds=body.kinds
    )
    await services.store.commit()
    return SubscriptionEnvelope(subscription=_out(services, sub, caller))


@router.delete("/me/push-subscriptions/{subscription_id}", status_code=204)
async def unsubscribe(
    subscription_id: str, caller: ActiveCallerDep, services: ServicesDep, audit: AuditDep
) -> Response:
    """Stop notifications to one of the caller's devices."""
    subscriptions.unsubscribe(
        services.store, user_id=caller.user.id, subscription_id=subscription_id
    )
    await audit.record(
        "push.unsubscribed", userId=caller.user.id, subscription=ref(subscription_id)
    )
    await services.store.commit()
    return Response(status_code=204)


@router.post(
    "/me/push-subscriptions/{subscription_id}/test", status_code=202, response_model=QueuedOut
)
async def send_test_notification(
    subscription_id: str, caller: ActiveCallerDep, services: ServicesDep
) -> QueuedOut:
    """Queue ``{"kind":"test"}`` to one of the caller's devices (a few a minute)."""
    _enabled(services)
    sub = subscriptions.own_subscription(services.store, caller.user.id, subscription_id)
    services.push_test_limiter.hit(caller.user.id)
    send_test(services, sub)
    return QueuedOut()
