"""The one entry point: ``codexrelay relay|agent|secret|demo ...``."""

from __future__ import annotations

import sys

import click

from codexrelay import __version__
from codexrelay.agent import lifecycle, rotate, terminal, trustcli  # noqa: F401 - register their commands
from codexrelay.agent.commands import agent
from codexrelay.cliconfig import fail
from codexrelay.crypto import new_secret, sha256_hex
from codexrelay.demo import demo
from codexrelay.relay.ops.audit_commands import audit
from codexrelay.relay.ops.commands import relay
from codexrelay.verifylog import verify_log_command
from codexrelay.webbundle import export_web, verify_web


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="codexrelay")
def main() -> None:
    """Drive the Codex CLI on a development server from a phone."""


@main.group()
def secret() -> None:
    """Generate secrets and hash tokens (O3)."""


@secret.command("gen")
@click.option("--bytes", "nbytes", type=click.IntRange(32, 128), default=32, show_default=True)
def secret_gen(nbytes: int) -> None:
    """Print a new URL-safe random secret (at least 256 bits)."""
    click.echo(new_secret(nbytes=nbytes))


@secret.command("hash")
def secret_hash() -> None:
    """Read a token on stdin and print its SHA-256 hex (for bootstrapAdminTokenHash)."""
    token = sys.stdin.read().rstrip("\r\n")
    if not token:
        fail("no token on stdin", 2)
    click.echo(sha256_hex(token))


main.add_command(demo)
main.add_command(agent)
main.add_command(relay)
main.add_command(audit)
main.add_command(verify_log_command)
main.add_command(verify_web)
main.add_command(export_web)
