"""A phone in WebKit, the engine of Safari and of every browser on an iPhone.

Debian's WebKitGTK MiniBrowser, driven over W3C WebDriver by ``WebKitWebDriver`` (Selenium's
client), on a private Xvfb screen. WebDriver has no init scripts, so errors are collected by
listeners installed right after the app first loads; the app is one page with hash routes,
so every later error on any screen is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from selenium.webdriver.webkitgtk.options import Options
from selenium.webdriver.webkitgtk.service import Service

DRIVER = Path("/usr/bin/WebKitWebDriver")
XVFB = Path("/usr/bin/Xvfb")
MINIBROWSER = next(Path("/usr/lib").glob("*/webkit2gtk-4.*/MiniBrowser"), None)
PHONE_SIZE = (390, 844)
WAIT_SEC = 20
WATCH = """
window.__problems = [];
const seen = (text) => window.__problems.push(String(text).slice(0, 300));
window.addEventListener("error", (e) => seen(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => seen(`rejection: ${e.reason}`));
document.addEventListener("securitypolicyviolation", (e) => seen(`CSP: ${e.violatedDirective}`));
const original = console.error;
console.error = (...args) => { seen(`console: ${args.join(" ")}`); original(...args); };
"""


def missing() -> str | None:
    """Why WebKit cannot run here, or None."""
    for path in (DRIVER, XVFB):
        if not path.exists():
            return f"{path} is missing: run scripts/ensure-browsers.sh (make test runs it)"
    if MINIBROWSER is None:
        return "WebKitGTK's MiniBrowser is missing: run scripts/ensure-browsers.sh"
    return None


class Screen:
    """A private X display for MiniBrowser (WebKitGTK has no headless mode)."""

    def __init__(self) -> None:
        read, write = os.pipe()
        screen = ["-screen", "0", "1280x1024x24", "-nolisten", "tcp"]
        self.proc = subprocess.Popen(
            [str(XVFB), "-displayfd", str(write), *screen],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.proc.kill()
            msg = "Xvfb did not start"
            raise RuntimeError(msg)
        self.display = f":{number}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WebKitPhone:
    """One WebKit browser at phone size, with small helpers in the spirit of Playwright's."""

    def __init__(self, screen: Screen, origin: str, log_path: Path) -> None:
        options = Options()
        options.binary_location = str(MINIBROWSER)
        options.add_argument("--automation")
        service = Service(
            executable_path=str(DRIVER),
            log_output=str(log_path),
            env={**os.environ, "DISPLAY": screen.display},
        )
        self.driver = webdriver.WebKitGTK(options=options, service=service)
        self.driver.set_window_size(*PHONE_SIZE)
        self.origin = origin

    def open(self, path: str = "/") -> None:
        """Load the app and start collecting errors."""
        self.driver.get(self.origin + path)
        self.wait(lambda: self.driver.execute_script("return document.readyState") == "complete")
        self.driver.execute_script(WATCH)

    def wait(self, check: Callable[[], Any], what: str = "the page") -> Any:
        """Poll ``check`` until it returns something truthy."""

        def poll(_driver: Any) -> Any:
            return check()

        try:
            # A live screen re-renders under a check: such a check is simply tried again.
            retry = (StaleElementReferenceException, ElementClickInterceptedException)
            return WebDriverWait(
                self.driver, WAIT_SEC, poll_frequency=0.1, ignored_exceptions=retry
            ).until(poll)
        except TimeoutException:
            body = self.driver.execute_script("return document.body.innerText")[:1500]
            msg = f"WebKit: timed out waiting for {what}; the screen says:\n{body}"
            raise AssertionError(msg) from None

    def _now(self, css: str, text: str | None, exact: bool) -> WebElement | None:
        try:
            elements = self.driver.find_elements(By.CSS_SELECTOR, css)
        except StaleElementReferenceException:  # the DOM changed mid-query: look again
            return None
        for element in elements:
            try:
                shown = element.text.strip()
                if element.is_displayed() and (
                    text is None or (shown == text if exact else text in shown)
                ):
                    return element
            except StaleElementReferenceException:  # re-rendered under us: look again
                continue
        return None

    def _on_field(self, label: str, act: Callable[[WebElement], object], what: str) -> None:
        """Do ``act`` to the control ``label`` names, again if a re-render replaced it."""
        self.wait(lambda: act(self.field(label)) or True, what)

    def find(self, css: str, text: str | None = None, *, exact: bool = False) -> WebElement:
        """The first displayed element matching ``css`` and containing ``text`` (or, with
        ``exact``, whose whole text it is), waiting."""
        found: WebElement = self.wait(
            lambda: self._now(css, text, exact), f"{css} {text or ''}".strip()
        )
        return found

    def field(self, label: str) -> WebElement:
        """The control a visible <label> with exactly this text names."""
        found: WebElement = self.wait(
            lambda: self.driver.execute_script(
                """const label = [...document.querySelectorAll("label")]
                       .find((l) => l.textContent.trim() === arguments[0]
                                    && l.getClientRects().length);
                   return label ? label.control : null;""",
                label,
            ),
            f"the field {label!r}",
        )
        return found

    def click(self, css: str, text: str | None = None, *, exact: bool = False) -> None:
        """Click the element ``find`` would return, again if a re-render replaced it."""

        def attempt() -> bool:
            element = self._now(css, text, exact)
            if element is None:
                return False
            self.press(element)
            return True

        self.wait(attempt, f"{css} {text or ''} to click".strip())

    def press(self, element: WebElement) -> None:
        """Click ``element`` where a thumb would: mid-screen, clear of the tab bar."""
        self.driver.execute_script("arguments[0].scrollIntoView({ block: 'center' })", element)
        element.click()

    def select(self, label: str, *, by_label: str) -> None:
        what = f"{by_label!r} in {label!r}"
        self._on_field(label, lambda el: Select(el).select_by_visible_text(by_label), what)

    def type_into(self, label: str, text: str) -> None:
        self._on_field(label, lambda el: el.send_keys(text), f"typing into {label!r}")

    def choose(self, label: str) -> None:
        """Tick the radio button or checkbox this label names."""
        self._on_field(label, self.press, f"the choice {label!r}")

    def evaluate(self, expression: str) -> Any:
        """``expression`` (JS, may be a promise) evaluated in the page; its JSON value."""
        text = self.driver.execute_async_script(
            f"""const done = arguments[arguments.length - 1];
                Promise.resolve({expression}).then(
                  (v) => done(JSON.stringify(v ?? null)),
                  (e) => done(JSON.stringify({{ error: String(e) }})));"""
        )
        return json.loads(text)

    def url(self) -> str:
        found: str = self.driver.current_url
        return found

    def forget_problems(self) -> None:
        self.driver.execute_script("window.__problems.length = 0")

    def tab(self, name: str) -> None:
        """Open a tab of the bottom bar and wait for its screen."""
        self.click("#tabbar a", name)
        self.wait(lambda: not self.driver.find_elements(By.CSS_SELECTOR, "#view .loading"))

    def text(self, css: str) -> str:
        """The text of the element ``find`` would return, once it stays put to be read."""

        def attempt() -> str | None:
            element = self._now(css, None, False)
            return None if element is None else element.text

        found: str = self.wait(attempt, css)
        return found

    def problems(self) -> list[str]:
        found: list[str] = self.driver.execute_script("return window.__problems || ['no watch']")
        return found

    def close(self) -> None:
        self.driver.quit()
