"""The magics and widgets in a real kernel (nbclient), and no Rain process surviving the
kernel: neither after ``%rain stop``, nor after a shutdown without it, nor after the
kernel is killed."""
import json
import os
import shutil
import signal
import sys
import tempfile

import nbformat
import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from traitlets.config import Config

from jupyter_helpers import kill_all, rain_descendants, wait_gone

pytestmark = pytest.mark.timeout(240)

PIPELINE = """%%rain pipeline
from rain.client import blob, tasks
src = blob(b"x")
parts = [tasks.Sleep(src, 0.03, name=f"stage{i % 4}/part") for i in range(120)]
joined = tasks.Concat(parts, name="join")
"""

CHECK = """
import json, time
rain_session.wait_all()
deadline = time.monotonic() + 10
p, g = rain_widget.progress, rain_widget.graph
# the flush thread sets the progress traits, then the graph's
while (p.status != "finished" or g.finished_nodes < g.nodes) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"status": p.status, "total": p.total, "finished": p.finished,
                  "bar": [p.bar.finished, p.bar.total, p.bar.bar_style],
                  "graph": [g.mode, g.nodes, g.finished_nodes],
                  "rows": list(p.source.data["group"]),
                  "flushes": rain_widget.flushes,
                  "html": "121/121 finished" in rain_widget.snapshot_html(),
                  "final": rain_widget.final_bundle()}))
"""


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    try:
        KernelSpecManager().get_kernel_spec("python3")
        yield "python3"
        return
    except NoSuchKernel:
        pass
    # No kernelspec in this environment: one pointing at this interpreter.
    path = tmp_path_factory.mktemp("jupyter")
    spec_dir = path / "kernels" / "rain-test-python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (rain tests)", "language": "python"}))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(path) + (os.pathsep + old if old else "")
    yield "rain-test-python3"
    if old is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.fixture
def over_unix_sockets():
    """Kernel channels over Unix sockets of a private directory: the TCP ports that
    jupyter_client picks as free can be taken by another test's process before the kernel
    binds them (seen: "Address already in use", the kernel dead at its start). In /tmp,
    not the temp dir: a socket's path must stay short, whatever ``TMPDIR`` is."""
    directory = tempfile.mkdtemp(prefix="rain-kernel-", dir="/tmp")
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = os.path.join(directory, "k")
    yield config
    shutil.rmtree(directory, ignore_errors=True)


def notebook(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def stdout_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


def run_cells(client, nb, indexes):
    for index in indexes:
        client.execute_cell(nb.cells[index], index)


def kernel_env():
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    env["RAIN_DELETE_LIST_TIMEOUT"] = "0.2"
    return env


def start_cells(extra=()):
    return notebook("%load_ext rain_jupyter",
                    "%rain start --governors 4 --cpus 1",
                    "import os, threading\n"
                    "print(os.getpid(), threading.current_thread() is threading.main_thread())",
                    *extra)


def kernel_processes(nb):
    pid_text, main_thread = stdout_of(nb.cells[2]).split()
    kernel = psutil.Process(int(pid_text))
    procs = rain_descendants(kernel.pid)
    return kernel, procs, main_thread == "True"


def test_kernel_start_run_stop(kernel_name, over_unix_sockets):
    nb = start_cells([PIPELINE, CHECK, "%rain stop", "%rain status"])
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                            config=over_unix_sockets)
    procs = []
    try:
        with client.setup_kernel(env=kernel_env()):
            run_cells(client, nb, range(3))
            card = nb.cells[1].outputs[-1]["data"]
            assert "4 governors, 4 CPUs" in card["text/plain"]
            assert "rain-cluster" in card["text/html"]
            kernel, procs, main_thread = kernel_processes(nb)
            assert main_thread
            assert len(procs) == 5, procs
            run_cells(client, nb, [3, 4])
            state = json.loads(stdout_of(nb.cells[4]).strip().splitlines()[-1])
            assert state["status"] == "finished"
            assert state["total"] == state["finished"] == 121
            assert state["bar"] == [121, 121, "success"]
            assert state["graph"] == ["tasks", 121, 121]
            assert state["rows"] == ["join", "stage3/part", "stage2/part", "stage1/part",
                                     "stage0/part"]
            assert state["html"] is True
            run_cells(client, nb, [5, 6])
            # The widget's output is the widget, after the BokehJS loader in the same output.
            shown = [o for o in nb.cells[3].outputs if o["output_type"] == "display_data"]
            assert len(shown) == 1, nb.cells[3].outputs
            assert "application/vnd.jupyter.widget-view+json" in shown[0]["data"]
            # The final picture replaces it (nbclient drops late display updates of a cell
            # that finished, so the final bundle is checked as the kernel makes it): no
            # widget (a reopened notebook has no model for it), a static picture, the Bokeh
            # charts for a live page.
            final = state["final"]
            assert "application/vnd.jupyter.widget-view+json" not in final
            html = final["text/html"]
            assert "rain-progress" in html and "<svg" in html and "121/121 finished" in html
            assert "rain-final-live" in html and "embed_items" in html
            assert "Stopped the Rain cluster" in stdout_of(nb.cells[5])
            assert "No Rain cluster" in stdout_of(nb.cells[6])
            left = wait_gone(procs)
            assert left == [], left
            assert rain_descendants(kernel.pid) == []
    finally:
        kill_all(procs)


@pytest.mark.parametrize("how", ["shutdown", "restart", "kill"])
def test_kernel_end_leaves_no_process(kernel_name, how, over_unix_sockets):
    nb = start_cells([PIPELINE, "rain_session.wait_all()"])
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120,
                            config=over_unix_sockets)
    procs = []
    try:
        with client.setup_kernel(env=kernel_env()):
            run_cells(client, nb, range(5))
            kernel, procs, _main = kernel_processes(nb)
            assert len(procs) == 5, procs
            if how == "kill":
                workdir = cluster_workdir(procs)
                os.kill(kernel.pid, signal.SIGKILL)
                kernel.wait(10)
            elif how == "restart":
                run_sync(client.km.restart_kernel)(now=False)
                assert wait_gone([kernel]) == []
                assert wait_gone(procs) == []
        # leaving the block shuts the kernel down (no %rain stop ran)
        assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE
        left = wait_gone(procs)
        assert left == [], f"left after kernel {how}: {left}"
        if how == "kill":       # the one thing a killed kernel cannot clean up
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        kill_all(procs)


def cluster_workdir(procs):
    """The work directory of the kernel's cluster, from its server's ``--logdir``
    (``<workdir>/logs/server``)."""
    for proc in procs:
        args = proc.cmdline()
        if "server" in args and "--logdir" in args:
            return os.path.dirname(os.path.dirname(args[args.index("--logdir") + 1]))
    raise AssertionError(f"no server among {procs}")


FAILING_FUNCTION = """from rain.client import remote, blob

@remote
def boom(ctx, x):
    y = 1
    return x.get_str() + y
"""

FAILING_CELL = """%%rain failing
t = boom(blob("a"))
"""

BROKEN_CELL = """%%rain broken
u = boom(blob("b"))
raise ValueError("oops")
"""


def error_text(cell):
    import re
    parts = []
    for output in cell.outputs:
        if output["output_type"] == "error":
            parts.extend(output["traceback"])
        elif output["output_type"] == "display_data":
            parts.append(output["data"].get("text/plain", ""))
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


def test_errors_point_at_the_cells(kernel_name, over_unix_sockets):
    nb = notebook("%load_ext rain_jupyter\n%rain start", FAILING_FUNCTION, FAILING_CELL,
                  "rain_session.wait_all()",
                  "open_before = sum(not s.closed for s in rain_client._sessions)",
                  BROKEN_CELL,
                  "print(sum(not s.closed for s in rain_client._sessions) - open_before)",
                  "%rain stop")
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=120, allow_errors=True,
                            config=over_unix_sockets)
    with client.setup_kernel(env=kernel_env()):
        run_cells(client, nb, range(len(nb.cells)))
    numbers = [cell.execution_count for cell in nb.cells]
    # a remote function defined in a cell: its frame and source line, and where the task
    # was made
    text = error_text(nb.cells[3])
    assert f"Cell In [{numbers[1]}], line 6, in boom" in text, text
    assert "return x.get_str() + y" in text
    assert "<dynamic-code>" not in text
    assert f"created at In [{numbers[2]}], line 2" in text
    # an exception while building a %%rain cell: the user's line, no magics internals, and
    # no session left behind
    text = error_text(nb.cells[5])
    assert f"Cell In[{numbers[5]}], line 3" in text, text
    assert 'raise ValueError("oops")' in text
    assert "magics.py" not in text
    assert stdout_of(nb.cells[6]).strip() == "0"
