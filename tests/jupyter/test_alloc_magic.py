"""``%rain alloc`` in a real IPython shell: bad arguments give a one-line usage error and
start nothing; the cluster card's allocation part. (Against the real Slurm, in a kernel on
the test hosts' head: tests/multihost/test_alloc.py.)"""
import os
import shutil

import pytest
import requests
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_helpers import kill_all, rain_descendants, wait_gone
from rain_jupyter.allocation_card import card_html, card_lines


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("rain_jupyter")
    procs = rain_descendants(os.getpid())
    yield shell
    shell.extension_manager.unload_extension("rain_jupyter")
    left = wait_gone(procs + rain_descendants(os.getpid()))
    kill_all(left)
    assert not left, f"processes left behind: {left}"


BAD = [("alloc", "the following arguments are required"),
       ("alloc slurmx", "unknown scheduler 'slurmx'"),
       ("alloc slurm --max-nodes 0", "--max-nodes must be at least 1"),
       ("alloc slurm --idle-timeout 0", "--idle-timeout must be above 0"),
       ("alloc slurm --max-nodes x", "invalid int value"),
       ('alloc slurm -- "--partition', "No closing quotation"),
       ("alloc stop --time 1h", "takes no options"),
       # Arguments are fine, but there is no cluster to add nodes to.
       ("alloc slurm --max-nodes 2 -- --partition=x", "needs a cluster")]


@pytest.mark.parametrize("line, message", BAD)
def test_bad_alloc_arguments_give_one_line_usage_error(shell, capsys, line, message):
    result = shell.run_cell(f"%rain {line}")
    out, err = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    text = (out + err).strip()
    assert text.startswith("UsageError: ") and message in text, text
    assert "\n" not in text and "Traceback" not in text
    import rain_jupyter
    assert rain_jupyter._magics.autoscaler is None


def test_alloc_help_and_stop_without_alloc(shell, capsys):
    shell.run_line_magic("rain", "help")
    assert "%rain alloc slurm|pbs [--max-nodes N]" in capsys.readouterr().out
    shell.run_line_magic("rain", "alloc --help")
    assert "arguments after '--' go to" in capsys.readouterr().out.replace("\n", " ")
    shell.run_line_magic("rain", "alloc stop")
    assert capsys.readouterr().out.strip() == "No %rain alloc is running."


def test_card_shows_each_job_and_its_state():
    alloc = {"scheduler": "slurm", "running": True, "max_nodes": 4, "error": None,
             "jobs": [{"allocation": "17", "state": "running", "node": "node1"},
                      {"allocation": "18", "state": "queued", "node": None}]}
    assert card_lines(alloc) == ["  slurm allocations, active (at most 4 nodes): 2 jobs",
                                 "    job 17: running on node1", "    job 18: queued"]
    html = card_html(alloc)
    assert "job 17" in html and ">running<" in html and "node1" in html and ">queued<" in html
    alloc.update(running=False, jobs=[], error="sbatch failed: <no partition>")
    assert card_lines(alloc)[-1] == "    last error: sbatch failed: <no partition>"
    assert "&lt;no partition&gt;" in card_html(alloc)
    assert card_lines(None) == [] and card_html(None) == ""


@pytest.mark.skipif(shutil.which("sbatch") is None and not os.environ.get("CI"),
                    reason="Slurm's commands are not installed")
def test_alloc_on_a_cluster_started_here_until_stop(shell, capsys):
    """No task waits, so no job is submitted; the autoscaler runs in the kernel, the card
    says so, and both ``%rain alloc stop`` and ``%rain stop`` end it."""
    import rain_jupyter
    magics = rain_jupyter._magics
    assert shell.run_cell("%rain start --governors 1 --cpus 1").error_in_exec is None
    capsys.readouterr()
    result = shell.run_cell("%rain alloc slurm --max-nodes 3 --time 30m --interval 0.2 "
                            "-- --partition=main")
    assert result.error_in_exec is None
    out = capsys.readouterr().out
    assert "Allocating slurm jobs of one node while tasks wait (at most 3 at once, " \
        "time limit 30m)." in out
    assert "slurm allocations, active (at most 3 nodes): 0 jobs" in out
    scaler = magics.autoscaler
    assert scaler.running and scaler.jobs.args == ["--partition=main"]
    assert scaler.http == f"127.0.0.1:{magics.cluster.http_port}"
    shell.run_line_magic("rain", "alloc slurm")
    assert "already running" in capsys.readouterr().out and magics.autoscaler is scaler
    shell.run_line_magic("rain", "alloc stop")
    assert "Stopped allocating; cancelled 0 batch jobs." in capsys.readouterr().out
    assert magics.autoscaler is None and not scaler.running
    assert not os.path.exists(scaler.workdir)
    headers = magics.cluster.http_headers
    url = f"{magics.cluster.http_url}api/allocations"
    assert requests.get(url, headers=headers, timeout=30).json() == []
    # %rain stop ends a running one with the cluster.
    shell.run_line_magic("rain", "alloc slurm")
    scaler = magics.autoscaler
    shell.run_line_magic("rain", "stop")
    assert magics.autoscaler is None and not scaler.running
