"""The JupyterLab extension in a real JupyterLab, driven in a real headless Chromium.

A notebook starts a cluster with ``%rain start --governors 2``; the cluster shows up in the
Rain sidebar; a dashboard pane opens docked beside the notebook; a graph runs and its
progress shows in the sidebar and the pane; the card's "Open in JupyterLab" button opens the
panes; "Insert Client code" adds a cell; the cluster is stopped from the sidebar. Screenshots
go to ``test-artifacts/labextension/``.
"""
import json
import os
import shutil
import time

import psutil
import pytest
import requests

from labext_helpers import JupyterServer, wait_gone

CHROMIUM = os.environ.get("RAIN_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "test-artifacts",
                         "labextension")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
TIMEOUT = 30_000    # ms, for one step
#: What Chromium reports when the machine's network changes under it (tests of other
#: modules make and remove network namespaces and bridges): the machine, not the page.
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


def page_problem(text):
    """A console message or failed request worth failing a test for."""
    return NETWORK_CHANGED not in text


def require_browser():
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium ({CHROMIUM})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright")
    if missing:
        message = f"the browser test needs {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs Chromium)")
        pytest.skip(message)


NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "start", "metadata": {},
               "outputs": [], "source": "%load_ext rain_jupyter\n%rain start --governors 2"}],
    "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}

GRAPH = """from rain.client import tasks
with rain_client.new_session("ui-graph") as session:
    sleeps = [tasks.Sleep(b"x" * i, 0.5, name="nap") for i in range(16)]
    joined = tasks.Concat([t.output for t in sleeps], name="join")
    joined.output.keep()
    session.submit()
    session.wait_all()
print("graph done")"""


@pytest.fixture
def lab(environment):
    server = JupyterServer(environment, app="jupyterlab", base_url="/")
    # No news notifications (nothing to fetch from outside in a test).
    settings = os.path.join(server.env["JUPYTERLAB_SETTINGS_DIR"],
                            "@jupyterlab", "apputils-extension")
    os.makedirs(settings, exist_ok=True)
    with open(os.path.join(settings, "notification.jupyterlab-settings"), "w") as f:
        json.dump({"fetchNews": "false", "checkForUpdates": False}, f)
    with open(os.path.join(server.root_dir, "demo.ipynb"), "w") as f:
        json.dump(NOTEBOOK, f)
    yield server
    # Shut the kernels down first (the cluster of the notebook dies with its kernel).
    try:
        for kernel in requests.get(server.api("api/kernels"), headers=server.headers(),
                                   timeout=10).json():
            requests.delete(server.api(f"api/kernels/{kernel['id']}"),
                            headers=server.headers(), timeout=30)
    except requests.RequestException:
        pass
    server.stop()


@pytest.fixture
def artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    os.makedirs(ARTIFACTS)
    return ARTIFACTS


def run_cell(page, index, source=None):
    """Put ``source`` into cell ``index`` (when given) and run it (Ctrl+Enter), again if
    the kernel did not take it."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    editor = cell.locator(".cm-content")
    editor.click()
    if source is not None:
        page.keyboard.press("Control+a")
        page.keyboard.press("Delete")
        page.keyboard.insert_text(source)
    prompt = cell.locator(".jp-InputPrompt")
    for _attempt in range(3):
        editor.click()
        page.keyboard.press("Control+Enter")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(c in prompt.inner_text() for c in "*0123456789"):
                return cell
            time.sleep(0.1)
    raise AssertionError(f"cell {index} did not run")


#: The size of a chart's canvas in its frame, and of the frame's window.
CANVAS_SIZE = """() => {
  const canvases = [];
  const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.children || []) {
      if (child.tagName === "CANVAS") canvases.push(child); else walk(child);
    }
  };
  walk(document.body);
  const boxes = canvases.map((c) => c.getBoundingClientRect()).filter((b) => b.width > 0);
  const biggest = boxes.sort((a, b) => b.width * b.height - a.width * a.height)[0];
  return {width: biggest ? biggest.width : 0, height: biggest ? biggest.height : 0,
          frameWidth: window.innerWidth, frameHeight: window.innerHeight};
}"""


def pane_frame(page, chart):
    return page.locator(f".rain-DashboardPane[data-rain-chart='{chart}'] iframe") \
        .element_handle().content_frame()


def wait_canvas_fills(frame, timeout=TIMEOUT):
    """Wait until the chart's canvas fills its frame (less a small margin) both ways;
    returns the sizes."""
    frame.wait_for_function(
        f"(() => {{ const s = ({CANVAS_SIZE})(); return s.width >= s.frameWidth - 24"
        " && s.height >= s.frameHeight - 24 && s.width > 100 })()", timeout=timeout)
    return frame.evaluate(CANVAS_SIZE)


def started_workdir(environment, server_pid):
    """The working directory (``/tmp/rain-cluster-*``) of the cluster whose server is
    ``server_pid``, as its ``rain start`` record says."""
    folder = os.path.join(environment.runtime_dir, "clusters")
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as f:
            record = json.load(f)
        if record.get("server_pid") == server_pid:
            workdir = record["workdir"]
            assert os.path.basename(workdir).startswith("rain-cluster-"), workdir
            return workdir
    raise AssertionError(f"no cluster record of server {server_pid} in {folder}")


def wait_output(cell, text, timeout=60_000):
    cell.locator(".jp-OutputArea-output", has_text=text).first.wait_for(timeout=timeout)


@pytest.mark.timeout(600)
def test_sidebar_panes_and_stop(lab, artifacts):
    require_browser()
    from playwright.sync_api import sync_playwright

    problems = []
    shot = 0

    def screenshot(page, name):
        nonlocal shot
        shot += 1
        page.screenshot(path=os.path.join(artifacts, f"{shot:02d}-{name}.png"))

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            os.path.join(lab.environment.tmp, "chromium-profile"), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1500, "height": 900})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type == "error" and page_problem(m.text) else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            context.on("response", lambda r: problems.append(
                f"HTTP {r.status}: {r.request.method} {r.url}") if r.status >= 400 else None)
            # A poll cancelled because its pane closed (or the page moved on) is
            # "aborted" by the browser itself; every other failure counts.
            context.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED"
                       or not page_problem(r.failure) else problems.append(f"request failed: {r.method} {r.url}: "
                                            f"{r.failure}"))
            page.goto(f"{lab.url}lab/tree/demo.ipynb?token={lab.token}", timeout=120_000)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(
                timeout=60_000)

            # The sidebar, before any cluster runs.
            page.locator(".jp-SideBar [data-id='rain-sidebar']").click()
            sidebar = page.locator("#rain-sidebar")
            sidebar.locator(".rain-Sidebar-status",
                            has_text="No Rain cluster").wait_for()
            screenshot(page, "sidebar-empty")

            # %rain start in the notebook: the cluster appears in the sidebar.
            start_cell = run_cell(page, 0)
            wait_output(start_cell, "Rain cluster")
            cluster = sidebar.locator(".rain-Cluster")
            cluster.wait_for()
            cluster.locator(".rain-Governor").nth(1).wait_for()
            assert cluster.locator(".rain-Governor").count() == 2
            pid = int(cluster.get_attribute("data-pid"))
            address = cluster.get_attribute("data-address")
            assert address in start_cell.inner_text()
            server = psutil.Process(pid)
            governors = [c for c in psutil.process_iter(["cmdline"])
                         if "governor" in (c.info["cmdline"] or [])
                         and address in (c.info["cmdline"] or [])]
            assert len(governors) == 2
            screenshot(page, "cluster-in-sidebar")

            # A dashboard pane docked beside the notebook.
            cluster.locator(".rain-Cluster-chartSelect").select_option("sessions")
            cluster.locator(".rain-Cluster-openChart").click()
            pane = page.locator(".rain-DashboardPane")
            pane.wait_for()
            notebook_box = page.locator(".jp-NotebookPanel").bounding_box()
            pane_box = pane.bounding_box()
            assert pane_box["x"] >= notebook_box["x"] + notebook_box["width"] - 5, \
                (notebook_box, pane_box)
            frame = page.frame_locator(".rain-DashboardPane[data-rain-chart='sessions'] iframe")
            frame.locator("body[data-ready='1']").wait_for()
            frame.locator(".rain-chart[data-chart='sessions'][data-state='ready']").wait_for()
            screenshot(page, "dashboard-pane")

            # The cluster is labelled with the notebook that started it, and its
            # governors with their whole addresses (not clipped).
            assert cluster.get_attribute("data-origin") == "notebook demo.ipynb"
            assert "started by notebook demo.ipynb" in cluster.inner_text()
            for governor_cell in cluster.locator(".rain-Governor td:first-child").all():
                text = governor_cell.inner_text()
                assert text.startswith("127.0.0.1:") and text.split(":")[1].isdigit(), text
                assert governor_cell.evaluate("(e) => e.scrollWidth <= e.clientWidth")
            # One chart list per cluster: its own charts and the latest session's.
            options = cluster.locator(".rain-Cluster-chartSelect option").all_inner_texts()
            assert "Task stream (latest session)" in options and len(options) == 10, options

            # Tiled charts: the CPU chart below the sessions pane fills its pane; a chart
            # split to its right halves it, and the CPU chart's canvas follows.
            cluster.locator(".rain-Cluster-chartSelect").select_option("cpu")
            cluster.locator(".rain-Cluster-openBelow").click()
            cpu_pane = page.locator(".rain-DashboardPane[data-rain-chart='cpu']")
            cpu_pane.wait_for()
            sessions_box = page.locator(
                ".rain-DashboardPane[data-rain-chart='sessions']").bounding_box()
            cpu_box = cpu_pane.bounding_box()
            assert cpu_box["y"] >= sessions_box["y"] + sessions_box["height"] - 5, \
                (sessions_box, cpu_box)
            assert page.locator(".rain-DashboardPane[data-rain-chart='sessions']").is_visible()
            cpu_frame = pane_frame(page, "cpu")
            cpu_frame.wait_for_selector("body[data-ready='1']")
            assert cpu_frame.locator("header").count() == 0      # no navigation bar
            wide = wait_canvas_fills(cpu_frame)
            cluster.locator(".rain-Cluster-chartSelect").select_option("memory")
            cluster.locator(".rain-Cluster-openRight").click()
            page.locator(".rain-DashboardPane[data-rain-chart='memory']").wait_for()
            cpu_frame.wait_for_function(
                f"({CANVAS_SIZE})().width < {wide['width']} * 0.75")
            narrow = wait_canvas_fills(cpu_frame)
            assert narrow["frameWidth"] < wide["frameWidth"] * 0.75, (wide, narrow)
            memory_box = page.locator(
                ".rain-DashboardPane[data-rain-chart='memory']").bounding_box()
            assert memory_box["x"] >= cpu_pane.bounding_box()["x"] + narrow["width"] - 5
            wait_canvas_fills(pane_frame(page, "memory"))
            screenshot(page, "tiled-panes")

            # The chart list is the same element through refreshes (a list the user
            # opened stays open): mark it, focus it, and let the sidebar refresh with
            # changes while a graph runs.
            chart_select = cluster.locator(".rain-Cluster-chartSelect")
            chart_select.evaluate("(e) => { e.dataset.mark = 'kept'; }")

            # A graph: its progress in the sidebar while it runs, and in the pane.
            page.locator(".jp-NotebookPanel .jp-Notebook").first.click(
                position={"x": 300, "y": 10})
            page.keyboard.press("Escape")
            page.keyboard.press("b")            # a new cell below the first one
            graph_cell = run_cell(page, 1, GRAPH)
            running = sidebar.locator(".rain-Session[data-status='open']")
            running.wait_for()
            refreshes = int(sidebar.get_attribute("data-refreshes"))
            chart_select.focus()
            page.wait_for_function(
                "Number(document.querySelector('#rain-sidebar').dataset.refreshes) >= "
                f"{refreshes + 2}")
            assert chart_select.evaluate(
                "(e) => e.dataset.mark === 'kept' && document.activeElement === e")
            screenshot(page, "graph-running")
            wait_output(graph_cell, "graph done")
            done = sidebar.locator(".rain-Session[data-status='closed']",
                                   has_text="ui-graph")
            done.wait_for()
            assert "17/17 tasks" in done.inner_text()
            assert float(done.get_attribute("data-progress")) == 1.0
            frame.get_by_text("ui-graph").first.wait_for()
            screenshot(page, "graph-done")

            # The cluster card's "Open in JupyterLab" opens the default panes.
            start_cell.locator("a.rain-open-in-lab").click()
            page.locator(".rain-DashboardPane[data-rain-chart='governors']").wait_for()
            assert page.locator(".rain-DashboardPane").count() == 4
            assert len(context.pages) == 1, "the link opened a browser tab"
            page.frame_locator(".rain-DashboardPane[data-rain-chart='governors'] iframe") \
                .locator(".rain-chart[data-chart='governors'][data-state='ready']").wait_for()
            screenshot(page, "open-in-lab")

            # "Insert Client code" adds a cell connecting to this cluster.
            cells_before = page.locator(".jp-Notebook .jp-Cell").count()
            page.locator(".jp-NotebookPanel .jp-Notebook").first.click(
                position={"x": 300, "y": 10})
            cluster.locator(".rain-Cluster-insert").click()
            page.wait_for_function(
                f"document.querySelectorAll('.jp-Notebook .jp-Cell').length > {cells_before}")
            host, port = address.rsplit(":", 1)
            assert page.locator(".jp-Notebook .jp-Cell .cm-content",
                                has_text=f'Client("{host}", {port})').count() == 1
            screenshot(page, "client-code")

            # Stop from the sidebar, after a confirmation.
            cluster.locator(".rain-Cluster-stop").click()
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for()
            assert "Stop the Rain cluster" in dialog.inner_text()
            screenshot(page, "stop-confirmation")
            dialog.locator("button.jp-mod-warn").click()
            sidebar.locator(".rain-Cluster").wait_for(state="detached")
            sidebar.locator(".rain-Sidebar-status", has_text="No Rain cluster").wait_for()
            assert wait_gone([server] + governors) == []
            screenshot(page, "stopped")

            # No cluster runs: the sidebar offers to start one, and does.
            starter = sidebar.locator(".rain-Starter")
            starter.wait_for()
            starter.locator("input[name='governors']").fill("2")
            starter.locator("input[name='cpus']").fill("1")
            screenshot(page, "start-form")
            starter.locator(".rain-Starter-start").click()
            started = sidebar.locator(".rain-Cluster")
            started.wait_for(timeout=120_000)
            started.locator(".rain-Governor").nth(1).wait_for()
            # (labelled by its record, which rain start writes once everything runs)
            page.wait_for_function("document.querySelector('#rain-sidebar .rain-Cluster')"
                                   ".dataset.origin === 'JupyterLab'", timeout=60_000)
            assert starter.is_hidden()
            new_pid = int(started.get_attribute("data-pid"))
            new_address = started.get_attribute("data-address")
            new_processes = [psutil.Process(new_pid)] + [
                c for c in psutil.process_iter(["cmdline"])
                if "governor" in (c.info["cmdline"] or [])
                and new_address in (c.info["cmdline"] or [])]
            assert len(new_processes) == 3
            screenshot(page, "started-from-sidebar")
            workdir = started_workdir(lab.environment, new_pid)
            started.locator(".rain-Cluster-stop").click()
            page.locator(".jp-Dialog button.jp-mod-warn").click()
            sidebar.locator(".rain-Cluster").wait_for(state="detached")
            assert wait_gone(new_processes) == []
            # rain stop keeps the cluster's logs by design; the test removes them
            assert os.path.isdir(workdir)
            shutil.rmtree(workdir)
        except Exception:
            try:
                screenshot(page, "failure")
            except Exception:
                pass
            raise
        finally:
            context.close()
    time.sleep(0.5)
    assert not problems, "browser console:\n" + "\n".join(problems)
