"""``codexrelay relay ...``: the operator's commands for a relay (init, start, check-config,
rotate-secrets), with scaffold, snapshot, restore, check and audit attached."""

from __future__ import annotations

from pathlib import Path

import click

from codexrelay.cliconfig import fail, load_relay_or_exit, relay_config_option
from codexrelay.crypto import new_secret, sha256_hex
from codexrelay.relay.access.sessions import new_bootstrap_token
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.ops.audit_commands import init_key, relay_audit
from codexrelay.relay.ops.scaffold import scaffold_command
from codexrelay.relay.ops.snapshot import snapshot_command
from codexrelay.relay.ops.storage_commands import check_command, describe_storage, restore_command
from codexrelay.relay.push.readiness import push_readiness
from codexrelay.relay.push.vapid import ensure_vapid_key, write_new_vapid_key
from codexrelay.settings import dump_config, write_config_file


@click.group()
def relay() -> None:
    """The public relay: web app, API and broker."""


@relay.command("init")
@relay_config_option()
@click.option(
    "--mode",
    type=click.Choice(["test", "production"]),
    default="test",
    show_default=True,
    help="test: http://localhost for local use; production: https behind a reverse proxy.",
)
@click.option("--public-origin", help="Origin phones will use (required for production).")
@click.option("--listen-host", default="127.0.0.1", show_default=True)
@click.option("--listen-port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option("--data-dir", default="data/relay", show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing config file.")
def relay_init(
    config_path: Path,
    mode: str,
    public_origin: str | None,
    listen_host: str,
    listen_port: int,
    data_dir: str,
    force: bool,
) -> None:
    """Write a relay config with fresh secrets and print the recovery token once."""
    if mode == "production" and not public_origin:
        fail("--mode production needs --public-origin https://your-relay-domain", 2)
    origin = public_origin or f"http://localhost:{listen_port}"
    token = new_bootstrap_token()
    try:
        config = RelayConfig(
            listen_host=listen_host,
            listen_port=listen_port,
            public_origin=origin,
            data_dir=data_dir,
            bootstrap_admin_token_hash=sha256_hex(token),
            token_secret=new_secret(),
            trusted_proxies=["127.0.0.1", "::1"] if mode == "production" else [],
        )
    except ValueError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else "invalid option", 2)
        return
    if mode == "production" and (problem := config.insecure_origin_problem()):
        fail(problem, 2)
    try:
        write_config_file(config_path, dump_config(config), force=force)
    except FileExistsError as exc:
        fail(str(exc), 1)
    click.echo(f"Wrote {config_path} (mode 0600).")
    click.echo(f"URL: {config.public_origin}/")
    click.echo(f"Recovery token: {token}")
    # B2: the audit signing key is made now, so its public key can be noted down with the token.
    signer = init_key(config.with_base_dir(config_path.resolve().parent))
    click.echo(f"Audit public key: {signer.public_text}")
    vapid, _created = ensure_vapid_key(config.data_path)  # with_base_dir was applied above
    click.echo(f"Push (VAPID) public key: {vapid.public_b64}")
    click.echo(
        "Store the recovery token in a password manager now: it is shown only once and the "
        "relay keeps only its hash.",
        err=True,
    )


@relay.command("start")
@relay_config_option()
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Allow a non-loopback http:// publicOrigin (closed test networks only).",
)
def relay_start(config_path: Path, insecure_http: bool) -> None:
    """Serve the relay until stopped."""
    from codexrelay.relay.ops.server import serve  # noqa: PLC0415 - keep CLI start-up fast
    from codexrelay.relay.storage.errors import StateError  # noqa: PLC0415

    config = load_relay_or_exit(config_path)
    problem = config.insecure_origin_problem()
    if problem and not insecure_http:
        fail(problem, 2)
    try:
        serve(config)
    except StateError as exc:
        fail(str(exc), 1)


@relay.command("check-config")
@relay_config_option()
def relay_check_config(config_path: Path) -> None:
    """Validate the relay config and report every problem, and whether push is ready."""
    config = load_relay_or_exit(config_path)
    push = push_readiness(config)
    for line in push.lines:
        click.echo(line)
    for warning in push.warnings:
        click.echo(f"warning: {warning}", err=True)
    if push.problems:
        fail("; ".join(push.problems), 1)
    click.echo(f"{config_path}: ok (public origin {config.public_origin})")
    if config.web.app_origin:
        click.echo(
            f"web app: from its static origin {config.web.app_origin} (this relay serves the "
            f"API only; passkeys are for {config.rp_host})"
        )
    else:
        click.echo(f"web app: served by this relay (passkeys are for {config.rp_host})")
    click.echo(describe_storage(config))


@relay.command("rotate-secrets")
@relay_config_option()
@click.option("--bootstrap", is_flag=True, help="Issue a new recovery token (prints it once).")
@click.option(
    "--token-secret",
    is_flag=True,
    help="Replace tokenSecret: ends every session and agent token and pending code.",
)
@click.option(
    "--vapid",
    is_flag=True,
    help="Replace the push (VAPID) key: every phone subscribes again when next opened.",
)
def relay_rotate_secrets(
    config_path: Path,
    bootstrap: bool,
    token_secret: bool,
    vapid: bool,
) -> None:
    """Rotate the recovery token hash, tokenSecret and/or the push key (O3, I3); restart the
    relay after."""
    if not (bootstrap or token_secret or vapid):
        fail("say what to rotate: --bootstrap, --token-secret, --vapid (one or more)", 2)
    config = load_relay_or_exit(config_path)
    if vapid:
        key = write_new_vapid_key(config.data_path)
        click.echo(f"VAPID key rotated; new public key {key.public_b64}.")
        click.echo("Push subscriptions of the old key end at the next start.")
    if not (bootstrap or token_secret):
        click.echo("Restart the relay to apply the new secrets.")
        return
    updates: dict[str, object] = {}
    token = None
    if bootstrap:
        token = new_bootstrap_token()
        updates["bootstrap_admin_token_hash"] = sha256_hex(token)
    if token_secret:
        updates["token_secret"] = new_secret()
    rotated = RelayConfig.model_validate({**config.model_dump(), **updates})
    write_config_file(config_path, dump_config(rotated), force=True)
    if bootstrap:
        click.echo(f"Recovery token: {token}")
    if token_secret:
        click.echo("tokenSecret rotated: every session and agent token is now invalid.")
    click.echo("Restart the relay to apply the new secrets.")


relay.add_command(scaffold_command)
relay.add_command(relay_config_option()(snapshot_command))
relay.add_command(relay_config_option()(restore_command))
relay.add_command(relay_config_option()(check_command))
relay.add_command(relay_audit)
for _command in relay_audit.commands.values():
    relay_config_option()(_command)
