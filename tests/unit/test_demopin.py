"""The demo's pin hint: the printed command names the demo agent's config exactly (spaces
and all) and takes the phone's code; a pasted code is recognised only with its secret."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from codexrelay.demopin import CODE, pin_argv, pin_command
from codexrelay.e2e.pairing import format_pair_code, new_secret, parse_pair_code


def test_the_printed_pin_command_runs_trust_pin_on_the_demo_config() -> None:
    config = Path("/tmp/demo dir/agent/agent.json")
    printed = pin_command(config)
    argv = shlex.split(printed)
    assert argv[-2:] == ["--code", "CODE.SECRET"]
    assert argv == pin_argv(config, "CODE.SECRET")
    assert argv[:6] == [sys.executable, "-m", "codexrelay", "agent", "trust", "pin"]
    assert argv[argv.index("--config") + 1] == str(config)


def test_a_pasted_code_needs_its_secret() -> None:
    shown = format_pair_code("ABCD-EFGH", new_secret())
    assert CODE.match(shown)
    assert parse_pair_code(shown)[0] == "ABCD-EFGH"
    assert not CODE.match("ABCD-EFGH")
    assert not CODE.match(shown[:-1])
    assert not CODE.match(f"{shown} extra")
