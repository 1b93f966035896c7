"""Many real agents in one process: ``python -m tests.proof.swarm CONFIG...``.

Each config gets its own ``AgentConnection`` (the agent's real connection, executor,
ledger, catalog and token store, each on its own stateDir and token) and its own WebSocket
to the relay, all on one event loop. A hundred agent processes would cost a hundred Python
interpreters on a two-core machine; this costs one, and still exercises the real code.
SIGTERM or SIGINT stops every agent the way ``codexrelay agent start`` does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from codexrelay.agent.config import load_agent_config
from codexrelay.agent.connection import AgentConnection
from codexrelay.agent.tokenstore import TokenStore


async def run(paths: list[Path]) -> int:
    """Serve every agent until a stop signal; returns how many did not stop cleanly."""
    connections = []
    for path in paths:
        config = load_agent_config(path)
        connections.append(AgentConnection(config, TokenStore(config.state_path)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [c.stop() for c in connections])
    codes = await asyncio.gather(*(c.run() for c in connections))
    return sum(1 for code in codes if code != 0)


def main() -> None:
    """Entry point for the test suite's agent swarm."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(f"swarm of {len(sys.argv) - 1} agents starting", flush=True)
    sys.exit(asyncio.run(run([Path(p) for p in sys.argv[1:]])))


if __name__ == "__main__":
    main()
