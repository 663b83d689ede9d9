"""The numbers of ``%%rain`` outputs, the cluster card and the sidebar, read where the
user reads them (JupyterLab in headless Chromium, and the kernel's output of
``%rain status``):

- the elapsed time stops when the work is done, not when the session is closed later;
- running a ``%%rain NAME`` cell again starts a fresh session;
- in a failed session the tasks that will never run are counted and coloured as
  cancelled, and the bars colour only the failed share red (the finished share green);
- the cluster card of ``%rain status`` and the sidebar agree on the sessions that are
  running (a session whose tasks all ended is not counted as running).

Screenshots go to ``test-artifacts/notebooks/numbers/``.
"""
import re
import time

import pytest

from browser_helpers import (Browser, check_rain_cell, quiet_server, shut_down_kernels, steps_of,
                             wait_finished, write_notebook)
from test_ui import require_browser, run_cell, wait_output

CELLS = [
    "%load_ext rain_jupyter\n%rain start --governors 2 --cpus 2",
    "%%rain numbers\nfrom rain.client import blob, remote, tasks\n"
    "naps = [tasks.Sleep(blob(str(i)), 3, name='nap') for i in range(4)]",
    "import time\ntime.sleep(5)\nnumbers = rain_session\nnumbers.close()\nnumbers",
    "%%rain broken\n"
    "@remote\ndef boom(ctx, data):\n    raise ValueError('no luck')\n"
    "ok = tasks.Sleep(blob('o'), 0, name='ok')\n"
    "first = boom(ok.output, name='boom')\n"
    "slow = tasks.Sleep(blob('s'), 60, name='slow')\n"
    "after = [tasks.Sleep(first.output, 0, name='after') for i in range(3)]",
    "%%rain done\nquick = tasks.Sleep(blob('q'), 0, name='quick')",
    "%%rain open\nlong = tasks.Sleep(blob('z'), 120, name='long')",
    "%rain status",
    "%rain stop",
]
RED, GREEN, AMBER = "rgb(224, 68, 62)", "rgb(76, 175, 80)", "rgb(230, 162, 60)"


@pytest.fixture(scope="module")
def numbers_lab(environment):
    server = quiet_server(environment)
    write_notebook(server, "numbers.ipynb", CELLS)
    yield server
    shut_down_kernels(server)
    server.stop()


def seconds(text):
    """``"1.2 s"``, ``"850 ms"`` or ``"2 min 5 s"`` as seconds."""
    match = re.fullmatch(r"(?:(\d+) min )?([\d.]+) (ms|s)", text.strip())
    assert match, text
    value = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    return value + 60 * int(match.group(1) or 0)


def session_title(final):
    return re.search(r"Session \d+ “\w+”", final.inner_text()).group(0)


def shares(locator):
    """``{state: background colour}`` of the shares of a stacked bar."""
    return locator.evaluate("""(bar) => Object.fromEntries(
        [...bar.querySelectorAll('[data-state]')].map(
            (e) => [e.dataset.state, getComputedStyle(e).backgroundColor]))""")


@pytest.mark.timeout(600)
def test_numbers_agree_and_can_be_trusted(numbers_lab):
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = Browser(playwright, numbers_lab, "numbers")
        page = browser.page
        with steps_of(browser):
            browser.open("numbers.ipynb")
            page.locator(".jp-SideBar [data-id='rain-sidebar']").click()
            sidebar = page.locator("#rain-sidebar")
            wait_output(run_cell(page, 0), "Rain cluster")

            # The same %%rain cell twice: a fresh session, not 8 tasks in the old one.
            cell = run_cell(page, 1)
            final = check_rain_cell(browser, cell, 1, expect_live=False)
            first = session_title(final)
            wait_finished(cell)
            old = final.element_handle()
            cell = run_cell(page, 1)
            old.wait_for_element_state("hidden")
            final = check_rain_cell(browser, cell, 1, expect_live=False)
            wait_finished(cell)
            second = session_title(final)
            assert second != first and second.endswith("“numbers”")
            assert "4/4 finished" in final.inner_text()
            assert "Adding to the open session" not in cell.inner_text()
            elapsed = final.locator(".rain-final-live .rain-elapsed").inner_text()

            # Closed 5 s after its work ended: its time is still that of the work.
            cell = run_cell(page, 2)
            wait_finished(cell)
            card = cell.locator(".rain-progress .rain-elapsed")
            # (equal to what it showed when the work ended, before the 5 s wait)
            assert card.inner_text() == elapsed and seconds(elapsed) >= 3, \
                (card.inner_text(), elapsed)
            browser.screenshot("elapsed-after-close")

            # A failed run: what will never run is cancelled, the failed share is red.
            cell = run_cell(page, 3)
            final = check_rain_cell(browser, cell, 3, expect_live=False)
            wait_finished(cell)
            header = final.locator(".rain-final-live").inner_text()
            assert "1/6 finished" in header and "1 failed" in header, header
            assert "4 cancelled" in header and "waiting" not in header, header
            # its error names the cell's line, as IPython would, not the executor's file
            assert re.search(r"Cell In \[\d+\], line 4, in boom", header), header
            assert "<dynamic-code>" not in header, header
            bar = final.locator(".rain-final-live [data-state]").first.locator("..")
            assert shares(bar) == {"finished": GREEN, "failed": RED, "cancelled": AMBER}
            row = sidebar.locator(".rain-Session", has_text="broken")
            row.wait_for()
            assert "1 failed, 4 cancelled" in row.inner_text(), row.inner_text()
            # (JupyterLab's error and success colours)
            assert shares(row.locator(".rain-Meter")) == {
                "finished": "rgb(56, 142, 60)", "failed": "rgb(211, 47, 47)",
                "cancelled": AMBER}
            browser.screenshot("failed-run")

            # One session done but open, one running: the card and the sidebar agree.
            cell = run_cell(page, 4)
            check_rain_cell(browser, cell, 4, expect_live=False)
            wait_finished(cell)
            cell = run_cell(page, 5)
            wait_finished(cell)
            cell.locator(".widget-vbox", has_text="1 running").first.wait_for(
                timeout=60_000)
            cell = run_cell(page, 6)
            wait_finished(cell)
            card = cell.locator(".rain-cluster-sessions").inner_text()
            assert card == "Sessions: 1 running, 5 in all", card
            caption = sidebar.locator(".rain-Sessions-caption")
            deadline = time.monotonic() + 30
            while caption.inner_text() != card and time.monotonic() < deadline:
                time.sleep(0.3)
            assert caption.inner_text() == card
            assert sidebar.locator(".rain-Session", has_text="done").first.get_attribute(
                "data-shown") == "done"
            browser.screenshot("status-and-sidebar")
            wait_output(run_cell(page, 7), "Stopped the Rain cluster")
