"""Where a trivial task's time goes: py-spy samples the relay and the agent during a burst.

One relay (SQLite) and one agent running the predefined action ``true``; 8 phones submit as
fast as the relay answers while ``py-spy record`` samples both processes (every thread, idle
ones included). The report splits each process's samples of its event-loop thread into
categories (HTTP, WebSocket, validation, storage, audit, spawn, waiting for work) so
docs/PERFORMANCE.md can say where a task's time goes, with figures.

The sampling needs ``py-spy`` (``pip install py-spy``; sampling another process needs ptrace
rights); without it only the CPU per task is reported.
Run: ``python -m bench.bench_profile [N]`` (default 800 tasks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.agents import default_workspace, pair_agent
from tests.helpers import RelayProcess, write_relay_config

from bench.bench_tasks import EventClock, throughput

# First match wins, looked up from the innermost frame outwards.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("event loop in C (uvloop: socket I/O, callbacks)", ("Runner.run (asyncio/runners.py",)),
    ("disk: fsync / sqlite", ("fsync", "sqlite3", "apply (", "_write_batch")),
    ("process spawn", ("subprocess", "_execute_child", "fork_exec", "create_subprocess")),
    ("audit: hash/sign/canonical", ("auditverify", "audit/log.py", "sign (", "keys.py")),
    ("pydantic validate/dump", ("pydantic", "model_validate", "model_dump", "json_data")),
    ("JSON encode/decode", ("json/", "orjson", "encode (", "decode (")),
    ("WebSocket framing", ("websockets/",)),
    ("HTTP parsing (h11/httptools)", ("h11", "httptools", "uvicorn/protocols/http")),
    ("routing/middleware (starlette)", ("starlette/", "fastapi/")),
    ("auth/session lookups", ("access/", "security.py", "session")),
    ("SSE fan-out", ("relay/events", "sse")),
    ("task logic (relay/agent)", ("codexrelay/",)),
    ("asyncio machinery", ("asyncio/",)),
]


def categorize(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return name
    return "other"


def thread_name(frame: str) -> str:
    """``thread (123): MainThread`` -> ``MainThread``; numbered helper threads grouped."""
    name = frame.partition(": ")[2] or frame
    return name.rstrip("0123456789").rstrip("-_") or name


def summarize(path: Path) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Busy samples per thread, and for the main (event-loop) thread per category and per
    innermost frame, from py-spy's raw (collapsed, root-first) output."""
    threads, categories, leaves = Counter[str](), Counter[str](), Counter[str]()
    for line in path.read_text(errors="replace").splitlines():
        stacks, _, count_text = line.rpartition(" ")
        frames = stacks.split(";")
        if not count_text.isdigit() or not frames:
            continue
        count, thread = int(count_text), thread_name(frames[0])
        threads[thread] += count
        if thread == "MainThread":
            categories[categorize(frames[1:])] += count
            leaves[frames[-1]] += count
    return threads, categories, leaves


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (the agent's task processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state is field 3, utime..cstime are fields 14-17.
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def find_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def record(spy: str, pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 800
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        base = Path(tmp)
        setup = write_relay_config(base / "relay", maxTasksPerWorkspace=0)
        relay = RelayProcess(setup, base / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        agent = pair_agent(
            relay,
            phone,
            wid,
            base / "agent",
            actions={"noop": {"label": "No-op", "argv": ["true"]}},
            maxConcurrentTasks=32,
        )
        clock = EventClock(f"{setup.base_url}/api/v1/workspaces/{wid}/events", phone.cookies)
        clock.ready.wait(10)
        assert relay.proc is not None
        assert agent.proc is not None
        seconds = 12
        pids = {"relay": relay.proc.pid, "agent": agent.proc.pid, "phones": os.getpid()}
        spy = find_spy()
        if spy is None:
            print("py-spy not found: CPU per task only (pip install py-spy to sample)")
        spies = {
            name: record(spy, pid, base / f"{name}.txt", seconds)
            for name, pid in pids.items()
            if spy is not None
        }
        time.sleep(1)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        try:
            rate, ended = throughput(setup, phone, wid, count, clock)
            used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        finally:
            for sampler in spies.values():
                sampler.wait(seconds + 30)
            agent.stop()
            phone.close()
            relay.stop()
        print(f"burst of {count}: {rate:.1f} completed tasks/s, ended {ended}")
        done = max(sum(ended.values()), 1)
        print("CPU per finished task (user + system, the agent's task processes included):")
        for name, seconds_used in used.items():
            print(f"  {name:10} {1000 * seconds_used / done:6.2f} ms")
        total = sum(used.values()) / done
        cores = os.cpu_count() or 1
        print(
            f"  {'total':10} {1000 * total:6.2f} ms -> at most {cores / total:,.0f} tasks/s "
            f"on {cores} cores with nothing else running"
        )
        samples = 200 * seconds
        for name in spies:
            threads, categories, leaves = summarize(base / f"{name}.txt")
            print(f"== {name}: busy samples per thread (share of {seconds} s wall time)")
            for thread, n in threads.most_common(6):
                print(f"  {thread:34} {100 * n / samples:5.1f}%")
            main_busy = max(threads["MainThread"], 1)
            print("  event-loop thread, by category (share of its busy samples):")
            for category, n in categories.most_common():
                print(f"    {category:48} {100 * n / main_busy:5.1f}%")
            print("  event-loop thread, top innermost frames:")
            for frame, n in leaves.most_common(15):
                print(f"    {100 * n / main_busy:5.1f}%  {frame[:110]}")


if __name__ == "__main__":
    main()
