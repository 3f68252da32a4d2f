"""A real browser for the tests of what people see (``dge explore``, the HTML report).

Debian's ``chromium`` driven through its ``chromedriver`` (apt: chromium chromium-driver;
``.ci/run`` installs them). Selenium is given both paths, so Selenium Manager never runs and
nothing downloads a browser. Without them the browser tests skip, or fail under CI.

Screenshots go to ``test-artifacts/screenshots/`` (``$DGE_TEST_ARTIFACTS`` to change it):
look at them, what a person sees is part of the product.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dge_platform_tests.conftest import REPO

CHROMIUM = ("chromium", "chromium-browser")
ARTIFACTS = Path(os.environ.get("DGE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"
WINDOW = (1400, 1000)


def _binaries() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    what = "chromium" if not browser else "chromedriver"
    if os.environ.get("CI"):
        pytest.fail(f"{what} not found: .ci/run should have installed it "
                    "(apt install chromium chromium-driver)", pytrace=False)
    pytest.skip(f"{what} not installed; run: sudo apt install chromium chromium-driver")


@contextmanager
def chromium(*, offline: bool = False) -> Iterator:
    """A headless Chromium (a selenium WebDriver), closed on exit. ``offline``: the network
    is cut (DevTools network emulation) so a page that fetches anything fails to; loopback
    servers and ``file://`` pages still load when not offline."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        if offline:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
                "offline": True, "latency": 0, "downloadThroughput": -1,
                "uploadThroughput": -1})
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> Path:
    """Save what the browser shows as ``<ARTIFACTS>/<name>.png`` (the whole page height)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the window's height includes the browser's own bars: add them, or the page's last
    # lines fall outside the picture
    height, chrome = driver.execute_script(
        "return [document.documentElement.scrollHeight, "
        "window.outerHeight - window.innerHeight]")
    driver.set_window_size(WINDOW[0], min(max(WINDOW[1], int(height) + int(chrome)), 6000))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)
    return path


def console_errors(driver) -> list[str]:
    """The page's console errors so far (a missing script or a JS exception shows here)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]
