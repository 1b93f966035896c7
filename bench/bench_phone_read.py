"""What the phone pays to read a sealed task (TRUST.md §4.7; issue 19 target: 1 MiB of
output opened in Chromium in at most 50 ms).

The agent's stream is made in Python as the agent makes it: 16 ``task.out`` envelopes of
64 KiB of text, each Ed25519-signed, the first carrying the task key wrapped to a device
key generated in the page, then ``task.done`` vouching for the count and chain head. The
page runs the app's own reader (``web/js/sealing/read.js``) in Debian's Chromium under the
product's CSP: HPKE unwrap, per-envelope signature check, AES-GCM, chain links, wraps
digest, and the text concatenation. Prints the median over the runs.
Run: ``.venv/bin/python -m bench.bench_phone_read [--runs 15]``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any

from playwright.sync_api import sync_playwright
from tests.browser.phone import CHROMIUM, LAUNCH_ARGS
from tests.browser.test_e2e_interop import WEB, _Handler
from tests.unit.e2e.test_sealed import AGENT, TASK, WS

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import Sealer, new_task_key, wrap_task_key
from codexrelay.e2e.sealed import seal_record, text_pieces

OUTPUT_BYTES = 1 << 20

SETUP = """async () => {
    const keys = await import('/e2e/keys.js');
    window.__device = { ...(await keys.generateDeviceKeys('c25519')), deviceId: 'dv_bench' };
    return (await keys.publicKeys(window.__device)).kexPub;
}"""

READ = """async ([items, agentPub, ids, runs]) => {
    const { SealedTask } = await import('/js/sealing/read.js');
    const view = { agents: new Map([[ids.agent, { suite: 'c25519', sigPub: agentPub }]]),
                   passkeys: new Map(), devices: new Map(), members: new Map() };
    const devices = [{ keys: window.__device, status: 'live' }];
    const times = [];
    let last = null;
    for (let i = 0; i < runs + 1; i += 1) {
        const start = performance.now();
        last = new SealedTask({ wid: ids.ws, task: { id: ids.task, agentId: ids.agent }, view,
                                devices });
        last.items = items;
        await last.openAll();
        if (i > 0) times.push(performance.now() - start);  // the first run warms up
    }
    return { times, complete: last.complete, chars: (last.texts.outputTail || '').length,
             dropped: last.dropped };
}"""


def stream(kex_pub: str) -> tuple[list[str], str]:
    """The agent's envelopes for a task with 1 MiB of output, and the agent's sigPub."""
    signing = keys.generate_signing_key("c25519")
    task_key = new_task_key()
    wrap = wrap_task_key(
        task_key,
        keys.load_kex_public("c25519", kex_pub),
        ws=WS,
        task=TASK,
        recipient_key_id="dv_bench",
    )
    sealer = Sealer(task_key, WS, AGENT, TASK, AGENT, signing)
    pieces = text_pieces("outputTail", "z" * OUTPUT_BYTES)
    items = [
        seal_record(sealer, "task.out", piece, [wrap] if i == 0 else []).decode("ascii")
        for i, piece in enumerate(pieces)
    ]
    done = {"status": "completed", "count": len(pieces), "chainHead": sealer.prev}
    items.append(seal_record(sealer, "task.done", done).decode("ascii"))
    return items, keys.public_text(signing)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args, _ = parser.parse_known_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            page = browser.new_page()
            page.goto(f"http://localhost:{server.server_address[1]}/__test__/index.html")
            kex_pub = page.evaluate(SETUP)
            items, agent_pub = stream(kex_pub)
            ids = {"ws": WS, "task": TASK, "agent": AGENT}
            result: dict[str, Any] = page.evaluate(READ, [items, agent_pub, ids, args.runs])
            browser.close()
    finally:
        server.shutdown()
    assert result["complete"], result["dropped"]
    assert result["chars"] == OUTPUT_BYTES
    median = statistics.median(result["times"])
    print(
        f"phone (Chromium) opens a sealed task with 1 MiB of output: {median:.1f} ms median "
        f"over {len(result['times'])} runs ({len(items)} envelopes; target <= 50 ms)"
    )


if __name__ == "__main__":
    main()
