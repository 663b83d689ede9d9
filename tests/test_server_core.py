"""The server's state machine driven by plain calls: no sockets, no processes.

``RecordingComm`` stands in for the connection layer: it records replies and events, and
scheduling happens only when a test calls ``Sim.schedule()``. Submits are the tuples that
``connections.decode_submit`` produces. After every step the graph invariants
(``check_consistency``) and the placement rules (prefetch queue bound, no task bigger than
its governor) are checked.
"""
import random

import cbor2
import pytest

from rain.server.core import RequestError, ServerCore, SessionFailed, check_consistency
from rain.server.graph import (ASSIGNED, FAILED, FINISHED, NOT_ASSIGNED, OBJ_FINISHED, READY,
                               REMOVED, RUNNING, UNFINISHED)
from rain.server.scheduler import PREFETCH_PER_CPU
from rain.server.submit_batch import SubmitBatch

CONNECTED = object()      # a governor's ``conn``: anything but None counts as connected


class RecordingComm:
    def __init__(self):
        self.replies = []          # (client, request_id, kind, payload)
        self.events = []
        self.dirty = []
        self.schedule_requests = 0

    def reply(self, client, request_id, kind, payload):
        self.replies.append((client, request_id, kind, payload))

    def governor_dirty(self, governor):
        self.dirty.append(governor)

    def schedule_soon(self):
        self.schedule_requests += 1

    def event(self, event):
        self.events.append(event)

    def replies_to(self, request_id):
        return [(kind, payload) for _, rid, kind, payload in self.replies if rid == request_id]

    def reply_to(self, request_id):
        found = self.replies_to(request_id)
        assert len(found) == 1, f"expected one reply to {request_id}, got {found}"
        return found[0]

    def events_of(self, kind):
        return [e for e in self.events if e["type"] == kind]


def T(tid, inputs=(), outputs=(), cpus=1, task_type="test/run", resources=None, name=""):
    """A task tuple as ``decode_submit`` builds it."""
    return (tid, task_type, b"", [(i, "") for i in inputs], list(outputs), cpus, resources,
            name, b"")


def O(oid, data=None, keep=False, user=b""):
    """An object tuple as ``decode_submit`` builds it (``data`` makes it a constant)."""
    return (oid, "", "", 0, user, keep, data)


def failure_info(message, debug=""):
    return cbor2.dumps({"error": message, "debug": debug})


class Sim:
    """A core with some governors and one client; ``schedule()`` plays the I/O layer."""

    def __init__(self, governors=(("g1", 4),), test_mode=False):
        self.comm = RecordingComm()
        self.core = ServerCore(self.comm, test_mode=test_mode, debug_mode=True)
        self.gov = {}
        for gid, cpus in governors:
            self.gov[gid] = self.core.add_governor(gid, cpus, None, CONNECTED)
        self.client = self.core.add_client()
        self.sid = self.new_session()
        self._next_request = 1000

    def new_session(self):
        return self.core.new_session(self.client, {"name": "test"})

    def session(self, sid=None):
        return self.core.sessions[self.sid if sid is None else sid]

    def task(self, tid, sid=None):
        return self.session(sid).tasks[tid]

    def obj(self, oid, sid=None):
        return self.session(sid).objects[oid]

    def request_id(self):
        self._next_request += 1
        return self._next_request

    def submit(self, tasks, objects, sid=None):
        self.core.submit(self.client, self.sid if sid is None else sid, tasks, objects)
        self.check()

    def schedule(self):
        """One scheduling round; returns {governor id: [task ids assigned]} and clears the
        assignment lists (stops and deletes stay for the test to inspect)."""
        self.core.schedule()
        self.check()
        placed = {}
        for gid, governor in self.gov.items():
            for task in governor.out_tasks:
                assert task.cpus <= governor.cpus, \
                    f"{task} needs {task.cpus} cpus, {gid} has {governor.cpus}"
                placed.setdefault(gid, []).append(task.id)
            governor.out_tasks.clear()
            governor.out_objects.clear()
        return placed

    def where(self, tid, sid=None):
        governor = self.task(tid, sid).governor
        return governor.id if governor is not None else None

    def finish(self, tid, sizes=None, sid=None):
        """The task's governor reports its outputs and then the task finished."""
        sid = self.sid if sid is None else sid
        task = self.task(tid, sid)
        governor = task.governor
        sizes = sizes or {}
        self.core.on_object_updates(governor, [
            (sid, obj.id, OBJ_FINISHED, sizes.get(obj.id, 100), "", b"", None)
            for obj in task.outputs])
        self.core.on_task_updates(governor, [(sid, tid, FINISHED, b"")])
        self.check()

    def start(self, tid, sid=None):
        sid = self.sid if sid is None else sid
        self.core.on_task_updates(self.task(tid, sid).governor, [(sid, tid, RUNNING, b"")])
        self.check()

    def fail(self, tid, message="boom", sid=None):
        sid = self.sid if sid is None else sid
        governor = self.task(tid, sid).governor
        self.core.on_task_updates(governor, [(sid, tid, FAILED, failure_info(message))])
        self.check()

    def check(self):
        check_consistency(self.core)
        for governor in self.core.governors.values():
            assert governor.free_cpus >= -governor.prefetch, \
                f"{governor.id}: prefetch queue overflow ({governor.free_cpus})"
            assert governor.free_cpus >= -governor.cpus * PREFETCH_PER_CPU
            for task in governor.tasks:
                assert task.cpus <= governor.cpus

    def take_deletes(self, gid):
        governor = self.gov[gid]
        keys, governor.out_delete = governor.out_delete, []
        return {oid for _, oid in keys}

    def take_stops(self, gid):
        governor = self.gov[gid]
        keys, governor.out_stop = governor.out_stop, []
        return {tid for _, tid in keys}

    def snapshot(self):
        """Everything a rejected submit must leave untouched."""
        core = self.core
        sessions = {}
        for sid, session in core.sessions.items():
            sessions[sid] = (
                sorted(session.tasks), sorted(session.objects), session.unfinished_tasks,
                list(session.stats), session.error,
                [(o.id, o.state, o.consumers, o.keep, len(o.dependents or ()),
                  o.size, list(o.locations), list(o.known_by), o.testing)
                 for o in session.objects.values()],
                [(t.id, t.state, t.waiting) for t in session.tasks.values()])
        return (sessions, core.scheduler.ready_count(), len(self.comm.events),
                len(self.comm.replies),
                [(g.id, g.free_cpus, len(g.out_tasks), len(g.out_delete))
                 for g in core.governors.values()])


def rejected(sim, tasks, objects, *fragments, sid=None):
    """Submit, expect a RequestError whose message has every fragment, and nothing
    changed."""
    before = sim.snapshot()
    with pytest.raises(RequestError) as info:
        sim.submit(tasks, objects, sid=sid)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert sim.snapshot() == before, "a rejected submit changed the core"
    sim.check()
    return message


# ------------------------------------------------------------------------------------------
# Readiness and placement

def test_task_ready_only_when_all_inputs_finished():
    sim = Sim()
    sim.submit([T(20, [10], [11]), T(21, [11], [12]), T(22, [11, 12], [13], name="join")],
               [O(10, b"x"), O(11), O(12), O(13, keep=True)])
    assert sim.schedule() == {"g1": [20]}
    assert sim.task(21).state == NOT_ASSIGNED and sim.task(22).state == NOT_ASSIGNED
    assert sim.task(22).waiting == 2
    assert sim.schedule() == {}          # nothing new while 20 runs
    sim.finish(20)
    assert sim.schedule() == {"g1": [21]}
    assert sim.task(22).state == NOT_ASSIGNED and sim.task(22).waiting == 1
    sim.finish(21)
    assert sim.schedule() == {"g1": [22]}
    sim.finish(22)
    assert sim.session().unfinished_tasks == 0


def test_independent_tasks_spread_over_governors():
    sim = Sim([("g1", 2), ("g2", 2), ("g3", 2)])
    sim.submit([T(20 + i) for i in range(6)], [])
    placed = sim.schedule()
    assert sorted(len(v) for v in placed.values()) == [2, 2, 2]
    for governor in sim.gov.values():
        assert governor.free_cpus == 0


@pytest.mark.parametrize("big_first", [True, False])
def test_locality_prefers_governor_with_most_input_bytes(big_first):
    sim = Sim([("g1", 4), ("g2", 4)])
    sim.submit([T(20, [], [11]), T(21, [], [12]), T(22, [11, 12], [13])],
               [O(11), O(12), O(13, keep=True)])
    placed = sim.schedule()
    assert sim.where(20) != sim.where(21), placed
    big, small = (11, 12) if big_first else (12, 11)
    sim.finish(20, {11: 1000 if big == 11 else 10})
    sim.finish(21, {12: 1000 if big == 12 else 10})
    big_holder = sim.where(20 if big == 11 else 21)
    assert sim.schedule() == {big_holder: [22]}
    assert sim.obj(big).size == 1000 and sim.obj(small).size == 10


def test_locality_gives_way_to_a_free_governor_when_holder_is_full():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    holder = sim.where(20)
    other = "g2" if holder == "g1" else "g1"
    sim.finish(20, {11: 5000})
    # Two consumers: the first goes to the data, the second to the idle governor.
    sim.submit([T(21, [11], [12]), T(22, [11], [13])], [O(12), O(13)])
    placed = sim.schedule()
    assert placed == {holder: [21], other: [22]}


def test_larger_cpu_tasks_are_placed_first():
    sim = Sim([("g1", 4)])
    sim.submit([T(20), T(21), T(22), T(23, cpus=4), T(24, cpus=2)], [])
    placed = sim.schedule()["g1"]
    assert placed[:2] == [23, 24]
    assert set(placed[2:]) <= {20, 21, 22}
    # The 4-cpu task got the free cpus; the rest sits in the prefetch queue.
    governor = sim.gov["g1"]
    assert governor.free_cpus == 4 - sum(sim.task(t).cpus for t in placed)
    assert governor.free_cpus >= -governor.prefetch


def test_big_tasks_take_free_governors_before_small_ones():
    sim = Sim([("g1", 4), ("g2", 4)])
    sim.submit([T(20 + i) for i in range(6)] + [T(30, cpus=4), T(31, cpus=4)], [])
    sim.schedule()
    assert {sim.where(30), sim.where(31)} == {"g1", "g2"}


def test_never_overbooked_and_never_too_big_for_its_governor():
    # A 2-cpu governor next to an 8-cpu one that is busy: 4- and 8-cpu tasks must wait
    # for the big one instead of landing in the small one's queue.
    sim = Sim([("small", 2), ("big", 8)])
    sim.submit([T(20, cpus=8)] + [T(21 + i, cpus=4) for i in range(8)]
               + [T(40 + i, cpus=8) for i in range(3)], [])
    placed = sim.schedule()
    assert "small" not in placed
    for tid in placed["big"]:
        assert sim.task(tid).cpus in (4, 8)
    big = sim.gov["big"]
    assert big.free_cpus >= -big.prefetch
    assert any(sim.task(21 + i).state == READY for i in range(8)) or \
        any(sim.task(40 + i).state == READY for i in range(3))


def test_random_graph_respects_cpu_limits_at_every_step():
    rng = random.Random(7)
    sim = Sim([("g1", 1), ("g2", 2), ("g3", 4), ("g4", 8)])
    tasks, objects = [], []
    produced = []
    next_id = 10
    for _ in range(300):
        inputs = rng.sample(produced, min(len(produced), rng.randint(0, 3)))
        out = next_id
        objects.append(O(out))
        tasks.append(T(next_id + 1, inputs, [out], cpus=rng.choice([0, 1, 1, 1, 2, 3, 4, 8])))
        produced.append(out)
        next_id += 2
    sim.submit(tasks, objects)
    # Simulated governors: run queued tasks in order while their cpus allow it.
    queues = {gid: [] for gid in sim.gov}
    running = {gid: [] for gid in sim.gov}
    steps = 0
    while sim.session().unfinished_tasks:
        steps += 1
        assert steps < 10_000
        for gid, tids in sim.schedule().items():
            queues[gid].extend(tids)
        for gid, governor in sim.gov.items():
            busy = sum(sim.task(t).cpus for t in running[gid])
            while queues[gid] and busy + sim.task(queues[gid][0]).cpus <= governor.cpus:
                tid = queues[gid].pop(0)
                running[gid].append(tid)
                busy += sim.task(tid).cpus
            assert busy <= governor.cpus
            if running[gid] and rng.random() < 0.7:
                tid = running[gid].pop(rng.randrange(len(running[gid])))
                sim.finish(tid, {sim.task(tid).outputs[0].id: rng.randint(1, 10_000)})
    assert all(t.state == FINISHED for t in sim.session().tasks.values())


def test_task_needing_more_cpus_than_any_governor_is_rejected():
    sim = Sim([("g1", 4), ("g2", 8)])
    message = rejected(sim, [T(20, cpus=2), T(21, cpus=9)], [], "21", "9 cpus", "8")
    assert "largest governor" in message
    sim.submit([T(22, cpus=8)], [])
    assert sim.schedule() == {"g2": [22]}


# ------------------------------------------------------------------------------------------
# Rejected submits (validation and atomicity)

def test_cycle_of_two_is_rejected_naming_tasks():
    sim = Sim()
    message = rejected(sim, [T(20, [12], [11]), T(21, [11], [12])], [O(11), O(12)], "cycle")
    assert "20" in message and "21" in message


def test_longer_cycle_is_rejected_naming_only_its_tasks():
    sim = Sim()
    tasks = [T(20, [13], [11]), T(21, [11], [12]), T(22, [12], [13]),
             T(23, [10], [14]),              # fine on its own
             T(90, [13], [91])]              # downstream of the cycle, not on it
    objects = [O(10, b"c"), O(11), O(12), O(13), O(14), O(91)]
    message = rejected(sim, tasks, objects, "cycle", "20", "21", "22")
    assert "90" not in message and "23" not in message


def test_self_loop_is_rejected():
    sim = Sim()
    rejected(sim, [T(20, [11], [11])], [O(11)], "cycle", "20")


def test_duplicate_ids_are_rejected():
    sim = Sim()
    rejected(sim, [T(20, [], [11])], [O(11), O(11)], "Duplicate id 11")
    rejected(sim, [T(20, [], [11]), T(20, [], [12])], [O(11), O(12)], "Duplicate id 20")
    rejected(sim, [T(11, [], [12])], [O(11, b"x"), O(12)], "Duplicate id 11")
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    rejected(sim, [T(20, [], [12])], [O(12)], "Duplicate id 20")
    rejected(sim, [T(21, [], [11])], [O(11)], "Duplicate id 11")
    rejected(sim, [T(21, [], [22])], [O(22), O(20)], "Duplicate id 20")


def test_unknown_input_is_rejected():
    sim = Sim()
    rejected(sim, [T(20, [10], [11]), T(21, [55], [12])], [O(10, b"x"), O(11), O(12)],
             "21", "unknown input", "55")


def test_output_not_in_the_submit_is_rejected():
    sim = Sim()
    rejected(sim, [T(20, [], [11, 77])], [O(11)], "20", "77", "not an object of this submit")
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    rejected(sim, [T(21, [], [11])], [], "21", "11")     # an object of an earlier submit


def test_object_produced_by_two_tasks_is_rejected():
    sim = Sim()
    rejected(sim, [T(20, [], [11]), T(21, [], [11])], [O(11)], "11", "two tasks", "20", "21")


def test_constant_cannot_be_a_task_output():
    sim = Sim()
    rejected(sim, [T(20, [], [11])], [O(11, b"data")], "11", "has data")


def test_object_without_producer_or_data_is_rejected():
    sim = Sim()
    rejected(sim, [T(20, [11], [12])], [O(11), O(12)], "11", "no data and no task")


def test_rejected_submit_leaves_an_active_session_untouched():
    sim = Sim([("g1", 2), ("g2", 2)])
    sim.submit([T(20, [10], [11]), T(21, [11], [12])], [O(10, b"c"), O(11, keep=True), O(12)])
    sim.schedule()
    sim.finish(20)
    # Each of these fails late (after inputs were looked up, or at the cycle check):
    # the consumer counts of 11 and the ready queue must not move.
    rejected(sim, [T(30, [11], [31]), T(32, [31, 11, 37], [33]), T(34, [33], [35]),
                   T(36, [35], [37])],
             [O(31), O(33), O(35), O(37)], "cycle")
    rejected(sim, [T(30, [11], [31]), T(32, [11], [33], cpus=3)], [O(31), O(33)], "3 cpus")
    rejected(sim, [T(30, [11], [31])], [O(31), O(32)], "32")
    assert sim.obj(11).consumers == 1
    sim.schedule()
    sim.finish(21)
    assert sim.session().unfinished_tasks == 0


# ------------------------------------------------------------------------------------------
# Object lifetime

def test_intermediate_object_deleted_after_last_consumer_kept_only_after_unkeep():
    sim = Sim([("g1", 4)])
    sim.submit([T(20, [10], [11]), T(21, [11], [12]), T(22, [11], [13])],
               [O(10, b"const"), O(11), O(12, keep=True), O(13)])
    sim.schedule()
    sim.finish(20)
    assert sim.take_deletes("g1") == {10}        # constant: its only consumer finished
    sim.schedule()
    sim.finish(21)
    assert sim.take_deletes("g1") == set()       # 22 still needs 11
    assert sim.obj(11).state == OBJ_FINISHED
    sim.finish(22)
    assert sim.take_deletes("g1") == {11, 13}    # 13: nobody needs it, nobody keeps it
    assert sim.obj(11).state == REMOVED
    assert sim.obj(12).state == OBJ_FINISHED     # kept
    sim.core.unkeep(sim.client, sim.sid, [12])
    sim.check()
    assert sim.take_deletes("g1") == {12}
    assert sim.obj(12).state == REMOVED


def test_unkept_object_still_needed_lives_until_its_consumer_finished():
    sim = Sim()
    sim.submit([T(20, [], [11]), T(21, [11], [12])], [O(11, keep=True), O(12)])
    sim.schedule()
    sim.finish(20)
    sim.schedule()
    sim.core.unkeep(sim.client, sim.sid, [11])
    assert sim.take_deletes("g1") == set()
    sim.finish(21)
    assert sim.take_deletes("g1") == {11, 12}


def test_deletes_go_to_every_governor_that_was_told_about_the_object():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [10]), T(21, [10])], [O(10, b"shared")])
    sim.schedule()
    assert {sim.where(20), sim.where(21)} == {"g1", "g2"}
    sim.finish(20)
    assert sim.take_deletes("g1") == sim.take_deletes("g2") == set()
    sim.finish(21)
    assert sim.take_deletes("g1") == {10} and sim.take_deletes("g2") == {10}


# ------------------------------------------------------------------------------------------
# Failures and closing

def test_task_failure_fails_session_and_stops_its_tasks_elsewhere():
    sim = Sim([("g1", 1), ("g2", 1), ("g3", 1)])
    other = sim.new_session()
    sim.submit([T(20, [], [11]), T(21, [], [12]), T(22, [11, 12], [13])],
               [O(11), O(12), O(13, keep=True)])
    sim.submit([T(30, [], [31])], [O(31, keep=True)], sid=other)
    placed = sim.schedule()
    assert len(placed) == 3
    failing, running = 20, 21
    sim.start(running)
    running_on = sim.where(running)
    other_on = sim.where(30, other)
    wait_id, fetch_id, other_wait = sim.request_id(), sim.request_id(), sim.request_id()
    sim.core.wait(sim.client, wait_id, sim.sid, [22], [])
    sim.core.fetch(sim.client, fetch_id, sim.sid, 13)
    sim.core.wait(sim.client, other_wait, other, [30], [])

    sim.fail(failing, "ZeroDivisionError: division by zero")

    for request_id in (wait_id, fetch_id):
        kind, exc = sim.comm.reply_to(request_id)
        assert kind == "error" and isinstance(exc, SessionFailed)
        assert "ZeroDivisionError" in str(exc) and exc.task_id == failing
    assert sim.take_stops(running_on) == {running}
    assert sim.take_stops(other_on) == set()
    assert sim.task(running).state == FAILED and sim.task(22).state == FAILED
    assert sim.gov[running_on].free_cpus == 1
    assert sim.comm.events_of("SessionFailed")[0]["task"] == failing
    # Every later call touching the session raises the original error.
    for call in (lambda: sim.core.wait(sim.client, 1, sim.sid, [21], []),
                 lambda: sim.core.wait_all(sim.client, 2, sim.sid),
                 lambda: sim.core.fetch(sim.client, 3, sim.sid, 13),
                 lambda: sim.core.unkeep(sim.client, sim.sid, [13]),
                 lambda: sim.submit([T(40)], [])):
        with pytest.raises(SessionFailed, match="ZeroDivisionError"):
            call()
    # A late report from the stopped task changes nothing.
    sim.core.on_task_updates(sim.gov[running_on], [(sim.sid, running, FINISHED, b"")])
    assert sim.task(running).state == FAILED
    # The other session goes on.
    assert sim.comm.replies_to(other_wait) == []
    sim.finish(30, sid=other)
    kind, items = sim.comm.reply_to(other_wait)
    assert kind == "state" and [t.id for t in items] == [30]
    # Closing the failed session works.
    sim.core.close_session(sim.client, sim.sid)
    assert sim.sid not in sim.core.sessions


def test_close_session_stops_running_tasks_and_deletes_objects():
    sim = Sim([("g1", 2), ("g2", 2)])
    sim.submit([T(20, [10], [11]), T(21, [10], [12]), T(22, [11, 12], [13])],
               [O(10, b"c"), O(11, keep=True), O(12), O(13, keep=True)])
    sim.schedule()
    where = {20: sim.where(20), 21: sim.where(21)}
    sim.finish(20)
    pending = sim.request_id()
    sim.core.wait(sim.client, pending, sim.sid, [22], [])
    sim.core.close_session(sim.client, sim.sid)
    sim.check()
    assert sim.take_stops(where[21]) == {21}
    deletes = sim.take_deletes("g1") | sim.take_deletes("g2")
    assert {10, 11, 12} <= deletes
    kind, exc = sim.comm.reply_to(pending)
    assert kind == "error" and "closed" in str(exc)
    assert all(g.free_cpus == g.cpus and not g.tasks for g in sim.gov.values())
    assert sim.comm.events_of("SessionClosed")
    with pytest.raises(RequestError, match="not open"):
        sim.core.wait_all(sim.client, 5, sim.sid)
    assert sim.schedule() == {}


def test_close_session_drops_its_queued_tasks():
    sim = Sim([("g1", 1)])
    keep_sid = sim.new_session()
    sim.submit([T(20 + i) for i in range(10)], [])
    sim.schedule()
    sim.core.close_session(sim.client, sim.sid)
    sim.submit([T(20)], [], sid=keep_sid)
    assert sim.schedule() == {"g1": [20]}
    assert sim.task(20, keep_sid).state == ASSIGNED


def test_remove_client_closes_its_sessions():
    sim = Sim()
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    sim.core.remove_client(sim.client)
    assert sim.core.sessions == {}
    assert sim.take_stops("g1") == {20}


# ------------------------------------------------------------------------------------------
# Waiting and fetching

def test_wait_and_wait_some_replies():
    sim = Sim([("g1", 4)])
    sim.submit([T(20, [], [11]), T(21, [], [12])], [O(11, keep=True), O(12)])
    sim.schedule()
    wait_id, some_id = sim.request_id(), sim.request_id()
    sim.core.wait(sim.client, wait_id, sim.sid, [20, 21], [11])
    sim.core.wait(sim.client, some_id, sim.sid, [20, 21], [], some=True)
    assert sim.comm.replies == []
    sim.finish(21)
    assert sim.comm.reply_to(some_id) == ("some", ([21], []))
    assert sim.comm.replies_to(wait_id) == []
    sim.finish(20)
    kind, items = sim.comm.reply_to(wait_id)
    assert kind == "state" and [i.id for i in items] == [20, 21, 11]
    # Already done: immediate replies.
    again, some_again, all_id = sim.request_id(), sim.request_id(), sim.request_id()
    sim.core.wait(sim.client, again, sim.sid, [20], [11])
    sim.core.wait(sim.client, some_again, sim.sid, [20, 21], [11], some=True)
    sim.core.wait_all(sim.client, all_id, sim.sid)
    kind, items = sim.comm.reply_to(again)
    assert kind == "state" and [i.id for i in items] == [20, 11]
    assert sim.comm.reply_to(some_again) == ("some", ([20, 21], [11]))
    assert sim.comm.reply_to(all_id) == ("ok", None)
    with pytest.raises(RequestError, match="Unknown task 99"):
        sim.core.wait(sim.client, 1, sim.sid, [99], [])


def test_wait_all_waits_for_every_task():
    sim = Sim([("g1", 4)])
    sim.submit([T(20), T(21)], [])
    request = sim.request_id()
    sim.core.wait_all(sim.client, request, sim.sid)
    sim.schedule()
    sim.finish(20)
    assert sim.comm.replies_to(request) == []
    sim.finish(21)
    assert sim.comm.reply_to(request) == ("ok", None)


def test_fetch_constant_inline_and_task_output_by_location():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [], [11]), T(21, [], [12])],
               [O(10, b"hello", keep=True), O(11, keep=True), O(12)])
    const_id, out_id = sim.request_id(), sim.request_id()
    sim.core.fetch(sim.client, const_id, sim.sid, 10)
    kind, (obj, data, location) = sim.comm.reply_to(const_id)
    assert kind == "fetch" and obj.id == 10 and data == b"hello" and location is None
    sim.core.fetch(sim.client, out_id, sim.sid, 11)
    assert sim.comm.replies_to(out_id) == []          # waits for the producer
    sim.schedule()
    holder = sim.where(20)
    sim.finish(20, {11: 4096})
    kind, (obj, data, location) = sim.comm.reply_to(out_id)
    assert kind == "fetch" and obj.id == 11 and obj.size == 4096
    assert data is None and location == holder
    with pytest.raises(RequestError, match="not kept"):
        sim.core.fetch(sim.client, 1, sim.sid, 12)
    with pytest.raises(RequestError, match="Unknown object 99"):
        sim.core.fetch(sim.client, 1, sim.sid, 99)


# ------------------------------------------------------------------------------------------
# Several submits in one session

def test_later_submit_reuses_kept_objects():
    sim = Sim([("g1", 2), ("g2", 2)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    holder = sim.where(20)
    sim.finish(20, {11: 10_000})
    sim.submit([T(21, [11], [12]), T(22, [12, 11], [13])], [O(12), O(13, keep=True)])
    assert sim.task(21).state == READY                # its input exists already
    assert sim.schedule() == {holder: [21]}           # and sits on `holder`
    sim.finish(21)
    sim.schedule()
    sim.finish(22)
    assert sim.obj(11).state == OBJ_FINISHED          # still kept
    assert 11 not in sim.take_deletes(holder)
    sim.core.unkeep(sim.client, sim.sid, [11])
    assert 11 in sim.take_deletes(holder)


def test_later_submit_waits_for_unfinished_kept_object():
    sim = Sim()
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    sim.submit([T(21, [11], [12])], [O(12)])
    assert sim.task(21).state == NOT_ASSIGNED
    sim.finish(20)
    assert sim.schedule() == {"g1": [21]}


def test_later_submit_cannot_use_a_removed_object():
    sim = Sim()
    sim.submit([T(20, [], [11]), T(21, [11], [12])], [O(11), O(12, keep=True)])
    sim.schedule()
    sim.finish(20)
    sim.schedule()
    sim.finish(21)
    assert sim.obj(11).state == REMOVED
    rejected(sim, [T(30, [11], [31])], [O(31)], "30", "11", "removed")
    sim.core.unkeep(sim.client, sim.sid, [12])
    rejected(sim, [T(30, [12], [31])], [O(31)], "12", "removed")


# ------------------------------------------------------------------------------------------
# Governor loss

def test_task_on_lost_governor_is_requeued_elsewhere():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [10], [11]), T(21, [10], [12])],
               [O(10, b"c"), O(11, keep=True), O(12, keep=True)])
    sim.schedule()
    lost, survivor = sim.where(20), sim.where(21)
    assert lost != survivor
    sim.start(20)
    lost_governor = sim.gov.pop(lost)
    sim.core.remove_governor(lost_governor)
    sim.check()
    assert sim.task(20).state == READY and sim.task(20).governor is None
    assert sim.comm.events_of("GovernorRemoved")
    assert sim.session().error is None
    sim.finish(21)
    assert sim.schedule() == {survivor: [20]}
    # A late report from the lost governor is ignored.
    sim.core.on_task_updates(lost_governor, [(sim.sid, 20, FINISHED, b"")])
    assert sim.task(20).state == ASSIGNED
    sim.finish(20)
    assert sim.session().unfinished_tasks == 0


def test_only_copy_of_needed_object_is_recomputed_on_a_survivor():
    sim = Sim([("g1", 1), ("g2", 1)])
    other = sim.new_session()
    sim.submit([T(20, [], [11]), T(21, [], [12]), T(22, [11, 12], [13])],
               [O(11), O(12), O(13, keep=True)])
    sim.schedule()
    lost, survivor = sim.where(20), sim.where(21)
    sim.finish(20)                   # 11 lives on `lost` only; 22 still waits for 12
    sim.submit([T(30, [], [31])], [O(31, keep=True)], sid=other)
    sim.schedule()
    assert sim.where(30, other) == lost           # the only free cpu is there
    sim.finish(30, sid=other)                     # 31: kept, only on `lost`...
    sim.core.unkeep(sim.client, other, [31])      # ... but nobody needs it any more
    waiter = sim.request_id()
    sim.core.wait(sim.client, waiter, sim.sid, [22], [])
    sim.core.remove_governor(sim.gov.pop(lost), "connection lost")
    sim.check()
    assert sim.session().error is None and sim.core.sessions[other].error is None
    assert sim.task(20).state == READY and sim.obj(11).state == UNFINISHED
    assert sim.task(22).waiting == 2
    (event,) = sim.comm.events_of("ObjectsRecomputed")
    assert (event["session"], event["objects"], event["tasks"]) == (sim.sid, [11], [20])
    assert lost in event["reason"]
    assert sim.comm.events_of("GovernorLost")[0]["objects"] == 1
    assert sim.take_stops(survivor) == set()      # 21 keeps running
    sim.finish(21)
    assert sim.schedule() == {survivor: [20]}
    sim.finish(20)
    assert sim.schedule() == {survivor: [22]}
    sim.finish(22)
    assert sim.comm.reply_to(waiter)[0] == "state"
    assert sim.session().unfinished_tasks == 0


def run_all(sim, limit=100_000):
    """Schedule and finish until nothing is left to place; returns the ids run."""
    ran = []
    for _ in range(limit):
        placed = sim.schedule()
        if not placed:
            return ran
        for tids in placed.values():
            for tid in tids:
                sim.finish(tid)
                ran.append(tid)
    raise AssertionError("did not settle")


def test_chain_longer_than_the_recursion_limit_is_recomputed_from_its_start():
    length = 3000
    sim = Sim([("g1", 1)])
    sim.core.debug_mode = False             # checked once at the end: O(n) per step
    sim.check = lambda: None
    tasks = [T(100 + i, [10_000 + i] if i else [], [10_001 + i]) for i in range(length)]
    objects = [O(10_001 + i, keep=(i == length - 1)) for i in range(length)]
    sim.submit(tasks, objects)
    assert len(run_all(sim)) == length
    assert sim.obj(10_000 + length).state == OBJ_FINISHED
    assert sim.obj(10_500).state == REMOVED           # intermediates were released
    sim.gov["g2"] = sim.core.add_governor("g2", 1, None, CONNECTED)
    sim.core.remove_governor(sim.gov.pop("g1"))
    sim.check()
    assert sim.session().error is None
    (event,) = sim.comm.events_of("ObjectsRecomputed")
    assert sorted(event["tasks"]) == [100 + i for i in range(length)]
    assert sim.task(100).state == READY and sim.task(101).waiting == 1
    assert run_all(sim) == [100 + i for i in range(length)]
    assert sim.obj(10_000 + length).state == OBJ_FINISHED
    assert [g.id for g in sim.obj(10_000 + length).locations] == ["g2"]
    assert sim.obj(10_500).state == REMOVED and sim.session().unfinished_tasks == 0
    check_consistency(sim.core)


def diamond(sim):
    """20 -> 11; 21(11) -> 12; 22(11) -> 13; 23(12, 13) -> 14 (kept). Everything on g1."""
    sim.submit([T(20, [], [11]), T(21, [11], [12]), T(22, [11], [13]),
                T(23, [12, 13], [14])],
               [O(11), O(12), O(13), O(14, keep=True)])


def test_diamond_reruns_its_shared_producer_once():
    sim = Sim([("g1", 2)])
    diamond(sim)
    run_all(sim)
    sim.gov["g2"] = sim.core.add_governor("g2", 2, None, CONNECTED)
    sim.core.remove_governor(sim.gov.pop("g1"))
    (event,) = sim.comm.events_of("ObjectsRecomputed")
    assert sorted(event["tasks"]) == [20, 21, 22, 23]
    assert sorted(event["objects"]) == [11, 12, 13, 14]
    assert sim.task(23).waiting == 2 and sim.task(21).waiting == 1
    ran = run_all(sim)
    assert sorted(ran) == [20, 21, 22, 23] and ran[0] == 20
    assert sim.obj(14).state == OBJ_FINISHED and sim.obj(11).state == REMOVED


def test_diamond_with_one_branch_surviving_reruns_only_the_lost_branch():
    sim = Sim([("g1", 2), ("g2", 2)])
    diamond(sim)
    session = sim.session()
    placed = sim.schedule()
    assert placed == {"g1": [20]} or placed == {"g2": [20]}
    first = sim.where(20)
    second = "g2" if first == "g1" else "g1"
    sim.finish(20)
    sim.schedule()
    sim.finish(21)
    # 22 ran on the other governor (its copy of 11 was fetched there).
    task22 = sim.task(22)
    sim.core._release(task22)
    task22.governor = sim.gov[second]
    sim.gov[second].tasks.add(task22)
    sim.gov[second].free_cpus -= 1
    sim.finish(22)
    assert [g.id for g in sim.obj(13).locations] == [second]
    assert sim.obj(12).locations[0].id == first and session.tasks[23].state == READY
    sim.core.remove_governor(sim.gov.pop(first))
    sim.check()
    (event,) = sim.comm.events_of("ObjectsRecomputed")
    # 12 was on `first` only and 23 still needs it: 21 runs again, and so does 20 for
    # the input of 21 (released already); 22's output survived elsewhere.
    assert sorted(event["tasks"]) == [20, 21] and sorted(event["objects"]) == [11, 12]
    assert session.tasks[23].state == NOT_ASSIGNED and session.tasks[23].waiting == 1
    assert sorted(run_all(sim)) == [20, 21, 23]
    assert sim.obj(14).state == OBJ_FINISHED


def test_consumer_queued_on_a_survivor_is_stopped_and_waits_for_the_recompute():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [], [11]), T(21, [], [12]), T(22, [11], [13]), T(23, [12], [14])],
               [O(11), O(12), O(13, keep=True), O(14, keep=True)])
    sim.schedule()
    holder = sim.where(20)
    other = "g2" if holder == "g1" else "g1"
    sim.finish(20)
    sim.finish(21)
    # 22 queued on `other`, which must fetch 11 from `holder`.
    task22 = sim.task(22)
    sim.core._assign(task22, sim.gov[other])
    sim.check()
    sim.core.remove_governor(sim.gov.pop(holder))
    sim.check()
    assert 22 in sim.take_stops(other)
    assert task22.state == NOT_ASSIGNED and task22.waiting == 1
    assert sim.task(20).state == READY
    run_all(sim)
    assert sim.obj(13).state == OBJ_FINISHED and sim.session().unfinished_tasks == 0


def test_released_constant_is_kept_for_recomputes(monkeypatch):
    sim = Sim([("g1", 1)])
    sim.submit([T(20, [10], [11]), T(21, [11], [12])],
               [O(10, b"constant"), O(11), O(12, keep=True)])
    run_all(sim)
    assert sim.obj(10).state == REMOVED and sim.obj(10).data == b"constant"
    assert sim.core.retained_bytes == len(b"constant")
    sim.gov["g2"] = sim.core.add_governor("g2", 1, None, CONNECTED)
    sim.core.remove_governor(sim.gov.pop("g1"))
    assert sim.session().error is None
    assert sim.obj(10).state == OBJ_FINISHED and sim.task(20).state == READY
    assert run_all(sim) == [20, 21]
    sim.core.close_session(sim.client, sim.sid)
    assert sim.core.retained_bytes == 0


def test_recompute_needing_a_constant_beyond_the_budget_fails_saying_why(monkeypatch):
    monkeypatch.setattr("rain.server.core.CONSTANTS_KEPT", 4)
    sim = Sim([("g1", 1)])
    sim.submit([T(20, [10], [11])], [O(10, b"constant"), O(11, keep=True)])
    run_all(sim)
    assert sim.obj(10).data is None
    sim.gov["g2"] = sim.core.add_governor("g2", 1, None, CONNECTED)
    sim.core.remove_governor(sim.gov.pop("g1"), "heartbeat timeout")
    error = sim.session().error
    assert error is not None
    for text in ("g1", "heartbeat timeout", "constant 10", "no longer keeps"):
        assert text in error.message


def test_objects_not_needed_any_more_are_not_recomputed():
    sim = Sim([("g1", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    run_all(sim)
    sim.core.unkeep(sim.client, sim.sid, [11])
    sim.gov["g2"] = sim.core.add_governor("g2", 1, None, CONNECTED)
    sim.core.remove_governor(sim.gov.pop("g1"))
    assert not sim.comm.events_of("ObjectsRecomputed")
    assert sim.schedule() == {} and sim.session().error is None


# ------------------------------------------------------------------------------------------
# Impossible requests fail at submit

@pytest.mark.parametrize("config,fragment", [
    ({"seconds": "x"}, "seconds must be a number"),
    ({"seconds": -1}, "seconds must be a number"),
    ({}, "seconds must be a number"),
    ("x", "seconds must be a number"),
])
def test_bad_sleep_config_is_rejected_at_submit(config, fragment):
    sim = Sim()
    task = (20, "buildin/sleep", cbor2.dumps(config), [(10, "")], [11], 1, None, "", b"")
    rejected(sim, [task], [O(10, b"x"), O(11)], "Task 20", "Sleep", fragment)


@pytest.mark.parametrize("task_type,config,fragment", [
    ("buildin/nonsense", None, "unknown built-in task type"),
    ("buildin/open", {"path": "relative/file"}, "is not absolute"),
    ("buildin/run", {"args": []}, "'args' must be a non-empty list"),
    ("buildin/sleep", b"\xff", None),
])
def test_bad_builtin_configs_are_rejected_at_submit(task_type, config, fragment):
    sim = Sim()
    raw = config if isinstance(config, bytes) else cbor2.dumps(config) if config else b""
    inputs = [] if task_type == "buildin/open" else [(10, "")]
    task = (20, task_type, raw, inputs, [11], 1, None, "", b"")
    message = rejected(sim, [task], [O(10, b"x"), O(11)], "Task 20")
    assert fragment is None or fragment in message


def test_good_builtin_configs_pass():
    sim = Sim()
    sim.submit([(20, "buildin/sleep", cbor2.dumps({"seconds": 0.5}), [(10, "")], [11], 1,
                 None, "", b""),
                (21, "buildin/concat", b"", [(10, ""), (11, "")], [12], 1, None, "", b"")],
               [O(10, b"x"), O(11), O(12)])
    assert sim.schedule() == {"g1": [20]}


def test_resources_no_governor_has_are_rejected_at_submit():
    sim = Sim([("g1", 2), ("g2", 4)])
    sim.core.add_governor("g3", 1, {"gpus": 1}, CONNECTED)
    message = rejected(sim, [T(20, [], [11], resources={"gpus": 2})], [O(11)],
                       "Task 20", "gpus=2", "no governor has", "g3")
    assert "gpus=1" in message
    rejected(sim, [T(20, [], [11], cpus=2, resources={"gpus": 1})], [O(11)], "gpus=1")
    sim.submit([T(20, [], [11], resources={"gpus": 1})], [O(11)])
    assert sim.core.scheduler.ready_count() == 1


def test_resources_are_not_judged_before_any_governor_joined():
    sim = Sim([])
    sim.submit([T(20, [], [11], resources={"gpus": 1})], [O(11)])
    assert sim.session().error is None


# ------------------------------------------------------------------------------------------
# Tasks no connected governor can run

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def clocked(governors=(), timeout=60.0):
    sim = Sim(governors)
    sim.core.clock = clock = Clock()
    sim.core.unschedulable_timeout = timeout
    return sim, clock


def test_tasks_submitted_with_no_governor_warn_then_fail_after_the_timeout():
    sim, clock = clocked()
    sim.submit([T(20, [], [11], name="work"), T(21, [11], [12])], [O(11), O(12, keep=True)])
    (warning,) = sim.comm.events_of("TasksUnschedulable")
    assert warning["tasks"] == [20, 21] and warning["count"] == 2
    assert warning["reason"] == "no governor is connected" and warning["timeout"] == 60
    clock.now += 59
    sim.core.check_unschedulable()
    assert sim.session().error is None
    clock.now += 2
    sim.core.check_unschedulable()
    error = sim.session().error
    assert error is not None and error.task_id == 20
    assert "Task 20 (work) could not run: no governor is connected" in error.message
    assert "--unschedulable-timeout" in error.message and "60 s" in error.message
    sim.check()


def test_a_governor_joining_in_time_clears_the_warning():
    sim, clock = clocked()
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    clock.now += 30
    sim.gov["g1"] = sim.core.add_governor("g1", 1, None, CONNECTED)
    assert sim.comm.events_of("TasksSchedulable") == [{"type": "TasksSchedulable",
                                                        "session": sim.sid}]
    clock.now += 100
    sim.core.check_unschedulable()
    assert sim.session().error is None and not sim.core.unschedulable
    assert sim.schedule() == {"g1": [20]}


def test_a_governor_without_the_resources_does_not_clear_the_warning():
    sim, clock = clocked()
    sim.submit([T(20, [], [11], resources={"gpus": 1})], [O(11, keep=True)])
    sim.gov["g1"] = sim.core.add_governor("g1", 4, None, CONNECTED)
    assert not sim.comm.events_of("TasksSchedulable")
    clock.now += 61
    sim.core.check_unschedulable()
    assert "gpus=1" in sim.session().error.message


def test_tasks_left_without_a_suitable_governor_warn_then_fail():
    sim, clock = clocked()
    sim.gov["cpu"] = sim.core.add_governor("cpu", 2, None, CONNECTED)
    sim.gov["gpu"] = sim.core.add_governor("gpu", 2, {"gpus": 1}, CONNECTED)
    sim.submit([T(20, [], [11]), T(21, [11], [12], resources={"gpus": 1})],
               [O(11), O(12, keep=True)])
    assert not sim.comm.events_of("TasksUnschedulable")
    sim.core.remove_governor(sim.gov.pop("gpu"))
    (warning,) = sim.comm.events_of("TasksUnschedulable")
    assert warning["tasks"] == [21]
    assert warning["reason"] == ("governor gpu was lost, and no connected governor has "
                                 "what they ask for")
    clock.now += 61
    sim.core.check_unschedulable()
    assert "Task 21 could not run" in sim.session().error.message


def test_timeout_zero_warns_but_waits_forever():
    sim, clock = clocked(timeout=None)
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    (warning,) = sim.comm.events_of("TasksUnschedulable")
    assert warning["timeout"] is None
    clock.now += 10**6
    sim.core.check_unschedulable()
    assert sim.session().error is None


def test_a_closed_session_forgets_its_unschedulable_tasks():
    sim, clock = clocked()
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.core.close_session(sim.client, sim.sid)
    assert not sim.core.unschedulable


# ------------------------------------------------------------------------------------------
# Retries after system failures

def crash(sim, tid, kind="executor"):
    governor = sim.task(tid).governor
    info = cbor2.dumps({"error": "executor died (signal 9)", "crashed": kind})
    sim.core.on_task_updates(governor, [(sim.sid, tid, FAILED, info)])
    sim.check()


@pytest.mark.parametrize("kind,what", [("executor", "executor"),
                                       ("input", "input transfer")])
def test_a_task_crashing_its_executor_is_retried_then_fails_the_session(kind, what):
    sim = Sim([("g1", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    for attempt in range(3):
        assert sim.schedule() == {"g1": [20]}
        crash(sim, 20, kind)
        assert sim.session().error is None and sim.task(20).state == READY
    retried = sim.comm.events_of("TaskRetried")
    assert [e["attempt"] for e in retried] == [2, 3, 4]
    assert sim.schedule() == {"g1": [20]}
    crash(sim, 20, kind)
    error = sim.session().error
    assert error is not None
    assert f"Task 20 crashed its {what} 4 times" in error.message


def test_an_error_of_the_task_itself_is_not_retried():
    sim = Sim([("g1", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    sim.fail(20, "ValueError: bad")
    assert sim.session().error is not None
    assert not sim.comm.events_of("TaskRetried")


def R(task, retries, on_error=False):
    """A task tuple with a retry policy, as a client submits it."""
    return task + (retries, on_error)


def test_retries_zero_fails_at_the_first_crash():
    sim = Sim([("g1", 1)])
    sim.submit([R(T(20, [], [11]), 0)], [O(11, keep=True)])
    sim.schedule()
    crash(sim, 20)
    error = sim.session().error
    assert error is not None and "Task 20 crashed its executor 1 time " in error.message
    assert not sim.comm.events_of("TaskRetried")


def test_per_task_retries_override_the_default():
    sim = Sim([("g1", 1)])
    sim.submit([R(T(20, [], [11]), 5), T(21, [], [12])], [O(11, keep=True), O(12)])
    for attempt in range(5):
        sim.schedule()
        crash(sim, 20)
        assert sim.session().error is None
    sim.schedule()
    crash(sim, 20)
    assert "crashed its executor 6 times" in sim.session().error.message


def test_retry_on_error_runs_a_failing_task_again_then_it_succeeds():
    sim = Sim([("g1", 1)])
    sim.submit([R(T(20, [], [11]), 2, True), T(21, [11], [12])],
               [O(11), O(12, keep=True)])
    for attempt in range(2):
        assert sim.schedule() == {"g1": [20]}
        sim.start(20)
        sim.fail(20, "ValueError: flaky")
        assert sim.session().error is None and sim.task(20).state == READY
        assert 11 in sim.take_deletes("g1")       # the unfinished output is dropped
    retried = sim.comm.events_of("TaskRetried")
    assert [(e["attempt"], e["reason"]) for e in retried] == [
        (2, "error: ValueError: flaky"), (3, "error: ValueError: flaky")]
    assert sim.schedule() == {"g1": [20]}
    sim.finish(20)
    assert sim.schedule() == {"g1": [21]}
    sim.finish(21)
    assert sim.session().error is None and sim.task(21).state == FINISHED


def test_retry_on_error_gives_up_after_its_retries_with_the_tasks_error():
    sim = Sim([("g1", 1)])
    sim.submit([R(T(20, [], [11]), 1, True)], [O(11, keep=True)])
    for attempt in range(2):
        sim.schedule()
        sim.fail(20, "ValueError: bad")
    error = sim.session().error
    assert error.message == "ValueError: bad\n(it failed in each of its 2 runs)"
    assert error.task_id == 20


def test_retry_on_error_without_a_count_uses_the_default():
    sim = Sim([("g1", 1)])
    sim.submit([R(T(20, [], [11]), None, True)], [O(11, keep=True)])
    for attempt in range(3):
        sim.schedule()
        sim.fail(20, "bad")
        assert sim.session().error is None
    sim.schedule()
    sim.fail(20, "bad")
    assert sim.session().error is not None


@pytest.mark.parametrize("policy,fragment", [((-1, False), "retries"),
                                             (("3", False), "retries"),
                                             ((1, "yes"), "retry on error")])
def test_bad_retry_policies_are_rejected(policy, fragment):
    sim = Sim([("g1", 1)])
    rejected(sim, [T(20, [], [11]) + policy], [O(11)], "Task 20", fragment)


def test_a_task_running_on_lost_governors_fails_after_its_retries():
    sim = Sim([("g1", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    for attempt in range(4):
        gid = f"h{attempt}"
        sim.gov[gid] = sim.core.add_governor(gid, 1, None, CONNECTED)
        if attempt == 0:
            sim.core.remove_governor(sim.gov.pop("g1"))
        assert sim.schedule() == {gid: [20]}
        sim.start(20)
        sim.core.remove_governor(sim.gov.pop(gid), "silent for 30 s")
    error = sim.session().error
    assert error is not None and "crashed its governor 4 times" in error.message
    assert "silent for 30 s" in error.message


def test_a_task_only_queued_on_a_lost_governor_is_not_counted_as_crashing():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    for _ in range(5):
        holder = sim.where(20)
        sim.core.remove_governor(sim.gov.pop(holder))
        sim.gov[holder] = sim.core.add_governor(holder, 1, None, CONNECTED)
        sim.schedule()
    assert sim.session().error is None and not sim.session().crashes


def test_lost_governor_with_copies_elsewhere_keeps_session_alive():
    sim = Sim([("g1", 1), ("g2", 1)])
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    sim.schedule()
    holder = sim.where(20)
    other = "g2" if holder == "g1" else "g1"
    sim.finish(20)
    # The other governor fetched a copy (a consumer ran there) and reported it.
    sim.core.on_object_updates(sim.gov[other], [(sim.sid, 11, OBJ_FINISHED, 100, "", b"", None)])
    sim.core.remove_governor(sim.gov.pop(holder))
    sim.check()
    assert sim.session().error is None
    assert [g.id for g in sim.obj(11).locations] == [other]
    request = sim.request_id()
    sim.core.fetch(sim.client, request, sim.sid, 11)
    assert sim.comm.reply_to(request)[1][2] == other


# ------------------------------------------------------------------------------------------
# RAIN_TEST_MODE

@pytest.mark.parametrize("target", ["g1", "g2", "g3"])
def test_testing_placement_attracts_consumer(target):
    sim = Sim([("g1", 2), ("g2", 2), ("g3", 2)], test_mode=True)
    user = cbor2.dumps({"_testing": {"governors": [target], "size": 10_000_000}})
    sim.submit([T(20, [10], [11]), T(21, [30])],
               [O(10, b"tiny", user=user), O(11), O(30, b"plain")])
    assert sim.obj(10).size == 10_000_000
    placed = sim.schedule()
    assert target in placed and 20 in placed[target]


def test_testing_placement_ignored_without_test_mode():
    sim = Sim([("g1", 2), ("g2", 2)])
    user = cbor2.dumps({"_testing": {"governors": ["g2"], "size": 10_000_000}})
    sim.submit([T(20, [10])], [O(10, b"tiny", user=user)])
    assert sim.obj(10).size == 4 and sim.obj(10).testing is None


def test_testing_unknown_governor_rejects_whole_submit():
    sim = Sim([("g1", 2)], test_mode=True)
    good = cbor2.dumps({"_testing": {"governors": ["g1"], "size": 10}})
    bad = cbor2.dumps({"_testing": {"governors": ["nowhere:1"], "size": 10}})
    rejected(sim, [T(20, [10]), T(21, [11])], [O(10, b"a", user=good), O(11, b"b", user=bad)],
             "nowhere:1")
    assert 10 not in sim.session().objects


# ------------------------------------------------------------------------------------------
# The core asks for scheduling; it never schedules by itself

def test_core_requests_scheduling_once_until_it_runs():
    sim = Sim()
    sim.schedule()                              # the round asked for by add_governor
    requests = sim.comm.schedule_requests
    sim.submit([T(20)], [])
    sim.submit([T(21)], [])
    assert sim.comm.schedule_requests == requests + 1
    assert sim.task(20).state == READY          # not placed until schedule() is called
    sim.schedule()
    sim.finish(20)
    assert sim.comm.schedule_requests == requests + 2
    assert sim.gov["g1"] in sim.comm.dirty


def test_states_after_each_step():
    sim = Sim()
    sim.submit([T(20, [], [11])], [O(11, keep=True)])
    assert sim.task(20).state == READY and sim.obj(11).state == UNFINISHED
    sim.schedule()
    assert sim.task(20).state == ASSIGNED
    sim.start(20)
    assert sim.task(20).state == RUNNING
    sim.finish(20)
    assert sim.task(20).state == FINISHED and sim.obj(11).state == OBJ_FINISHED


# ------------------------------------------------------------------------------------------
# Small kept results held by the server

def test_small_kept_results_are_held_for_fetch_within_the_budget(monkeypatch):
    import rain.server.core as core_module
    sim = Sim()
    sim.submit([T(20, [], [21]), T(22, [], [23]), T(24, [], [25])],
               [O(21, keep=True), O(23), O(25, keep=True)])
    sim.schedule()
    monkeypatch.setattr(core_module, "INLINE_BUDGET", 5)
    for tid, oid, data in ((20, 21, b"abc"), (22, 23, b"def"), (24, 25, b"ghi")):
        governor = sim.task(tid).governor
        sim.core.on_object_updates(governor, [(sim.sid, oid, OBJ_FINISHED, 3, "", b"", data)])
        sim.core.on_task_updates(governor, [(sim.sid, tid, FINISHED, b"")])
    # Kept and within the budget: held; not kept, or over the budget: left to the governor.
    assert sim.obj(21).data == b"abc" and sim.obj(23).data is None
    assert sim.obj(25).data is None
    assert sim.core.inline_bytes == 3 and sim.session().inline_bytes == 3
    fetch = sim.request_id()
    sim.core.fetch(sim.client, fetch, sim.sid, 21)
    kind, (obj, data, location) = sim.comm.reply_to(fetch)
    assert kind == "fetch" and data == b"abc" and location is None
    fetch = sim.request_id()
    sim.core.fetch(sim.client, fetch, sim.sid, 25)
    kind, (obj, data, location) = sim.comm.reply_to(fetch)
    assert kind == "fetch" and data is None and location == sim.task(24).governor.id
    # Unkeeping gives the bytes back to the budget; so does closing the session.
    sim.core.unkeep(sim.client, sim.sid, [21])
    assert sim.core.inline_bytes == 0 and sim.session().inline_bytes == 0
    other = sim.new_session()
    sim.submit([T(30, [], [31])], [O(31, keep=True)], sid=other)
    sim.schedule()
    governor = sim.task(30, other).governor
    sim.core.on_object_updates(governor, [(other, 31, OBJ_FINISHED, 2, "", b"", b"xy")])
    assert sim.core.inline_bytes == 2
    sim.core.close_session(sim.client, other)
    assert sim.core.inline_bytes == 0


def test_a_result_whose_bytes_do_not_match_its_size_is_not_held():
    sim = Sim()
    sim.submit([T(20, [], [21])], [O(21, keep=True)])
    sim.schedule()
    governor = sim.task(20).governor
    sim.core.on_object_updates(governor, [(sim.sid, 21, OBJ_FINISHED, 10, "", b"", b"abc")])
    assert sim.obj(21).data is None and sim.core.inline_bytes == 0


@pytest.mark.parametrize("info, expected", [
    ({"start_time": "2026-01-01T00:00:00+00:00", "duration": 0.25, "governor": "g1"},
     {"start_time": "2026-01-01T00:00:00+00:00", "duration": 0.25, "governor": "g1"}),
    (cbor2.dumps({"duration": 0.5}), {"duration": 0.5}),     # a map as CBOR bytes
    (None, {}), ([1, 2], {}), (b"\xff\xff", {}), (cbor2.dumps([1]), {}), (7, {}),
])
def test_finished_task_info_is_a_map_whatever_the_governor_sent(info, expected):
    sim = Sim()
    sim.submit([T(20, [], [10]), T(21, [10], [11])], [O(10), O(11, keep=True)])
    sim.schedule()
    governor = sim.task(20).governor
    sim.core.on_object_updates(governor, [(sim.sid, 10, OBJ_FINISHED, 1, "", b"", None)])
    sim.core.on_task_updates(governor, [(sim.sid, 20, FINISHED, info)])
    assert sim.task(20).info == expected
    finished = [e for e in sim.comm.events if e["type"] == "TaskFinished"]
    assert [e["info"] for e in finished] == [expected]
    assert sim.schedule() == {"g1": [21]}       # the session goes on


def test_small_results_still_needed_are_held_until_consumed():
    sim = Sim(governors=(("g1", 1), ("g2", 1)))
    sim.submit([T(20, [], [21]), T(22, [21], [23])], [O(21), O(23, keep=True)])
    sim.schedule()
    governor = sim.task(20).governor
    sim.core.on_object_updates(governor, [(sim.sid, 21, OBJ_FINISHED, 2, "", b"", b"ab")])
    sim.core.on_task_updates(governor, [(sim.sid, 20, FINISHED, b"")])
    # Needed by task 22: held (a consumer placed elsewhere gets the bytes with its
    # assignment); once consumed and not kept, dropped with the object.
    assert sim.obj(21).data == b"ab" and sim.core.inline_bytes == 2
    sim.schedule()
    sim.finish(22)
    assert sim.core.inline_bytes == 0


def test_an_uploaded_constant_is_finished_where_the_client_stored_it():
    """A constant the client streamed into g2's store: finished there with its size, its
    consumer placed beside it, the delete sent to g2; an upload naming a governor that
    is not connected is refused."""
    sim = Sim([("g1", 4), ("g2", 4)])
    batch = SubmitBatch.from_tuples([T(20, [10], [11])], [O(10), O(11, keep=True)])
    batch.uploads = {0: ("g2", 5000)}
    sim.core.submit_batch(sim.client, sim.sid, batch)
    sim.check()
    obj = sim.obj(10)
    assert obj.state == OBJ_FINISHED and obj.size == 5000 and obj.data is None
    assert [g.id for g in obj.locations] == ["g2"]
    assert sim.schedule() == {"g2": [20]}
    sim.finish(20)
    assert 10 in sim.take_deletes("g2")
    before = sim.snapshot()
    batch = SubmitBatch.from_tuples([], [O(30)])
    batch.uploads = {0: ("g9", 1)}
    with pytest.raises(RequestError, match="g9, which is not"):
        sim.core.submit_batch(sim.client, sim.sid, batch)
    assert sim.snapshot() == before
