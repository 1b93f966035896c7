"""What sealing a task costs the phone, in Chromium (web/js/sealing/send.js).

One ``task.submit`` envelope: a fresh task key HPKE-wrapped to the agent and to every live
reader device of the verified log, the wraps' digest, AES-GCM over the padded submission.
Timed in the page (``performance.now``) for 3, 10 and 30 reader devices, median of the runs;
it adds to the passkey prompt, which takes a person far longer.
Run: ``.venv/bin/python -m bench.bench_seal_send [--runs 50]``.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from functools import partial
from http.server import ThreadingHTTPServer

from playwright.sync_api import sync_playwright
from tests.browser.phone import CHROMIUM, LAUNCH_ARGS
from tests.browser.test_e2e_interop import WEB, _Handler
from tests.unit.e2e.logkit import LogKit, agent_body, dumps

from codexrelay.e2e.statements import digest
from codexrelay.e2e.wire import b64u

TIMED = """async (arg) => {
  const log = await import("/e2e/log.js");
  const send = await import("/js/sealing/send.js");
  const S = await import("/e2e/statements.js");
  const view = await log.verifyLog(arg.entries, {});
  const draft = { stmt: arg.stmt, raw: S.fromB64u(arg.raw), body: S.fromB64u(arg.body),
                  auth: [{ credentialId: "x", assertion: {} }] };
  await send.sealSubmission(view, draft);
  const times = [];
  for (let i = 0; i < arg.runs; i += 1) {
    const start = performance.now();
    await send.sealSubmission(view, draft);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], readers: send.readerDevices(view).length };
}"""


def _log(readers: int) -> tuple[LogKit, dict[str, object], bytes, bytes]:
    kit = LogKit()
    for i in range(readers - 1):
        kit.member(f"u_{i}", "viewer")
    kit.add("agent.add", agent_body()[0], kit.owner)
    body = dumps({"prompt": "x" * 2000, "salt": "AAAAAAAAAAAAAAAAAAAAAA"})
    view = kit.view()
    now = int(time.time())
    stmt = {
        "v": 1,
        "kind": "task",
        "ws": kit.ws,
        "agent": "ag_1",
        "task": str(uuid.uuid4()),
        "type": "codex_exec",
        "writeAccess": False,
        "cwd": None,
        "resumeSessionId": None,
        "actionId": None,
        "logSourceId": None,
        "bodyHash": digest(body),
        "device": "dv_owner",
        "logHead": {"seq": view.head.seq, "hash": view.head.hash},
        "issuedAt": now,
        "expiresAt": now + 600,
    }
    return kit, stmt, dumps(stmt), body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args, _ = parser.parse_known_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://localhost:{server.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            page = browser.new_page()
            page.goto(f"{origin}/__test__/index.html")
            page.wait_for_selector("body[data-ready='1']")
            for readers in (3, 10, 30):
                kit, stmt, raw, body = _log(readers)
                arg = {
                    "entries": kit.signed,
                    "stmt": stmt,
                    "raw": b64u(raw),
                    "body": b64u(body),
                    "runs": args.runs,
                }
                got = page.evaluate(TIMED, arg)
                print(
                    f"seal one task for the agent + {got['readers']} reader devices: "
                    f"median {got['median']:.2f} ms"
                )
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
