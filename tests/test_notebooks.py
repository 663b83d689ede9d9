"""The demo notebooks (``notebooks/*.ipynb``) run as they are, each in a real kernel under
nbval (``--nbval-lax``: the cells tagged ``nbval-check-output`` must print what the
notebook shows, results, counts and "Hello world!", with times, ports and tokens
sanitized by ``nbval_sanitize.cfg``; the other cells must not raise), one test
per notebook so that pytest-xdist spreads them. Each runs from a copy in a temporary
directory (nothing is written into the repository) and must leave no Rain process behind.

Also: the notebooks are saved without outputs, and the Binder dashboard-link hook
(``RAIN_DASHBOARD_PREFIX``, set by ``binder/start``) builds proxied links.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import time
import uuid

import nbformat
import pytest
from rain_cluster import processes_of

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_six_numbered_notebooks():
    names = [path.name for path in NOTEBOOKS]
    assert len(names) >= 6, names
    assert all(name[:2].isdigit() and name[2] == "-" for name in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_saved_clean(path):
    nb = nbformat.read(path, 4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            # outputs only where nbval compares them
            checked = "nbval-check-output" in cell.metadata.get("tags", ())
            assert checked or (not cell.outputs and cell.execution_count is None), \
                f"{path.name}: save the notebook without outputs"
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert any("%rain start" in s for s in sources) and "%rain stop" in sources[-1] + \
        "".join(s for s in sources if s.strip() == "%rain stop"), \
        f"{path.name} must start and stop its own cluster"


def run_notebook(path, tmp_path, env_extra=None, timeout=280):
    """Run ``path`` with nbval from a copy in ``tmp_path``; returns (pytest output, marker)."""
    work = tmp_path / "nb"
    work.mkdir()
    copy = work / path.name
    shutil.copy(path, copy)
    marker = uuid.uuid4().hex
    env = dict(os.environ)
    env.pop("RAIN_DEMO_SCALE", None)      # the notebooks as shipped
    env.pop("PYTEST_XDIST_WORKER", None)
    env["RAIN_TEST_CLUSTER"] = marker     # every Rain process of the run carries it
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(env_extra or {})
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
               "-q", "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=180",
               "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"),
               "--rootdir", str(work), "-c", os.devnull, str(copy)]
    started = time.monotonic()
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{path.name} failed under nbval:\n{output[-6000:]}"
    return output, marker, time.monotonic() - started


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    _output, marker, seconds = run_notebook(path, tmp_path)
    deadline = time.monotonic() + 10
    left = processes_of(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_of(marker)
    for proc in left:
        proc.kill()
    assert not left, f"{path.name} left processes: {[p.cmdline() for p in left]}"
    print(f"{path.name}: {seconds:.1f} s")


def test_results_are_compared():
    """The outputs that matter are stored in the notebooks and compared when they run."""
    checked = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, 4)
        checked[path.stem[:2]] = "".join(
            output.get("text", "") for cell in nb.cells
            if "nbval-check-output" in cell.metadata.get("tags", ())
            for output in cell.outputs)
    assert "Hello world!" in checked["01"] and "Hello again!" in checked["01"]
    assert "100 lines, the first is 'line 000'" in checked["03"]
    assert "50,251 tasks finished" in checked["04"] and "as expected: True" in checked["04"]
    assert "{'wind': 7.0}" in checked["05"]
    assert "9 poem.txt" in checked["02"] and "4 merrily\n      3 row" in checked["02"]
    assert "counts/twinkle.count -> 22" in checked["02"]
    assert "12 stations, the wettest is station 1 (8 rainy hours)" in checked["06"]
    assert "Hello from REST!" in checked["06"] and "wrote weather-report.html" in checked["06"]
    assert "25 tasks finished: 12 analyse, 12 fetch, 1 summary" in checked["06"]
    assert "Hello native world! / Hello native world! / Hello native world!" in checked["07"]
    assert "sum of (10*i + 2) for i < 8 = 296" in checked["07"]
    assert "[255, 155, 55] second" in checked["07"]


def test_large_graph_notebook_builds_50k_tasks():
    nb = nbformat.read(ROOT / "notebooks" / "04-large-graph.ipynb", 4)
    checked = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", ())]
    assert checked and "CHUNKS = max(2, int(250 * scale))" in checked[0].source
    assert "MAPS_PER_CHUNK = 200" in checked[0].source    # 250 * 200 + 250 + 1 tasks


# -- Binder: dashboard links behind the Jupyter proxy ------------------------------------------

def test_dashboard_link_uses_prefix(monkeypatch):
    from rain_jupyter.cluster import NotebookCluster, dashboard_link
    monkeypatch.delenv("RAIN_DASHBOARD_PREFIX", raising=False)
    assert dashboard_link(4567, "http://127.0.0.1:4567/") == "http://127.0.0.1:4567/"
    monkeypatch.setenv("RAIN_DASHBOARD_PREFIX", "/user/ann-rain-x1/rain/proxy/")
    assert dashboard_link(4567, "http://127.0.0.1:4567/") == \
        "/user/ann-rain-x1/rain/proxy/4567/dashboard/"
    cluster = NotebookCluster(1, 1, http_port=4567)
    assert cluster.dashboard_url == "http://127.0.0.1:4567/"      # what the kernel reaches
    assert cluster.http_url == "http://127.0.0.1:4567/"
    assert cluster.dashboard_link == "/user/ann-rain-x1/rain/proxy/4567/dashboard/"


def test_card_and_magic_show_the_proxied_link(monkeypatch):
    from rain_jupyter import cluster_card, magics
    from rain_jupyter.cluster import NotebookCluster

    monkeypatch.setenv("RAIN_DASHBOARD_PREFIX", "/user/ann/rain/proxy/")
    cluster = NotebookCluster(1, 1, http_port=4567)
    monkeypatch.setattr(cluster, "is_running", lambda: True)

    class FakeClient:
        address, port, connected, _sessions = "127.0.0.1", 1234, False, ()

    info = cluster_card.cluster_info(FakeClient(), cluster)
    info["connected"] = True
    html = cluster_card.card_html(info)
    assert "href='/user/ann/rain/proxy/4567/dashboard/'" in html
    assert "data-rain-http-port='4567'" in html

    shown = []
    monkeypatch.setattr(magics, "display", lambda *a, **k: shown.append(a[0]))
    rain_magics = magics.RainMagics(None)      # %rain dashboard needs no shell
    rain_magics.cluster = cluster
    rain_magics._dashboard(magics._parse(magics._dashboard_spec, ""))
    assert shown[0]["text/plain"] == "Rain dashboard: /user/ann/rain/proxy/4567/dashboard/"


def test_binder_start_exports_the_prefix():
    env = {"PATH": os.environ["PATH"], "JUPYTERHUB_SERVICE_PREFIX": "/user/ann-rain-x1/"}
    out = subprocess.run([str(ROOT / "binder" / "start"), "sh", "-c",
                          "echo $RAIN_DASHBOARD_PREFIX"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "/user/ann-rain-x1/rain/proxy/"
    env.pop("JUPYTERHUB_SERVICE_PREFIX")
    out = subprocess.run([str(ROOT / "binder" / "start"), "sh", "-c",
                          "echo $RAIN_DASHBOARD_PREFIX"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "/rain/proxy/"
