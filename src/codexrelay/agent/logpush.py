"""Log entries pushed by a phone (TRUST.md §4.10): a removal reaches the agent directly.

The relay serves the log, so it could withhold a ``member.remove`` from the agent's own
fetches. The revoker's phone therefore pushes the entries it verified to each agent; the
agent checks them against its pinned chain (the part it holds must be byte for byte the
same, the rest must verify on top), keeps them, and answers with an acknowledgement signed
by its own key naming the head it now holds. A relay can drop the push, but it cannot make
the acknowledgement: the phone shows which agents confirmed and which are still pending.
"""

from __future__ import annotations

import json
import time
from typing import Any

from codexrelay.agent.trust import AgentKeys, TrustError, TrustStore
from codexrelay.e2e import keys
from codexrelay.e2e.log import LogError, parse_signed
from codexrelay.e2e.logview import Head
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import b64u
from codexrelay.protocol import LogAck, LogPush, RefusalReason


def apply_push(trust: TrustStore, start: int, entries: list[dict[str, Any]], now: int) -> Head:
    """Verify and keep the pushed entries; the head the agent holds afterwards."""
    view = trust.view()
    newer = []
    for offset, posted in enumerate(entries):
        seq = start + offset
        if seq <= view.head.seq:
            if posted.get("entry") != view.entries[seq].entry:
                trust.mark_fork(f"a pushed entry #{seq} differs from the one held", now)
                msg = f"entry #{seq} differs from the one this agent holds"
                raise ValueError(msg)
        else:
            newer.append(parse_signed(posted, seq))
    return trust.adopt(newer).head if newer else view.head


def ack_bytes(ws: str, agent_id: str, push_id: str, head: Head) -> bytes:
    """The acknowledgement the agent signs (``tag(logack)``)."""
    body = {
        "v": 1,
        "kind": "log.ack",
        "ws": ws,
        "agent": agent_id,
        "pushId": push_id,
        "head": {"seq": head.seq, "hash": head.hash},
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def answer(trust: TrustStore, agent_keys: AgentKeys, agent_id: str, push: LogPush) -> LogAck:
    """Apply ``push`` and answer it: a signed acknowledgement, or the reason it was refused."""
    try:
        pin = trust.pin()
        if pin is None:
            return LogAck(push_id=push.push_id, reason=RefusalReason.NOT_PINNED)
        if push.start > trust.view().head.seq + 1:
            return LogAck(push_id=push.push_id, reason=RefusalReason.LOG_HEAD_UNKNOWN)
        head = apply_push(trust, push.start, push.entries, int(time.time()))
    except TrustError:
        return LogAck(push_id=push.push_id, reason=RefusalReason.NOT_PINNED)
    except (LogError, ValueError):
        return LogAck(push_id=push.push_id, reason=RefusalReason.LOG_FORK)
    raw = ack_bytes(pin.workspace_id, agent_id, push.push_id, head)
    sig = keys.sign(agent_keys.signing, tag("logack") + raw)
    return LogAck(push_id=push.push_id, ack=b64u(raw), sig=b64u(sig))
