"""The governor's state machine: tasks, CPUs and resources, the ready queue, update batching.

No asyncio, sockets, files or executors here: the shell (``governor.py``) decodes a
message or finishes some I/O, calls one event method on the loop thread, and performs the
effects the core asks of its comm (``comm.py`` lists them). Tests drive it with a
recording comm and check ``check_consistency`` after every step.

The life of an assigned task here: ``WAITING`` for inputs (fetched from peers or produced
by local tasks), ``QUEUED`` for CPUs and resources, ``RUNNING`` (the shell runs it), then
over: ``DONE``, ``FAILED`` or ``STOPPED`` by the server. What the server hears uses the
shared wire vocabulary of ``rain.common.states``.
"""
import collections
import logging
import threading
import time

from ..common.states import BLOB, FAILED, FINISHED, OBJ_FINISHED, RUNNING
from ..common.timestamps import utc_isoformat
from ..common.update_columns import INLINE_DATA_MAX
from ..common.cbor import dumps_or_empty
from .store import PENDING, READY

logger = logging.getLogger(__name__)

#: Where a task is in its run on this governor (see the module doc); the shared task
#: states of ``rain.common.states`` are what the server hears.
WAITING, QUEUED, T_RUNNING, DONE, T_FAILED, STOPPED = range(6)
STEP_NAMES = ("waiting", "queued", "running", "done", "failed", "stopped")

#: Update batching while the local queue is deep (see ``GovernorCore.hold_updates``).
HOLD_QUEUE = 4
HOLD_BATCH = 16
HOLD_MAX = 0.005
#: How long news of started tasks alone may wait: most tasks finish sooner, and then one
#: update says both (see ``GovernorCore.hold_updates``).
HOLD_STARTED = 0.002


class GovTask:
    __slots__ = ("key", "task_type", "config", "inputs", "labels", "outputs", "cpus",
                 "resources", "name", "user", "state", "runner", "executor", "start",
                 "duration", "holds_cpus", "ran_on", "missing")

    def __init__(self, key, task_type, config, inputs, labels, outputs, cpus, resources,
                 name, user):
        self.key = key
        self.task_type = task_type
        self.config = config
        self.inputs = inputs        # [key]
        self.labels = labels
        self.outputs = outputs      # [key]
        self.cpus = cpus
        self.resources = resources
        self.name = name
        self.user = user
        self.state = WAITING
        self.runner = None          # the shell's coroutine running it, if any
        self.executor = None
        self.start = None           # unix time; the executor's when it reports one
        self.duration = None        # the executor's measure, when it reports one
        self.holds_cpus = False     # False while queued behind another call (see pump)
        self.ran_on = None          # the executor of its call, until the run has ended
        self.missing = 0            # inputs not here yet (while WAITING)

    def __repr__(self):
        return f"<GovTask {self.key} {STEP_NAMES[self.state]}>"


class GovernorCore:
    def __init__(self, comm, store, *, cpus, resources=None, delete_timeout=5.0,
                 debug_mode=False, check_threads=False):
        self.comm = comm
        self.store = store
        self.cpus = cpus
        self.free_cpus = cpus
        self.resources = dict(resources or {})
        self.free_resources = dict(self.resources)
        self.delete_timeout = delete_timeout
        self.tasks = {}
        self.queue = collections.deque()
        self.governor_id = None
        self.task_updates = []
        self.object_updates = []
        self.flush_scheduled = False
        self.holding = False        # the shell's hold timer is armed (see hold_updates)
        self.urgent = False
        self.pump_round = 0         # counts pump calls (see ExecutorPool.queue_behind)
        self.closing = False
        #: RAIN_DEBUG_MODE: check the invariants after every event (and the thread).
        self.debug_mode = debug_mode
        #: RAIN_CHECK_THREADS (the test suite sets it): every event must come on the
        #: thread that made the core, the loop's; a worker thread fails loudly.
        self.check_threads = check_threads or debug_mode
        self._thread = threading.get_ident()
        store.on_ready = self._object_ready
        store.on_failed = self._object_failed

    # ======================================================================================
    # Events from the server

    def assign(self, objects, tasks):
        """An assignment: ``objects`` and ``tasks`` rows as ``assign_columns`` reads them."""
        self._check_thread()
        store = self.store
        arrived = store.add_assigned(objects)
        if arrived:
            self.object_updates.extend((obj.key, OBJ_FINISHED, obj.size,
                                        obj.content_type or "", b"") for obj in arrived)
            self.schedule_flush()
        queue = self.queue
        known = self.tasks
        for row in tasks:
            key = row[0]
            if key in known:
                continue
            task = known[key] = GovTask(*row)
            missing = None
            for input_key in task.inputs:
                obj = store.objects.get(input_key)
                if obj is None:
                    self.fail_task(task, f"Input object {input_key} was not sent to the "
                                         "governor")
                    break
                if obj.state != READY:
                    if missing is None:
                        missing = []
                    missing.append(obj)
            else:
                if missing:
                    self._wait_for(task, missing)
                else:
                    task.state = QUEUED
                    queue.append(task)
        self.pump()         # once for the whole assignment
        self._debug_check()

    def _wait_for(self, task, missing):
        """Park ``task`` on its missing inputs; start the fetches nobody started yet."""
        task.missing = len(missing)
        for obj in missing:
            if obj.waiters is None:
                obj.waiters = []
            obj.waiters.append(task)
            if obj.fetching is None and obj.locations:
                obj.fetching = True
                self.comm.fetch(obj)

    def stop(self, keys):
        """The server stops tasks (its session failed or closed)."""
        self._check_thread()
        running = []
        for key in keys:
            task = self.tasks.pop(key, None)
            if task is None:
                continue
            if task.state == T_RUNNING:
                running.append(task)
            task.state = STOPPED
        if running:
            self.comm.stop_running(running)
        self.pump()
        self._debug_check()

    def delete(self, keys):
        """The server no longer needs these objects here (after the delayed-delete time)."""
        self._check_thread()
        self.store.schedule_deletes(keys, self.delete_timeout)
        self.comm.objects_deleted(keys)
        self._debug_check()

    def info_lists(self):
        """``(tasks, ready objects, objects in the delete list)`` keys for an info reply."""
        task_keys = [key for key, task in self.tasks.items() if task.state != STOPPED]
        ready = [key for key, obj in self.store.objects.items() if obj.state == READY]
        return task_keys, ready, list(self.store.to_delete)

    # ======================================================================================
    # Objects

    def fetched(self, obj):
        """A fetch from a peer stored ``obj`` (the shell set its bytes or file)."""
        self._check_thread()
        obj.fetching = None
        self.object_updates.append((obj.key, OBJ_FINISHED, obj.size, obj.content_type or "",
                                    b""))
        self.schedule_flush()
        self._debug_check()

    def fetch_failed(self, obj, reason):
        """No peer could deliver ``obj`` (peer gone, bad archive, disk full...): the tasks
        waiting for it fail with ``reason``. The object stays pending, so a later
        assignment (the server's retry) fetches it again."""
        self._check_thread()
        obj.fetching = None
        waiters, obj.waiters = obj.waiters, None
        for task in waiters or ():
            if self.tasks.get(task.key) is task and task.state == WAITING:
                # "crashed": a system failure the server may retry elsewhere
                self.fail_task(task, f"Cannot obtain input {obj.key}: {reason}",
                               {"crashed": "input"})
        self._debug_check()

    def _object_ready(self, obj):
        """The store made ``obj`` ready and tasks wait for it: count down their missing
        inputs; the ones with none left join the queue."""
        self._check_thread()
        waiters, obj.waiters = obj.waiters, None
        started = False
        for task in waiters:
            if self.tasks.get(task.key) is task and task.state == WAITING:
                task.missing -= 1
                if task.missing == 0:
                    task.state = QUEUED
                    self.queue.append(task)
                    started = True
        if started:
            self.comm.pump_soon()

    def _object_failed(self, obj, reason):
        """The store dropped a pending ``obj`` (deleted while tasks wait for it)."""
        self._check_thread()
        waiters, obj.waiters = obj.waiters, None
        for task in waiters or ():
            if self.tasks.get(task.key) is task and task.state == WAITING:
                self.fail_task(task, f"Cannot obtain input {obj.key}: {reason}")

    # ======================================================================================
    # Running

    def fits(self, task):
        if task.cpus > self.free_cpus:
            return False
        if task.resources:
            free = self.free_resources
            for name, amount in task.resources.items():
                if free.get(name, 0) < amount:
                    return False
        return True

    def pump(self):
        """Start what fits, in queue order; tasks that do not fit keep their place."""
        if not self.queue or self.closing:
            return
        skipped = []
        queue = self.queue
        self.pump_round += 1
        deep = len(queue) > max(HOLD_QUEUE, 2 * self.cpus)
        comm = self.comm
        while queue:
            task = queue.popleft()
            if task.state != QUEUED:
                continue
            if self.fits(task):
                self._take_resources(task)
                comm.start_task(task)
            elif deep and self._queue_behind(task):
                pass
            else:
                skipped.append(task)
                if self.free_cpus <= 0:
                    break
        if skipped:
            queue.extendleft(reversed(skipped))

    def _take_resources(self, task):
        task.state = T_RUNNING
        task.holds_cpus = True
        self.free_cpus -= task.cpus
        if task.resources:
            free = self.free_resources
            for name, amount in task.resources.items():
                free[name] = free.get(name, 0) - amount
        task.start = time.time()

    def _give_resources(self, task):
        self.free_cpus += task.cpus
        if task.resources:
            free = self.free_resources
            for name, amount in task.resources.items():
                free[name] = free.get(name, 0) + amount

    def _queue_behind(self, task):
        """Send ``task`` to an executor busy with tasks like it, behind them.

        Only while many tasks wait here: the executor then goes from one call to the
        next without waiting for us, and calls and results travel several to a write.
        A task queued this way holds no CPUs; it takes over those of the call ahead of it
        when that one is done (``task_ended``), so the queue occupies one task's CPUs.
        """
        if task.resources:
            return False
        task.state = T_RUNNING
        task.holds_cpus = False
        if self.comm.queue_behind(task):
            return True
        task.state = QUEUED
        return False

    def started(self, task):
        """The shell started ``task`` and it will not end in this turn: report it."""
        self.task_updates.append((task.key, RUNNING, None))
        self.note_started()

    def task_done(self, task, outputs, extra_info, flush_now=False):
        """Report a finished task; ``flush_now``: in this turn, not at its end (saves a
        turn where results come one per read anyway; deep queues still batch)."""
        self._check_thread()
        if self.tasks.get(task.key) is not task:
            return
        info = self.base_info(task)
        if extra_info:
            info.update(extra_info)
        updates = self.object_updates
        for obj in outputs:
            data = obj.data
            updates.append((obj.key, OBJ_FINISHED, obj.size, obj.content_type or "",
                            dumps_or_empty(obj.info),
                            data if data is not None and obj.data_type == BLOB
                            and len(data) <= INLINE_DATA_MAX else None))
        self.task_updates.append((task.key, FINISHED, info))
        del self.tasks[task.key]
        if flush_now:
            self.flush()
        else:
            self.schedule_flush()

    def task_returned(self, task):
        """Its executor gave the call back unrun (it died behind another call): queue the
        task again at the front."""
        if self.tasks.get(task.key) is not task or self.closing:
            return
        if task.state == T_RUNNING:
            task.state = QUEUED
            task.start = None
            self.queue.appendleft(task)

    def task_failed(self, task, message, extra=None):
        """A run ended with an error (``extra``: TaskInfo fields of the executor)."""
        self._check_thread()
        if self.tasks.get(task.key) is not task or self.closing:
            return      # (closing: the server learns from the lost connection)
        self.fail_task(task, message, extra)

    def task_ended(self, task, inputs, successor, pump=True):
        """After every run, however it ended: unpin the inputs, pass on the CPUs (to
        ``successor``, the call now running in the same executor, if any)."""
        self._check_thread()
        for obj in inputs:
            obj.refs -= 1
        if task.state == T_RUNNING:
            task.state = DONE
        task.ran_on = task.executor = None
        if task.holds_cpus:
            task.holds_cpus = False
            if successor is not None and not successor.holds_cpus and \
                    successor.state == T_RUNNING:
                successor.holds_cpus = True
                self.task_updates.append((successor.key, RUNNING, None))
                self.schedule_flush()
            else:
                self._give_resources(task)
        if pump:
            self.pump()
        self._debug_check()

    def base_info(self, task):
        duration = task.duration
        return {
            "start_time": utc_isoformat(task.start),
            "duration": duration if duration is not None else time.time() - task.start,
            "governor": self.governor_id,
        }

    def fail_task(self, task, message, extra=None):
        info = self.base_info(task) if task.start else {"governor": self.governor_id}
        if extra:
            info.update(extra)
        info["error"] = message
        self.tasks.pop(task.key, None)
        task.state = T_FAILED
        store = self.store
        for key in task.outputs:
            obj = store.objects.get(key)
            if obj is not None and obj.state == PENDING:
                store.delete_now(key)
        self.task_updates.append((task.key, FAILED, info))
        self.urgent = True
        self.schedule_flush()

    def running_count(self):
        return sum(1 for t in self.tasks.values() if t.state == T_RUNNING)

    # ======================================================================================
    # Reporting

    def note_started(self):
        """A "running" update was added: if it is the only news, arm the timer that sends
        it unless the task's end comes first, without a loop turn for ``flush``."""
        if self.flush_scheduled or self.holding or self.urgent or self.object_updates or \
                any(u[1] != RUNNING for u in self.task_updates):
            self.schedule_flush()
            return
        self.holding = True
        self.comm.hold(HOLD_MAX if self.queue else HOLD_STARTED)

    def schedule_flush(self):
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.comm.flush_soon()

    def hold_updates(self):
        """Whether this turn's updates may wait for the next ones.

        With many tiny tasks the server keeps a deep prefetch queue here, and one update
        message per finished task (one send, one wake-up of the server, one scheduling
        round and assignment back) cost more than the tasks. While at least
        ``HOLD_QUEUE`` tasks wait here for a CPU, the server has nothing urgent to do
        with our news, so updates are sent per ``HOLD_BATCH`` (or after ``HOLD_MAX``
        seconds at most). News that tasks started, alone, waits up to ``HOLD_STARTED``
        for their end. Anything else (a short queue: chains, the end of a graph, long
        tasks; a failure) leaves at the end of this loop turn as before.
        """
        if self.urgent:
            return False
        updates = self.task_updates
        if len(updates) < HOLD_BATCH and \
                len(self.queue) + self.comm.calls_behind() >= max(HOLD_QUEUE, 2 * self.cpus):
            return True
        # Only "started" news (a chain's next link, say): it may wait a moment for the
        # task's end, so that one message instead of two wakes the server.
        return not self.object_updates and all(u[1] == RUNNING for u in updates)

    def hold_expired(self):
        """The hold timer fired: send what waits."""
        self.holding = False
        self.urgent = True
        self.flush()

    def flush(self):
        """Send the collected updates as one message, unless they may wait."""
        self.flush_scheduled = False
        if not (self.task_updates or self.object_updates) or not self.comm.connected():
            return
        if self.hold_updates():
            if not self.holding:
                self.holding = True
                self.comm.hold(HOLD_MAX if self.queue else HOLD_STARTED)
            return
        self.urgent = False
        if self.holding:
            self.holding = False
            self.comm.cancel_hold()
        objects, self.object_updates = self.object_updates, []
        tasks = merge_task_updates(self.task_updates)
        self.task_updates = []
        self.comm.send_update(objects, tasks)

    # ======================================================================================
    # Checks

    def _check_thread(self):
        if self.check_threads and threading.get_ident() != self._thread:
            raise AssertionError(
                f"governor state touched from thread {threading.current_thread().name}")

    def _debug_check(self):
        if self.debug_mode:
            check_consistency(self)

    def check(self):
        """The thread and invariant checks the mode asks for (the shell calls it after
        effects it performed itself, such as storing an object)."""
        self._check_thread()
        self._debug_check()


def merge_task_updates(updates):
    """Drop the "running" entry of a task that also finished in this batch: the server
    records the start from the finished entry (whose info has the start time)."""
    finished = None
    for key, state, _ in updates:
        if state == FINISHED:
            if finished is None:
                finished = set()
            finished.add(key)
    if finished is None:
        return updates
    return [u for u in updates if u[1] != RUNNING or u[0] not in finished]


def check_consistency(core):
    """RAIN_DEBUG_MODE: verify the governor's invariants; raise AssertionError loudly."""
    core._check_thread()
    held_cpus = 0
    held = {}
    objects = core.store.objects
    for key, task in core.tasks.items():
        assert task.key == key, task
        assert task.state in (WAITING, QUEUED, T_RUNNING), \
            f"{task} is over but still in the task table"
        if task.state == T_RUNNING and task.holds_cpus:
            held_cpus += task.cpus
            for name, amount in (task.resources or {}).items():
                held[name] = held.get(name, 0) + amount
        if task.state == WAITING:
            missing = [k for k in task.inputs
                       if k in objects and objects[k].state != READY]
            assert task.missing == len(missing) > 0, \
                f"{task} waits for {task.missing} inputs, {len(missing)} are missing"
            for k in missing:
                assert task in (objects[k].waiters or ()), f"{task} not among waiters of {k}"
    for task in core.queue:
        if task.state == QUEUED:
            assert core.tasks.get(task.key) is task, f"{task} queued but unknown"
            for k in task.inputs:
                assert objects[k].state == READY, f"queued {task}: input {k} not ready"
    queued = sum(1 for t in core.tasks.values() if t.state == QUEUED)
    assert queued <= len(core.queue), "a queued task is missing from the queue"
    # Tasks stopped while running hold CPUs until the shell reports their end.
    assert core.free_cpus <= core.cpus - held_cpus, \
        f"free cpus {core.free_cpus} + held {held_cpus} exceed {core.cpus}"
    for name, total in core.resources.items():
        assert core.free_resources.get(name, 0) <= total - held.get(name, 0), \
            f"resource {name}: free {core.free_resources.get(name)} + held exceed {total}"
    for key, obj in objects.items():
        if obj.waiters:
            assert obj.state == PENDING, f"{obj} is not pending but has waiters"
