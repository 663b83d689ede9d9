"""Scenario (a) with heartbeats on and off: does watching for silent governors cost task rate?

    python benchmarks/heartbeats.py                    # 10,000 tasks, 5 rounds
    python benchmarks/heartbeats.py --tasks 2000 --rounds 2    # a quick look

Three clusters run side by side in this one process tree, each a server and 2 governors x
1 CPU as in ``benchmarks/run.py``: heartbeats off (``--heartbeat-timeout 1e9``: no
heartbeat frame and no silence check during the run), on with the default timeout (30 s:
a check and a frame to each governor every 7.5 s) and on with a 2 s timeout (every 0.5 s,
to make any cost visible). Each round runs scenario (a) -- N independent Python tasks,
then a gather of 10 results -- once on each cluster, in an order that alternates from
round to round, so that the load of a shared machine falls on all of them alike. Prints
a Markdown table of medians (and ranges): task rate and the server's CPU per task, and
the rate of each "on" against "off".
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "scenarios"))
sys.path.insert(0, os.path.dirname(HERE))

from rain_side import independent  # noqa: E402

from rain.local_cluster import LocalCluster  # noqa: E402

MODES = [
    ("off", ["--heartbeat-timeout", "1e9"]),
    ("on, 30 s (default)", []),
    ("on, 2 s", ["--heartbeat-timeout", "2"]),
]


def load():
    return os.getloadavg()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    clusters = [LocalCluster(governors=[1, 1], server_args=extra) for _, extra in MODES]
    rates = {name: [] for name, _ in MODES}
    cpu = {name: [] for name, _ in MODES}
    loads = [load()]
    try:
        for cluster in clusters:
            cluster.start()
        clients = [cluster.client() for cluster in clusters]
        for client in clients:
            independent(client, 200)                   # start the executors
        for round_ in range(args.rounds):
            order = list(range(len(MODES)))
            if round_ % 2:
                order.reverse()
            for index in order:
                name = MODES[index][0]
                pid = clusters[index].server_process.pid
                elapsed, seconds = independent(clients[index], args.tasks, pid)
                rates[name].append(args.tasks / elapsed)
                cpu[name].append(seconds / args.tasks * 1e6)
                print(f"round {round_ + 1} {name}: {args.tasks / elapsed:,.0f} tasks/s, "
                      f"server {seconds / args.tasks * 1e6:.1f} us/task, "
                      f"load {load():.1f}", file=sys.stderr, flush=True)
            loads.append(load())
    finally:
        for cluster in clusters:
            cluster.stop()

    off = statistics.median(rates[MODES[0][0]])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                            capture_output=True).stdout.strip()
    print(f"{args.tasks:,} tasks, {args.rounds} rounds; 1-minute load average "
          f"{min(loads):.1f}-{max(loads):.1f} (`uptime`), {os.cpu_count()} CPUs; "
          f"commit {commit}")
    print()
    print("| heartbeats | tasks/s, median (range) | vs off | server CPU per task, us |")
    print("|---|---|---|---|")
    for name, _ in MODES:
        median = statistics.median(rates[name])
        print(f"| {name} | {median:,.0f} ({min(rates[name]):,.0f}-{max(rates[name]):,.0f}) "
              f"| {(median / off - 1) * 100:+.1f}% | {statistics.median(cpu[name]):.1f} "
              f"({min(cpu[name]):.1f}-{max(cpu[name]):.1f}) |")


if __name__ == "__main__":
    main()
