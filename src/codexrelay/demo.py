"""``codexrelay demo``: the product on embedded defaults, in one command."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import click

from codexrelay.crypto import new_secret, sha256_hex
from codexrelay.relay.config import RelayConfig
from codexrelay.settings import dump_config, write_config_file

DEFAULT_PORT = 8787


def pick_port(preferred: int) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    msg = "no free port on 127.0.0.1"
    raise RuntimeError(msg)


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to keep the demo's config and data (default: a new temporary directory).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
def demo(directory: Path | None, port: int) -> None:
    """Start a local relay on http://localhost with fresh secrets, until Ctrl-C."""
    from codexrelay.relay.server import serve  # noqa: PLC0415 - keep CLI start-up fast

    base = directory or Path(tempfile.mkdtemp(prefix="codexrelay-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    port = pick_port(port)
    token = "crb_" + new_secret()
    config = RelayConfig(
        listen_port=port,
        public_origin=f"http://localhost:{port}",
        data_dir="data/relay",
        bootstrap_admin_token_hash=sha256_hex(token),
        token_secret=new_secret(),
    )
    config_path = base / "relay.json"
    write_config_file(config_path, dump_config(config), force=True)
    config = config.with_base_dir(base)
    click.echo(f"Demo directory: {base}")
    click.echo(f"URL: {config.public_origin}/")
    click.echo(f"Recovery token: {token}")
    click.echo("Press Ctrl-C to stop.", err=True)
    serve(config)
