"""Task latency and throughput through a real relay and a real agent on loopback.

Measures, for a trivial predefined action (`true`), on the SQLite and the JSON backend side
by side in the same run:
- the submit request's round trip, submit -> agent start (the `running` event) and
  submit -> completed, p50/p99 over N tasks submitted one after another;
- tasks/second with 8 concurrent submitters (agent maxConcurrentTasks 32).

Run: ``python -m bench.bench_tasks [N] [BACKEND...]`` (default 300, sqlite and json).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.agents import default_workspace, pair_agent
from tests.helpers import RelayProcess, RelaySetup, write_relay_config

TERMINAL = {"completed", "failed", "cancelled", "rejected", "interrupted", "expired"}


class EventClock:
    """Listens to the workspace's SSE stream and stamps when each task reached each status."""

    def __init__(self, url: str, cookies: httpx.Cookies) -> None:
        self.stamps: dict[tuple[str, str], float] = {}
        self.done = threading.Condition()
        self._url = url
        self._cookies = cookies
        self.ready = threading.Event()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        try:
            self._read()
        except httpx.HTTPError:
            return  # the relay stopped at the end of the run

    def _read(self) -> None:
        with (
            httpx.Client(cookies=self._cookies, timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", self._url) as res,
        ):
            event = ""
            for line in res.iter_lines():
                self.ready.set()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "task":
                    task = json.loads(line[6:])["task"]
                    with self.done:
                        self.stamps.setdefault((task["id"], task["status"]), time.perf_counter())
                        self.done.notify_all()

    def wait(self, task_id: str, status: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        with self.done:
            while (task_id, status) not in self.stamps:
                left = deadline - time.monotonic()
                if left <= 0:
                    msg = f"{task_id} never reached {status}"
                    raise TimeoutError(msg)
                self.done.wait(left)
            return self.stamps[(task_id, status)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(phone: httpx.Client, clock: EventClock, wid: str, count: int) -> dict[str, list[float]]:
    """Sequential submits: submit -> running and submit -> completed, per task, and the
    submit request's own round trip."""
    body = {"agentId": "devbox", "type": "run_action", "actionId": "noop"}
    to_start, to_done, submit = [], [], []
    for _ in range(count):
        sent = time.perf_counter()
        res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=body)
        submit.append(time.perf_counter() - sent)
        task_id = res.json()["task"]["id"]
        to_done.append(clock.wait(task_id, "completed") - sent)
        to_start.append(clock.wait(task_id, "running") - sent)
    return {"submit": submit, "to_start": to_start, "to_done": to_done}


def throughput(
    setup: RelaySetup,
    phone: httpx.Client,
    wid: str,
    count: int,
    clock: EventClock | None = None,
) -> tuple[float, dict[str, int]]:
    """Tasks per second, submitted by 8 concurrent phones and completed by the agent. The
    end is the last task's ``completed`` event when the event stream saw them all, else the
    poll that found it finished when the stream missed it."""
    body = {"agentId": "devbox", "type": "run_action", "actionId": "noop"}

    def submitter(n: int) -> list[str]:
        with httpx.Client(
            base_url=setup.base_url,
            cookies=phone.cookies,
            headers={"Origin": setup.origin},
            timeout=30,
        ) as client:
            return [
                client.post(f"/api/v1/workspaces/{wid}/tasks", json=body).json()["task"]["id"]
                for _ in range(n)
            ]

    per = max(1, count // 8)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(submitter, [per] * 8) for i in chunk]
    # The phone's event stream cuts off a reader that falls behind, so completion is read
    # from the task list (one page of the newest tasks) instead.
    # Completion comes from the event stream; the task list (one page of the newest tasks)
    # is read once a second only for what the stream missed (it cuts off a reader that
    # falls behind). Listing 1,000 tasks is work for the relay too: polled often, it takes
    # a visible share of the CPU away from the tasks being measured.
    pending, ended, completed = set(ids), Counter[str](), []
    deadline = time.monotonic() + 300
    next_poll = time.monotonic() + 1
    end = started

    def settle(task_id: str, status: str, at: float) -> None:
        nonlocal end
        pending.discard(task_id)
        ended[status] += 1
        end = max(end, at)
        if status == "completed":
            completed.append(task_id)

    while pending and time.monotonic() < deadline:
        if clock is not None:
            with clock.done:
                seen = [
                    (task_id, status, clock.stamps[(task_id, status)])
                    for task_id in pending
                    for status in TERMINAL
                    if (task_id, status) in clock.stamps
                ]
            for task_id, status, at in seen:
                settle(task_id, status, at)
        if pending and (clock is None or time.monotonic() >= next_poll):
            next_poll = time.monotonic() + 1
            listed = phone.get(f"/api/v1/workspaces/{wid}/tasks", params={"limit": 1000}).json()
            for task in listed["tasks"]:
                if task["id"] in pending and task["status"] in TERMINAL:
                    settle(task["id"], task["status"], time.perf_counter())
        if pending:
            time.sleep(0.05)
    rate = ended["completed"] / (end - started)
    return rate, dict(ended) | ({"unfinished": len(pending)} if pending else {})


def run(backend: str, count: int, base: Path, *, concurrency: int = 32) -> dict[str, object]:
    """One relay on ``backend`` with one agent: latency, then throughput."""
    setup = write_relay_config(
        base / backend / "relay", maxTasksPerWorkspace=0, storage={"backend": backend}
    )
    relay = RelayProcess(setup, base / backend / "relay.log").start()
    phone = relay.login()
    wid = default_workspace(phone)
    agent = pair_agent(
        relay,
        phone,
        wid,
        base / backend / "agent",
        actions={"noop": {"label": "No-op", "argv": ["true"]}},
        maxConcurrentTasks=concurrency,
    )
    clock = EventClock(f"{setup.base_url}/api/v1/workspaces/{wid}/events", phone.cookies)
    clock.ready.wait(10)
    try:
        figures: dict[str, object] = dict(latency(phone, clock, wid, count))
        rate, ended = throughput(setup, phone, wid, min(count * 2, 800), clock)
        figures["tasks_per_sec"], figures["ended"] = rate, ended
    finally:
        agent.stop()
        phone.close()
        relay.stop()
    return figures


def _ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:6.1f}"


def report(results: dict[str, dict[str, object]], count: int) -> None:
    names = list(results)
    burst = min(count * 2, 800)
    print(f"{count} sequential tasks of `true`, then {burst} from 8 concurrent submitters")
    print(f"  {'':28}" + "".join(f"{n:>22}" for n in names))
    for key, label in (
        ("submit", "submit request"),
        ("to_start", "submit -> agent start"),
        ("to_done", "submit -> completed"),
    ):
        cells = []
        for name in names:
            values = results[name][key]
            assert isinstance(values, list)
            cells.append(f"p50 {_ms(values, 0.5)} p99 {_ms(values, 0.99)}")
        print(f"  {label + ' (ms)':28}" + "".join(f"{c:>22}" for c in cells))
    rates = "".join(f"{results[n]['tasks_per_sec']:>22.1f}" for n in names)
    print(f"  {'completed tasks/s':28}" + rates)
    for name in names:
        print(f"  {name}: the burst ended {results[name]['ended']}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 300
    backends = argv[1:] or ["sqlite", "json"]
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        results = {backend: run(backend, count, Path(tmp)) for backend in backends}
    report(results, count)


if __name__ == "__main__":
    main()
