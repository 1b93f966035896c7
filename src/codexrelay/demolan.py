"""``codexrelay demo --lan``: the demo on a real phone on the same network, over https.

Passkeys need a secure context, and WebAuthn refuses an IP address as the relying party id,
so the phone opens ``https://NAME:PORT/`` where NAME is this computer's mDNS name
(``<hostname>.local``) or a name the operator gives. Caddy terminates TLS in front of the
demo's relay with its own local certificate authority (``tls internal``), or with the
operator's certificate, and serves that authority's root certificate (never its key) over
plain http on a second port, so the phone can install it. The authority lives in the
per-user state directory and every later run reuses it: a phone trusts it once.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import segno

from codexrelay.demoproc import Child, DemoError, poll
from codexrelay.relay.ops.scaffold import check_domain
from codexrelay.userdirs import user_dir

CA_FILE = "codexrelay-demo-ca.crt"
DEFAULT_HTTPS_PORT = 8443
ROOT_CERT = Path("pki", "authorities", "local", "root.crt")
# Where a datagram socket would send to (nothing is sent): it picks the LAN interface.
PROBE_ADDRESS = ("192.0.2.1", 9)


@dataclass(frozen=True)
class LanOptions:
    """What the person asked for on the command line."""

    host: str | None = None
    https_port: int = DEFAULT_HTTPS_PORT
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class LanPlan:
    """How phones reach the demo: the name, the ports and the certificate in use."""

    caddy: str
    host: str
    address: str
    https_port: int
    ca_port: int | None  # None with the operator's own certificate
    cert: Path | None
    key: Path | None
    storage: Path

    @property
    def origin(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.host}{port}"

    @property
    def root_cert(self) -> Path:
        """Caddy's local root certificate (its key stays beside it, never served)."""
        return self.storage / ROOT_CERT

    @property
    def ca_url(self) -> str:
        return f"http://{self.address}:{self.ca_port}/{CA_FILE}"


def lan_address() -> str:
    """This computer's address on the network its default route uses."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(PROBE_ADDRESS)
            address = str(sock.getsockname()[0])
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        msg = "this computer has no network address: join the network your phone is on"
        raise DemoError(msg)
    return address


def default_lan_host() -> str:
    """``<hostname>.local``, the name mDNS (Bonjour, Avahi) announces this computer by."""
    label = socket.gethostname().split(".")[0].lower()
    label = re.sub(r"[^a-z0-9-]+", "-", label).strip("-")[:63] or "codexrelay"
    return f"{label}.local"


def free_port(preferred: int, *, avoid: int = -1) -> int:
    """``preferred`` if free on every interface, else any free port other than ``avoid``."""
    for port in (preferred, 0, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))  # noqa: S104 - phones on the network connect here
            except OSError:
                continue
            found = int(sock.getsockname()[1])
        if found != avoid:
            return found
    msg = "no free port for the https proxy"
    raise DemoError(msg)


def plan_lan(options: LanOptions) -> LanPlan:
    """Check what --lan needs (Caddy, a name, a network address) and pick the ports."""
    caddy = shutil.which("caddy")
    if caddy is None:
        msg = (
            "--lan needs Caddy: `sudo apt install caddy` (Debian, Ubuntu; or "
            "deploy/ensure-caddy.sh), `brew install caddy` (macOS)"
        )
        raise DemoError(msg)
    if (options.cert is None) != (options.key is None):
        msg = "--tls-cert and --tls-key go together"
        raise DemoError(msg)
    try:
        host = check_domain(options.host) if options.host else default_lan_host()
    except ValueError as exc:
        msg = f"--lan-host: {exc}; passkeys need a name, not an IP address"
        raise DemoError(msg) from None
    https_port = free_port(options.https_port)
    own_ca = options.cert is None
    return LanPlan(
        caddy=caddy,
        host=host,
        address=lan_address(),
        https_port=https_port,
        ca_port=free_port(min(https_port + 1, 65535), avoid=https_port) if own_ca else None,
        cert=options.cert.resolve() if options.cert else None,
        key=options.key.resolve() if options.key else None,
        storage=user_dir("state") / "caddy",
    )


def caddyfile(plan: LanPlan, relay_port: int, public_dir: Path) -> str:
    """Caddy in front of the loopback relay; with its own CA, a second site serves its root."""
    tls = f"tls {plan.cert} {plan.key}" if plan.cert else "tls internal"
    text = f"""\
# Written by `codexrelay demo --lan`; removed with the demo's directory.
{{
	admin off
	auto_https disable_redirects
	skip_install_trust
	storage file_system {plan.storage}
}}

{plan.origin} {{
	{tls}
	header -Server
	reverse_proxy 127.0.0.1:{relay_port} {{
		flush_interval -1
	}}
}}
"""
    if plan.ca_port is None:
        return text
    return (
        text
        + f"""
http://:{plan.ca_port} {{
	handle /{CA_FILE} {{
		header Content-Type application/x-x509-ca-cert
		root * {public_dir}
		file_server
	}}
	handle {{
		respond "Open /{CA_FILE} to install the codexrelay demo's certificate authority." 404
	}}
}}
"""
    )


def _proxy_ready(plan: LanPlan) -> bool | None:
    """The proxy answers /healthz over TLS for the demo's name (checked on loopback)."""
    if plan.cert is None and not plan.root_cert.is_file():
        return None
    if plan.cert is None:
        context = ssl.create_default_context(cafile=str(plan.root_cert))
    else:  # the operator's certificate may be for a name only their phones resolve
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=context, timeout=5) as client:
        try:
            res = client.get(
                f"https://127.0.0.1:{plan.https_port}/healthz",
                headers={"Host": plan.origin.removeprefix("https://")},
                extensions={"sni_hostname": plan.host},
            )
        except (httpx.TransportError, ssl.SSLError):
            return None
    return True if res.status_code == 200 else None


def start_proxy(plan: LanPlan, base: Path, relay_port: int, relay: Child) -> Child:
    """Write the Caddyfile, start Caddy and wait until it serves the relay over https."""
    directory = base / "caddy"
    public = directory / "public"
    public.mkdir(parents=True, exist_ok=True)
    config = directory / "Caddyfile"
    config.write_text(caddyfile(plan, relay_port, public), encoding="utf-8")
    proxy = Child("https proxy (Caddy)", base / "logs" / "caddy.log")
    # Caddy's own autosaved config goes with the demo, not over the person's own Caddy's.
    home = {"XDG_CONFIG_HOME": str(directory / "config"), "XDG_DATA_HOME": str(directory / "data")}
    proxy.start([plan.caddy, "run", "--config", str(config), "--adapter", "caddyfile"], home)
    poll(lambda: _proxy_ready(plan), what="Caddy", children=[relay, proxy])
    if plan.ca_port is not None:
        # Only the public root certificate is copied where the http site can read.
        shutil.copyfile(plan.root_cert, public / CA_FILE)
        (public / CA_FILE).chmod(0o644)
    return proxy


def qr_text(url: str) -> str:
    """The URL as a QR code for a terminal (light modules drawn, as on a dark terminal)."""
    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def announce_lan(plan: LanPlan, token: str) -> None:
    """The https URL, the token, a QR code of the URL and the steps on the phone."""
    url = f"{plan.origin}/"
    lines = [f"URL: {url}", f"Recovery token: {token}"]
    if plan.ca_port is not None:
        lines.append(f"CA certificate: {plan.root_cert}")
    lines += ["Scan this with the phone's camera:", "", qr_text(url)]
    click.echo("\n".join(lines))
    sys.stdout.flush()
    steps = [f"On your phone, on the same network as this computer ({plan.address}):"]
    if plan.ca_port is not None:
        steps += [
            "  1. Once per phone, trust this demo's certificate authority: open",
            f"     {plan.ca_url}",
            "     iPhone: allow the download, then Settings > General > VPN & Device "
            "Management > install it, then Settings > General > About > Certificate Trust "
            'Settings > turn on "Caddy Local Authority".',
            "     Android: Settings > Security > Encryption & credentials > Install a "
            "certificate > CA certificate > pick the downloaded file.",
        ]
    number = 1 if plan.ca_port is None else 2
    steps += [
        f"  {number}. Scan the QR code (or type the URL), sign in with the recovery token and "
        "create a passkey.",
        f"  The phone must find {plan.host} at {plan.address}: {name_hint(plan.host)}",
        "Press Ctrl-C to stop.",
    ]
    if (problem := resolution_problem(plan)) is not None:
        click.echo(f"warning: {problem}", err=True)
    click.echo("\n".join(steps), err=True)
    sys.stdout.flush()


def name_hint(host: str) -> str:
    """How a phone finds ``host``, said honestly."""
    if host.endswith(".local"):
        return (
            "iPhones and Android 12 or later resolve .local names on the same network when this "
            "computer announces itself over mDNS (macOS does; on Linux, avahi-daemon). "
            "Otherwise pass --lan-host with a name your network's DNS serves."
        )
    return "your network's DNS (or the phone's) must resolve that name to this computer."


def resolution_problem(plan: LanPlan, timeout: float = 3.0) -> str | None:
    """Why this computer itself does not resolve the name phones use (a hint that phones
    will not either), or None. Bounded: a silent mDNS lookup must not stall the demo."""
    found: list[str] = []

    def lookup() -> None:
        with contextlib.suppress(OSError):
            found.extend(str(info[4][0]) for info in socket.getaddrinfo(plan.host, None))

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if plan.address in found:
        return None
    if not found:
        return f"this computer does not resolve {plan.host}; {name_hint(plan.host)}"
    shown = ", ".join(sorted(set(found)))
    return f"{plan.host} resolves to {shown} here, not to {plan.address}"


def lan_options(
    lan: bool, host: str | None, https_port: int, cert: Path | None, key: Path | None
) -> LanOptions | None:
    """The --lan options, or None for the localhost demo (the others need --lan)."""
    if not lan:
        if host or cert or key:
            msg = "--lan-host, --tls-cert and --tls-key need --lan"
            raise DemoError(msg)
        return None
    return LanOptions(host=host, https_port=https_port, cert=cert, key=key)
