"""Headless Chromium (Debian's ``chromium`` and ``chromedriver``) with no network beyond this
machine: every request to another host goes to a closed local port, so a page that needs the
internet shows it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


@contextmanager
def offline_chromium() -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "install chromium and chromedriver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,2000", "--proxy-server=127.0.0.1:9",
                "--proxy-bypass-list=127.0.0.1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def resources(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page loaded (scripts, styles, fetches)."""
    return list(driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"))
