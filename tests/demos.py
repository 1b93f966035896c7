"""A running `codexrelay demo` for the tests: its output read line by line, its processes
found and checked gone, and what a phone reads from the QR code it prints."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import zxingcpp
from PIL import Image

from tests.helpers import PYTHON, wait_until


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the ppid follows the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (ppid := _ppid(int(entry.name))) is not None:
            parents[int(entry.name)] = ppid
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (a demo directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(cmdline)
    return found


def env_without_codex() -> dict[str, str]:
    """This environment with every PATH entry that holds a `codex` program removed."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    kept = [e for e in entries if e and not (Path(e) / "codex").exists()]
    return {**os.environ, "PATH": os.pathsep.join(kept), "PYTHONUNBUFFERED": "1"}


@dataclass
class Demo:
    """A running `codexrelay demo` with its stdout collected line by line."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Demo:
        stderr_path = tmp_path / "demo.stderr"
        with stderr_path.open("w") as err:
            proc = subprocess.Popen(
                [PYTHON, "-m", "codexrelay", "demo", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env or env_without_codex(),
            )
        demo = cls(proc, stderr_path)
        demo.reader = threading.Thread(target=demo._read, daemon=True)
        demo.reader.start()
        RUNNING.append(demo)
        return demo

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def value(self, prefix: str, timeout: float = 60) -> str:
        """The rest of the first stdout line starting with ``prefix``."""

        def find() -> str | None:
            if self.proc.poll() is not None and not any(x.startswith(prefix) for x in self.lines):
                raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.output()}")
            return next((x.removeprefix(prefix) for x in self.lines if x.startswith(prefix)), None)

        try:
            return wait_until(find, timeout=timeout, what=f"a line {prefix!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"demo did not stop:\n{self.output()}") from None
        finally:
            if self.reader is not None:
                self.reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


RUNNING: list[Demo] = []


LAN_HOST = "codexrelay-demo.test"  # resolved by nobody: requests name it by SNI and Host
QR_CHARS = frozenset("█▀▄ ")


def terminal_qr(lines: list[str]) -> str:
    """What a phone's camera reads from the QR code the demo printed: each character is two
    modules stacked (a drawn half is light, as on a dark terminal), decoded by ZXing."""
    start = lines.index("Scan this with the phone's camera:") + 1
    rows = []
    for line in lines[start:]:
        if line and set(line) <= QR_CHARS:
            rows.append(line)
        elif rows:
            break
    light = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
    scale = 8
    image = Image.new("L", (len(rows[0]) * scale, len(rows) * 2 * scale), 0)
    for y, row in enumerate(rows):
        for x, char in enumerate(row):
            for half, on in enumerate(light[char]):
                if on:
                    box = (
                        x * scale,
                        (2 * y + half) * scale,
                        (x + 1) * scale,
                        (2 * y + half + 1) * scale,
                    )
                    image.paste(255, box)
    found = zxingcpp.read_barcodes(image)
    assert len(found) == 1, f"{len(found)} QR codes in the demo's output"
    return found[0].text


def through_proxy(client: httpx.Client, method: str, url: str, path: str, **kwargs: Any):
    """A request to the printed URL, sent to this computer's proxy (the name resolves
    nowhere here): TLS for the name (SNI), the name in Host."""
    parts = urlsplit(url)
    return client.request(
        method,
        f"https://127.0.0.1:{parts.port}{path}",
        headers={"Host": parts.netloc, "Origin": f"https://{parts.netloc}"},
        extensions={"sni_hostname": parts.hostname},
        **kwargs,
    )
