"""Fixtures for the real-browser tests: one Chromium and one relay per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.phone import CHROMIUM, LAUNCH_ARGS
from tests.helpers import RelayProcess, write_relay_config


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps its event loop running while it is open,
    and the asyncio tests that run after this directory need the thread's loop free.
    """
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's /usr/bin/chromium is missing: run scripts/ensure-browsers.sh "
            "(make test runs it) to install it, then run the browser tests again."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A temporary directory for one test module's relay and agents."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def relay(module_dir: Path) -> Iterator[RelayProcess]:
    """A real relay subprocess for one test module; write mode allowed on the relay side."""
    setup = write_relay_config(module_dir / "relay", features={"codexExecWrite": True})
    proc = RelayProcess(setup, module_dir / "relay.log").start()
    yield proc
    proc.stop()
