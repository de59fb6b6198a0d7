"""Real headless Chromium for the page tests: Debian's `chromium` driven through Selenium and
the system `chromedriver` (no browser download: Playwright's needs a CDN).

`chromium_missing()` names what is absent so tests skip with that reason.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_missing() -> str | None:
    if chromium_binary() is None:
        return "chromium is not installed (Debian package `chromium`; ./dev installs it as root)"
    if shutil.which("chromedriver") is None:
        return "chromedriver is not installed (Debian package `chromium-driver`)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Selenium WebDriver for headless Chromium, quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium_binary() or "chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@contextmanager
def ui_process(*args: str) -> Iterator[str]:
    """`netstrata ui ARGS --listen 127.0.0.1:0` as a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "netstrata.cli.main", "ui", *args, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            proc.kill()
            raise AssertionError(f"netstrata ui did not start: {line}{proc.stdout.read()}")
        yield line.split()[2].rstrip("/")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def edges(driver: Any) -> list[dict[str, str]]:
    """The edges the page draws: verdict, source, destination, count."""
    return driver.execute_script(
        "return [...document.querySelectorAll('g.edge')].map(g => ({verdict: g.dataset.verdict,"
        " source: g.dataset.source, destination: g.dataset.destination, count: g.dataset.count}))"
    )


def rows(driver: Any) -> list[dict[str, str]]:
    """The flow table's rows: verdict text and class, source and destination."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#flows tbody tr')].map(tr => ({verdict:"
        " tr.dataset.verdict, cls: tr.dataset.verdictClass, source: tr.cells[0].textContent,"
        " destination: tr.cells[2].textContent}))"
    )


def set_filter(driver: Any, name: str, value: str) -> None:
    """Type or pick a filter value and apply it, as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    field = driver.find_element(By.NAME, name)
    if field.tag_name == "select":
        Select(field).select_by_visible_text(value)  # a change event applies it
        return
    field.clear()
    field.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()


def screenshot(driver: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
