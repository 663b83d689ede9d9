"""Every demo notebook, and a fresh notebook typed cell by cell, run in a real JupyterLab
driven by headless Chromium, as a user would run them.

For every ``%%rain`` output: the Bokeh charts are drawn (canvases present, with pixels on
them) while the session runs and after it ended; no output says "javascript error" or
"Error displaying widget"; the browser console stays free of errors. Then the notebook is
saved, its kernel shut down and the page reloaded: each ``%%rain`` output shows the static
picture of the final state, and the saved file holds no widget and no token.
Screenshots of each step go to ``test-artifacts/notebooks/<notebook>/``.
"""
import json
import os
import pathlib
import re
import shutil
import time

import pytest
import requests

from labext_helpers import JupyterServer
from test_ui import CHROMIUM, CHROMIUM_FLAGS, require_browser, run_cell

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
STEP = 30_000           # ms, for one step of the UI
CELL = 300              # s, for one cell to finish (notebook 04 runs 50,251 tasks)
BAD_TEXT = ("javascript error", "Error displaying widget", "model not found",
            "No renderer could be found")

# Pixels drawn on each canvas under an element, shadow roots included (Bokeh draws in
# its views' shadow DOM): the number of sampled pixels that are neither transparent nor
# near-white, -1 for a canvas that cannot be read.
DRAWN_PIXELS = """(element) => {
  const canvases = [];
  const walk = (node) => {
    if (node.tagName === 'CANVAS') canvases.push(node);
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.children || []) walk(child);
  };
  walk(element);
  return canvases.filter((c) => c.offsetParent !== null || c.getClientRects().length)
    .map((canvas) => {
      if (!canvas.width || !canvas.height) return 0;
      const context = canvas.getContext('2d');
      if (!context) return -1;
      const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let drawn = 0;
      for (let i = 0; i < data.length; i += 4 * 11) {
        if (data[i + 3] > 0 && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) {
          drawn++;
        }
      }
      return drawn;
    });
}"""

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
    server = JupyterServer(environment, app="jupyterlab", base_url="/")
    settings = os.path.join(server.env["JUPYTERLAB_SETTINGS_DIR"], "@jupyterlab",
                            "apputils-extension")
    os.makedirs(settings, exist_ok=True)
    with open(os.path.join(settings, "notification.jupyterlab-settings"), "w") as f:
        json.dump({"fetchNews": "false", "checkForUpdates": False}, f)
    for path in NOTEBOOKS:
        shutil.copy(path, server.root_dir)
    yield server
    shut_down_kernels(server)
    server.stop()


def shut_down_kernels(server):
    try:
        for kernel in requests.get(server.api("api/kernels"), headers=server.headers(),
                                   timeout=10).json():
            requests.delete(server.api(f"api/kernels/{kernel['id']}"),
                            headers=server.headers(), timeout=60)
    except requests.RequestException:
        pass


class Browser:
    """One Chromium page on the lab, with the console watched and numbered screenshots."""

    def __init__(self, playwright, lab, name):
        self.lab = lab
        self.folder = ARTIFACTS / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.shots = 0
        self.problems = []
        self.context = playwright.chromium.launch_persistent_context(
            os.path.join(lab.environment.tmp, f"chromium-{name}"), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.set_default_timeout(STEP)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def _console(self, message):
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def screenshot(self, step):
        self.shots += 1
        self.page.screenshot(path=str(self.folder / f"{self.shots:02d}-{step}.png"))

    def open(self, name, choose_kernel=False):
        # a workspace of its own: only this notebook open, whatever ran before
        self.page.goto(f"{self.lab.url}lab/workspaces/{self.folder.name}/tree/{name}"
                       f"?reset&token={self.lab.token}", timeout=120_000)
        self.page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        if choose_kernel:       # a new notebook: JupyterLab asks, the default is Python 3
            self.page.locator(".jp-Dialog", has_text="Select Kernel").wait_for()
            self.screenshot("select-kernel")
            self.page.locator(".jp-Dialog button.jp-mod-accept").click()
        self.page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(
            timeout=60_000)

    def close(self):
        self.context.close()


def wait_finished(cell, timeout=CELL):
    """Until the cell's prompt shows its execution number (not ``*``)."""
    prompt = cell.locator(".jp-InputPrompt")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r"\[\d+\]", prompt.inner_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f"the cell did not finish in {timeout} s: {cell.inner_text()[:500]}")


def drawn_canvases(locator):
    return [n for n in locator.evaluate(DRAWN_PIXELS) if n > 5]


def rain_output(cell):
    return cell.locator(".jp-OutputArea-output").filter(
        has=cell.page.locator(".widget-vbox, .rain-final")).first


def check_rain_cell(browser, cell, label, expect_live, expect_building=False):
    """The charts of a ``%%rain`` output while it runs (when ``expect_live``, it must be
    seen running; when ``expect_building``, already while the cell builds its graph) and
    after its session ended."""
    page = browser.page
    output = rain_output(cell)
    output.wait_for(timeout=60_000)
    output.scroll_into_view_if_needed()
    # shown while the cell still builds or submits its graph, with its progress
    building = re.search(r"\[\*\]", cell.locator(".jp-InputPrompt").inner_text()) and \
        output.locator(".widget-vbox", has_text=re.compile("building|submitting")).count()
    if expect_building:
        assert building, f"{label}: the view did not show while the cell ran"
        browser.screenshot(f"{label}-building")
    live_seen = False
    deadline = time.monotonic() + CELL
    while time.monotonic() < deadline:
        if output.locator(".rain-final").count():
            break
        widget = output.locator(".widget-vbox")
        if widget.count() and len(drawn_canvases(widget.first)) >= 2:
            if not live_seen:
                live_seen = True
                output.scroll_into_view_if_needed()
                browser.screenshot(f"{label}-live")
        time.sleep(0.3)
    else:
        raise AssertionError(f"{label}: the session did not end in {CELL} s")
    assert live_seen or not expect_live, f"{label}: no live chart was seen while running"
    final = output.locator(".rain-final")
    final.locator(".rain-final-live").wait_for(state="visible")
    assert not final.locator(".rain-final-static").is_visible()
    drawn = []
    deadline = time.monotonic() + 20
    while len(drawn) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        drawn = drawn_canvases(final)
    assert len(drawn) >= 2, f"{label}: the final charts are not drawn: {drawn}"
    final.scroll_into_view_if_needed()
    browser.screenshot(f"{label}-final")
    return live_seen


def check_page_text(browser):
    text = browser.page.locator(".jp-Notebook").inner_text()
    bad = [phrase for phrase in BAD_TEXT if phrase.lower() in text.lower()]
    assert not bad, f"the notebook says {bad}"
    assert browser.page.locator(".jp-RenderedJavaScript .jp-mod-error, "
                                ".jp-OutputArea-output .jupyter-widgets.jp-mod-error"
                                ).count() == 0


def run_notebook(browser, name):
    """Run every code cell in order; check each ``%%rain`` output. Returns their count."""
    page = browser.page
    cells = page.locator(".jp-Notebook .jp-Cell")
    count = cells.count()
    rain_cells = 0
    for index in range(count):
        cell = cells.nth(index)
        if "jp-CodeCell" not in (cell.get_attribute("class") or ""):
            continue
        source = cell.locator(".cm-content").inner_text()
        run_cell(page, index)
        if source.startswith("%%rain"):
            rain_cells += 1
            # A demo's run may end before the page draws it on a fast machine: the live
            # view is screenshotted when seen here, and required in the typed notebook,
            # whose tasks take long enough to watch.
            check_rain_cell(browser, cell, f"cell{index}", expect_live=False,
                            expect_building=False)
        wait_finished(cell)
        check_page_text(browser)
    browser.screenshot("all-cells-run")
    return rain_cells


def save_and_reopen(browser, name, rain_cells):
    """Save, shut the kernel down, reload: the static pictures show; the file holds the
    final pictures, no widget and no token."""
    page = browser.page
    lab = browser.lab
    path = pathlib.Path(lab.root_dir) / name
    before = path.stat().st_mtime_ns
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    page.locator(".jp-StatusBar-TextItem", has_text="Saving completed").first.wait_for()
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.2)
    saved = path.read_text()
    notebook = json.loads(saved)
    finals = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", ()):
            data = output.get("data", {})
            assert "application/vnd.jupyter.widget-view+json" not in data, \
                f"a widget was saved: {cell['source']}"
            assert "application/vnd.bokehjs_load.v0+json" not in data
            html = data.get("text/html", "")
            if "rain-final" in ("".join(html) if isinstance(html, list) else html):
                finals.append(data)
    assert len(finals) == rain_cells, f"{len(finals)} final pictures for {rain_cells} cells"
    # dashboard links go through Jupyter's proxy: no cluster token in the file
    assert "token=" not in saved
    shut_down_kernels(lab)
    page.reload()
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(
        timeout=60_000)
    statics = page.locator(".rain-final .rain-final-static")
    assert statics.count() == rain_cells
    for index in range(rain_cells):
        static = statics.nth(index)
        static.scroll_into_view_if_needed()
        assert static.is_visible()
        assert static.locator("svg circle").count() > 0
        assert static.locator(".rain-progress").count() == 1
    if rain_cells:
        statics.first.scroll_into_view_if_needed()
    check_page_text(browser)
    browser.screenshot("reopened")
    return saved


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_browser(notebook_lab, path):
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = Browser(playwright, notebook_lab, path.stem)
        try:
            browser.open(path.name)
            browser.screenshot("opened")
            rain_cells = run_notebook(browser, path.name)
            save_and_reopen(browser, path.name, rain_cells)
        except Exception:
            try:
                browser.screenshot("failure")
            except Exception:
                pass
            raise
        finally:
            browser.close()
    assert not browser.problems, "browser console:\n" + "\n".join(browser.problems)


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
        try:
            browser.open(name, choose_kernel=True)
            for index, source in enumerate(FRESH_CELLS):
                if index:
                    page.keyboard.press("Escape")
                    page.keyboard.press("b")        # a new cell below
                cell = run_cell(page, index, source)
                if source.startswith("%%rain"):
                    check_rain_cell(browser, cell, f"cell{index}", expect_live=True)
                wait_finished(cell)
                check_page_text(browser)
            assert "5500" in page.locator(".jp-Notebook .jp-Cell").nth(3).inner_text()
            browser.screenshot("all-cells-run")
            save_and_reopen(browser, name, 1)
        except Exception:
            try:
                browser.screenshot("failure")
            except Exception:
                pass
            raise
        finally:
            browser.close()
    assert not browser.problems, "browser console:\n" + "\n".join(browser.problems)
