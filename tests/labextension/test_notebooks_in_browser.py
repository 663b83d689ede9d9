"""Every demo notebook, and a fresh notebook typed cell by cell, run in a real JupyterLab
driven by headless Chromium, as a user would run them.

For every ``%%rain`` output: the Bokeh charts are drawn (canvases present, with pixels on
them) while the session runs and after it ended; no output says "javascript error" or
"Error displaying widget"; the browser console stays free of errors. Then the notebook is
saved, its kernel shut down and the page reloaded: each ``%%rain`` output shows the static
picture of the final state, and the saved file holds no widget and no token.
Screenshots of each step go to ``test-artifacts/notebooks/<notebook>/``.
"""
import pytest
import requests

from browser_helpers import (Browser, check_page_text, check_rain_cell, run_notebook,
                             save_and_reopen, shut_down_kernels, start_lab, steps_of,
                             wait_finished, NOTEBOOKS)
from test_ui import require_browser, run_cell

FRESH_CELLS = [
    "%load_ext rain_jupyter",
    "%rain start --governors 2",
    "%%rain fresh\n"
    "from rain.client import blob, tasks\n"
    "naps = [tasks.Sleep(blob(str(i)), 0.5, name=f'nap/{i % 3}') for i in range(40)]\n"
    "parts = [tasks.Concat([naps[i % 40].output, blob('x')], name='part') "
    "for i in range(2000)]\n"
    "total = tasks.Concat(parts, name='total')\n"
    "total.output.keep()",
    "rain_session.wait_all()\nprint(len(total.output.fetch().get_bytes()))",
    "%rain stop",
]


@pytest.fixture(scope="module")
def notebook_lab(environment):
    server = start_lab(environment)
    yield server
    shut_down_kernels(server)
    server.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_browser(notebook_lab, path):
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = Browser(playwright, notebook_lab, path.stem)
        with steps_of(browser):
            browser.open(path.name)
            browser.screenshot("opened")
            rain_cells = run_notebook(browser, path.name)
            # the post-mortem notebook links its report page, which opens in a tab
            assert browser.reports == ("rain_jupyter.report_link(" in path.read_text())
            save_and_reopen(browser, path.name, rain_cells)


@pytest.mark.timeout(600)
def test_fresh_notebook_typed_cell_by_cell(notebook_lab):
    require_browser()
    from playwright.sync_api import sync_playwright

    lab = notebook_lab
    reply = requests.post(lab.api("api/contents"), headers=lab.headers(),
                          json={"type": "notebook"}, timeout=10)
    reply.raise_for_status()
    name = reply.json()["path"]
    with sync_playwright() as playwright:
        browser = Browser(playwright, lab, "fresh-notebook")
        page = browser.page
        with steps_of(browser):
            browser.open(name, choose_kernel=True)
            for index, source in enumerate(FRESH_CELLS):
                if index:
                    page.keyboard.press("Escape")
                    page.keyboard.press("b")        # a new cell below
                cell = run_cell(page, index, source)
                if source.startswith("%%rain"):
                    check_rain_cell(browser, cell, index)
                wait_finished(cell)
                check_page_text(browser)
            assert "5500" in page.locator(".jp-Notebook .jp-Cell").nth(3).inner_text()
            browser.screenshot("all-cells-run")
            save_and_reopen(browser, name, 1)
