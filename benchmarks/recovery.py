"""Recovery from the loss of a governor holding 1,000 needed objects.

    python benchmarks/recovery.py            # prints a Markdown table (add --objects N)

Two figures:
  core  the server core alone (no network): ``remove_governor`` of a governor holding N
        kept objects whose producers must run again, in a session that also holds 100,000
        finished tasks elsewhere; the time to decide what re-runs and to place it.
  e2e   a real cluster (server + 2 governors x 1 CPU): N Concat tasks whose kept outputs
        (5,000 bytes each, too big to be held by the server) all live on the first
        governor; SIGKILL of that governor (and its executors) until every object is
        finished again on the other one. Compared with running the same N tasks once.
"""
import argparse
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from rain.server.core import ServerCore                 # noqa: E402
from rain.server.graph import FINISHED, OBJ_FINISHED    # noqa: E402
from sim_scheduler import NullComm                      # noqa: E402


def core_figure(count, others=100_000):
    core = ServerCore(NullComm())
    g1 = core.add_governor("g1", 1, None, object())
    g2 = core.add_governor("g2", 1, None, object())
    client = core.add_client()
    sid = core.new_session(client, {})
    tasks = [(10 + i, "test/run", b"", [], [10 + count + others + i], 1, None, "", b"")
             for i in range(count + others)]
    objects = [(10 + count + others + i, "", "", 0, b"", i < count, None)
               for i in range(count + others)]
    core.submit(client, sid, tasks, objects)
    session = core.sessions[sid]
    for i, task in enumerate(session.tasks.values()):   # finished: lost ones on g1
        governor = g1 if i < count else g2
        task.state = FINISHED
        task.governor = None
        for obj in task.outputs:
            obj.state = OBJ_FINISHED
            obj.size = 5000
            obj.locations = [governor]
    session.unfinished_tasks = 0
    core.scheduler.ready.clear()
    start = time.perf_counter()
    core.remove_governor(g1, "benchmark")
    decided = time.perf_counter()
    core.schedule()
    placed = time.perf_counter()
    assert session.unfinished_tasks == count
    return decided - start, placed - decided


def e2e_figure(count):
    import psutil
    from rain.client import blob, tasks
    from rain.local_cluster import LocalCluster
    with LocalCluster(governors=[1]) as cluster:
        client = cluster.client()
        with client.new_session() as s:
            payload = blob(b"x" * 5000)
            outs = [tasks.Concat((payload, blob(str(i)))) for i in range(count)]
            for t in outs:
                t.output.keep()
            start = time.perf_counter()
            s.submit()
            s.wait(outs)
            first_run = time.perf_counter() - start
            cluster.add_governors(1, cpus=1)
            victim = cluster.governors[0][1]
            for child in psutil.Process(victim.pid).children(recursive=True):
                child.kill()
            start = time.perf_counter()
            os.killpg(victim.pid, signal.SIGKILL)
            while len(client.get_server_info()["governors"]) != 1:
                time.sleep(0.001)
            detected = time.perf_counter() - start
            s.wait([t.output for t in outs])
            recovered = time.perf_counter() - start
            assert outs[-1].output.fetch().get_bytes() == b"x" * 5000 + str(count - 1).encode()
    return first_run, detected, recovered


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    core = [core_figure(args.objects) for _ in range(args.repeat)]
    e2e = [e2e_figure(args.objects) for _ in range(args.repeat)]
    print(f"| figure ({args.objects} objects lost, {args.repeat} runs, median) | ms |")
    print("|---|---|")
    med = lambda values: sorted(values)[len(values) // 2] * 1000    # noqa: E731
    print(f"| core: decide what re-runs (100,000 other finished tasks) "
          f"| {med([c[0] for c in core]):.1f} |")
    print(f"| core: first scheduling round after it | {med([c[1] for c in core]):.1f} |")
    print(f"| e2e: first run of the {args.objects} tasks | {med([e[0] for e in e2e]):.0f} |")
    print(f"| e2e: SIGKILL until the server dropped the governor "
          f"| {med([e[1] for e in e2e]):.0f} |")
    print(f"| e2e: SIGKILL until all {args.objects} objects exist again "
          f"| {med([e[2] for e in e2e]):.0f} |")


if __name__ == "__main__":
    main()
