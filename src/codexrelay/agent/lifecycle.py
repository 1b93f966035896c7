"""``codexrelay agent pair|start|status|stop``: pairing, serving and stopping the agent."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from codexrelay.agent.commands import (
    agent,
    agent_config_option,
    load_agent_or_exit,
    refuse_exposed_state,
)
from codexrelay.agent.config import AgentConfig
from codexrelay.agent.connection import EXIT_REVOKED, AgentConnection
from codexrelay.agent.enroll import PairingError, claim_code, code_format_problem, wait_for_token
from codexrelay.agent.redaction import startup_warning
from codexrelay.agent.status import StatusFile
from codexrelay.agent.tokenstore import TokenStore, TokenStoreError
from codexrelay.cliconfig import fail

EXIT_NOT_PAIRED = 2
STOP_WAIT_SEC = 30.0

log = logging.getLogger("codexrelay.agent")


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def serve(config: AgentConfig, tokens: TokenStore) -> int:
    """Run the agent until SIGINT/SIGTERM (0) or until its token is refused (3)."""
    refuse_exposed_state(config)
    _configure_logging()
    if (warning := startup_warning(config.redaction)) is not None:
        click.echo(warning, err=True)
    if StatusFile(config.state_path).running_pid() not in {None, os.getpid()}:
        fail(f"another agent is already running with state dir {config.state_path}")

    async def main() -> int:
        connection = AgentConnection(config, tokens)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, connection.stop)
        return await connection.run()

    code = asyncio.run(main())
    if code == EXIT_REVOKED:
        click.echo(
            "error: the relay refused this agent's token (it was revoked, replaced, or the "
            "relay's tokenSecret was rotated). Pair again: create a code on the phone, then "
            "run `codexrelay agent pair --pair-code CODE`.",
            err=True,
        )
    return code


@agent.command("pair")
@agent_config_option()
@click.option("--pair-code", required=True, help="The code shown on the phone (XXXX-XXXX).")
@click.option("--no-start", is_flag=True, help="Store the token and exit instead of serving.")
def agent_pair(config_path: Path, pair_code: str, no_start: bool) -> None:
    """Claim a pairing code, wait for approval on the phone, store the token, then serve."""
    if problem := code_format_problem(pair_code):
        fail(problem, 2)
    config = load_agent_or_exit(config_path)
    refuse_exposed_state(config)
    tokens = TokenStore(config.state_path)
    err = Console(stderr=True)
    try:
        claim = claim_code(config, pair_code)
    except PairingError as exc:
        fail(f"pairing failed: {exc}")
        return
    click.echo(f"Pair request {claim.request_id} sent to {config.relay_base_url}.")
    click.echo("Approve it on your phone (Agents -> Pending requests).", err=True)
    started = time.monotonic()
    try:
        with err.status("Waiting for approval on the phone...") as spinner:

            def on_poll(status: str) -> None:
                waited = int(time.monotonic() - started)
                spinner.update(f"Waiting for approval on the phone... {status}, {waited}s")

            token = wait_for_token(config, claim, on_poll=on_poll)
    except PairingError as exc:
        fail(f"pairing failed: {exc}")
        return
    # Only now is an earlier token replaced: a rejected or expired re-pairing keeps it (I5).
    tokens.save(token, relay_base_url=config.relay_base_url, agent_id=config.agent_id)
    click.echo(f"Paired. Token stored in {tokens.path} (mode 0600).")
    if no_start:
        return
    sys.exit(serve(config, tokens))


@agent.command("start")
@agent_config_option()
def agent_start(config_path: Path) -> None:
    """Connect to the relay with the stored token and serve until stopped."""
    config = load_agent_or_exit(config_path)
    refuse_exposed_state(config)
    tokens = TokenStore(config.state_path)
    try:
        stored = tokens.usable_for(config.relay_base_url, config.agent_id)
    except TokenStoreError as exc:
        fail(str(exc), EXIT_NOT_PAIRED)
        return
    if stored is None:
        fail(
            f"pair first: no agent token for {config.relay_base_url} as {config.agent_id}. "
            "Create a code on the phone (Agents -> Pair an agent), then run "
            "`codexrelay agent pair --pair-code CODE`.",
            EXIT_NOT_PAIRED,
        )
    sys.exit(serve(config, tokens))


@agent.command("status")
@agent_config_option()
def agent_status(config_path: Path) -> None:
    """Say whether this agent is paired, with which relay, and whether it is connected."""
    config = load_agent_or_exit(config_path)
    tokens = TokenStore(config.state_path)
    try:
        stored = tokens.load()
    except TokenStoreError as exc:
        stored = None
        click.echo(f"warning: {exc}", err=True)
    click.echo(f"Agent id: {config.agent_id}")
    click.echo(f"Relay: {config.relay_base_url}")
    if stored is None:
        click.echo("Paired: no")
    elif stored.relay_base_url.rstrip("/") != config.relay_base_url.rstrip("/"):
        click.echo(f"Paired: with another relay ({stored.relay_base_url}); pair again")
    else:
        click.echo(f"Paired: yes (token saved {stored.saved_at:%Y-%m-%d %H:%M:%S} UTC)")
    status_file = StatusFile(config.state_path)
    pid = status_file.running_pid()
    data = status_file.read() or {}
    if pid is None:
        click.echo("Connection: not running")
    else:
        state = data.get("state", "unknown")
        click.echo(f"Connection: {state} (pid {pid}, since {data.get('since')})")


@agent.command("stop")
@agent_config_option()
def agent_stop(config_path: Path) -> None:
    """Stop the running agent for this config (I1): SIGTERM, then wait for it to exit."""
    config = load_agent_or_exit(config_path)
    status_file = StatusFile(config.state_path)
    pid = status_file.running_pid()
    if pid is None:
        click.echo("The agent is not running.")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SEC
    while time.monotonic() < deadline:
        if status_file.running_pid() is None:
            click.echo(f"Stopped agent (pid {pid}).")
            return
        time.sleep(0.1)
    fail(f"agent (pid {pid}) did not stop within {STOP_WAIT_SEC:.0f}s; kill it with kill -9")
