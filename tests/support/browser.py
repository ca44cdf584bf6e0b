"""Headless Chromium from Debian driven by Selenium through the system chromedriver (no downloads)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Where a failing browser test leaves a picture of the page (CI keeps the folder).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output"


class Browser:
    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="mw-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
            f"--user-data-dir={self.profile}", "--window-size=1200,900",
        ):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)

    def errors(self) -> list[dict]:
        """What the page logged as SEVERE: uncaught errors, refused loads, CSP violations."""
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / name))

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
