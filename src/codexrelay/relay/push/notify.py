"""``notify``: the one call a feature makes when something happened that a person should
know about even with the app closed.

The notification says only what kind of thing happened, in which workspace, and the id of
the thing (API.md: at most ``{"kind","ws","id"}``); the phone maps that to a generic title
and fetches the rest over its signed-in connection after the tap. Callers pass ids, never
text: nothing here can carry a prompt, command, file name, host name or output.
"""

from __future__ import annotations

from collections.abc import Iterable

from codexrelay.relay.push import subscriptions
from codexrelay.relay.push.sender import Outgoing
from codexrelay.relay.push.webpush import payload
from codexrelay.relay.services import Services
from codexrelay.relay.storage.records import (
    PushKind,
    PushSubscriptionRecord,
    Role,
    TaskRecord,
    ThreadRecord,
    TurnRecord,
)

# What the push service should hurry (RFC 8030 section 5.3): a person is waiting on these.
URGENCY: dict[str, str] = {
    "approval-needed": "high",
    "pair-request": "high",
    "new-device": "high",
    "finished": "normal",
    "failed": "normal",
    "test": "high",
}
FAILED_STATUSES = frozenset({"failed", "rejected", "interrupted", "expired", "cancelled"})


def notify(
    services: Services,
    kind: PushKind,
    workspace_id: str | None,
    object_id: str | None,
    *,
    users: Iterable[str] | None = None,
    exclude_session: str | None = None,
) -> int:
    """Queue ``kind`` about ``object_id`` in ``workspace_id`` for every device that should
    get it; returns how many devices that is. Never waits, never raises for push trouble.

    ``users`` narrows the audience to those people (still only those the policy lets
    receive it: members of the workspace at a high enough role, or the account's owner for
    ``new-device``); None means everyone in the workspace the policy allows.
    ``exclude_session`` leaves out the device that caused the event. One notification per
    ``object_id`` per device per ``push.coalesceSec``: later ones replace it."""
    sender = services.push
    if not sender.enabled:
        return 0
    found = subscriptions.recipients(
        services.store,
        kind=kind,
        workspace_id=workspace_id,
        users=users,
        exclude_session=exclude_session,
        now=services.now(),
    )
    body = payload(kind, workspace_id, object_id)
    thing = object_id or kind
    for sub in found:
        sender.submit(Outgoing(sub.id, body, URGENCY[kind]), (sub.id, workspace_id, thing))
    return len(found)


def send_test(services: Services, sub: PushSubscriptionRecord) -> None:
    """The Settings button: one ``{"kind":"test"}`` to one device, not coalesced."""
    services.push.submit(Outgoing(sub.id, payload("test", None, None), URGENCY["test"]), None)


def approval_waits(services: Services, thread: ThreadRecord) -> int:
    """Codex asks a question in a thread: whoever may answer it hears ``approval-needed``
    (the thread's owner and the workspace's admins; policy.can_answer_approval)."""
    admins = [
        m.user_id
        for m in services.store.memberships.of_workspace(thread.workspace_id)
        if m.role.at_least(Role.ADMIN)
    ]
    owner = thread.created_by or thread.taken_over_by
    users = [*admins, *([owner] if owner else [])]
    return notify(services, "approval-needed", thread.workspace_id, thread.id, users=users)


def turn_settled(services: Services, thread: ThreadRecord, turn: TurnRecord) -> int:
    """A turn a person started from a phone ended: they hear ``finished`` or ``failed``
    (an interrupted turn was stopped on purpose; a terminal's turn has no one to tell)."""
    if turn.started_by is None or turn.status not in {"completed", "failed"}:
        return 0
    kind: PushKind = "failed" if turn.status == "failed" else "finished"
    return notify(services, kind, thread.workspace_id, thread.id, users=[turn.started_by])


def task_settled(services: Services, task: TaskRecord) -> int:
    """A task reached its end: its creator hears ``finished`` or ``failed`` (not when they
    cancelled it themselves: they know)."""
    if task.status == "cancelled" and task.cancelled_by == task.created_by:
        return 0
    kind: PushKind = "failed" if task.status in FAILED_STATUSES else "finished"
    return notify(services, kind, task.workspace_id, task.id, users=[task.created_by])
