"""Task latency and throughput through a real relay and a real agent on loopback.

Measures, for a trivial predefined action (`true`):
- submit -> agent start (the `running` event) and submit -> completed, p50/p99 over N tasks
  submitted one after another;
- tasks/second with 8 concurrent submitters.

Run: ``python -m bench.bench_tasks [N]`` (default 500).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.agents import default_workspace, pair_agent
from tests.helpers import RelayProcess, write_relay_config


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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 500
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        base = Path(tmp)
        setup = write_relay_config(base / "relay", maxTasksPerWorkspace=100000)
        relay = RelayProcess(setup, base / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        agent = pair_agent(
            relay,
            phone,
            wid,
            base / "agent",
            actions={"noop": {"label": "No-op", "argv": ["true"]}},
            maxConcurrentTasks=8,
        )
        url = f"{setup.base_url}/api/v1/workspaces/{wid}/events"
        clock = EventClock(url, phone.cookies)
        clock.ready.wait(10)
        body = {"agentId": "devbox", "type": "run_action", "actionId": "noop"}
        try:
            to_start, to_done = [], []
            for _ in range(count):
                sent = time.perf_counter()
                res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=body)
                task_id = res.json()["task"]["id"]
                to_done.append(clock.wait(task_id, "completed") - sent)
                to_start.append(clock.wait(task_id, "running") - sent)
            print(f"sequential, {count} tasks of `true`:")
            for name, values in (
                ("submit -> agent start", to_start),
                ("submit -> completed", to_done),
            ):
                print(
                    f"  {name:22} p50 {pct(values, 0.5) * 1000:7.1f} ms   "
                    f"p99 {pct(values, 0.99) * 1000:7.1f} ms   "
                    f"mean {statistics.fmean(values) * 1000:7.1f} ms"
                )

            def submitter(n: int) -> list[str]:
                with httpx.Client(
                    base_url=setup.base_url,
                    cookies=phone.cookies,
                    headers={"Origin": setup.origin},
                    timeout=30,
                ) as client:
                    return [
                        client.post(f"/api/v1/workspaces/{wid}/tasks", json=body).json()["task"][
                            "id"
                        ]
                        for _ in range(n)
                    ]

            per = max(1, count // 8)
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                ids = [i for chunk in pool.map(submitter, [per] * 8) for i in chunk]
            for task_id in ids:
                clock.wait(task_id, "completed")
            elapsed = time.perf_counter() - started
            print(
                f"8 concurrent submitters, {len(ids)} tasks: {len(ids) / elapsed:.1f} tasks/s "
                f"(all completed in {elapsed:.2f} s)"
            )
        finally:
            agent.stop()
            phone.close()
            relay.stop()


if __name__ == "__main__":
    main()
