"""The browser trust modules: pinned vendored HPKE and CSP-clean plain ES modules."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

WEB_E2E = Path(__file__).resolve().parents[3] / "src" / "codexrelay" / "web" / "e2e"
VENDOR = WEB_E2E / "vendor"
COMMENTS = re.compile(r"/\*.*?\*/|^\s*//.*?$", re.S | re.M)
IMPORT = re.compile(r"""\b(?:from|import)\s*["']([^"']+)["']""")


def test_vendored_hpke_matches_its_pinned_hashes() -> None:
    """Every vendored file is listed in SHA256SUMS with its hash, and nothing else is there."""
    listed = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {
        str(p.relative_to(VENDOR)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in VENDOR.rglob("*")
        if p.is_file() and p.name not in {"SHA256SUMS", "README.md"}
    }
    assert present == listed
    assert {"hpke-core/LICENSE", "hpke-common/LICENSE", "hpke-core/mod.js"} <= set(listed)


def test_browser_modules_import_only_relative_paths() -> None:
    """No bare specifiers are left (no import map, no build step); every target exists."""
    for path in WEB_E2E.rglob("*.js"):
        for target in IMPORT.findall(COMMENTS.sub("", path.read_text())):
            assert target.startswith(("./", "../")), (path, target)
            assert (path.parent / target).resolve().is_file(), (path, target)


def test_browser_modules_are_csp_clean() -> None:
    """Our own modules use no eval, Function constructor or string timers (CSP script-src)."""
    for path in WEB_E2E.glob("*.js"):
        text = path.read_text()
        for banned in ("eval(", "new Function", 'setTimeout("', "innerHTML"):
            assert banned not in text, (path.name, banned)
