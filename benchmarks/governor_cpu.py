"""Governor CPU time per task: user + system time of the two governor processes of a
``LocalCluster(governors=[1, 1])``, per task, for three shapes of graph (a concat tree of
2^11 constants, 5,000 independent Python tasks, chains of 300 built-in and of 300 Python
tasks).

CPU time, unlike wall time, hardly moves when other work loads the machine, so two trees
can be compared in the same minutes on a busy machine (alternate them):

    PYTHONPATH=TREE_A python benchmarks/governor_cpu.py A
    PYTHONPATH=TREE_B python benchmarks/governor_cpu.py B
"""
import sys
import time

import psutil

from rain.client import blob, remote, tasks
from rain.local_cluster import LocalCluster


@remote()
def trivial(ctx):
    return b"x"


@remote()
def step(ctx, x):
    return b"x"


def governors():
    me = psutil.Process()
    return [p for p in me.children(recursive=True)
            if "governor" in " ".join(p.cmdline())]


def cpu(procs):
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def concat(client, depth=11):
    with client.new_session() as s:
        layer = [blob(b"x") for _ in range(2 ** depth)]
        n = 0
        while len(layer) > 1:
            layer = [tasks.Concat((layer[i], layer[i + 1])) for i in range(0, len(layer), 2)]
            n += len(layer)
        layer[0].output.keep()
        s.submit()
        layer[0].output.fetch()
    return n


def independent(client, n=5000):
    with client.new_session() as s:
        ts = [trivial() for _ in range(n)]
        for t in ts[:10]:
            t.output.keep()
        s.submit()
        s.wait_all()
    return n


def chain(client, n=300):
    with client.new_session() as s:
        t = blob(b"x")
        for _ in range(n):
            t = tasks.Concat((t,))
        t.output.keep()
        s.submit()
        t.output.fetch()
    return n


def python_chain(client, n=300):
    with client.new_session() as s:
        t = step(b"x")
        for _ in range(n - 1):
            t = step(t)
        t.output.keep()
        s.submit()
        t.output.fetch()
    return n


def main(label):
    with LocalCluster(governors=[1, 1]) as cluster:
        client = cluster.client()
        independent(client, 200)
        procs = governors()
        out = []
        for name, fn in (("concat", concat), ("independent", independent), ("chain", chain),
                         ("python chain", python_chain)):
            c0, t0 = cpu(procs), time.perf_counter()
            n = fn(client)
            c1, t1 = cpu(procs), time.perf_counter()
            out.append(f"{name}: governor cpu {1e6 * (c1 - c0) / n:.1f} us/task, "
                       f"wall {1e3 * (t1 - t0) / n:.3f} ms/task")
        print(label, "|", "; ".join(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "rain")
