"""``rain alloc slurm`` against the real Slurm of the hosts: a server with no governor,
tasks that wait, batch jobs that bring governors, and jobs that end once idle; the server
lists the jobs (REST) and its dashboard shows them (headless Chromium on the head)."""
import json
import os
import signal
import sys
import textwrap
import time

import pytest

from helpers import RAIN, rain_processes, run_pipeline
from test_dashboard import DEEP_TEXT


# The REST reply and the dashboard's allocations chart, seen from the head (whose network
# only the hosts share): the chart is read once it shows every text given.
DASHBOARD = """
import json, sys, urllib.request
from playwright.sync_api import sync_playwright
from rain.auth import auth_headers, token_for_server, with_token

http, server, deep_text, *want = sys.argv[1:]
host, port = server.rsplit(":", 1)
token = token_for_server(host, int(port))
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                 args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page()
    page.goto(with_token(f"http://{http}/dashboard/governors", token))
    selector = '.rain-chart[data-chart="allocations"]'
    page.wait_for_function(
        "(args) => { const t = (" + deep_text + ")(args[0]);"
        " return args.slice(1).every(w => t.includes(w)); }",
        arg=[selector, *want], timeout=30000)
    text = page.evaluate(deep_text, selector)
    browser.close()
# After the chart showed what the caller waits for: the list is at least as new as the
# chart (read before, it could still hold a state the chart has since left).
request = urllib.request.Request(f"http://{http}/api/allocations",
                                 headers=auth_headers(token))
listed = json.load(urllib.request.urlopen(request, timeout=30))
print(json.dumps({"listed": listed, "chart": text}))
"""


def dashboard_view(head, want=()):
    """``{"listed": GET /api/allocations, "chart": text of the allocations chart}``."""
    out = head.run([sys.executable, "-c", textwrap.dedent(DASHBOARD), f"{head.ip}:7222",
                    f"{head.ip}:7210", DEEP_TEXT] + list(want), timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


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
        # The server knows the jobs and which governors came from each.
        listed = dashboard_view(head)["listed"]
        assert 1 <= len(listed) <= 2, listed
        assert all(a["scheduler"] == "slurm" for a in listed), listed
        came = sorted(g for a in listed for g in a["governors"])
        assert came == sorted(g["governor_id"] for g in result["governors"]), \
            (listed, result["governors"])
        for allocation in listed:
            assert allocation["state"] in ("running", "ended"), allocation
            assert allocation["nodes"] and allocation["started"], allocation
        jobs = [a["allocation"] for a in listed]
        # Idle: the governors leave and their jobs end.
        _wait(lambda: not head.run(["squeue", "-h", "-n", "rain-governor"]).stdout.strip(),
              90, "the jobs end", lambda: hosts.log_tail("alloc.out"))
        assert "is idle: its governor leaves" in hosts.log_tail("alloc.out", 20000)
        # The dashboard shows them ended, with a count by state.
        plural = "" if len(jobs) == 1 else "s"
        summary = f"{len(jobs)} allocation{plural}: 0 queued, 0 running, {len(jobs)} ended"
        view = dashboard_view(head, [summary] + jobs + came)
        assert [a["allocation"] for a in view["listed"]] == jobs, view
        assert all(a["state"] == "ended" and a["reason"] == "idle, its governor left"
                   for a in view["listed"]), view
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


# A notebook's kernel on the head (jupyter_client, as JupyterLab runs it): the cells use
# ``%rain alloc`` on a cluster the kernel connected to; prints each cell's outputs as JSON.
KERNEL = """
import json, sys
from jupyter_client.manager import start_new_kernel

cells = json.loads(sys.argv[1])
km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
outputs = []
try:
    for cell in cells:
        texts = []

        def hook(msg, texts=texts):
            content = msg["content"]
            kind = msg["msg_type"]
            if kind == "stream":
                texts.append(content["text"])
            elif kind in ("display_data", "execute_result"):
                texts.append(content["data"].get("text/plain", ""))
                texts.append(content["data"].get("text/html", ""))
            elif kind == "error":
                texts.append(content["ename"] + ": " + content["evalue"])

        reply = kc.execute_interactive(cell, timeout=180, output_hook=hook)
        outputs.append({"cell": cell, "status": reply["content"]["status"],
                        "text": "\\n".join(texts)})
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=False)
print(json.dumps(outputs))
"""

PIPELINE_CELL = """
from rain.client import remote

@remote()
def where(ctx, index):
    import socket
    return socket.gethostname()

with rain_client.new_session("from the notebook") as session:
    parts = [where(i) for i in range(3)]
    for part in parts:
        part.output.keep()
    session.submit()
    print("HOSTS", sorted({p.output.fetch().get_str() for p in parts}))

# The job's governors ran the tasks; the autoscaler sees the job running at its next poll.
import time
scaler = get_ipython().find_line_magic("rain").__self__.autoscaler
deadline = time.monotonic() + 120
while not any(job.get("node") for job in scaler.status()) and time.monotonic() < deadline:
    time.sleep(0.2)
"""


@pytest.mark.timeout(400)
def test_alloc_magic_in_a_kernel_on_the_head(hosts):
    hosts.slurm_ready()
    head = hosts.head
    server = head.popen(RAIN + ["server", "-l", "7310", "--http-listen", "7322",
                                "--logdir", f"{hosts.shared}/magic-server"],
                        "magic-server.out")
    try:
        _wait(lambda: "server listening" in hosts.log_tail("magic-server.out"), 60,
              "the server listens", lambda: hosts.log_tail("magic-server.out"))
        cells = ["%load_ext rain_jupyter",
                 f"%rain connect {head.ip}:7310",
                 "%rain alloc slurm --max-nodes 1 --time 5m --idle-timeout 300 "
                 "--interval 0.5 -- --partition=main",
                 PIPELINE_CELL,
                 "%rain status",
                 "%rain alloc stop",
                 "%rain status",
                 "%rain alloc slurm --time soon",
                 "%rain stop"]
        out = head.run([sys.executable, "-c", textwrap.dedent(KERNEL), json.dumps(cells)],
                       timeout=360).stdout
        outputs = json.loads(out.strip().splitlines()[-1])
        texts = [o["text"] for o in outputs]
        assert [o["status"] for o in outputs] == ["ok"] * 7 + ["error", "ok"], outputs
        assert "Allocating slurm jobs of one node while tasks wait (at most 1 at once, " \
            "time limit 5m)." in texts[2], texts[2]
        hosts_line = next(line for line in texts[3].splitlines() if line.startswith("HOSTS"))
        # The card shows the job running on its node (where the tasks ran), text and HTML.
        assert "slurm allocations, active (at most 1 node): 1 job" in texts[4], texts[4]
        job_line = next(line.strip() for line in texts[4].splitlines()
                        if line.strip().startswith("job "))
        job, state_text = job_line[len("job "):].split(": ", 1)
        node = state_text.rsplit(" ", 1)[1]
        assert state_text == f"running on {node}", texts[4]
        assert hosts_line == f"HOSTS [{node!r}]", (hosts_line, texts[4])
        assert "rain-allocations" in texts[4]
        assert "Stopped allocating; cancelled 1 batch job." in texts[5], texts[5]
        assert "allocations" not in texts[6], texts[6]
        assert "invalid duration 'soon'" in texts[7], texts[7]
        # The server heard of it from the kernel's autoscaler.
        listed = head.python(textwrap.dedent(f"""
            import json, urllib.request
            from rain.auth import auth_headers, token_for_server
            token = token_for_server("{head.ip}", 7310)
            request = urllib.request.Request("http://{head.ip}:7322/api/allocations",
                                             headers=auth_headers(token))
            print(json.dumps(json.load(urllib.request.urlopen(request, timeout=30))))
            """))
        allocations = json.loads(listed.strip().splitlines()[-1])
        assert [(a["allocation"], a["state"], a["reason"]) for a in allocations] == \
            [(job, "ended", "cancelled when the autoscaler stopped")], allocations
        _wait(lambda: not head.run(["squeue", "-h"]).stdout.strip(), 60,
              "the cancelled job is gone", lambda: head.run(["squeue"]).stdout)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    _wait(lambda: not rain_processes(hosts), 30, "no Rain process is left",
          lambda: str(rain_processes(hosts)))
