"""The Rain sidebar polls less and less often while nothing changes (docs/jupyterlab.md:
every second while something changes, up to every 10 s while nothing does), and keeps
a cheap look at the state files every second. A real JupyterLab in headless Chromium;
the times between requests are only checked from below, so a slow machine cannot fail
the test."""
import json
import os
import time

import pytest

from labext_helpers import JupyterServer
from test_ui import CHROMIUM, CHROMIUM_FLAGS, require_browser

WATCH = 40          # seconds of idle sidebar watched


@pytest.fixture
def idle_lab(environment):
    server = JupyterServer(environment, app="jupyterlab", base_url="/")
    settings = os.path.join(server.env["JUPYTERLAB_SETTINGS_DIR"],
                            "@jupyterlab", "apputils-extension")
    os.makedirs(settings, exist_ok=True)
    with open(os.path.join(settings, "notification.jupyterlab-settings"), "w") as f:
        json.dump({"fetchNews": "false", "checkForUpdates": False}, f)
    yield server
    server.stop()


@pytest.mark.timeout(400)
def test_an_idle_sidebar_backs_off(idle_lab):
    require_browser()
    from playwright.sync_api import sync_playwright

    full, brief = [], []

    def on_request(request):
        if "/rain/api/clusters" in request.url:
            (brief if "brief=1" in request.url else full).append(time.monotonic())

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{idle_lab.url}lab?token={idle_lab.token}", timeout=120_000)
            page.locator(".jp-SideBar [data-id='rain-sidebar']").click()
            sidebar = page.locator("#rain-sidebar")
            sidebar.locator(".rain-Sidebar-status", has_text="No Rain cluster").wait_for()
            page.on("request", on_request)
            started = time.monotonic()
            while time.monotonic() - started < WATCH:
                page.wait_for_timeout(500)
        finally:
            browser.close()
    gaps = [b - a for a, b in zip(full, full[1:])]
    # Polling every second would make ~40 full requests; backing off by half each time
    # up to 10 s (1, 1.5, 2.3, 3.4, 5.1, 7.6, 10 ... s), a handful, the last ones far
    # apart.
    assert 2 <= len(full) <= 12, gaps
    assert max(gaps[-2:]) >= 4, gaps
    assert min(gaps[-2:]) >= 3, gaps
    # The cheap look at the state files goes on meanwhile.
    assert len(brief) > len(full), (len(brief), len(full))
