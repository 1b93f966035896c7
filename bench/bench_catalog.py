"""How long the agent's session catalog takes over a large Codex sessions tree.

Writes a sessions tree of realistic rollout files (codex-cli.md section 6: a ~20 KB
``session_meta``, harness messages, two turns) into a temporary directory, then times the
first scan, a refresh with nothing changed, and refreshes after touching or appending to
10 files. Run: ``.venv/bin/python -m bench.bench_catalog [--files 10000] [--runs 50]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from codexrelay.agent.catalog import SessionCatalog

PLACEHOLDER = "01a228b4-0000-7000-8000-000000000000"
CWDS = 40  # distinct project directories the sessions were recorded in


def rollout_body(cwd: str, instructions_bytes: int) -> bytes:
    """One two-turn rollout in Codex's line format, with ``PLACEHOLDER`` as its id."""
    start = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
    lines: list[dict[str, Any]] = []

    def add(kind: str, payload: dict[str, Any]) -> None:
        moment = start + timedelta(milliseconds=40 * len(lines))
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        lines.append({"timestamp": stamp, "ordinal": len(lines), "type": kind, "payload": payload})

    def message(role: str, text: str) -> None:
        kind = "output_text" if role == "assistant" else "input_text"
        add(
            "response_item",
            {"type": "message", "role": role, "content": [{"type": kind, "text": text}]},
        )

    def item(kind: str, text: str) -> None:
        add(
            "event_msg",
            {
                "type": "item_completed",
                "item": {"type": kind, "content": [{"type": "text", "text": text}]},
            },
        )

    add(
        "session_meta",
        {
            "id": PLACEHOLDER,
            "session_id": PLACEHOLDER,
            "timestamp": "2026-11-29T17:00:00.000Z",
            "cwd": cwd,
            "originator": "codex_exec",
            "cli_version": "0.171.0",
            "source": "exec",
            "model_provider": "mock",
            "base_instructions": {"text": "x" * instructions_bytes},
        },
    )
    for turn in range(2):
        add("event_msg", {"type": "task_started", "turn_id": f"t{turn}"})
        message(
            "developer", "<permissions instructions>" + "p" * 5000 + "</permissions instructions>"
        )
        message("user", f"<environment_context><cwd>{cwd}</cwd></environment_context>")
        add("turn_context", {"cwd": cwd, "approval_policy": "never", "model": "gpt-5.5"})
        message("user", f"Please look at module {turn} and explain the failing test")
        item("UserMessage", f"Please look at module {turn} and explain the failing test")
        item("AgentMessage", "The test fails because the fixture is stale. " * 5)
        message("assistant", "The test fails because the fixture is stale. " * 5)
        add("event_msg", {"type": "task_complete", "turn_id": f"t{turn}"})
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def write_tree(home: Path, root: Path, files: int, instructions_bytes: int) -> list[Path]:
    """``files`` rollouts spread over date directories and ``CWDS`` project directories."""
    bodies = [rollout_body(str(root / f"project-{n}"), instructions_bytes) for n in range(CWDS)]
    paths = []
    for n in range(files):
        session_id = str(uuid.uuid4())
        day = home / "sessions" / "2026" / f"{n % 12 + 1:02d}" / f"{n % 28 + 1:02d}"
        day.mkdir(parents=True, exist_ok=True)
        path = day / f"rollout-2026-11-29T17-00-{n % 60:02d}-{session_id}.jsonl"
        path.write_bytes(bodies[n % CWDS].replace(PLACEHOLDER.encode(), session_id.encode()))
        paths.append(path)
    return paths


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def percentiles(samples: list[float]) -> str:
    """p50 / p99 / max in milliseconds."""
    if len(samples) > 1:
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
    else:
        cuts = samples * 99
    p50, p99, top = (value * 1000 for value in (cuts[49], cuts[98], max(samples)))
    return f"p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   max {top:8.1f} ms"


def touch(paths: list[Path]) -> None:
    now = time.time_ns()
    for path in paths:
        os.utime(path, ns=(now, now))


def append_turn(paths: list[Path]) -> None:
    line = {
        "timestamp": datetime.now(UTC).isoformat(),
        "type": "event_msg",
        "payload": {
            "type": "item_completed",
            "item": {"type": "AgentMessage", "content": [{"type": "Text", "text": "more"}]},
        },
    }
    for path in paths:
        with path.open("ab") as fh:
            fh.write(json.dumps(line).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50, help="refreshes timed per scenario")
    parser.add_argument("--scans", type=int, default=3, help="first scans timed (fresh catalogs)")
    parser.add_argument("--instructions-bytes", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(7)

    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        home, root = Path(tmp) / "codex-home", Path(tmp) / "work"
        root.mkdir()
        began = time.perf_counter()
        paths = write_tree(home, root, args.files, args.instructions_bytes)
        size = sum(p.stat().st_size for p in paths)
        took = time.perf_counter() - began
        print(f"tree: {args.files} files, {size / 1e6:.0f} MB, written in {took:.1f} s")

        first = []
        catalog = SessionCatalog(codex_home=home, workspace_root=root)
        for _ in range(args.scans):
            catalog = SessionCatalog(codex_home=home, workspace_root=root)
            first.append(timed(catalog.refresh))
        assert len(catalog.session_ids()) == args.files
        unchanged = []
        for _ in range(args.runs):
            unchanged.append(timed(catalog.refresh))
            assert catalog.refresh() is False, "an unchanged tree must not report a change"

        def changed_after(change: Callable[[list[Path]], None]) -> list[float]:
            samples = []
            for _ in range(args.runs):
                change(rng.sample(paths, 10))
                samples.append(timed(catalog.refresh))
            return samples

        touched = changed_after(touch)
        appended = changed_after(append_turn)

        print(f"first scan              ({args.scans:3d} runs)  {percentiles(first)}")
        print(f"refresh, no change      ({args.runs:3d} runs)  {percentiles(unchanged)}")
        print(f"refresh, 10 touched     ({args.runs:3d} runs)  {percentiles(touched)}")
        print(f"refresh, 10 appended to ({args.runs:3d} runs)  {percentiles(appended)}")


if __name__ == "__main__":
    main()
