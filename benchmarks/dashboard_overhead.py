"""Does watching a run slow it down? Throughput of a wide graph of built-in tasks with and
without a dashboard page open in headless Chromium.

    python benchmarks/dashboard_overhead.py [--tasks 100000] [--repeat 3]

Modes (each run on a fresh ``LocalCluster(governors=[1, 1])``):

- ``closed``: the server as shipped (REST and dashboard mounted), no page open: the run
  model is not built, since nobody looked;
- ``open``: the same with the session's dashboard page (summary, task graph, inspector,
  task stream) open in Chromium during the whole run, polling for deltas: the page's first
  request builds the run model, which then folds every event;
- ``off``: ``RAIN_DASHBOARD=off``, no REST API and no dashboard at all.

Throughput = tasks / (time from ``submit()`` to the end of ``wait_all()``); the median of
the repetitions is reported, with the CPU time the server process used meanwhile (less
sensitive than wall time to other load on the machine). Results and the command are kept
in dashboard_overhead.md.
"""
import argparse
import json
import psutil
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rain.client import blob, tasks  # noqa: E402
from rain.local_cluster import LocalCluster  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def run_once(n_tasks, mode):
    env = {"RAIN_DASHBOARD": "off"} if mode == "off" else {}
    with LocalCluster(governors=[1, 1], env=env) as cluster:
        client = cluster.client()
        browser = None
        try:
            with client.new_session("dashboard overhead") as session:
                page = None
                if mode == "open":
                    browser = Browser()
                    page = browser.open(f"http://127.0.0.1:{cluster.http_port}/dashboard/"
                                        f"session/{session.session_id}")
                data = blob(b"x" * 16)
                for i in range(n_tasks):
                    tasks.Sleep(data, 0, name=f"bench/group{i % 10}")
                server = server_process()
                cpu0 = cpu_seconds(server)
                browser_cpu0 = browser.cpu_seconds() if browser is not None else 0.0
                t0 = time.perf_counter()
                session.submit()
                session.wait_all()
                elapsed = time.perf_counter() - t0
                server_cpu = cpu_seconds(server) - cpu0
                browser_cpu = browser.cpu_seconds() - browser_cpu0 if browser else 0.0
                extra = {}
                if page is not None:
                    polls = page.evaluate("window.rainDashboard.polls")
                    page.wait_for_function(f"window.rainDashboard.polls >= {polls + 2}",
                                           timeout=60000)
                    extra = page.evaluate("({polls: window.rainDashboard.polls, updates: "
                                          "window.rainDashboard.updates, errors: "
                                          "window.rainDashboard.errors.length})")
                    extra["browser_cpu_s"] = round(browser_cpu, 2)
        finally:
            if browser is not None:
                browser.close()
    return n_tasks / elapsed, elapsed, server_cpu, extra


def server_process():
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if "rain" in cmd and "server" in cmd:
            return proc
    return None


def cpu_seconds(proc):
    if proc is None:
        return 0.0
    times = proc.cpu_times()
    return times.user + times.system


class Browser:
    def __init__(self):
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        self.profile = tempfile.TemporaryDirectory(prefix="rain-bench-chromium-")
        self.context = self._pw.chromium.launch_persistent_context(
            self.profile.name, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

    def open(self, url):
        page = self.context.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=30000)
        return page

    def cpu_seconds(self):
        """CPU time of every Chromium process so far (the browser shares the machine)."""
        total = 0.0
        for proc in psutil.Process().children(recursive=True):
            try:
                if "chrom" in proc.name():
                    total += cpu_seconds(proc)
            except psutil.Error:
                continue
        return total

    def close(self):
        self.context.close()
        self._pw.stop()
        self.profile.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="closed,open,off")
    args = parser.parse_args()
    modes = args.modes.split(",")
    results = {mode: [] for mode in modes}
    cpu = {mode: [] for mode in modes}
    for rep in range(args.repeat):
        for mode in modes:      # interleaved, so drifts of the machine hit all modes alike
            rate, elapsed, server_cpu, extra = run_once(args.tasks, mode)
            results[mode].append(rate)
            cpu[mode].append(server_cpu)
            print(f"rep {rep + 1} {mode:6s}: {args.tasks} tasks in {elapsed:6.2f} s = "
                  f"{rate:8.0f} tasks/s, server CPU {server_cpu:6.2f} s "
                  f"{json.dumps(extra) if extra else ''}", flush=True)
    print()
    medians = {mode: statistics.median(rates) for mode, rates in results.items()}
    for mode, rates in results.items():
        print(f"{mode:6s}: median {medians[mode]:8.0f} tasks/s   "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates)}); server CPU median "
              f"{statistics.median(cpu[mode]):.2f} s")
    if "open" in medians and "closed" in medians:
        print(f"page open vs closed: {100 * (medians['open'] / medians['closed'] - 1):+.1f}%")
    if "closed" in medians and "off" in medians:
        print(f"model on vs off:     {100 * (medians['closed'] / medians['off'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
