"""Periodic resource samples of one governor: its own process tree, not the machine.

Several governors may share a machine (``--local-governors=[2,2]``); the machine's totals
would be drawn once per governor and say nothing about which one is busy. A sample covers
the governor process and every process below it (executors, the programs of tasks).

CPU is measured from the tree's CPU times, which include the times of children that ended
and were reaped by a process of the tree (``children_user``/``children_system``), so a
program that ran for less than a sampling interval still counts.
"""
import os
import time

import psutil


def _cpu_seconds(process):
    t = process.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def descendants(pid):
    """Pids of every process below ``pid``, read from the kernel's per-thread lists of
    children (``/proc/<pid>/task/<tid>/children``): a few reads per process of the tree.
    (Asking each process of the machine for its parent, as a generic scan does, costs
    milliseconds per sample on a busy machine and stalls the governor's loop.) None where
    the kernel keeps no such lists."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None
    found = []
    seen = {pid}
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue            # ended meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    children = f.read().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    todo.append(child)
    return found


class Monitor:
    def __init__(self, cpus=None, pid=None):
        self.cpus = max(1, int(cpus or psutil.cpu_count() or 1))
        self._root = psutil.Process(pid or os.getpid())
        self._total_memory = psutil.virtual_memory().total
        self._last = None       # (wall time, cpu seconds of the tree)

    def tree(self):
        """The governor and every live process below it."""
        pids = descendants(self._root.pid)
        if pids is None:        # no children files in /proc: scan every process
            try:
                return [self._root] + self._root.children(recursive=True)
            except psutil.Error:
                return [self._root]
        processes = [self._root]
        for pid in pids:
            try:
                processes.append(psutil.Process(pid))
            except psutil.Error:
                continue        # ended meanwhile
        return processes

    def sample(self):
        cpu_seconds = 0.0
        rss = 0
        processes = 0
        for process in self.tree():
            try:
                with process.oneshot():
                    cpu_seconds += _cpu_seconds(process)
                    rss += process.memory_info().rss
                processes += 1
            except psutil.Error:
                continue        # ended between the listing and the look
        now = time.monotonic()
        usage = 0.0
        if self._last is not None and now > self._last[0]:
            used = max(0.0, cpu_seconds - self._last[1])
            usage = min(100.0, 100.0 * used / (now - self._last[0]) / self.cpus)
        self._last = (now, cpu_seconds)
        net = psutil.net_io_counters()
        return {
            # mean usage of the governor's CPUs by its processes, %
            "cpu_usage": round(usage, 2),
            # memory of its processes (resident), % of the machine's, and bytes
            "mem_usage": round(100.0 * rss / self._total_memory, 3),
            "mem_bytes": rss,
            "processes": processes,
            "net_stat": {"sent": net.bytes_sent, "recv": net.bytes_recv} if net else {},
        }
