"""Tasks per second of the C++ and Rust example executors (``tasklibs/``) against the same
task as an ``@remote`` Python function: ``increment`` (a text integer in, the next one out).

    .venv/bin/python benchmarks/tasklibs.py [--repeat N] [--out benchmarks/tasklibs.md]

Two shapes on a local cluster of one governor with 2 CPUs: a chain of 1,000 dependent tasks
(latency of one task through server, governor and executor) and a burst of 10,000
independent tasks (throughput). Each figure is the best of ``--repeat`` runs, from submit
to the last result fetched.
"""
import argparse
import datetime
import os
import pathlib
import platform
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tasklibs"))
import build as tasklibs_build  # noqa: E402

from rain.client import Task, blob, remote, tasks  # noqa: E402
from rain.local_cluster import LocalCluster  # noqa: E402

CHAIN = 1000
BURST = 10_000


@remote()
def increment(ctx, value):
    return str(int(value.get_bytes()) + 1)


def make_step(kind):
    if kind == "python":
        return lambda obj: increment(obj).output
    return lambda obj: Task([obj], 1, task_type=f"{kind}/increment").output


def chain(client, step):
    with client.new_session() as s:
        value = blob("0")
        for _ in range(CHAIN):
            value = step(value)
        value.keep()
        started = time.perf_counter()
        s.submit()
        assert value.fetch().get_bytes() == str(CHAIN).encode()
        return CHAIN / (time.perf_counter() - started)


def burst(client, step):
    with client.new_session() as s:
        sources = [blob(str(i)) for i in range(100)]
        outputs = [step(sources[i % 100]) for i in range(BURST)]
        total = tasks.Concat(outputs[::100])
        total.output.keep()
        started = time.perf_counter()
        s.submit()
        total.output.fetch()
        return BURST / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="append the table to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rain-tasklibs-bench-") as tmp:
        print("building the example executors ...", file=sys.stderr)
        config = tasklibs_build.build_all(tmp)
        with LocalCluster([2], governor_config=str(config)) as cluster:
            client = cluster.client()
            rows = []
            for kind, label in (("cppex", "C++ (tasklibs/cpp)"), ("rustex", "Rust (tasklibs/rust)"),
                                ("python", "Python `@remote`")):
                step = make_step(kind)
                chain(client, step)            # warm: executors started, function shipped
                best_chain = max(chain(client, step) for _ in range(args.repeat))
                best_burst = max(burst(client, step) for _ in range(args.repeat))
                rows.append((label, best_chain, best_burst))
                print(f"{label}: chain {best_chain:.0f} tasks/s, burst {best_burst:.0f} tasks/s",
                      file=sys.stderr)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### {stamp}, {platform.node()}, {os.cpu_count()} CPUs, best of {args.repeat}",
             "", f"| executor | chain of {CHAIN:,} (tasks/s) | burst of {BURST:,} (tasks/s) |",
             "|---|---:|---:|"]
    lines += [f"| {label} | {c:,.0f} | {b:,.0f} |" for label, c, b in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()
