"""Memory of one relay holding many idle connections: N agents on their WebSocket (each paired,
each said hello) and M phones on the event stream, measured as the relay process's resident
set size (VmRSS) before and after, on the SQLite store.

The agents are paired by writing their records into the stopped relay's store with the
relay's own domain code (``pairing.issue_agent_token``), so the run does not wait for N
pairing ceremonies. The socket count is limited by the open-file limit (``ulimit -n``) of
both processes; ``relay start`` raises its soft limit to the hard limit at start.

Run: ``python -m bench.bench_connections [AGENTS] [STREAMS]`` (defaults 10,000 and 1,000).
"""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.agents import default_workspace
from tests.helpers import RelayProcess, RelaySetup, write_relay_config
from websockets.asyncio.client import ClientConnection, connect

from codexrelay.crypto import new_id
from codexrelay.protocol import PROTOCOL_VERSION
from codexrelay.relay.agents.pairing import issue_agent_token
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.storage.records import AgentRecord
from codexrelay.relay.storage.sqlite import SqliteStore

BATCH = 250


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def add_agents(config_path: Path, wid: str, count: int) -> list[str]:
    """Pair ``count`` agents offline (the relay is stopped); returns their tokens."""
    config = load_relay_config(config_path)
    secret = config.token_secret.get_secret_value()
    now = datetime.now(UTC)
    tokens = []

    async def fill() -> None:
        store = SqliteStore.open(config.data_path, now=lambda: now)
        for n in range(count):
            agent = AgentRecord(
                key=new_id("ag"),
                agent_id=f"idle-{n}",
                workspace_id=wid,
                label=f"Idle {n}",
                token_hash="",
                token_issued_at=now,
                paired_by="bench",
                created_at=now,
            )
            tokens.append(
                issue_agent_token(
                    agent, now=now, secret=secret, rand=secrets.token_bytes, ttl_sec=0
                )
            )
            store.agents.add(agent)
        await store.commit()
        await store.close()

    asyncio.run(fill())
    return tokens


def hello(n: int) -> str:
    return json.dumps(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "version": "bench",
            "agentId": f"idle-{n}",
            "features": {"codexExec": False, "runAction": True, "readLog": False},
            "actions": [{"id": "noop", "label": "No-op"}],
        }
    )


async def agent_socket(url: str, token: str, n: int) -> ClientConnection:
    ws = await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=4,
        ping_interval=None,
    )
    await ws.send(hello(n))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


async def event_stream(host: str, port: int, path: str, cookie: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    return writer


async def hold(
    setup: RelaySetup, tokens: list[str], wid: str, cookie: str, streams: int, pid: int
) -> dict:
    url = f"ws://127.0.0.1:{setup.port}/api/v1/agent/connect"
    sockets: list[ClientConnection] = []
    started = time.perf_counter()
    for first in range(0, len(tokens), BATCH):
        batch = tokens[first : first + BATCH]
        sockets += await asyncio.gather(
            *(agent_socket(url, token, first + i) for i, token in enumerate(batch))
        )
    agents_at = time.perf_counter() - started
    after_agents = rss_mib(pid)
    path = f"/api/v1/workspaces/{wid}/events"
    writers = []
    for first in range(0, streams, BATCH):
        writers += await asyncio.gather(
            *(
                event_stream("127.0.0.1", setup.port, path, cookie)
                for _ in range(min(BATCH, streams - first))
            )
        )
    await asyncio.sleep(15)  # a ping round on every agent socket, nothing else happening
    figures = {
        "agents": len(sockets),
        "streams": len(writers),
        "connect_sec": agents_at,
        "after_agents": after_agents,
        "after_all": rss_mib(pid),
        "open": sum(1 for ws in sockets if ws.state.name == "OPEN"),
    }
    for writer in writers:
        writer.close()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    agents = int(argv[0]) if argv else 10_000
    streams = int(argv[1]) if len(argv) > 1 else 1_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"open-file limit: soft {soft}, hard {hard} (raised to {hard} in both processes)")
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as tmp:
        setup = write_relay_config(Path(tmp) / "relay", storage={"backend": "sqlite"})
        relay = RelayProcess(setup, Path(tmp) / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        phone.close()
        relay.stop()
        tokens = add_agents(setup.config_path, wid, agents)
        relay.start()
        assert relay.proc is not None
        try:
            phone = relay.login()
            cookie = "; ".join(f"{k}={v}" for k, v in phone.cookies.items())
            base = rss_mib(relay.proc.pid)
            figures = asyncio.run(hold(setup, tokens, wid, cookie, streams, relay.proc.pid))
            phone.close()
        finally:
            relay.stop()
    print(f"relay RSS at rest: {base[0]:.0f} MiB")
    print(
        f"{figures['agents']:,} agents connected in {figures['connect_sec']:.1f} s "
        f"({figures['open']:,} still open after a ping round): "
        f"RSS {figures['after_agents'][0]:.0f} MiB"
    )
    print(
        f"+ {figures['streams']:,} event streams: RSS {figures['after_all'][0]:.0f} MiB "
        f"(peak {figures['after_all'][1]:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
