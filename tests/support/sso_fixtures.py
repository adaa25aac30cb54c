"""Fixtures of the SSO tests, loaded with ``pytest_plugins = ["tests.support.sso_fixtures"]``: the
fake
platform (tests/support/fakes/oauth_provider.py) wired into settings, and headless Chromium.
"""

import os
import shutil
import tempfile

import pytest

from tests.support.fakes.oauth_provider import FakeOAuthProvider

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def fake_oauth(settings):
    """The fake platform, with KOOGALLERY_UNIFIED_LOGIN_URL pointing at its login page."""
    with FakeOAuthProvider() as fake:
        settings.KOOGALLERY_UNIFIED_LOGIN_URL = fake.unified_login_url
        settings.SSO_HTTP_TIMEOUT_S = 2.0
        yield fake


# --- the browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@pytest.fixture(scope="session")
def chromium(live_server):
    """Headless Chromium from Debian's packages, driven through Debian's chromedriver.

    Skips when they are not installed (`.ci/run` installs them). Nothing is downloaded:
    Selenium gets both paths, so Selenium Manager has nothing to look up. It depends on
    `live_server` so that it quits first: a browser still holding keep-alive connections when
    the live server stops makes the server's request threads close the shared SQLite
    connection from the wrong thread.
    """
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "chromium and chromium-driver are not installed (apt-get install -y "
            "chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sso-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium):
    """The session's browser with no cookies of any site (a new person for each test)."""
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    yield chromium
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
