"""Stand-ins for what the product drives: the model server (run for real on loopback) and
the Codex CLI (``fake_codex.py``, a real executable speaking the CLI's argv and JSONL)."""

from __future__ import annotations

import sys
from pathlib import Path

FAKES_DIR = Path(__file__).resolve().parent
FAKE_CODEX = FAKES_DIR / "fake_codex.py"


def fake_codex_command() -> list[str]:
    """A ``codex.command`` value that runs the fake CLI with this interpreter."""
    return [sys.executable, str(FAKE_CODEX)]
