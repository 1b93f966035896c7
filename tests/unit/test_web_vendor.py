"""The phone app's vendored Markdown libraries: pinned by hash, licensed, CSP-clean, and
used only through js/markdown.js with sanitizing on."""

from __future__ import annotations

import hashlib
import re

from tests.helpers import ROOT

WEB = ROOT / "src" / "codexrelay" / "web"
VENDOR = WEB / "vendor"


def test_vendored_files_match_their_pinned_hashes() -> None:
    """Every vendored file is listed in SHA256SUMS with its hash, and nothing else is there."""
    listed = dict(
        reversed(line.split("  ", 1)) for line in (VENDOR / "SHA256SUMS").read_text().splitlines()
    )
    present = {
        str(p.relative_to(VENDOR)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in VENDOR.rglob("*")
        if p.is_file() and p.name not in {"SHA256SUMS", "README.md"}
    }
    assert present == listed
    assert {"marked/LICENSE", "dompurify/LICENSE"} <= set(listed)
    readme = (VENDOR / "README.md").read_text()
    assert "marked 18.3.0" in readme
    assert "DOMPurify 3.5.0" in readme
    assert "marked v18.3.0" in (VENDOR / "marked" / "marked.esm.js").read_text()[:200]
    assert "DOMPurify 3.5.0" in (VENDOR / "dompurify" / "purify.es.mjs").read_text()[:200]


def test_vendored_modules_load_under_the_csp() -> None:
    """Plain ES modules: no imports to resolve, no eval or Function constructor."""
    for path in (VENDOR / "marked" / "marked.esm.js", VENDOR / "dompurify" / "purify.es.mjs"):
        text = path.read_text()
        assert not re.search(r"^\s*import\s", text, re.M), path
        assert not re.search(r"\beval\(|new Function\(", text), path


def test_markdown_is_always_sanitized_into_a_fragment() -> None:
    """Only js/markdown.js imports the libraries; it asks DOMPurify for a DOM fragment and
    strips images, styles and forms; no module of the app assigns innerHTML."""
    own = [p for p in WEB.rglob("*.js") if "vendor" not in p.parts]
    users = [
        p.name for p in own if re.search(r"from \"[./]*vendor/(marked|dompurify)/", p.read_text())
    ]
    assert users == ["markdown.js"]
    markdown = (WEB / "js" / "markdown.js").read_text()
    assert "RETURN_DOM_FRAGMENT: true" in markdown
    for tag in ('"img"', '"style"', '"form"', '"iframe"'):
        assert tag in markdown
    assert not [p for p in own if re.search(r"\.(innerHTML|outerHTML)\s*=", p.read_text())]
    shell = (WEB / "sw.js").read_text()
    assert "/vendor/marked/marked.esm.js" in shell
    assert "/js/views/chat.js" in shell
