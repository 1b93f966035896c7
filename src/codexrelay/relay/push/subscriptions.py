"""Push subscriptions as a person manages them, and who receives a notification.

A subscription belongs to one user's one device session: it is made by that session, a
new one from the same session replaces it, and it goes when the session goes (sign-out,
revocation, expiry, the per-user cap) and when its user leaves or is removed from a
workspace. Plain functions over the ``Store``; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from codexrelay.crypto import TokenSource, new_id
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import policy
from codexrelay.relay.push.endpoints import check_endpoint, check_keys
from codexrelay.relay.storage.records import (
    PUSH_KINDS,
    PushKind,
    PushSubscriptionRecord,
    SessionRecord,
)
from codexrelay.relay.storage.repositories import Store

ALWAYS_ON: frozenset[str] = frozenset({"new-device"})
USER_AGENT_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_kinds(kinds: Iterable[PushKind] | None) -> list[PushKind]:
    """The kinds in their canonical order; every kind when None; ``new-device`` always."""
    chosen = set(PUSH_KINDS if kinds is None else kinds) | ALWAYS_ON
    return [kind for kind in PUSH_KINDS if kind in chosen]


def clean_user_agent(value: str | None) -> str:
    """A browser's User-Agent, fit to label a device in a list."""
    return _CONTROL.sub(" ", value or "").strip()[:USER_AGENT_MAX]


def subscribe(
    store: Store,
    *,
    session: SessionRecord,
    endpoint: str,
    p256dh: str,
    auth: str,
    kinds: Iterable[PushKind] | None,
    user_agent: str | None,
    allowed_hosts: Sequence[str],
    vapid_key_id: str,
    now: datetime,
    rand: TokenSource,
) -> PushSubscriptionRecord:
    """Record this session's subscription, replacing the session's earlier one and any
    other holder of the same endpoint (a browser has one endpoint per app)."""
    check_endpoint(endpoint, allowed_hosts)
    check_keys(p256dh, auth)
    for old in store.push_subscriptions.of_session(session.id):
        store.push_subscriptions.remove(old)
    taken = store.push_subscriptions.by_endpoint(endpoint)
    if taken is not None:
        store.push_subscriptions.remove(taken)
    record = PushSubscriptionRecord(
        id=new_id("psub", rand),
        user_id=session.user_id,
        session_id=session.id,
        endpoint=endpoint,
        p256dh=p256dh,
        auth=auth,
        kinds=clean_kinds(kinds),
        user_agent=clean_user_agent(user_agent),
        vapid_key_id=vapid_key_id,
        created_at=now,
    )
    store.push_subscriptions.add(record)
    return record


def own_subscription(store: Store, user_id: str, subscription_id: str) -> PushSubscriptionRecord:
    """One of the caller's subscriptions; another person's is not found."""
    sub = store.push_subscriptions.get(subscription_id)
    if sub is None:
        raise AppError(ErrorCode.NOT_FOUND, "No such push subscription.")
    policy.enforce(policy.can_manage_own(sub.user_id, user_id, "push subscription"))
    return sub


def set_kinds(
    store: Store, *, user_id: str, subscription_id: str, kinds: Iterable[PushKind]
) -> PushSubscriptionRecord:
    """Choose what this device is told about (``new-device`` cannot be turned off)."""
    sub = own_subscription(store, user_id, subscription_id)
    sub.kinds = clean_kinds(kinds)
    store.push_subscriptions.save(sub)
    return sub


def unsubscribe(store: Store, *, user_id: str, subscription_id: str) -> None:
    """Remove one of the caller's subscriptions (any of their devices)."""
    store.push_subscriptions.remove(own_subscription(store, user_id, subscription_id))


def forget_sessions(store: Store, session_ids: Iterable[str]) -> int:
    """Delete the subscriptions of sessions that ended; returns how many went."""
    doomed = [sub for sid in session_ids for sub in store.push_subscriptions.of_session(sid)]
    for sub in doomed:
        store.push_subscriptions.remove(sub)
    return len(doomed)


def forget_user(store: Store, user_id: str) -> int:
    """Delete every subscription of a user (they left or were removed from a workspace);
    their phones subscribe again when next opened, for the workspaces they still have."""
    doomed = store.push_subscriptions.of_user(user_id)
    for sub in doomed:
        store.push_subscriptions.remove(sub)
    return len(doomed)


def user_subscriptions(store: Store, user_id: str) -> list[PushSubscriptionRecord]:
    """The user's subscriptions, newest first."""
    return store.push_subscriptions.of_user(user_id)[::-1]


def recipients(
    store: Store,
    *,
    kind: str,
    workspace_id: str | None,
    users: Iterable[str] | None,
    exclude_session: str | None,
    now: datetime,
) -> list[PushSubscriptionRecord]:
    """The live subscriptions that get this notification: their user is active, may
    receive it (``policy.can_receive_push`` against the role held now), and chose the
    kind on that device; the session that caused it is left out."""
    if users is None:
        users = [m.user_id for m in store.memberships.of_workspace(workspace_id or "")]
    found: list[PushSubscriptionRecord] = []
    for user_id in dict.fromkeys(users):
        user = store.users.get(user_id)
        if user is None or user.status != "active":
            continue
        member = store.memberships.find(user_id, workspace_id) if workspace_id else None
        role = member.role if member is not None else None
        if not policy.can_receive_push(kind, role, workspace=workspace_id is not None):
            continue
        found.extend(
            sub
            for sub in store.push_subscriptions.of_user(user_id)
            if kind in sub.kinds
            and sub.session_id != exclude_session
            and _session_live(store, sub.session_id, now)
        )
    return found


def _session_live(store: Store, session_id: str, now: datetime) -> bool:
    session = store.sessions.by_id(session_id)
    return session is not None and session.expires_at > now
