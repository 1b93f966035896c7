"""What end-to-end trust costs the agent: statement checks, HPKE, envelope throughput.

- per statement: strict parse of a task statement plus py_webauthn verification of its
  passkey assertion (target <= 1 ms on one core);
- HPKE open of a wrapped task key (X25519 and P-256);
- envelope seal and open throughput for 64 KiB chunks with the agent's Ed25519 signature
  (target >= 20 MB/s on one core).
Run: ``.venv/bin/python -m bench.bench_e2e [--runs 300]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from tests.softauthn import SoftAuthenticator
from tests.unit.e2e import builders

from codexrelay.e2e import keys, statements
from codexrelay.e2e.envelope import Receiver, Sealer, new_task_key, unwrap_task_key, wrap_task_key
from codexrelay.e2e.webauthn_verify import parse_signature, verify_statement_signature
from codexrelay.e2e.wire import b64u

TASK = "0b7f0000-0000-4000-8000-000000000001"
CHUNK = 64 * 1024


def _median_ms(run: Callable[[], object], runs: int) -> float:
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def statement_cost(runs: int) -> float:
    device = SoftAuthenticator(counter_step=0)
    credential = device.new_credential(builders.RP_ID)
    text = b64u(builders.raw(builders.task()))
    signed = statements.parse_statement(text, statements.TaskStatement)
    auth = device.sign_statement(signed.challenge, rp_id=builders.RP_ID, origin=builders.ORIGIN)
    cose = credential.cose_public_key()

    def run() -> object:
        stmt = statements.parse_statement(text, statements.TaskStatement)
        return verify_statement_signature(
            parse_signature(auth),
            stmt,
            rp_id=builders.RP_ID,
            origins=[builders.ORIGIN],
            cose_key=cose,
            sign_count=0,
        )

    return _median_ms(run, runs)


def hpke_open_cost(suite: keys.Suite, runs: int) -> float:
    private = keys.generate_kex_key(suite)
    task_key = new_task_key()
    wrap = wrap_task_key(
        task_key, private.public_key(), ws="ws_7", task=TASK, recipient_key_id="ag"
    )
    return _median_ms(lambda: unwrap_task_key(wrap, private, ws="ws_7", task=TASK), runs)


def envelope_throughput(total: int) -> tuple[float, float]:
    signing = keys.generate_signing_key("c25519")
    task_key = new_task_key()
    sealer = Sealer(
        task_key=task_key, ws="ws_7", agent="ag_3", task=TASK, sender="ag_3#k1", signing_key=signing
    )
    chunk = bytes(range(256)) * (CHUNK // 256 - 1)  # just under 64 KiB: padded to 64 KiB
    count = total // len(chunk)
    start = time.perf_counter()
    sealed = [sealer.seal("task.out", chunk) for _ in range(count)]
    seal_s = time.perf_counter() - start
    receiver = Receiver(task_key=task_key, ws="ws_7", agent="ag_3", task=TASK)
    public = signing.public_key()
    start = time.perf_counter()
    for data in sealed:
        receiver.open(data, sender_key=public)
    open_s = time.perf_counter() - start
    mb = count * len(chunk) / 1e6
    return mb / seal_s, mb / open_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args(argv)
    print(f"statement parse + passkey verify: {statement_cost(args.runs):.3f} ms (target <= 1 ms)")
    for suite in ("c25519", "p256"):
        print(f"HPKE open ({suite}): {hpke_open_cost(suite, args.runs):.3f} ms")
    seal, opened = envelope_throughput(args.megabytes * 1_000_000)
    print(f"envelope seal+sign: {seal:.0f} MB/s, verify+open: {opened:.0f} MB/s (target >= 20)")
    print(f"(median of {args.runs} runs; {CHUNK // 1024} KiB chunks, {args.megabytes} MB)")


if __name__ == "__main__":
    main()
