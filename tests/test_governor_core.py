"""The governor's state machine driven by plain calls: no sockets, executors or processes.

``RecordingComm`` stands in for the asyncio shell: it records the effects the core asks
for (tasks to start, fetches, update messages), and the test plays the shell by calling
the core's events back. After every step ``check_consistency`` verifies the invariants
(CPU and resource accounting, queue, waiters).
"""
import random
import threading

import pytest

from rain.common.states import BLOB, FAILED, FINISHED, OBJ_FINISHED, RUNNING
from rain.governor.core import (DONE, HOLD_QUEUE, QUEUED, STOPPED, T_FAILED, T_RUNNING,
                                WAITING, GovernorCore, check_consistency)
from rain.governor.store import PENDING, Store

S = 1       # the session of every key here


class RecordingComm:
    def __init__(self):
        self.started = []
        self.fetches = []
        self.stopped = []
        self.deleted = []
        self.updates = []          # (objects, tasks) per message
        self.pump_requests = 0
        self.flush_requests = 0
        self.holds = []
        self.behind = []           # tasks sent behind a busy executor
        self.accept_behind = False

    def fetch(self, obj):
        self.fetches.append(obj.key)

    def start_task(self, task):
        self.started.append(task)

    def queue_behind(self, task):
        if self.accept_behind:
            self.behind.append(task)
            return True
        return False

    def stop_running(self, tasks):
        self.stopped.extend(tasks)

    def objects_deleted(self, keys):
        self.deleted.extend(keys)

    def pump_soon(self):
        self.pump_requests += 1

    def flush_soon(self):
        self.flush_requests += 1

    def hold(self, delay):
        self.holds.append(delay)

    def cancel_hold(self):
        pass

    def calls_behind(self):
        return len(self.behind)

    def connected(self):
        return True

    def send_update(self, objects, tasks):
        self.updates.append((objects, tasks))

    def task_rows(self):
        return [row for _, tasks in self.updates for row in tasks]

    def object_rows(self):
        return [row for objects, _ in self.updates for row in objects]


class Sim:
    """A core with a recording comm and a real store; checks the invariants after
    every step, and plays the shell's part when asked."""

    def __init__(self, tmp_path, cpus=2, resources=None):
        self.comm = RecordingComm()
        self.store = Store(str(tmp_path))
        self.core = GovernorCore(self.comm, self.store, cpus=cpus, resources=resources,
                                 delete_timeout=0, debug_mode=True)
        self.core.governor_id = "127.0.0.1:1"

    def check(self):
        check_consistency(self.core)

    def assign(self, objects=(), tasks=()):
        self.core.assign(list(objects), list(tasks))
        self.check()

    def run_loop(self):
        """What the shell's loop does at the end of a turn: pump and flush."""
        while self.comm.pump_requests or self.comm.flush_requests:
            if self.comm.pump_requests:
                self.comm.pump_requests = 0
                self.core.pump()
            if self.comm.flush_requests:
                self.comm.flush_requests = 0
                self.core.flush()
            self.check()

    def finish(self, task, data=b"out"):
        """The shell ran ``task`` to its end, producing ``data`` for each output."""
        outputs = [self.store.objects[key] for key in task.outputs]
        for obj in outputs:
            self.store.set_bytes(obj, data)
        self.core.task_done(task, outputs, None)
        self.core.task_ended(task, (), None)
        self.check()

    def fail(self, task, message="boom"):
        self.core.task_failed(task, message)
        self.core.task_ended(task, (), None)
        self.check()

    def flush(self):
        self.core.urgent = True
        self.core.flush()
        self.check()


def O(oid, data=None, locations=()):
    """An object row as ``assign_columns`` reads it."""
    return ((S, oid), "", "", BLOB, b"", len(data) if data is not None else 0,
            tuple(locations), data)


def T(tid, inputs=(), outputs=(), cpus=1, resources=None, task_type="py/run"):
    """A task row as ``assign_columns`` reads it."""
    return ((S, tid), task_type, b"", [(S, i) for i in inputs], [""] * len(inputs),
            [(S, o) for o in outputs], cpus, resources, "", b"")


@pytest.fixture
def sim(tmp_path):
    return Sim(tmp_path)


def test_tasks_start_while_cpus_last_and_the_rest_follow(sim):
    sim.assign([O(1, b"in")] + [O(10 + i) for i in range(3)],
               [T(100 + i, [1], [10 + i]) for i in range(3)])
    assert [t.key[1] for t in sim.comm.started] == [100, 101]
    assert sim.core.free_cpus == 0
    first = sim.comm.started[0]
    sim.finish(first)
    assert [t.key[1] for t in sim.comm.started] == [100, 101, 102]
    assert first.state == DONE and (S, 100) not in sim.core.tasks
    for task in sim.comm.started[1:]:
        sim.finish(task)
    assert sim.core.free_cpus == 2
    sim.flush()
    states = [(row[0][1], row[1]) for row in sim.comm.task_rows()]
    assert states == [(100, FINISHED), (101, FINISHED), (102, FINISHED)]
    objects = [row for row in sim.comm.object_rows() if row[0][1] != 1]
    assert [(row[0][1], row[1], row[5]) for row in objects] == \
        [(10, OBJ_FINISHED, b"out"), (11, OBJ_FINISHED, b"out"), (12, OBJ_FINISHED, b"out")]


def test_named_resources_are_taken_and_given_back(tmp_path):
    sim = Sim(tmp_path, cpus=4, resources={"gpu": 1})
    sim.assign([O(1, b"x"), O(2), O(3), O(4)],
               [T(10, [1], [2], resources={"gpu": 1}), T(11, [1], [3], resources={"gpu": 1}),
                T(12, [1], [4])])
    # The second gpu task waits; the cpu-only task behind it goes ahead.
    assert [t.key[1] for t in sim.comm.started] == [10, 12]
    assert sim.core.free_resources == {"gpu": 0}
    sim.finish(sim.comm.started[0])
    assert [t.key[1] for t in sim.comm.started] == [10, 12, 11]
    sim.finish(sim.comm.started[1])
    sim.finish(sim.comm.started[2])
    assert sim.core.free_resources == {"gpu": 1} and sim.core.free_cpus == 4


def test_a_task_waits_for_the_output_of_a_local_task(sim):
    sim.assign([O(1, b"x"), O(2), O(3)], [T(10, [1], [2]), T(11, [2], [3])])
    consumer = sim.core.tasks[(S, 11)]
    assert [t.key[1] for t in sim.comm.started] == [10]
    assert consumer.state == WAITING and consumer.missing == 1
    producer = sim.comm.started[0]
    outputs = [sim.store.objects[(S, 2)]]
    sim.store.set_bytes(outputs[0], b"r")
    assert consumer.state == QUEUED and consumer.missing == 0
    sim.core.task_done(producer, outputs, None)
    sim.core.task_ended(producer, (), None)       # the freed CPU goes to the consumer
    sim.check()
    assert sim.comm.started[-1] is consumer and consumer.state == T_RUNNING


def test_one_fetch_per_object_and_waiting_tasks_start_when_it_arrives(sim):
    sim.assign([O(1, locations=["peer:1"]), O(2), O(3)],
               [T(10, [1], [2]), T(11, [1], [3])])
    assert sim.comm.fetches == [(S, 1)]
    assert sim.comm.started == []
    obj = sim.store.objects[(S, 1)]
    sim.store.set_bytes(obj, b"fetched")
    sim.core.fetched(obj)
    sim.run_loop()
    assert [t.key[1] for t in sim.comm.started] == [10, 11]
    assert ((S, 1), OBJ_FINISHED, 7, "", b"") in sim.comm.object_rows()


def test_a_failed_fetch_fails_the_waiting_tasks_with_its_reason(sim):
    sim.assign([O(1, locations=["peer:1"]), O(2), O(3), O(4, b"here"), O(5)],
               [T(10, [1], [2]), T(11, [1, 4], [3]), T(12, [4], [5])])
    obj = sim.store.objects[(S, 1)]
    sim.core.fetch_failed(obj, "peer:1: connection refused")
    sim.check()
    sim.run_loop()
    failed = {row[0][1]: row[2]["error"] for row in sim.comm.task_rows()
              if row[1] == FAILED}
    assert set(failed) == {10, 11}
    assert all("connection refused" in error and "(1, 1)" in error
               for error in failed.values())
    # Their outputs are gone; the object is pending again, not stuck.
    assert (S, 2) not in sim.store.objects and (S, 3) not in sim.store.objects
    assert obj.state == PENDING and obj.fetching is None and not obj.waiters
    # A task that did not need it runs; a new assignment (a retry) fetches again.
    assert [t.key[1] for t in sim.comm.started] == [12]
    sim.assign([O(6)], [T(13, [1], [6])])
    assert sim.comm.fetches == [(S, 1), (S, 1)]


def test_a_failed_producer_fails_its_local_consumers(sim):
    sim.assign([O(1, b"x"), O(2), O(3)], [T(10, [1], [2]), T(11, [2], [3])])
    sim.fail(sim.comm.started[0], "program exited with code 1")
    sim.run_loop()
    errors = {row[0][1]: row[2]["error"] for row in sim.comm.task_rows()}
    assert errors[10] == "program exited with code 1"
    assert "Cannot obtain input (1, 2)" in errors[11]
    assert not sim.core.tasks and sim.core.free_cpus == 2


def test_stop_returns_cpus_when_the_run_ends(sim):
    sim.assign([O(1, b"x"), O(2), O(3), O(4, locations=["p:1"]), O(5)],
               [T(10, [1], [2], cpus=2), T(11, [1], [3]), T(12, [4], [5])])
    running = sim.comm.started[0]
    sim.core.stop([(S, 10), (S, 11), (S, 12)])
    sim.check()
    assert sim.comm.stopped == [running]
    assert running.state == STOPPED and not sim.core.tasks
    assert sim.core.free_cpus == 0          # until the shell reports the end
    sim.core.task_ended(running, (), None)
    sim.check()
    assert sim.core.free_cpus == 2
    assert sim.comm.started == [running]    # the stopped queued task never starts


def test_cpus_pass_to_the_call_queued_behind(sim):
    sim.comm.accept_behind = True
    sim.assign([O(1, b"x")] + [O(10 + i) for i in range(8)],
               [T(100 + i, [1], [10 + i]) for i in range(8)])
    assert len(sim.comm.started) == 2
    assert len(sim.comm.behind) == 6 and all(not t.holds_cpus for t in sim.comm.behind)
    first, successor = sim.comm.started[0], sim.comm.behind[0]
    outputs = [sim.store.objects[k] for k in first.outputs]
    sim.store.set_bytes(outputs[0], b"r")
    sim.core.task_done(first, outputs, None)
    sim.core.task_ended(first, (), successor)
    sim.check()
    assert successor.holds_cpus and sim.core.free_cpus == 0


def test_updates_wait_while_the_queue_is_deep_and_failures_do_not(sim):
    n = 2 * HOLD_QUEUE + 4
    sim.assign([O(1, b"x")] + [O(10 + i) for i in range(n)],
               [T(100 + i, [1], [10 + i]) for i in range(n)])
    sim.finish(sim.comm.started[0])
    sim.run_loop()
    assert sim.comm.updates == [] and sim.comm.holds    # held: many tasks still wait
    sim.fail(sim.comm.started[1])
    sim.run_loop()
    assert len(sim.comm.updates) == 1                    # a failure goes at once
    tasks = sim.comm.updates[0][1]
    assert {(row[0][1], row[1]) for row in tasks} >= {(100, FINISHED), (101, FAILED)}
    # No "running" entry of a task whose end is in the same message.
    assert not [row for row in tasks if row[1] == RUNNING and row[0][1] == 100]


def test_delete_of_a_pending_input_fails_its_waiting_task(sim):
    sim.assign([O(1, locations=["p:1"]), O(2)], [T(10, [1], [2])])
    sim.core.delete([(S, 1)])
    sim.check()
    sim.run_loop()
    (row,) = sim.comm.task_rows()
    assert row[1] == FAILED and "deleted" in row[2]["error"]


def test_events_from_another_thread_fail_loudly(sim):
    caught = []

    def other():
        try:
            sim.core.assign([O(1, b"x")], [])
        except AssertionError as exc:
            caught.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert caught and "thread" in str(caught[0])
    # The store's readiness reaches the core the same way: a worker thread that made an
    # object ready for a waiting task is caught too.
    sim.assign([O(2), O(3)], [T(10, [2], [3])])
    obj = sim.store.objects[(S, 2)]
    thread = threading.Thread(target=lambda: _catch(caught, sim.store.set_bytes, obj, b"x"))
    thread.start()
    thread.join()
    assert len(caught) == 2


def _catch(caught, func, *args):
    try:
        func(*args)
    except AssertionError as exc:
        caught.append(exc)


@pytest.mark.parametrize("seed", range(12))
def test_random_steps_keep_the_invariants(tmp_path, seed):
    """Random assignments, ends, failures, stops, fetch results and deletes; the
    invariants hold after every step and everything assigned ends in a report."""
    rng = random.Random(seed)
    sim = Sim(tmp_path, cpus=rng.choice([1, 2, 4]), resources={"mem": 3})
    sim.comm.accept_behind = rng.random() < 0.5
    next_id = [1]
    produced = []

    def new_id():
        next_id[0] += 1
        return next_id[0]

    assigned = set()
    stopped_keys = set()
    for _ in range(300):
        step = rng.random()
        if step < 0.3:
            objects, tasks = [], []
            inputs = []
            for _ in range(rng.randint(0, 2)):
                oid = new_id()
                if rng.random() < 0.5:
                    objects.append(O(oid, b"c"))
                else:
                    objects.append(O(oid, locations=["p:1"]))
                inputs.append(oid)
            if produced and rng.random() < 0.5:
                inputs.append(rng.choice(produced))
            out = new_id()
            objects.append(O(out))
            produced.append(out)
            tid = new_id()
            resources = {"mem": rng.randint(1, 3)} if rng.random() < 0.3 else None
            tasks.append(T(tid, inputs, [out], cpus=rng.randint(0, sim.core.cpus),
                           resources=resources))
            assigned.add((S, tid))
            sim.assign(objects, tasks)
        elif step < 0.55:
            running = [t for t in sim.comm.started + sim.comm.behind
                       if t.state == T_RUNNING and t.holds_cpus]
            if running:
                task = rng.choice(running)
                successor = None
                behind = [t for t in sim.comm.behind if t.state == T_RUNNING
                          and not t.holds_cpus]
                if behind and rng.random() < 0.5:
                    successor = behind[0]
                outputs = [sim.store.objects[k] for k in task.outputs
                           if k in sim.store.objects]
                if rng.random() < 0.8 and (S, task.key[1]) in sim.core.tasks:
                    for obj in outputs:
                        if obj.state == PENDING:
                            sim.store.set_bytes(obj, b"r")
                    sim.core.task_done(task, outputs, None)
                else:
                    sim.core.task_failed(task, "failed")
                sim.core.task_ended(task, (), successor)
                sim.check()
        elif step < 0.7:
            pending = [o for o in sim.store.objects.values()
                       if o.state == PENDING and o.locations and o.fetching]
            if pending:
                obj = rng.choice(pending)
                if rng.random() < 0.7:
                    sim.store.set_bytes(obj, b"f")
                    sim.core.fetched(obj)
                else:
                    sim.core.fetch_failed(obj, "peer gone")
                sim.check()
        elif step < 0.78 and sim.core.tasks:
            keys = rng.sample(sorted(sim.core.tasks), min(2, len(sim.core.tasks)))
            stopped = [sim.core.tasks[k] for k in keys if sim.core.tasks[k].state == T_RUNNING]
            sim.core.stop(keys)
            stopped_keys.update(keys)
            sim.check()
            for task in stopped:
                sim.core.task_ended(task, (), None)
                sim.check()
        elif step < 0.85 and sim.store.objects:
            sim.core.delete([rng.choice(sorted(sim.store.objects))])
            sim.check()
        sim.run_loop()
        if rng.random() < 0.3:
            sim.flush()
    sim.flush()
    # Every assigned task is still here, was stopped, or was reported over exactly once.
    reported = [row[0] for row in sim.comm.task_rows() if row[1] in (FINISHED, FAILED)]
    assert len(reported) == len(set(reported))
    assert assigned == set(sim.core.tasks) | stopped_keys | set(reported)
    assert not set(sim.core.tasks) & (stopped_keys | set(reported))
