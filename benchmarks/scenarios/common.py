"""Helpers shared by the per-system scenario runners.

A runner is started by ``benchmarks/run.py`` as ``python <system>_side.py --scenario X
--sizes JSON --repeat N`` and prints one line ``RESULT <json>`` with
``{key: [value per repetition], ...}`` (plus ``info`` entries that are not repeated).
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def median(values):
    return statistics.median(values)


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``peak`` is the max."""

    def __init__(self, pid, interval=0.05):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid):
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def main(scenarios):
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--sizes", default="{}")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    function = scenarios[args.scenario]
    result = {}
    t0 = time.perf_counter()
    function(result, json.loads(args.sizes), args.repeat)
    log(f"  scenario {args.scenario}: {time.perf_counter() - t0:.1f} s")
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown of big graphs (and peers' atexit hooks that can hang).
    os._exit(0)


def add(result, key, value):
    result.setdefault(key, []).append(value)
