"""Browser tests of the web console: Debian's headless Chromium driven by Selenium, against
a real server (tests/http_server.api_server) and, where jobs must run, a real daemon
(tests/acceptance/conftest.py's Harness). Each test saves a screenshot in
tests/browser/screenshots/ (gitignored). Nothing sleeps: WebDriverWait waits for conditions.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import Harness, open_harness
from tests.http_server import api_server

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).parent / "screenshots"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the session, on a new empty profile."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    profile = tempfile.mkdtemp(prefix="wizd-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: WebDriver, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """The browser with no cookies; its screenshot saved after the test, as it ended."""
    # Cookies are per host, not per port: every test's server is 127.0.0.1, so clear them all.
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    yield browser
    SHOTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{request.node.name}.png"))
    # Cookies are per host, not per port, and deleted for the page's own site only: delete
    # them here, on the server's page, or the next test's server gets this one's session.
    browser.delete_all_cookies()
    browser.get("about:blank")  # closes the page's event stream before its server stops


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, str]]:
    """A daemon running the acceptance agents and a server over its SQLite store (no
    token in it: the console is open on loopback); (harness, base URL)."""
    with open_harness(tmp_path_factory.mktemp("console")) as h:
        h.start().ready()
        with api_server(str(h.db)) as base:
            yield h, base


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A server over a store of its own holding tokens; (base URL, its database)."""
    db = str(tmp_path / "guarded.db")
    import wizd

    with wizd.connect_sync(db) as q:
        q.enqueue("hello", {"n": 1}, queue="researcher")
    with api_server(db) as base:
        yield base, db
