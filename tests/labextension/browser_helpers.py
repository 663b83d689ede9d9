"""Helpers of the browser tests of notebooks: a Chromium page on a JupyterLab or a
Jupyter Notebook 7 server (``JupyterServer``), with the console watched, numbered
screenshots, a watcher that records live charts as the page draws them, and the checks
of ``%%rain`` outputs (live charts, final picture, static picture after reopening).
"""
import contextlib
import json
import os
import pathlib
import re
import shutil
import time

import requests

from labext_helpers import JupyterServer
from test_ui import CHROMIUM, CHROMIUM_FLAGS, NOTEBOOK, page_problem, run_cell

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


# Installed in every page before its own scripts: every 100 ms, records (by cell index)
# the ``%%rain`` outputs whose live widget has at least two charts with pixels on them,
# so a test knows the charts were drawn while running even if the run ended between
# two looks of the test, and without slowing the page or the product down.
LIVE_WATCHER = """(() => {
  window.__rainLive = new Set();
  const drawn = (canvas) => {
    if (!canvas.width || !canvas.height || !canvas.getClientRects().length) return false;
    const context = canvas.getContext('2d');
    if (!context) return false;
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4 * 11) {
      if (data[i + 3] > 0 && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) {
        if (++count > 5) return true;
      }
    }
    return false;
  };
  const canvases = (node, found) => {
    if (node.tagName === 'CANVAS') found.push(node);
    if (node.shadowRoot) canvases(node.shadowRoot, found);
    for (const child of node.children || []) canvases(child, found);
    return found;
  };
  // the graph labels of the Bokeh documents drawn in an element (-1: none found)
  const labels = (element) => {
    let count = -1;
    for (const view of (window.Bokeh && window.Bokeh.index) || []) {
      if (!element.contains(view.el)) continue;
      const model = view.model.document.get_model_by_name('rain-graph-labels');
      if (model) count = Math.max(count, model.data_source.data.text.length);
    }
    return count;
  };
  window.__rainLiveLabels = {};
  setInterval(() => {
    const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
    cells.forEach((cell, index) => {
      for (const output of cell.querySelectorAll('.jp-OutputArea-output')) {
        const live = output.querySelector('.widget-vbox');
        if (!live || live.closest('.rain-final')) continue;
        if (!window.__rainLive.has(index) && canvases(live, []).filter(drawn).length >= 2) {
          window.__rainLive.add(index);
        }
        const count = labels(live);
        window.__rainLiveLabels[index] = Math.max(window.__rainLiveLabels[index] ?? -1,
                                                  count);
      }
    });
  }, 100);
})();"""


def live_labels(page, index):
    """The most graph labels the watcher saw in the live chart of cell ``index``."""
    return page.evaluate(f"window.__rainLiveLabels[{index}] ?? -1")


def live_seen(page, index):
    """Whether the watcher saw live charts drawn in the output of cell ``index``."""
    return page.evaluate(f"window.__rainLive && window.__rainLive.has({index})")


def quiet_server(environment, app="jupyterlab"):
    """A Jupyter server of ``app`` that asks nobody about news or updates."""
    server = JupyterServer(environment, app=app, base_url="/")
    settings = os.path.join(server.env["JUPYTERLAB_SETTINGS_DIR"], "@jupyterlab",
                            "apputils-extension")
    os.makedirs(settings, exist_ok=True)
    with open(os.path.join(settings, "notification.jupyterlab-settings"), "w") as f:
        json.dump({"fetchNews": "false", "checkForUpdates": False}, f)
    return server


def write_notebook(server, name, cells):
    """A notebook of unrun code cells in the server's root."""
    notebook = dict(NOTEBOOK, cells=[
        {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
         "outputs": [], "source": source} for i, source in enumerate(cells)])
    with open(os.path.join(server.root_dir, name), "w") as f:
        json.dump(notebook, f)


def start_lab(environment):
    """A JupyterLab serving copies of the demo notebooks."""
    server = quiet_server(environment)
    for path in NOTEBOOKS:
        shutil.copy(path, server.root_dir)
    return server


@contextlib.contextmanager
def steps_of(browser):
    """A browser test's steps: a screenshot of the page when one fails, the browser closed
    after them, and then no console problem allowed."""
    try:
        yield browser
    except Exception:
        try:
            browser.screenshot("failure")
        except Exception:
            pass
        raise
    finally:
        browser.close()
    assert not browser.problems, "browser console:\n" + "\n".join(browser.problems)


def shut_down_kernels(server):
    try:
        for kernel in requests.get(server.api("api/kernels"), headers=server.headers(),
                                   timeout=10).json():
            requests.delete(server.api(f"api/kernels/{kernel['id']}"),
                            headers=server.headers(), timeout=60)
    except requests.RequestException:
        pass


class Browser:
    """One Chromium page on the lab (``app="lab"``) or on Jupyter Notebook 7
    (``app="notebook"``), with the console watched, the live charts watched
    (``LIVE_WATCHER``) and numbered screenshots."""

    def __init__(self, playwright, lab, name, app="lab", ignore=()):
        self.lab = lab
        self.app = app
        self.ignore = ignore        # (message part, stack part) of page errors not ours
        self.folder = ARTIFACTS / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.shots = 0
        self.reports = 0            # report pages opened from links (check_report_link)
        self.problems = []
        self.context = playwright.chromium.launch_persistent_context(
            os.path.join(lab.environment.tmp, f"chromium-{name}"), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        self.context.add_init_script(LIVE_WATCHER)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.set_default_timeout(STEP)
        self.page.on("console", self._console)
        self.page.on("pageerror", self._page_error)

    def _page_error(self, error):
        stack = error.stack or ""
        if any(text in error.message and where in stack for text, where in self.ignore):
            return
        self.problems.append(f"page error: {error.message}\n{stack[:600]}")

    def _console(self, message):
        if message.type == "error" and page_problem(message.text):
            self.problems.append(f"console error: {message.text}")

    def screenshot(self, step):
        self.shots += 1
        self.page.screenshot(path=str(self.folder / f"{self.shots:02d}-{step}.png"))

    def open(self, name, choose_kernel=False):
        if self.app == "notebook":
            self.page.goto(f"{self.lab.url}notebooks/{name}?token={self.lab.token}",
                           timeout=120_000)
        else:
            # a workspace of its own: only this notebook open, whatever ran before
            self.page.goto(f"{self.lab.url}lab/workspaces/{self.folder.name}/tree/{name}"
                           f"?reset&token={self.lab.token}", timeout=120_000)
        self.page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        if choose_kernel:       # a new notebook: the front end asks, the default is Python 3
            self.page.locator(".jp-Dialog", has_text="Select Kernel").wait_for()
            self.screenshot("select-kernel")
            self.page.locator(".jp-Dialog button.jp-mod-accept").click()
        self.wait_idle()

    def wait_idle(self):
        """Until the kernel is connected and idle, as the front end shows it."""
        if self.app == "notebook":
            self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first \
                .wait_for(state="attached", timeout=60_000)
        else:
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


def check_rain_cell(browser, cell, index, expect_live=True, expect_building=False):
    """The charts of the ``%%rain`` output of cell ``index`` while it runs (when
    ``expect_live``, the page must have drawn them live, as ``LIVE_WATCHER`` saw; when
    ``expect_building``, the view shows already while the cell builds its graph) and
    after its session ended. Returns the final picture."""
    from playwright.sync_api import Error as PlaywrightError
    page = browser.page
    label = f"cell{index}"
    output = rain_output(cell)
    output.wait_for(timeout=60_000)
    try:
        output.scroll_into_view_if_needed(timeout=5_000)
    except PlaywrightError:     # the live view was just replaced by the final picture
        pass
    # shown while the cell still builds or submits its graph, with its progress
    building = re.search(r"\[\*\]", cell.locator(".jp-InputPrompt").inner_text()) and \
        output.locator(".widget-vbox", has_text=re.compile("building|submitting")).count()
    if expect_building:
        assert building, f"{label}: the view did not show while the cell ran"
        browser.screenshot(f"{label}-building")
    shot = False
    deadline = time.monotonic() + CELL
    while time.monotonic() < deadline:
        if output.locator(".rain-final").count():
            break
        if not shot and live_seen(page, index):
            shot = True
            try:
                output.scroll_into_view_if_needed(timeout=5_000)
                browser.screenshot(f"{label}-live")
            except PlaywrightError:     # replaced by the final picture meanwhile
                pass
        time.sleep(0.3)
    else:
        raise AssertionError(f"{label}: the session did not end in {CELL} s")
    assert live_seen(page, index) or not expect_live, \
        f"{label}: the page drew no live chart while the session ran"
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
    return final


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
    # from the file: the page may still be attaching cells while the first ones run
    count = len(json.loads((pathlib.Path(browser.lab.root_dir) / name).read_text())["cells"])
    rain_cells = 0
    for index in range(count):
        cell = cells.nth(index)
        cell.wait_for(state="attached", timeout=60_000)
        if "jp-CodeCell" not in (cell.get_attribute("class") or ""):
            continue
        source = cell.locator(".cm-content").inner_text()
        run_cell(page, index)
        if source.startswith("%%rain"):
            rain_cells += 1
            check_rain_cell(browser, cell, index)
        wait_finished(cell)
        check_page_text(browser)
        if cell.locator("a.rain-report-link").count():
            check_report_link(browser, cell)
    browser.screenshot("all-cells-run")
    return rain_cells


def check_report_link(browser, cell):
    """The link to a ``rain report`` page opens it in a new tab, through the server
    extension, with its charts drawn."""
    link = cell.locator("a.rain-report-link")
    assert "/rain/report/" in link.get_attribute("href")
    with browser.page.expect_popup() as opened:
        link.click()
    report = opened.value
    report.wait_for_load_state()
    assert "/rain/report/" in report.url
    deadline = time.monotonic() + 60
    drawn = []
    while len(drawn) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        drawn = drawn_canvases(report.locator("body"))
    report.screenshot(path=str(browser.folder / f"{browser.shots + 1:02d}-report-tab.png"))
    browser.shots += 1
    assert len(drawn) >= 2, f"the report's charts are not drawn: {drawn}"
    report.close()
    browser.reports += 1


def save_and_reopen(browser, name, rain_cells):
    """Save, shut the kernel down, reload: the static pictures show; the file holds the
    final pictures, no widget and no token."""
    page = browser.page
    lab = browser.lab
    path = pathlib.Path(lab.root_dir) / name
    before = path.stat().st_mtime_ns
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    if browser.app == "lab":
        page.locator(".jp-StatusBar-TextItem", has_text="Saving completed").first.wait_for()
    # The server writes the file in place: until the write is done, it can be empty or
    # cut short.
    deadline = time.monotonic() + 30
    notebook = None
    while notebook is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if path.stat().st_mtime_ns != before:
            saved = path.read_text()
            try:
                notebook = json.loads(saved)
            except json.JSONDecodeError:
                pass
    assert notebook is not None, f"{name} was not saved within 30 s"
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
    page.reload(timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    browser.wait_idle()
    statics = page.locator(".rain-final .rain-final-static")
    # The reopened notebook renders its outputs after its first cell: wait for them.
    deadline = time.monotonic() + 60
    while statics.count() < rain_cells and time.monotonic() < deadline:
        page.wait_for_timeout(200)
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


