"""The demo agent pins a protected workspace the way a person pins any agent.

The demo pairs its agent before anyone has a passkey, so the workspace is not protected
yet. The person's first passkey signs the workspace's genesis from the phone; from then on
the agent needs the workspace pinned to run anything. That takes the phone's one-time code
(``CODE.SECRET``, whose secret the relay never sees) and the agent's ``trust pin`` command,
exactly as for an agent paired before protection was on. The demo prints that command for
its agent's config and, on a terminal, runs it when the person pastes the code.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import click

CODE = re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}\.[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$")
PIN_TIMEOUT_SEC = 15 * 60


def pin_argv(agent_config: Path, code: str) -> list[str]:
    """``codexrelay agent trust pin`` for the demo agent's config."""
    cli = [sys.executable, "-m", "codexrelay", "agent", "trust", "pin"]
    return [*cli, "--config", str(agent_config), "--code", code]


def pin_command(agent_config: Path) -> str:
    """The command to print, with a placeholder where the phone's code goes."""
    return f"{shlex.join(pin_argv(agent_config, 'CODE'))[: -len('CODE')]}CODE.SECRET"


def pin_steps() -> str:
    """What the person does on the phone, after the first passkey."""
    return (
        "Your first passkey turns protection on: every task is then signed by your passkey and "
        "checked by the agent. Pin the demo agent once: in the app open Agents > Pair an agent "
        "> Create pairing code, paste the code here (or run the pin command above with it), "
        "then approve the request on the phone."
    )


def _run_pasted(agent_config: Path, line: str) -> None:
    code = line.strip().upper()
    if not code:
        return
    if not CODE.match(code):
        click.echo(
            "That is not a pairing code with its secret (XXXX-XXXX.XXXX-XXXX-XXXX-XXXX).", err=True
        )
        return
    click.echo("Pinning the demo agent: approve the request on your phone.", err=True)
    try:
        subprocess.run(pin_argv(agent_config, code), check=False, timeout=PIN_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        click.echo("The pin request was not approved in time; create a new code.", err=True)


def listen_for_codes(agent_config: Path) -> threading.Thread | None:
    """On a terminal, a pasted ``CODE.SECRET`` runs the pin command; otherwise nothing."""
    if not sys.stdin.isatty():
        return None

    def read() -> None:
        for line in sys.stdin:
            _run_pasted(agent_config, line)

    thread = threading.Thread(target=read, name="demo-pin", daemon=True)
    thread.start()
    return thread
