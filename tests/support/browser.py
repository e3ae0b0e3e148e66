"""A real headless Chromium for end-to-end tests (Selenium with Debian's chromium and
chromedriver, from scripts/install-deps). Missing, they fail the test;
ENGAGE_SKIP_BROWSER=1 skips it instead."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def need_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if os.environ.get("ENGAGE_SKIP_BROWSER") == "1":
        pytest.skip("ENGAGE_SKIP_BROWSER=1")
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run scripts/install-deps (Debian's chromium "
                    "and chromium-driver), or set ENGAGE_SKIP_BROWSER=1 to skip this test")


def start_chromium(workdir: Path) -> Any:
    """A headless Chromium with a fresh profile under ``workdir``, keeping the page's
    console log (``get_log("browser")``); quit() it when done."""
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path given: no Selenium Manager
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=workdir)}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)
