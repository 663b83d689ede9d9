"""``%rain`` / ``%%rain`` through a real IPython shell with real clusters."""
import os
import time

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_helpers import kill_all, rain_descendants, wait_gone


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("rain_jupyter")
    before = set(p.pid for p in rain_descendants(os.getpid()))
    yield shell
    import rain_jupyter
    magics = rain_jupyter._magics
    left = []
    if magics is not None and magics.cluster is not None:
        procs = rain_descendants(os.getpid())
        shell.run_line_magic("rain", "stop")
        left = wait_gone(procs)
    shell.extension_manager.unload_extension("rain_jupyter")
    stray = [p for p in rain_descendants(os.getpid()) if p.pid not in before]
    kill_all(left + stray)
    assert not left and not stray, f"processes left behind: {left + stray}"


def run(shell, line, capsys):
    result = shell.run_cell(line)
    out, err = capsys.readouterr()
    return result, out, err


BAD = ["start --governors x", "start --governors 0", "start --cpus -1", "start --bogus",
       "start --port 99999", 'start --governors "2', "scale", "scale abc",
       "scale 2 --timeout", "connect", "connect host:port:x", "frobnicate",
       "dashboard --height tall", "status extra"]


@pytest.mark.parametrize("line", BAD)
def test_bad_arguments_give_one_line_usage_error(shell, capsys, line):
    result, out, err = run(shell, f"%rain {line}", capsys)
    assert isinstance(result.error_in_exec, UsageError)
    text = (out + err).strip()
    assert text.startswith("UsageError: ")
    assert "\n" not in text and "Traceback" not in text
    assert rain_descendants(os.getpid()) == []


def test_help_and_no_cluster(shell, capsys):
    _r, out, _e = run(shell, "%rain", capsys)
    assert "%rain start [--governors N] [--cpus C] [--port P] [--http-port H]" in out
    assert "%%rain" in out
    _r, out, _e = run(shell, "%rain?", capsys)
    for word in ("start", "connect", "status", "scale", "stop", "dashboard"):
        assert f"%rain {word}" in out
    _r, out, _e = run(shell, "%rain start --help", capsys)
    assert "--governors N" in out
    _r, out, _e = run(shell, "%rain status", capsys)
    assert "No Rain cluster" in out
    result, _o, err = run(shell, "%rain scale 2", capsys)
    assert isinstance(result.error_in_exec, UsageError)
    result, _o, err = run(shell, "%%rain\nx = 1\n", capsys)
    assert isinstance(result.error_in_exec, UsageError) and "%rain start" in err
    _r, out, _e = run(shell, "%rain stop", capsys)
    assert "No Rain cluster to stop" in out


def test_start_run_scale_stop(shell, capsys):
    import rain_jupyter
    result, out, err = run(shell, "%rain start --governors 4 --cpus 1", capsys)
    assert result.error_in_exec is None, err
    assert "4 governors, 4 CPUs" in out and "dashboard: http://" in out
    magics = rain_jupyter._magics
    client = shell.user_ns["rain_client"]
    assert client.connected
    procs = rain_descendants(os.getpid())
    assert len(procs) == 5
    # the card also as HTML
    data, _meta = shell.display_formatter.format(client)
    assert "rain-cluster" in data["text/html"] and "4 governors" in data["text/html"]

    _r, out, _e = run(shell, "%rain start", capsys)
    assert "already running" in out and magics.cluster.server_address in out
    assert len(rain_descendants(os.getpid())) == 5

    result, out, err = run(shell, """%%rain pipeline
from rain.client import blob, tasks
src = blob(b"data", content_type="text")
parts = [tasks.Sleep(src, 0.02, name=f"stage{i % 3}/part") for i in range(24)]
joined = tasks.Concat(parts, name="join")
joined.keep_outputs()
""", capsys)
    assert result.error_in_exec is None, err
    session = shell.user_ns["rain_session"]
    widget = shell.user_ns["rain_widget"]
    assert session.name == "pipeline" and session.task_count == 0
    session.wait_all()
    deadline = time.monotonic() + 10
    while (widget.progress.status != "finished" or widget.graph.finished_nodes < 25) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert widget.progress.status == "finished"
    assert (widget.progress.total, widget.progress.finished) == (25, 25)
    assert widget.progress.bar.finished == 25 and widget.progress.bar.bar_style == "success"
    assert widget.graph.mode == "tasks" and widget.graph.finished_nodes == 25
    assert "25/25 finished" in widget.snapshot_html()

    # rich displays
    fmt = shell.display_formatter.format
    html = fmt(session)[0]["text/html"]
    assert "25/25 finished" in html and "stage1/part" in html
    joined = shell.user_ns["joined"]
    task_html = fmt(joined)[0]["text/html"]
    assert "finished" in task_html and "buildin/concat" in task_html
    assert "127.0.0.1:" in task_html          # the governor, known from the events
    obj_html = fmt(joined.output)[0]["text/html"]
    assert "DataObject" in obj_html and "kept" in obj_html
    instance = joined.output.fetch()
    inst = fmt(instance)[0]
    assert "datadatadata" in inst["text/html"] and "96 B" in inst["text/html"]
    assert "datadata" in inst["text/plain"]

    # a second %%rain cell in the same named session adds to it
    result, _o, err = run(shell, "%%rain pipeline --no-graph\nmore = tasks.Sleep(src, 0, "
                          "name='stage9/extra')\n", capsys)
    # src was not kept: the server refuses, and the failed cell leaves nothing pending
    assert "was already removed" in str(result.error_in_exec)
    assert session.task_count == 0 and session.dataobj_count == 0
    result, _o, err = run(shell, "%%rain pipeline --no-graph\nmore = tasks.Sleep("
                          "blob(b'x'), 0, name='stage9/extra')\n", capsys)
    assert result.error_in_exec is None, err
    assert shell.user_ns["rain_session"] is session
    session.wait_all()
    assert shell.user_ns["rain_widget"].graph is None
    _r, out, _e = run(shell, "%%rain pipeline --no-graph\nmore = tasks.Sleep("
                      "blob(b'x'), 0, name='stage9/extra')\n", capsys)
    assert f"Adding to the open session {session.session_id}" in out

    # running the same cell again starts a fresh session (the old one is closed) ...
    again = "%%rain again --no-graph\nnap = tasks.Sleep(blob(b'y'), 0, name='nap')\n"
    run(shell, again, capsys)
    first = shell.user_ns["rain_session"]
    first.wait_all()
    _r, out, _e = run(shell, again, capsys)
    second = shell.user_ns["rain_session"]
    assert second is not first and first.closed and not second.closed
    assert second.name == "again" and "Adding" not in out
    second.wait_all()
    progress = shell.user_ns["rain_widget"].progress
    deadline = time.monotonic() + 10
    while progress.status != "finished" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (progress.status, progress.total) == ("finished", 1)
    # ... and another cell naming it adds to it, and says so
    _r, out, _e = run(shell, "%%rain again --no-graph\nnap2 = tasks.Sleep(blob(b'z'), 0)\n",
                      capsys)
    assert shell.user_ns["rain_session"] is second
    assert f"Adding to the open session {second.session_id} “again”" in out
    second.wait_all()

    # scale down waits for running tasks of the removed governors
    result, _o, err = run(shell, """
with rain_client.new_session("slow") as slow:
    sleepers = [tasks.Sleep(blob(b"s"), 5, name="slow") for i in range(4)]
    slow.submit()
    import time as _time
    _deadline = _time.monotonic() + 60
    slow.update(sleepers)
    # one on each governor; on a busy machine the first may end before the last starts
    while any(t.state.name not in ("running", "finished") for t in sleepers):
        assert _time.monotonic() < _deadline, [t.state for t in sleepers]
        _time.sleep(0.05)
        slow.update(sleepers)
    get_ipython().run_line_magic("rain", "scale 2")
    slow.update(sleepers)
    finished_at_scale = sum(t.state.name == "finished" for t in sleepers)
    slow.wait_all()
""", capsys)
    assert result.error_in_exec is None, err
    # The tasks of the two removed governors ended before scale returned.
    assert shell.user_ns["finished_at_scale"] >= 2
    assert len(rain_descendants(os.getpid())) == 3
    _r, out, _e = run(shell, "%rain scale 3", capsys)
    assert "Added 1 governors" in out and "3 governors" in out
    assert len(rain_descendants(os.getpid())) == 4

    _r, out, _e = run(shell, "%rain dashboard", capsys)
    assert magics.cluster.dashboard_url in out
    assert f"?token={magics.cluster.local.token}" in out    # the link opens the dashboard
    procs = rain_descendants(os.getpid())
    _r, out, _e = run(shell, "%rain stop", capsys)
    assert "Stopped the Rain cluster" in out
    assert "rain_client" not in shell.user_ns
    assert wait_gone(procs) == []
    assert rain_descendants(os.getpid()) == []


def test_task_exception_is_readable(shell, capsys):
    run(shell, "%rain start --governors 1 --cpus 1", capsys)
    result, out, err = run(shell, """
from rain.client import tasks
with rain_client.new_session("failing") as s:
    bad = tasks.Execute(["sh", "-c", "echo oops >&2; exit 3"], name="broken")
    s.submit()
    s.wait_all()
""", capsys)
    from rain.client import TaskException
    assert isinstance(result.error_in_exec, TaskException)
    text = out + err
    assert "broken" in text and "exited with code 3" in text
    assert "created at" in text
    # the client-side frames are not dumped into the notebook
    assert "rain/client/session.py" not in text
    from rain_jupyter.reprs import task_exception_html, task_exception_parts
    html = task_exception_html(*task_exception_parts(result.error_in_exec))
    assert "<pre" in html and "exited with code 3" in html


def test_connect_to_running_cluster(shell, capsys):
    from rain.local_cluster import LocalCluster
    with LocalCluster([1]) as cluster:
        result, out, err = run(shell, f"%rain connect {cluster.server_address} "
                                      f"--dashboard {cluster.dashboard_url}", capsys)
        assert result.error_in_exec is None, err
        assert "1 governors" in out and cluster.dashboard_url in out
        client = shell.user_ns["rain_client"]
        _r, out, _e = run(shell, "%rain start", capsys)
        assert "Already connected" in out
        _r, out, _e = run(shell, "%rain scale 2", capsys)
        assert "UsageError" in _e
        _r, out, _e = run(shell, "%rain stop", capsys)
        assert "Disconnected" in out and not client.connected
    result, out, err = run(shell, "%rain connect 127.0.0.1:1", capsys)
    assert "Could not connect" in err and "Traceback" not in err
