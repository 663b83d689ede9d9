"""Scheduler simulation: the server core and scheduler alone, no network, no processes.

Builds one big graph, submits it in a single ``ServerCore.submit_batch`` call (the columns
that ``decode_submit`` would produce), then plays the governors: each round the core schedules,
every simulated governor takes its assigned tasks into a local queue, "runs" as many as it
has CPUs, and reports them finished (object updates, then task updates, as a real governor
does). The loop ends when the session has no unfinished task.

Graph (for N tasks): 4/5 of them form layer 1, each reading one constant shared by a group
of 100 tasks and producing one object; the other 1/5 form layer 2, each reading four
layer-1 outputs. Nothing is kept, so every object is deleted once consumed.

Figures (python 3.11, this 2-core machine while other jobs ran on it, load ~8: wall time
was ~3x the CPU time, so compare the CPU column), ``python benchmarks/sim_scheduler.py``:

                         before      after     (CPU seconds, 1M tasks, 100 x 8 cpus)
    submit                14.3        3.9      (GC paused during submit, one collection
                                                after; per-task max_cpus() scan hoisted;
                                                acyclicity check skipped for in-order graphs)
    scheduling             9.1        1.3-2.3  (round robin was O(governors) per task)
    updates + wait_all     3.2        3.2
    submit + sim loop     27.7       ~10.1     (includes 2.9 s of cyclic GC)
    live graph             907 B/task  683 B/task; peak RSS 1583 -> 1282 MiB

Usage:
    python benchmarks/sim_scheduler.py                  # 1,000,000 tasks, 100 governors
    python benchmarks/sim_scheduler.py --tasks 200000 --governors 20 --cpus 4
    python benchmarks/sim_scheduler.py --smoke          # 10,000 tasks (for CI)
"""
import argparse
import gc
import os
import platform
import resource
import sys
import time
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # noqa: E402

from rain.server.core import ServerCore  # noqa: E402
from rain.server.graph import FINISHED, OBJ_FINISHED  # noqa: E402
from rain.server.submit_batch import SubmitBatch  # noqa: E402

GROUP = 100          # layer-1 tasks sharing one constant
FAN_IN = 4           # layer-1 outputs read by one layer-2 task
CONST_SIZE = 100
OUTPUT_SIZE = 1000


class NullComm:
    """The core's comm: counts what it is told, keeps nothing."""

    def __init__(self):
        self.replies = []
        self.events = 0
        self.schedule_requests = 0

    def reply(self, client, request_id, kind, payload):
        self.replies.append((request_id, kind, payload))

    def governor_dirty(self, governor):
        pass

    def schedule_soon(self):
        self.schedule_requests += 1

    def event(self, event):
        self.events += 1


def build_graph(n_tasks):
    """Submit tuples: (tasks, objects). Ids are unique across tasks and objects.
    ``run`` turns them into the ``SubmitBatch`` a client's message decodes to."""
    n2 = n_tasks // (FAN_IN + 1)
    n1 = n_tasks - n2
    n_const = (n1 + GROUP - 1) // GROUP
    next_id = 10
    objects = []
    tasks = []
    const_data = b"c" * CONST_SIZE
    const_ids = list(range(next_id, next_id + n_const))
    next_id += n_const
    for cid in const_ids:
        objects.append((cid, "", "", 0, b"", False, const_data))
    layer1_outputs = list(range(next_id, next_id + n1))
    next_id += n1
    for oid in layer1_outputs:
        objects.append((oid, "", "", 0, b"", False, None))
    for i, oid in enumerate(layer1_outputs):
        tasks.append((next_id, "sim/work", b"", [(const_ids[i // GROUP], "")], [oid], 1,
                      None, "", b""))
        next_id += 1
    for j in range(n2):
        oid = next_id
        next_id += 1
        objects.append((oid, "", "", 0, b"", False, None))
        inputs = [(layer1_outputs[(j * FAN_IN + k) % n1], "") for k in range(FAN_IN)]
        tasks.append((next_id, "sim/merge", b"", inputs, [oid], 1, None, "", b""))
        next_id += 1
    return tasks, objects


class GcWatch:
    """Counts the cyclic collector's runs and the CPU time they take."""

    def __init__(self):
        self.runs = [0, 0, 0]
        self.time = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._start = time.process_time()
        else:
            self.time += time.process_time() - self._start
            self.runs[info["generation"]] += 1

    def close(self):
        gc.callbacks.remove(self._callback)


def rss():
    return psutil.Process().memory_info().rss


class Clock:
    """Accumulates wall and CPU time (the CPU figure is robust on a busy machine)."""

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def run(n_tasks, n_governors, cpus, quiet=False):
    comm = NullComm()
    core = ServerCore(comm)
    conn = object()     # any non-None conn: the governors count as connected
    governors = [core.add_governor(f"sim-{i}:1", cpus, None, conn) for i in range(n_governors)]
    client = core.add_client()
    session_id = core.new_session(client, {"name": "sim"})
    session = core.sessions[session_id]

    build = Clock()
    with build:
        gc.disable()
        tasks, objects = build_graph(n_tasks)
        batch = SubmitBatch.from_tuples(tasks, objects)
        gc.enable()
    n_tasks = len(tasks)

    gc.collect()
    rss_before = rss()
    watch = GcWatch()       # from here on, every collection counts
    submit = Clock()
    with submit:
        core.submit_batch(client, session_id, batch)
    rss_after = rss()
    del tasks, objects, batch

    queues = {g: deque() for g in governors}
    scheduling = Clock()
    updates = Clock()
    loop = Clock()
    rounds = 0
    max_queued = 0
    overbooked = 0
    wrong_cpus = 0
    with loop:
        with updates:
            core.wait_all(client, 1, session_id)      # the client waits for everything
        while session.unfinished_tasks:
            with scheduling:
                core.schedule()
            rounds += 1
            progressed = False
            for governor in governors:
                queue = queues[governor]
                if governor.out_tasks:
                    for task in governor.out_tasks:
                        if task.cpus > governor.cpus:
                            wrong_cpus += 1
                    queue.extend(governor.out_tasks)
                    governor.out_tasks = []
                governor.out_objects = []
                governor.out_delete = []
                governor.out_stop = []
                if governor.free_cpus < -governor.prefetch:
                    overbooked += 1
                if len(queue) > max_queued:
                    max_queued = len(queue)
                if not queue:
                    continue
                # "Run" what fits on the CPUs this round; all of it finishes.
                free = governor.cpus
                object_updates = []
                task_updates = []
                while queue and queue[0].cpus <= free:
                    task = queue.popleft()
                    free -= task.cpus
                    sid = task.session.id
                    for obj in task.outputs:
                        object_updates.append(
                            (sid, obj.id, OBJ_FINISHED, OUTPUT_SIZE, "", b"", None))
                    task_updates.append((sid, task.id, FINISHED, b""))
                with updates:
                    core.on_object_updates(governor, object_updates)
                    core.on_task_updates(governor, task_updates)
                progressed = True
            if not progressed and not any(g.out_tasks for g in governors):
                raise RuntimeError(f"simulation stuck with {session.unfinished_tasks} "
                                   "unfinished tasks")
    watch.close()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    assert comm.replies and comm.replies[-1][:2] == (1, "ok"), "wait_all not answered"
    assert overbooked == 0, "a governor went past its prefetch queue"
    assert wrong_cpus == 0, "a governor got a task needing more cpus than it has"
    core_wall = submit.wall + scheduling.wall + updates.wall
    core_cpu = submit.cpu + scheduling.cpu + updates.cpu
    result = {
        "tasks": n_tasks,
        "governors": n_governors,
        "cpus": cpus,
        "rounds": rounds,
        "build": (build.wall, build.cpu),
        "submit": (submit.wall, submit.cpu),
        "scheduling": (scheduling.wall, scheduling.cpu),
        "updates": (updates.wall, updates.cpu),
        "core": (core_wall, core_cpu),
        "loop": (loop.wall, loop.cpu),
        "total": (submit.wall + loop.wall, submit.cpu + loop.cpu),
        "tasks_per_s": n_tasks / core_cpu,
        "peak_rss": peak_rss,
        "bytes_per_task": (rss_after - rss_before) / n_tasks,
        "max_queued": max_queued,
        "prefetch": governors[0].prefetch,
        "gc_runs": watch.runs,
        "gc_time": watch.time,
    }
    if not quiet:
        print_result(result)
    return result


def print_result(r):
    mib = 1024 * 1024
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cpus")
    print(f"graph: {r['tasks']:,} tasks on {r['governors']} governors x {r['cpus']} cpus "
          f"(prefetch queue {r['prefetch']} tasks), {r['rounds']:,} scheduling rounds")
    print("                          wall      cpu")

    def line(label, key, note=""):
        wall, cpu = r[key]
        print(f"  {label:<20} {wall:7.2f} s {cpu:7.2f} s   {note}")

    line("build columns", "build", "(not counted)")
    line("submit", "submit")
    line("scheduling", "scheduling", "(all core.schedule() calls)")
    line("task/object updates", "updates", "(on_*_updates, and the client's wait_all)")
    line("core total", "core", f"-> {r['tasks_per_s']:,.0f} tasks/s of core cpu time")
    line("simulation loop", "loop", "(incl. the simulated governors)")
    line("TOTAL", "total", "(submit + simulation loop)")
    print(f"  cyclic GC                      {r['gc_time']:7.2f} s   "
          f"(included above; runs per generation: {r['gc_runs']})")
    print(f"  live graph           {r['bytes_per_task']:7.0f} B/task      "
          "(RSS growth over submit)")
    print(f"  peak RSS             {r['peak_rss'] / mib:7.0f} MiB")
    print(f"  longest governor queue {r['max_queued']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks (default 1M)")
    parser.add_argument("--governors", type=int, default=100, help="governors (default 100)")
    parser.add_argument("--cpus", type=int, default=8, help="cpus per governor (default 8)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (10,000 tasks)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run under cProfile and write the stats to FILE")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tasks = 10_000
    if args.tasks < 5 or args.governors < 1 or args.cpus < 1:
        parser.error("need --tasks >= 5, --governors >= 1, --cpus >= 1")
    if args.profile:
        import cProfile
        cProfile.runctx("run(args.tasks, args.governors, args.cpus)", globals(),
                        {"run": run, "args": args}, args.profile)
    else:
        run(args.tasks, args.governors, args.cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
