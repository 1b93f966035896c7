"""What sealing a task costs (TRUST.md §4.5-§4.7): bytes on the wire and agent CPU.

- envelope overhead: envelope bytes minus plaintext bytes for one ``task.out`` record, and
  what each reader device's key wrap adds;
- the agent opening a ``task.submit`` (HPKE unwrap, AES-GCM, strict parse, body hash);
- agent sealed output throughput: 64 KiB text pieces sealed and Ed25519-signed
  (target >= 20 MB/s on one core);
- a reader opening a sealed task with 1 MiB of output (the Python reader; the phone's
  WebCrypto figure is measured in Chromium separately).
Run: ``.venv/bin/python -m bench.bench_sealed [--runs 200]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from tests.unit.e2e.test_sealed import AGENT, TASK, WS, Party, _spec, _submission

from codexrelay.agent.sealing import OutputSealer, open_submit
from codexrelay.e2e.envelope import Sealer, new_task_key
from codexrelay.e2e.sealed import encode, read_task, reader_wraps, seal_record, text_pieces

CHUNK = 64 * 1024


def _median_ms(run: Callable[[], object], runs: int) -> float:
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def overhead() -> None:
    party = Party()
    key = new_task_key()
    for size in (0, 100, 1000, 10_000, 60_000):
        record = {"text": {"field": "outputTail", "chunk": "x" * size}}
        plain = len(encode(record))
        sealer = Sealer(key, WS, AGENT, TASK, AGENT, party.agent_sig)
        env = len(seal_record(sealer, "task.out", record))
        print(f"task.out {plain:>6} B plaintext -> {env:>6} B envelope (+{env - plain} B)")
    wraps = reader_wraps(party.view, key, ws=WS, task=TASK)
    each = statistics.mean(len(encode(w.model_dump())) + 1 for w in wraps)
    print(
        f"each reader device's key wrap: +{each:.0f} B (first envelope only),"
        " plus about 60 B once (the list and the wraps digest)"
    )


def open_cost(runs: int) -> float:
    party = Party()
    submit, _ = _submission(party)
    spec = _spec(submit)
    return _median_ms(lambda: open_submit(spec, ws=WS, agent_id=AGENT, kex=party.agent_kex), runs)


def throughput(chunks: int = 64, *, recheck: bool = False) -> float:
    """With ``recheck`` the live readers are compared with the key's holders before each
    envelope, as a running task does (the view itself is in memory here; the agent's adds
    two ``stat`` calls to see whether the log changed)."""
    party = Party()
    submit, _ = _submission(party)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=party.agent_kex)
    view = (lambda: party.view) if recheck else None
    sealer = OutputSealer(
        opened, ws=WS, agent_id=AGENT, signing=party.agent_sig, wraps=[], view=view
    )
    pieces = text_pieces("outputTail", "y" * (CHUNK * chunks))
    start = time.perf_counter()
    for piece in pieces:
        sealer.out(piece)
    return CHUNK * chunks / (time.perf_counter() - start) / 1e6


def rekey_cost(runs: int) -> float:
    """One ``task.out`` that switches keys (a reader left): new key, wraps to one reader."""

    def run() -> object:
        party = Party()
        submit, _ = _submission(party)
        opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=party.agent_kex)
        view = party.view
        sealer = OutputSealer(
            opened, ws=WS, agent_id=AGENT, signing=party.agent_sig, wraps=[], view=lambda: view
        )
        sealer.out({"progress": {"seq": 1}})
        view = dataclasses.replace(view, members={"u_dv_2": view.members["u_dv_2"]})
        start = time.perf_counter()
        sealer.out({"progress": {"seq": 2}})
        took.append((time.perf_counter() - start) * 1000)
        return sealer

    took: list[float] = []
    for _ in range(max(runs // 4, 5)):
        run()
    return statistics.median(took)


def reader_cost(runs: int) -> float:
    party = Party()
    submit, key = _submission(party)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=party.agent_kex)
    wraps = reader_wraps(party.view, key, ws=WS, task=TASK)
    sealer = OutputSealer(opened, ws=WS, agent_id=AGENT, signing=party.agent_sig, wraps=wraps)
    items = [submit] + [sealer.out(p).encode() for p in text_pieces("outputTail", "z" * (1 << 20))]
    items.append(sealer.done({"status": "completed"}).encode())

    def run() -> object:
        shown = read_task(
            items, party.kex["dv_2"], me="dv_2", view=party.view, agent=AGENT, task=TASK
        )
        assert shown.complete
        return shown

    return _median_ms(run, max(runs // 20, 5))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args, _ = parser.parse_known_args()
    overhead()
    print(f"agent opens a task.submit: {open_cost(args.runs):.3f} ms (median)")
    print(f"agent sealed output: {throughput():.1f} MB/s (64 KiB pieces, signed)")
    print(f"  with readers re-checked per envelope: {throughput(recheck=True):.1f} MB/s")
    print(f"one task.out that re-keys (a reader left): {rekey_cost(args.runs):.3f} ms (median)")
    print(f"reader opens a task with 1 MiB of output: {reader_cost(args.runs):.1f} ms (median)")


if __name__ == "__main__":
    main()
