"""``rain alloc slurm`` against the real Slurm of the hosts: a server with no governor,
tasks that wait, batch jobs that bring governors, and jobs that end once idle."""
import os
import signal
import time

import pytest

from helpers import RAIN, rain_processes, run_pipeline


def _wait(predicate, timeout, what, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}\n"
                                 f"{detail()}")
        time.sleep(0.5)


@pytest.mark.timeout(400)
def test_alloc_slurm_adds_governors_while_tasks_wait_and_lets_them_go(hosts):
    hosts.slurm_ready()
    head = hosts.head
    server = head.popen(RAIN + ["server", "-l", "7210", "--http-listen", "7222",
                                "--logdir", f"{hosts.shared}/alloc-server"],
                        "alloc-server.out")
    scaler = None
    try:
        _wait(lambda: "server listening" in hosts.log_tail("alloc-server.out"), 60,
              "the server listens", lambda: hosts.log_tail("alloc-server.out"))
        scaler = head.popen(RAIN + ["alloc", "slurm", "--server", f"{head.ip}:7210",
                                    "--max-nodes", "2", "--time", "5m", "--idle-timeout",
                                    "3", "--interval", "0.5", "--", "--partition=main"],
                            "alloc.out")
        # No governor yet: the tasks wait, jobs come, the pipeline finishes on them.
        result = run_pipeline(head, f"{head.ip}:7210")
        assert len(result["lines"]) == 12
        assert 1 <= len(result["governors"]) <= 2
        log = hosts.log_tail("alloc.out", 20000)
        assert "submitted allocation" in log, log
        # Idle: the governors leave and their jobs end.
        _wait(lambda: not head.run(["squeue", "-h", "-n", "rain-governor"]).stdout.strip(),
              90, "the jobs end", lambda: hosts.log_tail("alloc.out"))
        assert "is idle: its governor leaves" in hosts.log_tail("alloc.out", 20000)
    finally:
        for process in (scaler, server):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in (scaler, server):
            if process is not None:
                process.wait(timeout=60)
    assert scaler.returncode == 0, hosts.log_tail("alloc.out")
    assert not head.run(["squeue", "-h"]).stdout.strip()
    assert not head.run(["sh", "-c", "ls -d /tmp/rain-alloc-* 2>/dev/null; true"]).stdout
    _wait(lambda: not rain_processes(hosts), 30, "no Rain process is left",
          lambda: str(rain_processes(hosts)))
