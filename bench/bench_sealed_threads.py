"""What sealing a conversation costs (TRUST.md §4.7, §4.8): agent CPU per streamed delta and
per large item, bytes on the wire, and a reader opening a long thread.

- a streamed delta (40 characters, what Codex sends per token burst): sealed, padded to
  1 KiB and Ed25519-signed by ``ThreadSealing.outgoing``; microseconds and bytes each;
- a command cell with 60,000 characters of output: sealed item throughput (MB/s, one core);
- the Python reader opening a thread of 2,000 deltas (a phone's WebCrypto figure is for the
  browser benchmarks).
Run: ``.venv/bin/python -m bench.bench_sealed_threads``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.unit.e2e.test_sealed_threads import THREAD, _read, _world

from codexrelay.protocol import Message
from codexrelay.protocol_sealed import SealedThreadEnvelope
from codexrelay.protocol_threads import ThreadDelta, ThreadItem, ThreadItemEvent


def _seal_all(messages: list[Message], directory: Path) -> tuple[list[bytes], float, object]:
    party, _, sealing = _world(directory)

    async def run() -> tuple[list[bytes], float]:
        # the key, its wraps and its keeping, once
        first = await sealing.outgoing(messages[0])
        out = [m.envelope.encode() for m in first if isinstance(m, SealedThreadEnvelope)]
        start = time.perf_counter()
        for message in messages[1:]:
            for sent in await sealing.outgoing(message):
                assert isinstance(sent, SealedThreadEnvelope)
                out.append(sent.envelope.encode())
        return out, time.perf_counter() - start

    envelopes, seconds = asyncio.run(run())
    return envelopes, seconds, party


def main() -> None:
    item = ThreadItem(id="i1", seq=1, type="agentMessage", text="")
    deltas: list[Message] = [ThreadItemEvent(thread_id=THREAD, item=item)]
    deltas += [
        ThreadDelta(thread_id=THREAD, item_id="i1", seq=n + 2, field="text", delta="x" * 40)
        for n in range(2000)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        envelopes, seconds, party = _seal_all(deltas, Path(tmp))
        sizes = statistics.median(len(e) for e in envelopes)
        each = seconds / (len(envelopes) - 1) * 1e6
        print(f"streamed delta (40 chars): {each:.0f} us to seal and sign, {sizes:.0f} B envelope")
        start = time.perf_counter()
        shown = _read(party, "dv_1", envelopes)  # type: ignore[arg-type]
        took = (time.perf_counter() - start) * 1000
        assert not shown.dropped
        print(f"reader opens a thread of {len(envelopes)} deltas: {took:.0f} ms")
    output = "y" * 60_000
    cells: list[Message] = [ThreadItemEvent(thread_id=THREAD, item=item)]
    cells += [
        ThreadItemEvent(
            thread_id=THREAD,
            item=ThreadItem(id=f"c{n}", seq=n + 2, type="commandExecution", output=output),
        )
        for n in range(100)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        envelopes, seconds, _ = _seal_all(cells, Path(tmp))
        mb = len(output) * (len(envelopes) - 1) / 1e6
        print(f"sealed command cells (60,000 chars each): {mb / seconds:.0f} MB/s on one core")


if __name__ == "__main__":
    main()
