"""The server's state machine: sessions, the task graph, object lifetime, failures.

No sockets and no asyncio here. The connection layer decodes a message, calls one of the
``on_*``/request methods, and then sends whatever the core queued: replies go through
``comm.reply(client, request_id, kind, payload)``, per-governor work accumulates in the
governors' ``out_*`` lists (``comm.governor_dirty(governor)`` is called once per governor
that got something), and events through ``comm.event(event_dict)``. A test can drive the
whole server by calling these methods with a recording ``comm``.
"""
import gc
import logging
import time
from bisect import bisect_right
from collections import Counter
from itertools import chain, repeat

from ..common.cbor import loads_or
from .graph import (ASSIGNED, DEFAULT_RETRIES, DIRECTORY, FAILED, FINISHED, NOT_ASSIGNED, OBJ_FINISHED, READY,
                    REMOVED, RUNNING, TASK_STATE_NAMES, UNFINISHED, Client, DataObject,
                    Governor, Session, SessionError, Task, Waiter, group_edges)
from .errors import RequestError, SessionNotOpen, UnknownItem
from .allocations import Reports, parse_report
from .builtin_configs import PREFIX as BUILTIN_PREFIX, check_builtin
from .scheduler import Scheduler, update_prefetch
from .submit_batch import SubmitBatch, offsets, task_positions

logger = logging.getLogger(__name__)

FIRST_ID = 10
LAST_ID = 2**31 - 1         # ids travel as Int32 (rain.capnp)
#: A paused-GC submit at least this big (tasks + objects) ends with one full collection.
GC_COLLECT_ITEMS = 100_000
#: Key in ``Session.waiters`` of the ``wait_all`` requests: they wait on the session's
#: unfinished-task count, not on every task (one entry instead of one per task).
ALL_TASKS = "all tasks"
#: Bytes of small results the server holds (sent along by governors, see
#: ``update_columns.INLINE_DATA_MAX``) while they are kept or still needed: fetching a
#: kept one takes no trip to a governor, and a consumer placed on another governor gets
#: the bytes with its assignment instead of fetching them from a peer. Beyond this
#: budget, objects stay on their governors only, as bigger ones do.
INLINE_BUDGET = 64 << 20
#: Bytes of client constants (``blob()``, ``directory()``) the server keeps after their
#: last consumer finished, until their session closes, so that what a lost governor held
#: can be recomputed from them. Constants still needed are held anyway (they travel with
#: the assignments). A recompute that needs a constant released beyond this budget fails
#: its session, saying so.
CONSTANTS_KEPT = 256 << 20
#: ``info["crashed"]`` of a failed task (set by the governor) -> what failed under it.
#: These failures are retried; errors of the task itself only with ``retry_on_error``.
SYSTEM_FAILURES = {"executor": "executor", "input": "input transfer"}
#: Seconds that tasks no connected governor can run (none is connected, or the ones that
#: could run them left) wait for one that can, before their session fails (``rain server
#: --unschedulable-timeout``; 0 waits forever, e.g. while ``rain alloc`` brings governors
#: through a batch queue). A minute lets a governor started by hand, or restarted, join;
#: a session does not hang unnoticed for longer.
UNSCHEDULABLE_TIMEOUT = 60.0
#: Task ids listed in one ``TasksUnschedulable`` event (the count says how many in all).
UNSCHEDULABLE_LISTED = 20


class ServerCore:
    def __init__(self, comm, *, test_mode=False, debug_mode=False,
                 unschedulable_timeout=UNSCHEDULABLE_TIMEOUT, clock=time.monotonic):
        self.comm = comm
        self.unschedulable_timeout = unschedulable_timeout or None
        self.clock = clock
        #: Session -> [[deadline, [Task], reason]]: tasks no connected governor can run,
        #: in groups by when they were found so (see ``check_unschedulable``).
        self.unschedulable = {}
        self.test_mode = test_mode
        self.debug_mode = debug_mode
        self.scheduler = Scheduler()
        self.governors = {}          # id -> Governor
        self.clients = {}
        self.sessions = {}           # id -> Session (open ones)
        self._next_session_id = 1
        self._next_client_id = 1
        self._schedule_needed = False
        self._graph_items = 0        # tasks + objects of open sessions (GC heuristic)
        self.inline_bytes = 0        # see INLINE_BUDGET
        self.retained_bytes = 0      # see CONSTANTS_KEPT
        self.allocation_reports = Reports()

    # ======================================================================================
    # Clients and sessions

    def add_client(self, conn=None):
        client = Client(self._next_client_id, conn)
        self._next_client_id += 1
        self.clients[client.id] = client
        self.comm.event({"type": "ClientNew", "client": client.id})
        return client

    def remove_client(self, client):
        for session in list(client.sessions):
            self._close_session(session, "ClientClose", "client disconnected")
        self.clients.pop(client.id, None)
        self.comm.event({"type": "ClientRemoved", "client": client.id})

    def new_session(self, client, spec):
        session = Session(self._next_session_id, client, spec.get("name", ""), spec)
        self._next_session_id += 1
        self.sessions[session.id] = session
        client.sessions.add(session)
        self.comm.event({"type": "SessionNew", "session": session.id, "client": client.id,
                         "spec": spec})
        return session.id

    def _session(self, client, session_id, allow_failed=False):
        session = self.sessions.get(session_id)
        if session is None or session.client is not client:
            raise SessionNotOpen(f"Session {session_id} is not open (closed or unknown)")
        if session.error is not None and not allow_failed:
            raise _session_failed(session)
        return session

    def close_session(self, client, session_id):
        session = self.sessions.get(session_id)
        if session is None or session.client is not client:
            raise SessionNotOpen(f"Session {session_id} is not open (closed or unknown)")
        self._close_session(session, "ClientClose", "")

    def _close_session(self, session, reason, message):
        if session.closed:
            return
        self._stop_session_work(session)
        session.closed = True
        self.sessions.pop(session.id, None)
        self.unschedulable.pop(session, None)
        session.client.sessions.discard(session)
        error = RequestError(f"Session {session.id} was closed")
        for waiters in list(session.waiters.values()):
            for waiter in waiters:
                self._fail_waiter(waiter, error)
        session.waiters.clear()
        self._graph_items -= len(session.tasks) + len(session.objects)
        self.inline_bytes -= session.inline_bytes
        session.inline_bytes = 0
        # The graph's shape between task-name groups, for the dashboard of the closed
        # session and post mortem (computed once, before the graph is unlinked).
        edges = group_edges(session.tasks.values())
        _break_cycles(session)
        self.comm.event({"type": "SessionClosed", "session": session.id, "reason": reason,
                         "message": message, "group_edges": edges})
        self._request_schedule()

    def _stop_session_work(self, session):
        """Stop every running task of the session and drop all its objects everywhere."""
        for task in session.tasks.values():
            if task.state in (ASSIGNED, RUNNING):
                self._release(task)
                governor = task.governor
                governor.out_stop.append(task.key)
                self.comm.governor_dirty(governor)
            if task.state in (NOT_ASSIGNED, READY, ASSIGNED, RUNNING):
                task.state = FAILED   # also takes it out of the scheduler's ready queue
        for obj in session.objects.values():
            if obj.state != REMOVED or obj.data is not None:
                self._remove_object(obj, retain=False)

    # ======================================================================================
    # Submit

    def submit(self, client, session_id, tasks, objects):
        """Add tasks and objects given as tuples (see ``SubmitBatch.from_tuples``)."""
        self.submit_batch(client, session_id, SubmitBatch.from_tuples(tasks, objects))

    def submit_batch(self, client, session_id, batch):
        """Validate a whole ``SubmitBatch`` first (nothing changes when it is rejected),
        then add it to the session's graph."""
        # A big submit allocates millions of objects that all stay alive; letting the
        # cyclic GC rescan the growing graph meanwhile costs most of the submit time
        # (measured: 2.2 s instead of 0.5 s for 200,000 tasks).
        items = batch.size
        paused = gc.isenabled() and items > 1000
        if paused:
            gc.disable()
        try:
            self._submit(client, session_id, batch)
        finally:
            if paused:
                gc.enable()
        self._graph_items += items
        if paused and items >= GC_COLLECT_ITEMS and 2 * items >= self._graph_items:
            # Left alone, the new objects would be traversed by a young, a middle and
            # then a full collection; one full collection now, while the new part is
            # most of the graph anyway, does the work once (1M tasks: ~1 s instead of
            # ~2.7 s of collector time).
            gc.collect()

    def _submit(self, client, session_id, batch):
        session = self._session(client, session_id)
        existing_objects = session.objects
        object_ids = batch.object_ids
        task_ids = batch.task_ids
        constants = batch.data
        object_index = _check_new_ids(session, object_ids, "object", {})
        _check_new_ids(session, task_ids, "task", object_index)
        testing = {}
        if self.test_mode:
            users = batch.object_users
            for index in constants:
                if users[index]:
                    found = self._parse_testing(object_ids[index], users[index])
                    if found is not None:
                        testing[index] = found

        task_types = batch.task_types
        if not all(task_types):
            raise RequestError(f"Task {task_ids[task_types.index('')]}: empty task type")
        cpus = batch.cpus
        if cpus and batch.resources and self.governors:
            for index, wanted in batch.resources.items():
                if not any(_can_ever_run(g, cpus[index], wanted)
                           for g in self.governors.values() if not g.closing):
                    asked = ", ".join(f"{name}={amount}" for name, amount in wanted.items())
                    raise RequestError(
                        f"Task {task_ids[index]} asks for {asked} (and {cpus[index]} cpus),"
                        " which no governor has; governors: " + "; ".join(
                            f"{g.id} ({g.cpus} cpus"
                            + "".join(f", {k}={v}" for k, v in g.resources.items()) + ")"
                            for g in list(self.governors.values())[:5]))
        if cpus:
            lowest = min(cpus)
            if lowest < 0:
                raise RequestError(f"Task {task_ids[cpus.index(lowest)]}: negative cpus")
            max_cpus = self.scheduler.max_cpus() if self.governors else None  # O(governors)
            highest = max(cpus)
            if max_cpus is not None and highest > max_cpus:
                raise RequestError(f"Task {task_ids[cpus.index(highest)]} asks for "
                                   f"{highest} cpus but the largest governor has {max_cpus}")

        input_ids = batch.input_ids
        input_offsets = offsets(batch.input_counts)
        for input_id in set(input_ids):
            if input_id in object_index:
                continue
            obj = existing_objects.get(input_id)
            if obj is None or obj.state == REMOVED:
                tid = task_ids[_owner(input_offsets, input_ids.index(input_id))]
                if obj is None:
                    raise RequestError(f"Task {tid}: unknown input object {input_id}")
                raise RequestError(f"Task {tid}: input object {input_id} was already "
                                   "removed (it was not kept)")

        output_ids = batch.output_ids
        output_task = task_positions(batch.output_counts)
        producer_of = dict(zip(output_ids, output_task))     # object id -> task index
        if len(producer_of) != len(output_ids):
            seen = set()
            for position, oid in enumerate(output_ids):
                if oid in seen:
                    first = task_ids[output_task[output_ids.index(oid)]]
                    raise RequestError(f"Object {oid} is an output of two tasks ({first} "
                                       f"and {task_ids[output_task[position]]})")
                seen.add(oid)
        for position, oid in enumerate(output_ids):
            if oid not in object_index:
                raise RequestError(f"Task {task_ids[output_task[position]]}: output {oid} "
                                   "is not an object of this submit")
        uploads = batch.uploads
        holders = {}
        for index, (governor_id, _size) in uploads.items():
            governor = self.governors.get(governor_id)
            if governor is None or governor.closing:
                raise RequestError(f"Object {object_ids[index]} was uploaded to governor "
                                   f"{governor_id}, which is not (or no longer) connected")
            holders[index] = governor
        for index in chain(constants, uploads):
            if object_ids[index] in producer_of:
                raise RequestError(f"Object {object_ids[index]} has data and is a task "
                                   "output")
        if len(producer_of) + len(constants) + len(uploads) != len(object_ids):
            for index, oid in enumerate(object_ids):
                if oid not in producer_of and index not in constants \
                        and index not in uploads:
                    raise RequestError(f"Object {oid} has no data and no task produces it")
        # Clients submit tasks in creation order, so producers nearly always come before
        # their consumers; then the graph is acyclic and Kahn's algorithm is not needed.
        if producer_of and input_ids:
            get = producer_of.get
            input_task = task_positions(batch.input_counts)
            for input_id, task in zip(input_ids, input_task):
                if get(input_id, -1) >= task:
                    _check_acyclic(task_ids, input_ids, input_offsets, producer_of)
                    break

        if any(task_type.startswith(BUILTIN_PREFIX) for task_type in set(task_types)):
            for index, task_type in enumerate(task_types):
                if task_type.startswith(BUILTIN_PREFIX):
                    error = check_builtin(task_type, batch.configs[index],
                                          batch.input_counts[index],
                                          batch.output_counts[index])
                    if error:
                        raise RequestError(f"Task {task_ids[index]}: {error}")

        # -- apply ----------------------------------------------------------------------
        submitted_objects = list(map(
            DataObject, repeat(session), object_ids, batch.labels, batch.content_types,
            batch.data_types, batch.object_users, batch.keep, repeat(None)))
        for index, data in constants.items():
            obj = submitted_objects[index]
            obj.data = data
            obj.state = OBJ_FINISHED
            obj.size = len(data)
            if index in testing:
                obj.testing, size = testing[index]
                if size is not None:
                    obj.size = size
        for index, governor in holders.items():
            # Stored by the client on that governor: finished there, never at the server.
            obj = submitted_objects[index]
            obj.state = OBJ_FINISHED
            obj.size = uploads[index][1]
            obj.locations = [governor]
            obj.known_by = [governor]
        existing_objects.update(zip(object_ids, submitted_objects))

        get_object = existing_objects.__getitem__
        input_labels = batch.input_labels
        resources = batch.resources
        no_labels = _NO_LABELS.get
        submitted_tasks = []
        ready = []
        start_in = start_out = 0
        for index, (tid, task_type, config, input_count, output_count, task_cpus, name,
                    user) in enumerate(zip(task_ids, task_types, batch.configs,
                                           batch.input_counts, batch.output_counts, cpus,
                                           batch.names, batch.users)):
            # Tuples, and one shared tuple for the usual all-empty labels: a million-task
            # graph is mostly these small sequences.
            end_in = start_in + input_count
            if input_count == 1:
                inputs = (get_object(input_ids[start_in]),)
            else:
                inputs = tuple(map(get_object, input_ids[start_in:end_in]))
            if input_labels is None:
                labels = no_labels(input_count) or _no_labels(input_count)
            else:
                labels = tuple(input_labels[start_in:end_in])
                if not any(labels):
                    labels = _no_labels(input_count)
            start_in = end_in
            end_out = start_out + output_count
            if output_count == 1:
                outputs = (get_object(output_ids[start_out]),)
            else:
                outputs = tuple(map(get_object, output_ids[start_out:end_out]))
            start_out = end_out
            task = Task(session, tid, task_type, config, inputs, labels, outputs, task_cpus,
                        resources.get(index) if resources else None, name, user)
            submitted_tasks.append(task)
            for obj in outputs:
                obj.producer = task
            waiting = 0
            for obj in inputs:
                obj.consumers += 1
                if obj.state != OBJ_FINISHED:
                    waiting += 1
                    if obj.dependents is None:
                        obj.dependents = [task]
                    else:
                        obj.dependents.append(task)
            if waiting:
                task.waiting = waiting
            else:
                ready.append(task)
        session.tasks.update(zip(task_ids, submitted_tasks))
        if batch.retries:
            if session.retries is None:
                session.retries = {}
            session.retries.update((task_ids[index], policy)
                                   for index, policy in batch.retries.items())
        session.unfinished_tasks += len(submitted_tasks)
        session.stats[0] += len(submitted_tasks)
        for task in ready:
            self.scheduler.add_ready(task)
        # Constants that nobody needs and nobody keeps are garbage right away.
        for index in chain(constants, uploads):
            obj = submitted_objects[index]
            if obj.consumers == 0 and not obj.keep:
                self._remove_object(obj)
        self.comm.event({"type": "ClientSubmit", "session": session.id,
                         "tasks": list(task_ids), "dataobjs": list(object_ids),
                         "task_names": _names_summary(batch.names, task_types)})
        if submitted_tasks and not self._usable_governors():
            self._warn_unschedulable(session, submitted_tasks, "no governor is connected")
        self._request_schedule()
        self._debug_check()

    def _parse_testing(self, oid, user_bytes):
        """RAIN_TEST_MODE: ``user["_testing"] = {"governors": [id...], "size": n}`` makes a
        constant pretend to be on those governors. Returns (governors, size) or None;
        raises RequestError before anything of the submit is applied."""
        try:
            user = loads_or(user_bytes, {})
        except Exception as exc:
            raise RequestError(f"Object {oid}: invalid user data ({exc})") from None
        testing = user.get("_testing") if isinstance(user, dict) else None
        if not testing:
            return None
        if not isinstance(testing, dict):
            raise RequestError(f"Object {oid}: _testing must be a map")
        governors = []
        for gid in testing.get("governors", ()):
            governor = self.governors.get(gid)
            if governor is None:
                raise RequestError(f"Object {oid}: _testing: unknown governor {gid}")
            governors.append(governor)
        size = int(testing["size"]) if "size" in testing else None
        return governors, size

    # ======================================================================================
    # Waiting, fetching, state

    def _lookup(self, session, task_ids, object_ids):
        items = []
        for tid in task_ids:
            task = session.tasks.get(tid)
            if task is None:
                raise UnknownItem(f"Unknown task {tid} in session {session.id} "
                                  "(not submitted?)")
            items.append(task)
        for oid in object_ids:
            obj = session.objects.get(oid)
            if obj is None:
                raise UnknownItem(f"Unknown object {oid} in session {session.id} "
                                  "(not submitted?)")
            items.append(obj)
        return items

    def wait(self, client, request_id, session_id, task_ids, object_ids, some=False):
        session = self._session(client, session_id)
        items = self._lookup(session, task_ids, object_ids)
        pending = [item for item in items if not _is_done(item)]
        if some:
            if not items or len(pending) < len(items):
                self._reply_some(client, request_id, items)
                return
            waiter = Waiter(client, request_id, "some", session, 1, items)
        else:
            # The reply carries the items' states and infos (wait() brings `info`).
            if not pending:
                self.comm.reply(client, request_id, "state", items)
                return
            waiter = Waiter(client, request_id, "wait", session, len(pending), items)
        for item in pending:
            session.waiters.setdefault(item, []).append(waiter)

    def wait_all(self, client, request_id, session_id):
        session = self._session(client, session_id)
        if not session.unfinished_tasks:
            self.comm.reply(client, request_id, "ok", None)
            return
        waiter = Waiter(client, request_id, "wait", session, 1)
        session.waiters.setdefault(ALL_TASKS, []).append(waiter)

    def _reply_some(self, client, request_id, items):
        tasks = [i.id for i in items if isinstance(i, Task) and _is_done(i)]
        objects = [i.id for i in items if isinstance(i, DataObject) and _is_done(i)]
        self.comm.reply(client, request_id, "some", (tasks, objects))

    def fetch(self, client, request_id, session_id, object_id):
        session = self._session(client, session_id)
        obj = session.objects.get(object_id)
        if obj is None:
            raise UnknownItem(f"Unknown object {object_id} in session {session_id} "
                              "(not submitted?)")
        if not obj.keep:
            raise RequestError(f"Object {object_id} is not kept; call keep() before submit "
                               "to fetch it")
        if obj.state == OBJ_FINISHED:
            self._reply_fetch(client, request_id, obj)
            return
        waiter = Waiter(client, request_id, "fetch", session, 1, obj)
        session.waiters.setdefault(obj, []).append(waiter)

    def _reply_fetch(self, client, request_id, obj):
        if obj.data is not None:
            self.comm.reply(client, request_id, "fetch", (obj, obj.data, None))
            return
        locations = [g for g in obj.locations if g.conn is not None]
        if not locations:
            self.comm.reply(client, request_id, "error",
                            RequestError(f"Object {obj.id} is on no governor any more"))
            return
        self.comm.reply(client, request_id, "fetch", (obj, None, locations[0].id))

    def unkeep(self, client, session_id, object_ids):
        session = self._session(client, session_id)
        objs = []
        for oid in object_ids:
            obj = session.objects.get(oid)
            if obj is None:
                raise RequestError(f"Unknown object {oid} in session {session_id}")
            objs.append(obj)
        for obj in objs:
            obj.keep = False
            if obj.state == OBJ_FINISHED and obj.consumers == 0:
                self._remove_object(obj)
        self.comm.event({"type": "ClientUnkeep", "session": session_id,
                         "dataobjs": list(object_ids)})

    def get_state(self, client, session_id, task_ids, object_ids):
        session = self._session(client, session_id)
        items = self._lookup(session, task_ids, object_ids)
        return items

    # ======================================================================================
    # Governors

    def add_governor(self, governor_id, cpus, resources, conn=None):
        if governor_id in self.governors:
            raise RequestError(f"Governor {governor_id} is already registered")
        governor = Governor(governor_id, cpus, resources, conn)
        self.governors[governor_id] = governor
        self.scheduler.add_governor(governor)
        self.comm.event({"type": "GovernorNew", "governor": governor_id, "cpus": cpus,
                         "resources": resources or {}})
        if self.unschedulable:
            self._recheck_unschedulable()
        self._request_schedule()
        return governor

    def report_allocation(self, report):
        """A batch job of an autoscaler changed state (see ``allocations``); returns the
        checked report. Bad reports raise ``RequestError``."""
        report = parse_report(report)
        for event in self.allocation_reports.events(report):
            self.comm.event(event)
        return report

    def drain_governor(self, governor):
        """The governor is leaving: it gets no new tasks, and the ones queued there but not
        yet running go back to the ready queue (it finishes those it runs)."""
        governor.closing = True
        for task in list(governor.tasks):
            if task.state == ASSIGNED:
                self._release(task)
                task.governor = None
                governor.out_stop.append(task.key)
                self.scheduler.add_ready(task)
        self.comm.governor_dirty(governor)
        self.comm.event({"type": "GovernorDraining", "governor": governor.id})
        self._find_unschedulable(f"governor {governor.id} is leaving")
        self._request_schedule()

    def remove_governor(self, governor, reason="connection lost"):
        """A governor is gone (its connection closed, or it fell silent): what ran or
        waited there runs elsewhere, and every still-needed object whose last copy it
        held is recomputed from its producers (see ``_recompute``). A session fails only
        when that is impossible, saying why."""
        if governor.id not in self.governors:
            return
        del self.governors[governor.id]
        self.scheduler.remove_governor(governor)
        governor.conn = None
        orphans = list(governor.tasks)
        governor.tasks.clear()
        governor.free_cpus = governor.cpus
        lost = {}                              # session -> [DataObject]
        for session in list(self.sessions.values()):
            for obj in session.objects.values():
                locations = obj.locations
                if locations and governor in locations:
                    locations.remove(governor)
                    if not locations and obj.data is None and obj.state == OBJ_FINISHED:
                        lost.setdefault(session, []).append(obj)
                if obj.known_by and governor in obj.known_by:
                    obj.known_by.remove(governor)
                if obj.testing and governor in obj.testing:
                    obj.testing.remove(governor)
        self.comm.event({"type": "GovernorRemoved", "governor": governor.id,
                         "reason": reason})
        self.comm.event({"type": "GovernorLost", "governor": governor.id, "reason": reason,
                         "tasks": len(orphans),
                         "objects": sum(len(objs) for objs in lost.values())})
        crashed = set()
        for task in orphans:
            if task.state == RUNNING:
                crashed.add(task)
            task.governor = None
            task.state = NOT_ASSIGNED
        for session, objects in lost.items():
            if session.error is None:
                self._recompute(session, objects, f"governor {governor.id} was lost "
                                                  f"({reason})")
        for task in orphans:
            if task.session.error is not None:
                continue
            if task in crashed and not self._count_crash(
                    task, "governor", f"governor {governor.id}: {reason}"):
                continue
            if task.state == NOT_ASSIGNED and not task.waiting:
                self._requeue(task)        # (else it waits for a lost input again)
        self._find_unschedulable(f"governor {governor.id} was lost")
        self._request_schedule()
        self._debug_check()

    # ======================================================================================
    # Tasks no connected governor can run

    def _usable_governors(self):
        return [g for g in self.governors.values() if not g.closing]

    def _unrunnable(self, tasks):
        """The tasks of ``tasks`` still to be placed that no usable governor could run."""
        governors = self._usable_governors()
        pending = [t for t in tasks if t.state == NOT_ASSIGNED or t.state == READY]
        if not governors or not pending:
            return pending
        fits = {}
        found = []
        for task in pending:
            key = (task.cpus, tuple(sorted(task.resources.items())) if task.resources
                   else ())
            ok = fits.get(key)
            if ok is None:
                ok = fits[key] = any(_can_ever_run(g, task.cpus, task.resources or {})
                                     for g in governors)
            if not ok:
                found.append(task)
        return found

    def _warn_unschedulable(self, session, tasks, reason):
        """Warn (an event) that ``tasks`` cannot run now, and fail them after the timeout
        unless a governor that can joins first."""
        timeout = self.unschedulable_timeout
        deadline = None if timeout is None else self.clock() + timeout
        self.unschedulable.setdefault(session, []).append([deadline, tasks, reason])
        self.comm.event({"type": "TasksUnschedulable", "session": session.id,
                         "tasks": [t.id for t in tasks[:UNSCHEDULABLE_LISTED]],
                         "count": len(tasks), "reason": reason, "timeout": timeout})
        logger.warning("session %s: %d task(s) cannot run: %s; %s", session.id,
                       len(tasks), reason,
                       "waiting for a governor that can" if timeout is None else
                       f"they fail unless a governor that can run them joins within "
                       f"{timeout:g} s")

    def _find_unschedulable(self, why):
        """After a governor left: warn about the unfinished tasks no remaining governor
        can run (all of them when none is left)."""
        governors = self._usable_governors()
        for session in list(self.sessions.values()):
            if not session.unfinished_tasks or session.error is not None:
                continue
            known = {t for group in self.unschedulable.get(session, ()) for t in group[1]}
            tasks = [t for t in self._unrunnable(session.tasks.values()) if t not in known]
            if tasks:
                self._warn_unschedulable(
                    session, tasks, f"{why}, and no governor is connected" if not governors
                    else f"{why}, and no connected governor has what they ask for")

    def _recheck_unschedulable(self):
        """A governor joined: tasks it (or any) can run are schedulable again."""
        for session, groups in list(self.unschedulable.items()):
            left = []
            for group in groups:
                group[1] = self._unrunnable(group[1])
                if group[1]:
                    left.append(group)
            if left:
                self.unschedulable[session] = left
            else:
                del self.unschedulable[session]
                if not session.closed and session.error is None:
                    self.comm.event({"type": "TasksSchedulable", "session": session.id})

    def check_unschedulable(self, now=None):
        """Fail the sessions whose unrunnable tasks waited past the timeout (the I/O layer
        calls this every few seconds)."""
        if not self.unschedulable:
            return
        now = self.clock() if now is None else now
        for session, groups in list(self.unschedulable.items()):
            if session.closed or session.error is not None:
                del self.unschedulable[session]
                continue
            for deadline, tasks, reason in groups:
                if deadline is None or deadline > now:
                    continue
                tasks = self._unrunnable(tasks)
                if tasks:
                    task = tasks[0]
                    wants = ", ".join(f"{k}={v}" for k, v in (task.resources or {}).items())
                    self._fail_session(session, SessionError(
                        f"Task {task.id}{f' ({task.name})' if task.name else ''} could not "
                        f"run: {reason} (it asks for {task.cpus} cpus"
                        f"{', ' + wants if wants else ''}), and none that could joined "
                        f"within {self.unschedulable_timeout:g} s (rain server "
                        "--unschedulable-timeout)", task.id))
                    break
            if session in self.unschedulable:
                if session.error is not None:
                    del self.unschedulable[session]
                else:
                    groups[:] = [g for g in groups if g[0] is None or g[0] > now]
                    if not groups:
                        del self.unschedulable[session]

    def _count_crash(self, task, what, detail):
        """A system failure under ``task``: True if it may run again, else its session
        has failed."""
        if self._may_retry(task, f"{what}: {detail}"):
            return True
        crashes = task.session.crashes[task.id]
        self._fail_session(task.session, SessionError(
            f"Task {task.id} crashed its {what} {crashes} time{'s' if crashes > 1 else ''}"
            f" (last: {detail})", task.id, ""))
        return False

    def _may_retry(self, task, reason):
        """Count one failed run of ``task``: True (and a ``TaskRetried`` event) if its
        retry budget (its ``retries``, else ``DEFAULT_RETRIES``) allows another."""
        session = task.session
        if session.crashes is None:
            session.crashes = {}        # (a dict of the few, not a field of every task)
        failures = session.crashes[task.id] = session.crashes.get(task.id, 0) + 1
        if failures > self._retries_of(task)[0]:
            return False
        self.comm.event({"type": "TaskRetried", "session": session.id,
                         "task": task.id, "name": task.name, "attempt": failures + 1,
                         "reason": reason})
        return True

    def _retries_of(self, task):
        """(retries, retry on error) of ``task``."""
        policies = task.session.retries
        policy = policies.get(task.id) if policies else None
        if policy is None:
            return DEFAULT_RETRIES, False
        retries, on_error = policy
        return (DEFAULT_RETRIES if retries is None else retries), on_error

    def _forget_everywhere(self, obj):
        """Governors told about ``obj`` drop what they have of it (a failed or hanging
        fetch from where it was); whoever needs it later is told anew where it is."""
        key = obj.key
        for governor in obj.known_by:
            governor.out_delete.append(key)
            self.comm.governor_dirty(governor)
        obj.known_by = ()

    def _unassign(self, task, governor, inputs=()):
        """``task`` left ``governor`` unfinished: the governor drops its outputs (and
        these inputs) unless it holds them finished, and forgets having been told."""
        for obj in (*task.outputs, *inputs):
            known_by = obj.known_by
            if governor in known_by and governor not in obj.locations:
                known_by.remove(governor)
                governor.out_delete.append(obj.key)
        self.comm.governor_dirty(governor)

    def _requeue(self, task):
        """A task that is NOT_ASSIGNED again (its governor went away or stopped it): ready
        when its inputs are there, else waiting for them."""
        waiting = 0
        for obj in task.inputs:
            if obj.state != OBJ_FINISHED:
                waiting += 1
                if obj.dependents is None:
                    obj.dependents = [task]
                elif task not in obj.dependents:
                    obj.dependents.append(task)
        task.waiting = waiting
        if not waiting:
            self.scheduler.add_ready(task)

    def _recompute(self, session, lost, why):
        """Make the ``lost`` objects (finished, no copy left) exist again: their producers
        run again, and so, recursively, do the producers of those producers' inputs that
        are gone too (released after use, or lost as well). Tasks that were about to use
        a lost object wait for it again. Iterative, so a chain of any length is fine."""
        lost_set = set()
        revive = []
        for obj in lost:
            if not obj.keep and obj.consumers <= 0:
                self._remove_object(obj)        # nobody needs it: nothing to recompute
                continue
            obj.state = UNFINISHED
            obj.locations = ()
            self._forget_everywhere(obj)
            lost_set.add(obj)
            if obj.producer is None:
                self._fail_session(session, SessionError(
                    f"{why}; it held the only copy of object {obj.id}, which has no "
                    "producer to compute it again"))
                return
            revive.append(obj.producer)
        if not lost_set:
            return
        # Unfinished tasks that counted on a lost object wait for it again.
        users = session.tasks.values() if any(o.consumers for o in lost_set) else ()
        for task in users:
            state = task.state
            if state == FINISHED or state == FAILED or state == RUNNING:
                continue
            missing = [obj for obj in task.inputs if obj in lost_set]
            if not missing:
                continue
            if state == ASSIGNED:
                governor = task.governor
                self._release(task)
                task.governor = None
                governor.out_stop.append(task.key)
                self._unassign(task, governor, missing)
                task.state = NOT_ASSIGNED
                task.waiting = 0
            elif state == READY:
                task.state = NOT_ASSIGNED       # the scheduler skips it in its queue
                task.waiting = 0
            for obj in missing:
                task.waiting += 1
                if obj.dependents is None:
                    obj.dependents = [task]
                else:
                    obj.dependents.append(task)
        rerun = []
        recomputed = []
        while revive:
            task = revive.pop()
            if task.state != FINISHED:
                continue                         # already on its way again
            task.state = NOT_ASSIGNED
            task.governor = None
            session.unfinished_tasks += 1
            rerun.append(task.id)
            waiting = 0
            for obj in task.inputs:
                obj.consumers += 1
                state = obj.state
                if state == OBJ_FINISHED:
                    continue
                if state == REMOVED:
                    producer = obj.producer
                    if producer is None:
                        if obj.data is None:
                            self._fail_session(session, SessionError(
                                f"{why}; recomputing what it held needs the client "
                                f"constant {obj.id}, which the server no longer keeps "
                                f"(beyond its {CONSTANTS_KEPT >> 20} MiB of released "
                                "constants kept for this)"))
                            return
                        session.retained_bytes -= len(obj.data)
                        self.retained_bytes -= len(obj.data)
                        obj.state = OBJ_FINISHED
                        continue
                    obj.state = UNFINISHED
                    recomputed.append(obj.id)
                    revive.append(producer)
                waiting += 1
                if obj.dependents is None:
                    obj.dependents = [task]
                else:
                    obj.dependents.append(task)
            for obj in task.outputs:
                if obj.state == REMOVED:
                    obj.state = UNFINISHED
            task.waiting = waiting
            if not waiting:
                self.scheduler.add_ready(task)
        self.comm.event({"type": "ObjectsRecomputed", "session": session.id,
                         "reason": why, "objects": sorted(o.id for o in lost_set)
                         + recomputed, "tasks": rerun})

    def on_task_updates(self, governor, updates):
        """``updates``: (session_id, task_id, state, info), ``info`` the TaskInfo map (or
        anything else from a faulty governor: then taken as empty)."""
        for session_id, task_id, state, info in updates:
            session = self.sessions.get(session_id)
            if session is None:
                continue            # closed meanwhile: the stop message is on its way
            task = session.tasks.get(task_id)
            if task is None or task.governor is not governor:
                continue
            if state == RUNNING:
                if task.state == ASSIGNED:
                    task.state = RUNNING
                    self.comm.event({"type": "TaskStarted", "session": session_id,
                                     "task": task_id, "governor": governor.id,
                                     "name": task.name})
            elif state == FINISHED:
                if task.state in (ASSIGNED, RUNNING):
                    if task.state == ASSIGNED:
                        # Started and finished between two updates: one entry says both.
                        self.comm.event({"type": "TaskStarted", "session": session_id,
                                         "task": task_id, "governor": governor.id,
                                         "name": task.name})
                    task.info = _info_map(info)
                    self._task_finished(task)
            elif state == FAILED:
                if task.state in (ASSIGNED, RUNNING):
                    task.info = _info_map(info)
                    self._task_failed(task)
        self._debug_check()

    def on_object_updates(self, governor, updates):
        """``updates``: (session_id, object_id, state, size, content_type, info_bytes,
        data_or_None)."""
        for session_id, object_id, state, size, content_type, info, data in updates:
            session = self.sessions.get(session_id)
            if session is None:
                continue
            obj = session.objects.get(object_id)
            if obj is None or obj.state == REMOVED:
                continue
            if state == OBJ_FINISHED:
                if not obj.locations:
                    obj.locations = [governor]
                elif governor not in obj.locations:
                    obj.locations.append(governor)
                if obj.state == UNFINISHED:
                    obj.size = size
                    if content_type:
                        obj.content_type = content_type
                    obj.info = info
                    if data is not None and (obj.keep or obj.consumers) \
                            and len(data) == size \
                            and self.inline_bytes + size <= INLINE_BUDGET:
                        obj.data = data
                        session.inline_bytes += size
                        self.inline_bytes += size
            elif state == REMOVED:
                if governor in obj.locations:
                    obj.locations.remove(governor)

    def _task_finished(self, task):
        session = task.session
        governor = task.governor
        self._release(task)
        task.state = FINISHED
        session.unfinished_tasks -= 1
        session.stats[1] += 1
        info = task.info
        duration = info.get("duration")
        if isinstance(duration, (int, float)):
            update_prefetch(governor, duration)
        self.comm.event({"type": "TaskFinished", "session": session.id, "task": task.id,
                         "governor": governor.id, "name": task.name, "info": info})
        waiters = session.waiters
        for obj in task.outputs:
            obj.state = OBJ_FINISHED
            if not obj.locations:
                obj.locations = [governor]
            elif governor not in obj.locations:
                obj.locations.append(governor)
            dependents, obj.dependents = obj.dependents, None
            for consumer_task in dependents or ():
                consumer_task.waiting -= 1
                if consumer_task.waiting == 0 and consumer_task.state == NOT_ASSIGNED:
                    self.scheduler.add_ready(consumer_task)
            if waiters and obj in waiters:
                self._notify(session, obj)
            if obj.consumers == 0 and not obj.keep:
                self._remove_object(obj)
        for obj in task.inputs:
            obj.consumers -= 1
            if obj.consumers == 0 and not obj.keep and obj.state == OBJ_FINISHED:
                self._remove_object(obj)
        if waiters and task in waiters:
            self._notify(session, task)
        if not session.unfinished_tasks and waiters and ALL_TASKS in waiters:
            self._notify(session, ALL_TASKS)
        self._request_schedule()

    def _task_failed(self, task):
        session = task.session
        self._release(task)
        info = task.info
        crashed = info.get("crashed")
        if crashed in SYSTEM_FAILURES and session.error is None:
            # Not the task's own fault: its executor died under it, or an input could
            # not be transferred (its holder just went away). Run it again.
            governor = task.governor
            task.governor = None
            task.state = NOT_ASSIGNED
            if governor is not None:
                # A failed fetch there is dropped, and so are the unfinished outputs;
                # they are sent again (with current locations) to whoever needs them.
                self._unassign(task, governor, task.inputs if crashed == "input" else ())
            if self._count_crash(task, SYSTEM_FAILURES[crashed],
                                 f"{info.get('error') or 'no message'} "
                                 f"on {governor.id if governor else '?'}"):
                self._requeue(task)
                self._request_schedule()
            return
        message = info.get("error") or "task failed"
        if session.error is None and session.retries and task.id in session.retries \
                and self._retries_of(task)[1]:
            # The task's own error, and it asked for those to be retried too.
            governor = task.governor
            if self._may_retry(task, f"error: {message}"):
                task.governor = None
                task.state = NOT_ASSIGNED
                if governor is not None:
                    self._unassign(task, governor)
                self._requeue(task)
                self._request_schedule()
                return
            message = (f"{message.rstrip()}\n(it failed in each of its "
                       f"{session.crashes[task.id]} runs)")
        task.state = FAILED
        session.stats[2] += 1
        self.comm.event({"type": "TaskFailed", "session": session.id, "task": task.id,
                         "governor": task.governor.id if task.governor else None,
                         "name": task.name, "info": info})
        self._fail_session(session, SessionError(message, task.id, info.get("debug", "")))

    def undeliverable(self, items, reason):
        """Tasks and objects that could not be encoded for a governor: their sessions fail
        with ``reason``. Their own data is at fault (a client put it there), so the
        governor and every other session go on."""
        for item in items:
            session = item.session
            if session.closed or session.error is not None:
                continue
            if isinstance(item, Task):
                where, task_id = f"Task {item.id}", item.id
            else:
                producer = item.producer
                where = f"Object {item.id}"
                task_id = producer.id if producer is not None else -1
            logger.warning("session %s fails: %s could not be sent to a governor: %s",
                           session.id, where, reason)
            self._fail_session(session, SessionError(
                f"{where} could not be sent to a governor: {reason}", task_id))

    def _fail_session(self, session, error):
        if session.error is not None:
            return
        session.error = error
        self._stop_session_work(session)
        exc = _session_failed(session)
        for waiters in list(session.waiters.values()):
            for waiter in waiters:
                self._fail_waiter(waiter, exc)
        session.waiters.clear()
        self.comm.event({"type": "SessionFailed", "session": session.id,
                         "message": error.message, "task": error.task_id})

    def _release(self, task):
        governor = task.governor
        if governor is None:
            return
        governor.tasks.discard(task)
        governor.free_cpus += task.cpus
        if task.resources:
            free = governor.free_resources
            for name, amount in task.resources.items():
                free[name] = free.get(name, 0) + amount

    def _remove_object(self, obj, retain=True):
        data = obj.data
        obj.data = None
        if data is not None:
            session = obj.session
            if obj.producer is not None:
                session.inline_bytes -= len(data)
                self.inline_bytes -= len(data)
            elif obj.state == REMOVED:            # a released constant kept until now
                session.retained_bytes -= len(data)
                self.retained_bytes -= len(data)
            elif retain and self.retained_bytes + len(data) <= CONSTANTS_KEPT:
                # Kept for recomputing what a lost governor held (see CONSTANTS_KEPT).
                obj.data = data
                session.retained_bytes += len(data)
                self.retained_bytes += len(data)
        obj.state = REMOVED
        key = obj.key
        for governor in obj.known_by:
            governor.out_delete.append(key)
            self.comm.governor_dirty(governor)
        obj.known_by = ()
        obj.locations = ()

    # ======================================================================================
    # Scheduling

    def _request_schedule(self):
        if not self._schedule_needed:
            self._schedule_needed = True
            self.comm.schedule_soon()

    def schedule(self):
        """Run one scheduling round (the I/O layer calls this once per loop turn)."""
        self._schedule_needed = False
        self.scheduler.schedule(self._assign)

    def _assign(self, task, governor):
        task.state = ASSIGNED
        task.governor = governor
        governor.tasks.add(task)
        governor.free_cpus -= task.cpus
        if task.resources:
            free = governor.free_resources
            for name, amount in task.resources.items():
                free[name] = free.get(name, 0) - amount
        out_objects = governor.out_objects
        for obj in task.inputs:
            known_by = obj.known_by
            if not known_by:
                obj.known_by = [governor]
                out_objects.append(obj)
            elif governor not in known_by:
                known_by.append(governor)
                out_objects.append(obj)
        for obj in task.outputs:
            # Always sent: a task run again may find its outputs dropped by a governor
            # that knew them (a failed run deletes what it did not finish).
            known_by = obj.known_by
            if not known_by:
                obj.known_by = [governor]
            elif governor not in known_by:
                known_by.append(governor)
            out_objects.append(obj)
        governor.out_tasks.append(task)
        self.comm.governor_dirty(governor)

    # ======================================================================================
    # Helpers

    def _notify(self, session, item):
        waiters = session.waiters.pop(item, None)
        if not waiters:
            return
        for waiter in waiters:
            if waiter.done:
                continue
            if waiter.kind == "fetch":
                waiter.done = True
                self._reply_fetch(waiter.client, waiter.request_id, item)
            elif waiter.kind == "some":
                waiter.done = True
                self._reply_some(waiter.client, waiter.request_id, waiter.items)
            else:
                waiter.remaining -= 1
                if waiter.remaining == 0:
                    waiter.done = True
                    if waiter.items is not None:
                        self.comm.reply(waiter.client, waiter.request_id, "state",
                                        waiter.items)
                    else:
                        self.comm.reply(waiter.client, waiter.request_id, "ok", None)

    def _fail_waiter(self, waiter, exc):
        if not waiter.done:
            waiter.done = True
            self.comm.reply(waiter.client, waiter.request_id, "error", exc)

    def session_error(self, session):
        return _session_failed(session)

    def _debug_check(self):
        if self.debug_mode:
            check_consistency(self)


class SessionFailed(RequestError):
    def __init__(self, session):
        error = session.error
        super().__init__(error.message)
        self.task_id = error.task_id
        self.debug = error.debug


def _info_map(info):
    """A task update's info as a dict (CBOR bytes are accepted too; anything else from a
    faulty governor counts as no info rather than breaking the session)."""
    if type(info) is dict:
        return info
    if isinstance(info, (bytes, bytearray)):
        try:
            info = loads_or(info, {})
        except Exception:
            return {}
        return info if isinstance(info, dict) else {}
    return {}


def _can_ever_run(governor, cpus, resources):
    """Whether the governor could run a task of these needs once it is idle."""
    if cpus > governor.cpus:
        return False
    own = governor.resources
    return all(own.get(name, 0) >= amount for name, amount in resources.items())


def _session_failed(session):
    return SessionFailed(session)


def _is_done(item):
    if isinstance(item, Task):
        return item.state == FINISHED
    return item.state in (OBJ_FINISHED, REMOVED) and (
        item.producer is None or item.producer.state == FINISHED)


_NO_LABELS = {}


def _no_labels(count):
    """A shared tuple of ``count`` empty labels (one per distinct count: caching every
    size up to ``count`` would take count**2 / 2 slots, gigabytes for a task with
    100,000 inputs)."""
    labels = _NO_LABELS.get(count)
    if labels is None:
        labels = _NO_LABELS[count] = ("",) * count
    return labels


def _names_summary(names, task_types):
    """How many tasks of each name (the task type for unnamed tasks)."""
    if len(names) == 1:
        return {_name_or_type(names[0], task_types[0]): 1}
    return dict(Counter(map(_name_or_type, names, task_types)))


def _name_or_type(name, task_type):
    return name or task_type


def _check_new_ids(session, ids, what, other_new):
    """Ids of new items: not below FIRST_ID, unique in the submit and in the session.
    Returns {id: index}."""
    if ids:
        lowest = min(ids)
        if lowest < FIRST_ID:
            raise RequestError(f"Invalid {what} id {lowest} (ids start at {FIRST_ID})")
        highest = max(ids)
        if highest > LAST_ID:
            raise RequestError(f"Invalid {what} id {highest} (ids end at {LAST_ID}: "
                               f"they travel as 32-bit integers)")
    index = dict(zip(ids, range(len(ids))))
    taken = [other_new, session.objects, session.tasks]
    if len(index) != len(ids):
        taken.append(None)
    for known in taken:
        if known is None:
            seen = set()
            clash = next(i for i in ids if i in seen or seen.add(i))
        elif not known:
            continue
        else:
            common = index.keys() & known.keys()
            if not common:
                continue
            clash = min(common, key=index.__getitem__)
        raise RequestError(f"Duplicate id {clash} in session {session.id}")
    return index


def _owner(starts, position):
    """The task index owning entry ``position`` of a flattened column with these starts."""
    return bisect_right(starts, position) - 1


def _check_acyclic(task_ids, input_ids, input_starts, producer_of):
    """Kahn's algorithm over the tasks of one submit (older tasks cannot depend on new
    ones, so a cycle can only lie within the submit). Tasks are indexes here."""
    count = len(task_ids)
    indegree = [0] * count
    dependents = {}
    for task in range(count):
        for input_id in input_ids[input_starts[task]:input_starts[task + 1]]:
            producer = producer_of.get(input_id)
            if producer is not None:
                indegree[task] += 1
                dependents.setdefault(producer, []).append(task)
    stack = [task for task in range(count) if indegree[task] == 0]
    seen = 0
    while stack:
        task = stack.pop()
        seen += 1
        for dep in dependents.get(task, ()):
            indegree[dep] -= 1
            if indegree[dep] == 0:
                stack.append(dep)
    if seen == count:
        return
    # Tasks left over are on a cycle or downstream of one; every one of them has a
    # left-over producer among its inputs, so walking producers finds a cycle.
    task = min((t for t in range(count) if indegree[t] > 0), key=task_ids.__getitem__)
    path = []
    position = {}
    while task not in position:
        position[task] = len(path)
        path.append(task)
        for input_id in input_ids[input_starts[task]:input_starts[task + 1]]:
            producer = producer_of.get(input_id)
            if producer is not None and indegree[producer] > 0:
                task = producer
                break
    cycle = [task_ids[t] for t in path[position[task]:]]
    cycle.reverse()                  # producer before consumer
    shown = " -> ".join(map(str, cycle[:10] + cycle[:1]))
    if len(cycle) > 10:
        shown = " -> ".join(map(str, cycle[:10])) + f" -> ... ({len(cycle)} tasks)"
    raise RequestError(f"The submitted graph has a cycle: task {shown}")


def _break_cycles(session):
    """Unlink a closed session's graph (tasks and objects point at each other), so that
    reference counting frees it at once instead of a full cyclic collection, which the
    server runs rarely (``rain.common.gc_tuning``)."""
    for task in session.tasks.values():
        task.inputs = task.outputs = ()
    for obj in session.objects.values():
        obj.producer = None
        obj.dependents = None
    session.tasks.clear()
    session.objects.clear()


def check_consistency(core):
    """RAIN_DEBUG_MODE: verify the graph invariants; raise AssertionError loudly."""
    for governor in core.governors.values():
        used = sum(t.cpus for t in governor.tasks)
        assert governor.free_cpus == governor.cpus - used, \
            f"cpu accounting broken on {governor.id}"
        for task in governor.tasks:
            assert task.state in (ASSIGNED, RUNNING), f"{task} on {governor.id}"
            assert task.governor is governor
    for session in core.sessions.values():
        unfinished = 0
        for task in session.tasks.values():
            if task.state != FINISHED:
                unfinished += 1
            if task.state in (ASSIGNED, RUNNING):
                assert task in task.governor.tasks, f"{task} not on its governor"
            if task.state == READY or task.state in (ASSIGNED, RUNNING):
                assert all(o.state != UNFINISHED for o in task.inputs), \
                    f"{task} scheduled before its inputs"
        if session.error is None:
            assert unfinished == session.unfinished_tasks, "unfinished count broken"
        for obj in session.objects.values():
            assert obj.consumers >= 0, f"{obj} consumers negative"


__all__ = ["ServerCore", "RequestError", "SessionFailed", "TASK_STATE_NAMES", "DIRECTORY"]
