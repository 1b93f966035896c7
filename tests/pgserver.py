"""A real PostgreSQL server for the tests: initdb into a temporary directory, a free port on
127.0.0.1 and a Unix socket in the same directory, stopped at the end of the session.

PostgreSQL refuses to run as root, so when the tests run as root (CI's container) the
server runs as the ``postgres`` user Debian's package creates (or ``nobody``), and its
directory belongs to that user. The binaries come from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``), which ``.ci/run`` installs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.helpers import free_port

PG_INSTALL_HINT = "install Debian's postgresql package (deploy/ensure-postgres.sh)"


def find_bin(name: str) -> Path | None:
    """A PostgreSQL program on PATH or in Debian's versioned directory (newest first)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((v / name for v in versions if (v / name).exists()), None)


def _run_as() -> list[str]:
    """The prefix that runs the server as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            # setpriv execs the program itself (runuser would stay as a parent that does not
            # pass our stop signal on).
            return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
    msg = "running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as"
    raise RuntimeError(msg)


@dataclass
class PgServer:
    """One running server; ``new_database`` gives each test its own empty database."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="codexrelay-pg-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _count: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PgServer:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if initdb is None or postgres is None:
            raise RuntimeError(f"no PostgreSQL server binaries: {PG_INSTALL_HINT}")
        prefix = _run_as()
        self.root.chmod(0o755)
        if prefix:
            user = pwd.getpwnam(prefix[1].split("=", 1)[1])
            os.chown(self.root, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                *prefix,
                str(initdb),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *prefix,
                str(postgres),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import time  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log_path.read_text()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise RuntimeError(f"postgres did not start:\n{self.log_path.read_text()}")

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._count += 1
        name = f"relay_{os.getpid()}_{self._count}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def stored_bytes(self) -> Iterator[bytes]:
        """Every file of the data directory (tables, WAL, logs): where content must never be."""
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    yield path.read_bytes()
