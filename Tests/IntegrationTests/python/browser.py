"""Headless Chromium for the browser tests (test_browser, test_origins, test_tls,
test_compression): finding it and the client bundle, skipping outside CI when a piece is missing
(in CI a missing piece is a failure), and starting it with a private profile."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import REPO

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
except ImportError:  # reported by ChromiumTestCase.setUpClass
    webdriver = None

EXAMPLES = os.path.join(REPO, "examples")
CLIENT_BUNDLE = os.path.join(EXAMPLES, "web", "vendor", "socket.io.min.js")
IN_CI = os.environ.get("CI") == "true"
BROWSER_WAIT = 15


def unavailable(reason):
    """Skips the module's tests outside CI; in CI, a missing piece is a failure."""
    if IN_CI:
        raise AssertionError(f"{reason}, but CI=true: scripts/test.sh should have installed it")
    print(f"skipping: {reason}", file=sys.stderr, flush=True)
    raise unittest.SkipTest(reason)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class ChromiumTestCase(unittest.TestCase):
    """A test case that drives headless Chromium with the official Socket.IO client bundle."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if webdriver is None:
            unavailable("selenium is not installed (scripts/requirements-test.txt)")
        cls.chromium = find_chromium()
        cls.chromedriver = shutil.which("chromedriver")
        if not cls.chromium or not cls.chromedriver:
            unavailable("chromium or chromedriver is not installed (Debian: chromium chromium-driver)")
        if not os.path.exists(CLIENT_BUNDLE):
            fetch = subprocess.run([sys.executable, os.path.join(EXAMPLES, "web", "fetch-client.py")])
            if fetch.returncode != 0:
                unavailable("the Socket.IO client bundle is missing and examples/web/fetch-client.py failed")

    def start_chromium(self, *arguments):
        """A headless Chromium with a profile of its own, quit when the test ends."""
        profile = tempfile.TemporaryDirectory(prefix="sidecast-chromium-")
        self.addCleanup(profile.cleanup)
        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         f"--user-data-dir={profile.name}", *arguments):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(executable_path=self.chromedriver), options=options)
        self.addCleanup(driver.quit)
        return driver
