"""Phone-side helpers for live conversations against a real relay: the workspace's event
stream read in the background, and the thread, turn and approval calls a phone makes."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.helpers import wait_until

Json = dict[str, Any]


class EventFeed:
    """The phone's SSE stream (``/events``), collected in a background thread."""

    def __init__(self, client: httpx.Client, wid: str) -> None:
        self.url = f"{client.base_url}/api/v1/workspaces/{wid}/events"
        self.cookies = client.cookies
        self.headers = dict(client.headers)
        self.frames: list[tuple[str, Json]] = []
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True, name="sse-feed")

    def __enter__(self) -> EventFeed:
        self._thread.start()
        assert self._open.wait(10), "the event stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._response is not None:  # unblocks the reader now, not at the next heartbeat
            with contextlib.suppress(Exception):
                self._response.close()
        self._thread.join(timeout=5)

    def _read(self) -> None:
        with (
            contextlib.suppress(httpx.HTTPError, OSError, RuntimeError),
            httpx.Client(cookies=self.cookies, headers=self.headers, timeout=None) as client,  # noqa: S113 - a stream held open on purpose
            client.stream("GET", self.url) as res,
        ):
            self._response = res
            self._open.set()
            kind, data = "", ""
            for line in res.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and kind:
                    self.frames.append((kind, json.loads(data)))
                    kind, data = "", ""

    def of(self, kind: str) -> list[Json]:
        return [data for k, data in list(self.frames) if k == kind]

    def wait(
        self, kind: str, match: Callable[[Json], Any], *, timeout: float = 60, what: str = ""
    ) -> Json:
        """The first event of ``kind`` that ``match`` accepts."""
        return wait_until(
            lambda: next((d for d in self.of(kind) if match(d)), None),
            timeout=timeout,
            what=what or f"a {kind} event",
        )


def threads_url(wid: str, *rest: str) -> str:
    return "/".join([f"/api/v1/workspaces/{wid}/threads", *rest])


def start(phone: httpx.Client, wid: str, prompt: str, **body: Any) -> Json:
    res = phone.post(threads_url(wid), json={"agentId": "devbox", "prompt": prompt, **body})
    assert res.status_code == 201, res.text
    return res.json()


def read(phone: httpx.Client, wid: str, tid: str, after: int = 0) -> Json:
    res = phone.get(threads_url(wid, tid), params={"after": after})
    assert res.status_code == 200, res.text
    return res.json()


def pending_approval(phone: httpx.Client, wid: str, tid: str, timeout: float = 60) -> Json:
    """The thread's pending approval, once the phone sees it."""
    return wait_until(
        lambda: next(
            (a for a in read(phone, wid, tid)["approvals"] if a["status"] == "pending"), None
        ),
        timeout=timeout,
        what="a pending approval",
    )


def decide(
    phone: httpx.Client, wid: str, tid: str, approval_id: str, decision: str
) -> httpx.Response:
    return phone.post(threads_url(wid, tid, "approvals", approval_id), json={"decision": decision})


def item(phone: httpx.Client, wid: str, tid: str, kind: str, status: str | None = None,
         timeout: float = 60) -> Json:  # fmt: skip
    """The thread's newest item of ``kind`` (in ``status``), once the phone sees it."""

    def find() -> Json | None:
        found = [i for i in read(phone, wid, tid)["items"] if i["type"] == kind]
        if found and (status is None or found[-1]["status"] == status):
            return found[-1]
        return None

    return wait_until(find, timeout=timeout, what=f"a {kind} item ({status})")


def idle(phone: httpx.Client, wid: str, tid: str, timeout: float = 60) -> Json:
    """The thread once no turn runs."""
    return wait_until(
        lambda: (
            (t := read(phone, wid, tid)["thread"])["status"] == "idle"
            and t["activeTurnId"] is None
            and t
        ),
        timeout=timeout,
        what="the thread idle",
    )


@contextlib.contextmanager
def feed(phone: httpx.Client, wid: str) -> Iterator[EventFeed]:
    with EventFeed(phone, wid) as events:
        yield events
