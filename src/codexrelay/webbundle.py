"""The web bundle's hash, and ``codexrelay verify-web URL`` (TRUST.md §9 phase 4, tier B).

A relay that changes the app's code can read what a phone shows after its next load. The
release record publishes one hash of the bundle; the relay states its own at
``GET /api/v1/web-bundle`` (the About screen shows it), and ``verify-web`` fetches every
file of the bundle from a running relay, hashes the bytes it was actually served, and
compares them with the release hash, so a relay cannot pass by only claiming the right one.

The hash is SHA-256 over, for each file in path order, ``path ‖ NUL ‖ SHA-256(bytes) ‖ LF``
(paths relative to the bundle, ``/``-separated; dotfiles and caches are not part of it).
``codexrelay verify-web --print`` prints the installed package's hash, for release notes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import cache
from pathlib import Path

import click
import httpx

from codexrelay.relay.origins import normalize_origin

WEB_DIR = Path(__file__).resolve().parent / "web"


def manifest(web_dir: Path = WEB_DIR) -> dict[str, str]:
    """Relative path -> SHA-256 hex of every file of the bundle."""
    found = {}
    for path in sorted(web_dir.rglob("*")):
        rel = path.relative_to(web_dir).as_posix()
        if not path.is_file() or any(
            p.startswith(".") or p == "__pycache__" for p in rel.split("/")
        ):
            continue
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def bundle_hash(files: dict[str, str]) -> str:
    """The one hash of a manifest."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode("utf-8") + b"\x00" + bytes.fromhex(files[rel]) + b"\n")
    return digest.hexdigest()


@cache
def installed_manifest() -> dict[str, str]:
    """This installation's files and their hashes (read once: the bundle does not change
    while the relay runs)."""
    return manifest()


def installed_hash() -> str:
    """This installation's bundle hash (what the relay states)."""
    return bundle_hash(installed_manifest())


def served_manifest(base_url: str, paths: list[str], client: httpx.Client) -> dict[str, str]:
    """The same paths as a running relay serves them."""
    found = {}
    for rel in paths:
        res = client.get(f"{base_url.rstrip('/')}/{rel}")
        if res.status_code != 200:
            raise click.ClickException(f"{rel}: the relay answered {res.status_code}")
        found[rel] = hashlib.sha256(res.content).hexdigest()
    return found


@click.command("verify-web")
@click.argument("url", required=False)
@click.option("--expect", "expected", help="the release's published bundle hash")
@click.option("--print", "print_only", is_flag=True, help="print this package's bundle hash")
def verify_web(url: str | None, expected: str | None, print_only: bool) -> None:
    """Compare the web app a relay serves at URL with the release's bundle hash."""
    ours = manifest()
    if print_only or url is None:
        click.echo(bundle_hash(ours))
        return
    expected = expected or bundle_hash(ours)
    with httpx.Client(timeout=15, follow_redirects=False) as client:
        served = served_manifest(url, sorted(ours), client)
        stated = client.get(f"{url.rstrip('/')}/api/v1/web-bundle").json().get("bundleHash")
    got = bundle_hash(served)
    changed = sorted(p for p in ours if served.get(p) != ours[p])
    click.echo(f"served:   {got}\nexpected: {expected}\nstated:   {stated}")
    if got != expected:
        detail = f" (files differing from this package: {', '.join(changed)})" if changed else ""
        raise click.ClickException(f"the served web app is not the release{detail}")
    if stated != got:
        raise click.ClickException("the relay states a hash other than what it serves")
    click.echo("The relay serves the release's web app, byte for byte.")


@click.command("export-web")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--relay-origin",
    required=True,
    help="the relay's publicOrigin, e.g. https://relay.example.org",
)
def export_web(directory: Path, relay_origin: str) -> None:
    """Write the web app to DIRECTORY for a separate static host (docs/DEPLOYMENT.md), with
    the relay.json that tells the app where the API is, and print the bundle hash."""
    try:
        origin = normalize_origin(relay_origin)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--relay-origin") from None
    files = manifest()
    directory.mkdir(parents=True, exist_ok=True)
    for rel in files:
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WEB_DIR / rel, target)
    (directory / "relay.json").write_text(json.dumps({"relayOrigin": origin}) + "\n")
    ours = bundle_hash(files)
    copied = manifest(directory)
    if bundle_hash({rel: copied.get(rel, "") for rel in files}) != ours:
        raise click.ClickException(f"the copy in {directory} does not hash to the bundle's hash")
    click.echo(f"{len(files)} files and relay.json written to {directory}")
    click.echo(f"bundle hash: {ours}")
