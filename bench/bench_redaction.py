"""How long secret redaction (B3) adds to 100 KB of agent output.

Times ``Redactor.redact`` on 100 KB of ordinary mixed output (code, lock files, git log,
pytest output, fixtures, logs) and on 100 KB with planted secrets sprinkled through it, once
as one call and once streamed in 4 KB chunks through a ``StreamRedactor``. Reports the median
and 99th percentile in milliseconds per 100 KB.
Run: ``.venv/bin/python -m bench.bench_redaction [--runs 300] [--size 100000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from tests.unit.redaction_corpus import mixed_output

from codexrelay.agent.redaction import Redactor

CHUNK = 4096


def _whole(redactor: Redactor, text: str) -> Callable[[], int]:
    def run() -> int:
        return redactor.redact(text)[1]

    return run


def _streamed(redactor: Redactor, text: str) -> Callable[[], int]:
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]

    def run() -> int:
        stream = redactor.stream()
        total = sum(stream.feed(chunk)[1] for chunk in chunks)
        return total + stream.flush()[1]

    return run


def _measure(run: Callable[[], int], runs: int, scale: float) -> tuple[float, float, int]:
    """Median and p99 milliseconds (scaled to 100 KB) over ``runs``, and the count seen."""
    count = run()  # warm caches and compiled patterns
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000 * scale)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return statistics.median(times), p99, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args(argv)
    redactor = Redactor()
    scale = 100_000 / args.size
    texts = {
        "ordinary": mixed_output(args.size, seed=1),
        "with secrets": mixed_output(args.size, secrets_every=10, seed=1),
    }
    print(f"{'input':<14}{'mode':<18}{'median ms':>10}{'p99 ms':>10}{'redactions':>12}")
    for name, text in texts.items():
        for mode, make in (("one call", _whole), ("4 KB stream", _streamed)):
            median, p99, count = _measure(make(redactor, text), args.runs, scale)
            print(f"{name:<14}{mode:<18}{median:>10.2f}{p99:>10.2f}{count:>12}")
    print(f"(per 100 KB; {args.runs} runs each; input {args.size} characters)")


if __name__ == "__main__":
    main()
