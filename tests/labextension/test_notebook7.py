"""The ``%%rain`` view in Jupyter Notebook 7 (the ``jupyter notebook`` app, not
JupyterLab), driven by headless Chromium: the charts are drawn live while the session runs
and after it ended (the live task graph with its labels), the Rain sidebar shows in
Notebook 7's left panel with the cluster and the session, the browser console stays free of errors, and after save, kernel shutdown and
reload the static picture of the final state shows. Screenshots go to
``test-artifacts/notebooks/notebook7/``.
"""

import pytest

from browser_helpers import (Browser, check_page_text, check_rain_cell, live_labels, quiet_server,
                             save_and_reopen, shut_down_kernels, steps_of, wait_finished,
                             write_notebook)
from test_ui import require_browser, run_cell

CELLS = [
    "%load_ext rain_jupyter\n%rain start --governors 2",
    "%%rain seven\n"
    "from rain.client import blob, tasks\n"
    "naps = [tasks.Sleep(blob(str(i)), 0.5, name=f'nap/{i % 3}') for i in range(24)]\n"
    "total = tasks.Concat(naps, name='total')\n"
    "total.output.keep()",
    "rain_session.wait_all()\nprint(len(total.output.fetch().get_bytes()))",
    "%rain stop",
]


def show_sidebar(page):
    """The Rain sidebar in Notebook 7's left panel: View, Left Sidebar, Show Rain clusters."""
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu .lm-Menu-itemLabel", has_text="Show Rain clusters").click()
    page.locator("#rain-sidebar").wait_for(state="visible")


@pytest.fixture(scope="module")
def notebook7(environment):
    server = quiet_server(environment, app="notebook")
    write_notebook(server, "seven.ipynb", CELLS)
    yield server
    shut_down_kernels(server)
    server.stop()


@pytest.mark.timeout(600)
def test_rain_cell_in_notebook7(notebook7):
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Notebook 7 itself (with no other extension either) reports this on loading
        # its settings; nothing of Rain or the widget libraries is involved.
        browser = Browser(playwright, notebook7, "notebook7", app="notebook",
                          ignore=[("reading 'schema'", "/static/notebook/notebook_core.")])
        page = browser.page
        with steps_of(browser):
            browser.open("seven.ipynb")
            browser.screenshot("opened")
            for index, source in enumerate(CELLS):
                cell = run_cell(page, index)
                if source.startswith("%%rain"):
                    final = check_rain_cell(browser, cell, index)
                    assert "25/25 finished" in final.inner_text()
                    # the live task graph had its labels (those that fit) while running
                    assert live_labels(page, index) > 0
                wait_finished(cell)
                check_page_text(browser)
                if index == 0:
                    show_sidebar(page)
                    page.locator("#rain-sidebar .rain-Cluster").wait_for()
                    browser.screenshot("sidebar")
                if index == 1:
                    row = page.locator("#rain-sidebar .rain-Session", has_text="seven")
                    row.wait_for()
                    page.wait_for_function(
                        "document.querySelector('#rain-sidebar .rain-Session')"
                        "?.dataset.shown === 'done'", timeout=30_000)
                    assert "25/25 tasks" in row.inner_text()
                    browser.screenshot("sidebar-session")
            assert "38" in page.locator(".jp-Notebook .jp-Cell").nth(2).inner_text()
            browser.screenshot("all-cells-run")
            save_and_reopen(browser, "seven.ipynb", 1)
