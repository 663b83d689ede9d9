"""Placement of ready tasks on governors: pure logic, no I/O.

Rules (SPEC §6): a task goes to the governor that already holds the most bytes of its
inputs; tasks asking for more CPUs are placed first; CPUs are never overbooked for running
tasks. A governor may additionally hold a few *queued* tasks beyond its CPUs (the prefetch
queue) so its executors never wait a network round trip for the next task; the governor
itself starts a queued task only when enough of its CPUs are free.

The work per placed task is proportional to its inputs (locality scoring) plus an
amortised constant for the round-robin choice among governors; when no governor can take
anything the round stops at once, however many tasks are ready.
"""
import os
from collections import deque

from .graph import READY

#: Upper bound of queued tasks a governor may hold per CPU beyond those it runs.
PREFETCH_PER_CPU = int(os.environ.get("RAIN_PREFETCH_PER_CPU", "32"))
#: How much queued work (seconds per CPU) the prefetch queue aims at.
PREFETCH_WORK = 0.02
#: Tasks longer than this are never queued ahead: a free governor may take them instead.
NO_PREFETCH_ABOVE = 0.1


def update_prefetch(governor, duration):
    """Adapt the governor's queue depth to its tasks' run times: tiny tasks get a deep
    queue (so the governor never waits for the server), long tasks none (so a governor
    that frees up early can still take them)."""
    avg = governor.avg_duration
    avg = duration if avg is None else 0.9 * avg + 0.1 * duration
    governor.avg_duration = avg
    if avg >= NO_PREFETCH_ABOVE:
        per_cpu = 0
    else:
        per_cpu = min(PREFETCH_PER_CPU, max(1, int(PREFETCH_WORK / max(avg, 1e-5))))
    governor.prefetch = governor.cpus * per_cpu


class Scheduler:
    def __init__(self):
        self.governors = []
        self.ready = {}            # cpus -> deque of tasks (cpus only, no named resources)
        self.ready_special = []    # tasks asking for named resources
        self._rr = 0

    # -- governors ------------------------------------------------------------------------
    def add_governor(self, governor):
        governor.index = len(self.governors)
        self.governors.append(governor)

    def remove_governor(self, governor):
        self.governors.remove(governor)
        for i, g in enumerate(self.governors):
            g.index = i
        self._rr = 0

    @staticmethod
    def prefetch_slots(governor):
        return governor.prefetch

    def max_cpus(self):
        return max((g.cpus for g in self.governors if not g.closing), default=0)

    # -- ready queue ----------------------------------------------------------------------
    def add_ready(self, task):
        task.state = READY
        if task.resources:
            self.ready_special.append(task)
            return
        queue = self.ready.get(task.cpus)
        if queue is None:
            queue = self.ready[task.cpus] = deque()
        queue.append(task)

    def ready_count(self):
        return sum(len(q) for q in self.ready.values()) + len(self.ready_special)

    # -- placement ------------------------------------------------------------------------
    def schedule(self, assign):
        """Place as many ready tasks as the governors can take; ``assign(task, governor)``
        records each decision. Returns the number of tasks placed."""
        governors = [g for g in self.governors if not g.closing]
        if not governors:
            return 0
        placed = 0
        if self.ready_special:
            placed += self._schedule_special(governors, assign)
        for cpus in sorted(self.ready, reverse=True):
            queue = self.ready[cpus]
            placed += self._schedule_queue(queue, cpus, governors, assign)
            if not queue:
                del self.ready[cpus]
        return placed

    def _schedule_queue(self, queue, cpus, governors, assign):
        """Place the tasks of one cpus class (no named resources).

        Within one round a governor's free CPUs only go down, so a governor that cannot
        take a task of this size now cannot take a later one either: it leaves the
        candidate lists for good. The round-robin choice is thus amortised O(1) per task,
        and the whole queue costs O(tasks placed x inputs + governors)."""
        count = len(governors)
        start = self._rr % count
        rotated = governors[start:] + governors[:start] if start else governors
        # Candidates with free CPUs now, and candidates with room in the prefetch queue.
        now = [g for g in rotated if g.cpus >= cpus and g.free_cpus >= cpus]
        later = [g for g in rotated
                 if g.cpus >= cpus and g.free_cpus - cpus >= -g.prefetch]
        now_pos = later_pos = 0
        placed = 0
        while queue:
            task = queue[0]
            if task.state != READY:          # cancelled or re-queued meanwhile
                queue.popleft()
                continue
            if not later:
                break
            governor = None
            # Locality: the governor already holding the most bytes of the inputs.
            scores = None
            for obj in task.inputs:
                holders = obj.testing or obj.locations
                if holders and obj.size > 0:
                    if scores is None:
                        scores = {}
                    size = obj.size
                    for g in holders:
                        scores[g] = scores.get(g, 0) + size
            if scores:
                best_score = -1
                for g, score in scores.items():
                    if score > best_score and g.free_cpus >= cpus and g.cpus >= cpus \
                            and not g.closing:
                        governor, best_score = g, score
            if governor is None:
                # Round robin among governors with free CPUs.
                while now:
                    if now_pos >= len(now):
                        now_pos = 0
                    g = now[now_pos]
                    if g.free_cpus >= cpus:
                        governor = g
                        now_pos += 1
                        break
                    del now[now_pos]
            if governor is None and scores:
                # Everyone is busy: queue it where its data is, if there is room.
                best_score = -1
                for g, score in scores.items():
                    if score > best_score and g.cpus >= cpus and not g.closing and \
                            g.free_cpus - cpus >= -g.prefetch:
                        governor, best_score = g, score
            if governor is None:
                while later:
                    if later_pos >= len(later):
                        later_pos = 0
                    g = later[later_pos]
                    if g.free_cpus - cpus >= -g.prefetch:
                        governor = g
                        later_pos += 1
                        break
                    del later[later_pos]
                if governor is None:
                    break
            queue.popleft()
            assign(task, governor)
            self._rr = governor.index + 1
            placed += 1
        return placed

    def _schedule_special(self, governors, assign):
        placed = 0
        remaining = []
        for task in self.ready_special:
            if task.state != READY:
                continue
            governor = self._choose(task, governors, allow_prefetch=False)
            if governor is None:
                remaining.append(task)
            else:
                assign(task, governor)
                placed += 1
        self.ready_special = remaining
        return placed

    @staticmethod
    def _fits(task, governor, limit):
        if task.cpus > governor.cpus or governor.closing:
            return False    # never hand a governor a task it can never run
        if governor.free_cpus - task.cpus < limit:
            return False
        if task.resources:
            free = governor.free_resources
            for name, amount in task.resources.items():
                if free.get(name, 0) < amount:
                    return False
        return True

    def _choose(self, task, governors, allow_prefetch=True):
        """The general (slower, O(governors)) choice, used for tasks with named
        resources."""
        # Locality: bytes of inputs already present on each governor.
        scores = None
        for obj in task.inputs:
            holders = obj.testing or obj.locations
            if holders and obj.size > 0:
                if scores is None:
                    scores = {}
                for g in holders:
                    scores[g] = scores.get(g, 0) + obj.size
        if scores:
            best = None
            best_score = -1
            for g, score in scores.items():
                if score > best_score and self._fits(task, g, 0):
                    best, best_score = g, score
            if best is not None:
                return best
        governor = self._round_robin(task, governors, 0)
        if governor is not None or not allow_prefetch:
            return governor
        if scores:
            best = None
            best_score = -1
            for g, score in scores.items():
                if score > best_score and self._fits(task, g, -self.prefetch_slots(g)):
                    best, best_score = g, score
            if best is not None:
                return best
        return self._round_robin(task, governors, None)

    def _round_robin(self, task, governors, limit):
        count = len(governors)
        start = self._rr % count
        for step in range(count):
            g = governors[(start + step) % count]
            lim = limit if limit is not None else -self.prefetch_slots(g)
            if self._fits(task, g, lim):
                self._rr = g.index + 1
                return g
        return None
