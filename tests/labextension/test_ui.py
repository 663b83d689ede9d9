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


def wait_output(cell, text, timeout=60_000):
    cell.locator(".jp-OutputArea-output", has_text=text).first.wait_for(timeout=timeout)


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
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            context.on("response", lambda r: problems.append(
                f"HTTP {r.status}: {r.request.method} {r.url}") if r.status >= 400 else None)
            # A poll cancelled because its pane closed (or the page moved on) is
            # "aborted" by the browser itself; every other failure counts.
            context.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED"
                       else problems.append(f"request failed: {r.method} {r.url}: "
                                            f"{r.failure}"))
            page.goto(f"{lab.url}lab/tree/demo.ipynb?token={lab.token}")
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
            frame = page.frame_locator(".rain-DashboardPane iframe")
            frame.locator("body[data-ready='1']").wait_for()
            frame.locator(".rain-chart[data-chart='sessions'][data-state='ready']").wait_for()
            screenshot(page, "dashboard-pane")

            # A graph: its progress in the sidebar while it runs, and in the pane.
            page.locator(".jp-NotebookPanel .jp-Notebook").first.click(
                position={"x": 300, "y": 10})
            page.keyboard.press("Escape")
            page.keyboard.press("b")            # a new cell below the first one
            graph_cell = run_cell(page, 1, GRAPH)
            running = sidebar.locator(".rain-Session[data-status='open']")
            running.wait_for()
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
            assert page.locator(".rain-DashboardPane").count() == 2
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
