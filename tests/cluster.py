"""Several real relay processes on one real PostgreSQL database, behind a real Caddy on
loopback: the three-instance deployment of docs/DEPLOYMENT.md, in a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers import (
    ROOT,
    RelayProcess,
    RelaySetup,
    free_port,
    wait_until,
    write_relay_config,
)

CADDY_HINT = "install Debian's caddy package (deploy/ensure-caddy.sh)"


DEPLOY_CADDYFILE = ROOT / "deploy" / "cluster" / "Caddyfile"


def caddyfile(port: int, upstreams: list[int]) -> str:
    """docs/DEPLOYMENT.md's three-instance Caddyfile (deploy/cluster/Caddyfile), served on
    loopback over plain HTTP with this run's ports: round robin, an instance that stops
    answering taken out, ``/internal/`` never routed."""
    targets = " ".join(f"127.0.0.1:{p}" for p in upstreams)
    text = DEPLOY_CADDYFILE.read_text()
    text = text.replace("relay.example.org", f"http://127.0.0.1:{port}, http://localhost:{port}")
    text = text.replace("127.0.0.1:8781 127.0.0.1:8782 127.0.0.1:8783", targets)
    assert targets in text, "deploy/cluster/Caddyfile no longer names the three instances"
    return "{\n\tadmin off\n\tauto_https off\n}\n\n" + text


@dataclass
class Caddy:
    """``caddy run`` with a generated Caddyfile."""

    directory: Path
    upstreams: list[int]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    text: str | None = None  # another Caddyfile than the cluster's, with its own ready path
    ready_path: str = "/healthz"

    def start(self) -> Caddy:
        binary = shutil.which("caddy")
        if binary is None:
            raise RuntimeError(f"no caddy: {CADDY_HINT}")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "Caddyfile"
        config.write_text(self.text or caddyfile(self.port, self.upstreams))
        log = (self.directory / "caddy.log").open("ab")
        env = {**os.environ, "HOME": str(self.directory), "XDG_DATA_HOME": str(self.directory)}
        self.proc = subprocess.Popen(
            [binary, "run", "--config", str(config), "--adapter", "caddyfile"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        wait_until(self._up, timeout=20, what="caddy")
        # An instance answering on the proxy's port would pass for it: the proxy must be
        # the one answering, and still running.
        time.sleep(0.2)
        self._up()
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.directory / "caddy.log").read_text()
            raise AssertionError(f"caddy exited:\n{log[-2000:]}")
        try:
            url = f"http://127.0.0.1:{self.port}{self.ready_path}"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _distinct_ports(count: int) -> list[int]:
    """``count`` ports free a moment ago and all different (the kernel may hand the same
    free port out twice in a row once the first probe socket is closed)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class RelayCluster:
    """N relay instances sharing a database and the secrets, one public origin (Caddy's)."""

    directory: Path
    database_url: str
    size: int = 3
    relays: list[RelayProcess] = field(default_factory=list)
    caddy: Caddy | None = None

    def start(self, **overrides: object) -> RelayCluster:
        ports = _distinct_ports(self.size + 1)
        self.caddy = Caddy(self.directory / "caddy", ports[1:], port=ports[0])
        ports = ports[1:]
        first = write_relay_config(
            self.directory / "relay0",
            listenPort=ports[0],
            publicOrigin=f"http://localhost:{self.caddy.port}",
            storage={"backend": "postgres", "url": self.database_url},
            **overrides,
        )
        shared = first.config()
        for i, port in enumerate(ports):
            if i == 0:
                setup = first
            else:
                directory = self.directory / f"relay{i}"
                directory.mkdir(parents=True)
                path = directory / "relay.json"
                path.write_text(json.dumps({**shared, "listenPort": port}, indent=2))
                path.chmod(0o600)
                setup = RelaySetup(path, first.token, port, directory / "data")
            self.relays.append(RelayProcess(setup, self.directory / f"relay{i}.log"))
        for relay in self.relays:
            relay.start(wait=False)
        for relay in self.relays:
            relay.wait_ready(timeout=90)  # three start at once on a busy machine
        self.caddy.start()
        return self

    @property
    def front(self) -> RelayProcess:
        """The proxy, as phones and agents see it (a ``RelayProcess`` for its clients)."""
        assert self.caddy is not None
        first = self.relays[0].setup
        setup = RelaySetup(first.config_path, first.token, self.caddy.port, first.data_dir)
        return RelayProcess(setup, self.directory / "front.log")

    def logs(self) -> str:
        return "".join(relay.logs() for relay in self.relays)

    def stop(self) -> None:
        for relay in self.relays:
            relay.stop()
        if self.caddy is not None:
            self.caddy.stop()
