"""The run model: server events folded into the state the dashboard and the REST API show.

Pure Python, no I/O. A running server builds it when someone first looks, by replaying its
event log, and from then on feeds it from ``EventLog.listeners`` (on the server's loop, so
``feed`` must be cheap: a few dict operations per event, nothing per task at submit beyond
keeping a reference to the id list); post mortem it is replayed from the ``events.db``.

Work that only a viewer needs (parsing task start times, placing finished tasks on the CPU
lanes of the task stream) is deferred: finished tasks are appended raw and turned into
stream rows the first time a chart or a REST call asks (``RunModel.materialize``). A run
nobody watches therefore pays only the O(1) bookkeeping.

Task states in the model: waiting (submitted, not started), running, finished, failed.
Tasks are grouped by name (``a/b/c`` names form a hierarchy in the inspector); a task
without a name is grouped by its task type when a resolver is given (live), else by the
only unnamed group of its submits.
"""
import datetime
import json
import re
import time

from ..common.states import FAILED_PHASE as FAILED
from ..common.states import FINISHED_PHASE as FINISHED
from ..common.states import PHASE_NAMES as STATE_NAMES
from ..common.states import RUNNING_PHASE as RUNNING
from ..common.states import WAITING_PHASE as WAITING
from .allocations import AllocationTable
UNNAMED = "(unnamed)"
#: Closed sessions that keep per-task details on a live server (older keep their counts
#: and groups), so a long-running server's memory stays flat; a post-mortem model keeps all.
DETAILED_CLOSED_SESSIONS = 5


_DIGITS = re.compile(r"(\d+)")
#: Recovery events (a governor lost, a task run again, objects recomputed, tasks no
#: governor can run) the model keeps for the dashboard's table, the latest ones.
RECOVERY_ROWS = 2000


def natural_key(text):
    """Sort key putting ``step2`` before ``step10``: digit runs compare as numbers, and a
    name's ``/``-separated parts one by one (so ``a/b`` stays right below ``a``)."""
    return [[(0, int(part), "") if part.isdigit() else (1, 0, part)
             for part in _DIGITS.split(piece) if part]
            for piece in str(text).split("/")]


def parse_time(text):
    """ISO-8601 text to epoch seconds (None when missing or malformed)."""
    if isinstance(text, (int, float)):
        return float(text)
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


class Group:
    """Counts of one task name inside a session."""
    __slots__ = ("running", "finished", "failed", "duration", "timed", "seen")

    def __init__(self):
        self.running = 0
        self.finished = 0
        self.failed = 0
        self.duration = 0.0     # summed over finished tasks that reported one
        self.timed = 0
        self.seen = 0           # tasks of this group that started (or ended) at all


class Session:
    __slots__ = ("id", "client", "name", "spec", "status", "reason", "message", "error_task",
                 "created", "ended", "submits", "summary", "n_tasks", "running", "finished",
                 "failed", "tasks", "groups", "pending_rows", "rows", "lanes_end", "version",
                 "structure", "unnamed_keys", "first_start", "last_end", "group_edges",
                 "retried", "recomputed")

    def __init__(self, session_id, client=None, spec=None, created=None):
        self.id = session_id
        self.client = client
        self.spec = spec if isinstance(spec, dict) else {}
        self.name = str(self.spec.get("name", "") or "")
        self.status = "open"
        self.reason = None
        self.message = ""
        self.error_task = None
        self.created = created
        self.ended = None
        self.submits = []           # the task-id lists of ClientSubmit events (not copied)
        self.summary = {}           # group key -> submitted count
        self.n_tasks = 0
        self.running = 0
        self.finished = 0
        self.failed = 0
        self.tasks = {}             # task id -> (state, group key, governor, row index)
        self.groups = {}            # group key -> Group
        self.pending_rows = []      # (task, governor, start_time, duration, failed)
        self.rows = []              # materialized stream rows (see materialize)
        self.lanes_end = {}         # governor -> [end time per cpu lane]
        self.version = 0
        self.structure = 0          # bumps when the graph gets new tasks
        self.group_edges = []       # [(producer group, consumer group)], known once closed
        self.unnamed_keys = None
        self.first_start = None
        self.last_end = None
        self.retried = 0            # runs again after their executor/governor died
        self.recomputed = 0         # runs again to remake what a lost governor held

    @property
    def waiting(self):
        return max(0, self.n_tasks - self.running - self.finished - self.failed)

    def group(self, key):
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group()
        return group

    def to_json(self):
        return {
            "session": self.id, "name": self.name, "client": self.client,
            "status": self.status, "reason": self.reason, "message": self.message,
            "error_task": self.error_task, "created": self.created, "ended": self.ended,
            "tasks": self.n_tasks, "waiting": self.waiting, "running": self.running,
            "finished": self.finished, "failed": self.failed,
            "retried": self.retried, "recomputed": self.recomputed,
            "progress": (self.finished / self.n_tasks) if self.n_tasks else 0.0,
        }


class Governor:
    __slots__ = ("id", "cpus", "resources", "alive", "added", "removed", "reason", "times",
                 "cpu", "mem", "per_cpu", "running", "finished", "version")

    def __init__(self, governor_id, cpus=1, resources=None, added=None):
        self.id = governor_id
        self.cpus = max(1, int(cpus or 1))
        self.resources = resources or {}
        self.alive = True
        self.added = added
        self.removed = None
        self.reason = ""
        self.times = []         # monitoring sample times (epoch seconds)
        self.cpu = []           # mean cpu usage % per sample
        self.mem = []           # memory usage % per sample
        self.per_cpu = None     # last per-cpu sample
        self.running = 0
        self.finished = 0
        self.version = 0

    def to_json(self):
        return {
            "governor": self.id, "cpus": self.cpus, "resources": self.resources,
            "alive": self.alive, "added": self.added, "removed": self.removed,
            "reason": self.reason, "running": self.running, "finished": self.finished,
            "cpu_usage": self.cpu[-1] if self.cpu else None,
            "cpu_usage_per_cpu": self.per_cpu,
            "mem_usage": self.mem[-1] if self.mem else None,
            "samples": len(self.times),
        }


class RunModel:
    """Everything the dashboard shows, folded from events.

    ``task_type_of(session_id, task_id)``: optional live resolver of the group of an
    unnamed task (the server passes one reading its core; post mortem there is none).
    """

    def __init__(self, task_type_of=None, live=True):
        self.sessions = {}
        self.governors = {}
        self.allocations = AllocationTable()
        self.clients = set()
        self.version = 0            # bumps on every event
        self.events = 0
        self.started = None
        self.last_time = None
        self.live = live
        self.task_type_of = task_type_of
        self._closed = []           # ids of closed sessions that still hold task details
        #: (time, event, session, subject, reason) of the latest recovery events, oldest
        #: first, and a version that moves with them only
        self.recoveries = []
        self.recoveries_version = 0
        self._handlers = {
            "TaskStarted": self._task_started,
            "TaskFinished": self._task_finished,
            "TaskFailed": self._task_failed,
            "Monitoring": self._monitoring,
            "ClientSubmit": self._submit,
            "SessionNew": self._session_new,
            "SessionClosed": self._session_closed,
            "SessionFailed": self._session_failed,
            "GovernorNew": self._governor_new,
            "GovernorRemoved": self._governor_removed,
            "TaskRetried": self._task_retried,
            "ObjectsRecomputed": self._objects_recomputed,
            "GovernorLost": self._governor_lost,
            "TasksUnschedulable": self._tasks_unschedulable,
            "TasksSchedulable": self._tasks_schedulable,
            "ClientNew": self._client_new,
            "ClientRemoved": self._client_removed,
        }
        for kind, handler in self.allocations.handlers().items():
            self._handlers[kind] = self._allocation_handler(handler)
        self._task_handlers = {"TaskStarted": self._task_started,
                               "TaskFinished": self._task_finished,
                               "TaskFailed": self._task_failed}

    # -- feeding --------------------------------------------------------------------------
    def feed_live(self, event, when):
        """One event as the running server recorded it, at ``when`` (epoch seconds). Task
        events, the bulk, take the short path: no bookkeeping beyond their own."""
        handler = self._task_handlers.get(event.get("type"))
        if handler is None:
            self.feed(event, when)
            return
        self.version += 1
        self.events += 1
        try:
            handler(event, None)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass

    def feed(self, event, when=None):
        self.version += 1
        self.events += 1
        if when is not None:
            if self.started is None:
                self.started = when
            self.last_time = when
        handler = self._handlers.get(event.get("type"))
        if handler is not None:
            try:
                handler(event, when)
            except (TypeError, ValueError, KeyError, AttributeError):
                pass        # a malformed event must never break the server or a replay

    def feed_stored(self, rows, last_id=0):
        """Rows as the event log stores them, ``(id, time, event JSON)`` (a replay);
        returns the id of the last row."""
        loads = json.loads
        for row_id, when, text in rows:
            last_id = row_id
            try:
                event = loads(text)
            except ValueError:
                continue        # a damaged row must not stop a replay
            if isinstance(event, dict):
                self.feed(event, parse_time(when))
        return last_id

    @classmethod
    def from_file(cls, path):
        from .events import read_rows_file
        model = cls(live=False)
        model.last_id = model.feed_stored(read_rows_file(path))
        return model

    # -- handlers -------------------------------------------------------------------------
    def _session(self, session_id, when=None):
        session = self.sessions.get(session_id)
        if session is None:
            # Events of a session whose SessionNew we missed: still show it.
            session = self.sessions[session_id] = Session(session_id, created=when)
        return session

    def _session_new(self, event, when):
        sid = event["session"]
        session = Session(sid, event.get("client"), event.get("spec"), when)
        self.sessions[sid] = session

    def _stop_running(self, session):
        """A closed or failed session's started tasks that did not end were stopped: they
        count as not run (waiting) again. Once per session, O(its started tasks)."""
        if not session.running:
            return
        tasks = session.tasks
        for tid, record in list(tasks.items()):
            if record[0] == RUNNING:
                tasks[tid] = (WAITING, record[1], record[2], -1)
                group = session.groups.get(record[1])
                if group is not None:
                    group.running -= 1
                gov = self.governors.get(record[2])
                if gov is not None:
                    gov.running -= 1
        session.running = 0

    def _session_closed(self, event, when):
        session = self._session(event["session"], when)
        self._stop_running(session)
        if session.status != "failed":
            session.status = "closed"
            session.message = event.get("message") or ""
        session.reason = event.get("reason")
        session.ended = when
        edges = event.get("group_edges")
        if isinstance(edges, list):
            session.group_edges = [tuple(e) for e in edges
                                   if isinstance(e, (list, tuple)) and len(e) == 2]
            session.structure += 1
        session.version += 1
        self._closed.append(session.id)
        if self.live and len(self._closed) > DETAILED_CLOSED_SESSIONS:
            self.forget_details(self.sessions.get(self._closed.pop(0)))

    def forget_details(self, session):
        """Drop the per-task records of an old session (its counts and groups stay), so a
        long-lived server does not grow with every task it ever ran."""
        if session is None:
            return
        session.submits = []
        session.tasks = {}
        session.pending_rows = []
        session.rows = []
        session.lanes_end = {}
        session.version += 1

    def _session_failed(self, event, when):
        session = self._session(event["session"], when)
        self._stop_running(session)
        session.status = "failed"
        session.message = event.get("message") or ""
        session.error_task = event.get("task")
        if session.ended is None:
            session.ended = when
        session.version += 1

    def _submit(self, event, when):
        session = self._session(event["session"], when)
        ids = event.get("tasks") or ()
        session.submits.append(ids)
        session.n_tasks += len(ids)
        summary = session.summary
        for key, count in (event.get("task_names") or {}).items():
            summary[key] = summary.get(key, 0) + count
        session.unnamed_keys = None
        session.structure += 1
        session.version += 1

    def _group_key(self, session, event):
        name = event.get("name")
        if name:
            return name
        if self.task_type_of is not None:
            try:
                key = self.task_type_of(session.id, event["task"])
            except Exception:
                key = None
            if key:
                return key
        # Post mortem: the only submit-summary key never seen as a task name is the type
        # of the unnamed tasks.
        keys = session.unnamed_keys
        if keys is None:
            keys = session.unnamed_keys = [k for k in session.summary
                                           if k not in session.groups]
        return keys[0] if len(keys) == 1 else UNNAMED

    def _task_started(self, event, when):
        session = self._session(event["session"])
        tid = event["task"]
        old = session.tasks.get(tid)
        if old is not None:
            return          # restarted on another governor after a loss: keep the first
        key = self._group_key(session, event)
        governor = event.get("governor")
        session.tasks[tid] = (RUNNING, key, governor, -1)
        group = session.group(key)
        group.running += 1
        group.seen += 1
        session.running += 1
        session.version += 1
        gov = self.governors.get(governor)
        if gov is not None:
            gov.running += 1

    def _task_ended(self, event, state):
        session = self._session(event["session"])
        tid = event["task"]
        old = session.tasks.get(tid)
        governor = event.get("governor")
        if old is not None:
            if old[0] != RUNNING:
                return
            key = old[1]
            group = session.group(key)
            group.running -= 1
            session.running -= 1
            gov = self.governors.get(old[2])
            if gov is not None:
                gov.running -= 1
        else:
            key = self._group_key(session, event)
            group = session.group(key)
            group.seen += 1
        info = event.get("info") or {}
        duration = info.get("duration")
        if state == FINISHED:
            group.finished += 1
            session.finished += 1
            if isinstance(duration, (int, float)):
                group.duration += duration
                group.timed += 1
            gov = self.governors.get(governor)
            if gov is not None:
                gov.finished += 1
        else:
            group.failed += 1
            session.failed += 1
        session.tasks[tid] = (state, key, governor, len(session.pending_rows))
        session.pending_rows.append((tid, governor, info.get("start_time"), duration,
                                     state == FAILED))
        session.version += 1

    def _task_finished(self, event, when):
        self._task_ended(event, FINISHED)

    def _task_failed(self, event, when):
        self._task_ended(event, FAILED)

    def _task_retried(self, event, when):
        session = self._session(event["session"])
        session.retried += 1
        session.version += 1
        name = event.get("name")
        self._recovery(when, "task retried", session.id,
                       f"task {event.get('task')}{f' ({name})' if name else ''}, run "
                       f"{event.get('attempt')}", event.get("reason"))

    def _objects_recomputed(self, event, when):
        session = self._session(event["session"])
        session.recomputed += len(event.get("tasks") or ())
        session.version += 1
        self._recovery(when, "objects recomputed", session.id,
                       f"{len(event.get('objects') or ())} objects by "
                       f"{len(event.get('tasks') or ())} tasks", event.get("reason"))

    def _governor_lost(self, event, when):
        self._recovery(when, "governor lost", None,
                       f"governor {event.get('governor')}: {event.get('tasks', 0)} tasks, "
                       f"{event.get('objects', 0)} only copies", event.get("reason"))

    def _tasks_unschedulable(self, event, when):
        timeout = event.get("timeout")
        self._recovery(when, "tasks unschedulable", event.get("session"),
                       f"{event.get('count')} tasks", f"{event.get('reason')}; "
                       + ("waiting for a governor that can run them" if timeout is None
                          else f"they fail unless one joins within {timeout:g} s"))

    def _tasks_schedulable(self, event, when):
        self._recovery(when, "tasks schedulable", event.get("session"), "",
                       "a governor that can run them joined")

    def _recovery(self, when, kind, session_id, subject, reason):
        rows = self.recoveries
        rows.append((when if when is not None else time.time(), kind, session_id, subject,
                     str(reason or "")))
        if len(rows) > RECOVERY_ROWS:
            del rows[:len(rows) - RECOVERY_ROWS]
        self.recoveries_version += 1

    def _governor_new(self, event, when):
        gid = event["governor"]
        self.governors[gid] = Governor(gid, event.get("cpus"), event.get("resources"), when)
        self.allocations.governor_new(gid)

    def _allocation_handler(self, handler):
        """An allocation event's handler, given the live governors (those already up when
        their allocation's start is reported belong to it)."""
        def handle(event, when):
            handler(event, when, {g.id: g.added for g in self.governors.values() if g.alive})
        return handle

    def _governor_removed(self, event, when):
        gov = self.governors.get(event["governor"])
        if gov is not None:
            gov.alive = False
            gov.removed = when
            gov.reason = event.get("reason") or ""
            gov.version += 1

    def _client_new(self, event, when):
        self.clients.add(event.get("client"))

    def _client_removed(self, event, when):
        self.clients.discard(event.get("client"))

    def _monitoring(self, event, when):
        gid = event["governor"]
        gov = self.governors.get(gid)
        if gov is None:
            gov = self.governors[gid] = Governor(gid, added=when)
        cpu = event.get("cpu_usage")
        if isinstance(cpu, list):
            gov.per_cpu = cpu
            cpu = sum(cpu) / len(cpu) if cpu else 0.0
        elif not isinstance(cpu, (int, float)):
            cpu = 0.0
        mem = event.get("mem_usage")
        gov.times.append(when if when is not None else time.time())
        gov.cpu.append(float(cpu))
        gov.mem.append(float(mem) if isinstance(mem, (int, float)) else 0.0)
        gov.version += 1

    # -- derived views (called by viewers, not on the event path) -------------------------
    def materialize(self, session, start=0):
        """Turn pending finished tasks into Gantt rows, placing each on a CPU lane of its
        governor: ``(start, end, lane, task, group, failed)``; times are epoch seconds.

        Rows before ``start`` not done yet are skipped (left ``None``): a viewer that only
        wants the latest rows does not pay for the older ones."""
        pending = session.pending_rows
        rows = session.rows
        if len(rows) == len(pending):
            return rows
        if len(rows) < start:
            rows.extend([None] * (min(start, len(pending)) - len(rows)))
        lanes_end = session.lanes_end
        tasks = session.tasks
        for index in range(len(rows), len(pending)):
            tid, governor, start_text, duration, failed = pending[index]
            start = parse_time(start_text)
            if not isinstance(duration, (int, float)):
                duration = 0.0
            if start is None:
                rows.append(None)
                continue
            end = start + duration
            lanes = lanes_end.get(governor)
            if lanes is None:
                gov = self.governors.get(governor)
                lanes = lanes_end[governor] = [0.0] * (gov.cpus if gov else 1)
            lane = 0
            best = None
            for i, lane_end in enumerate(lanes):
                if lane_end <= start + 1e-6:
                    lane = i
                    best = None
                    break
                if best is None or lane_end < lanes[best]:
                    best = i
            else:
                lane = best if best is not None else 0
            lanes[lane] = end
            if session.first_start is None or start < session.first_start:
                session.first_start = start
            if session.last_end is None or end > session.last_end:
                session.last_end = end
            record = tasks.get(tid)
            rows.append((start, end, f"{governor} #{lane}", tid,
                         record[1] if record else "", failed))
        return rows

    def task_json(self, session, tid):
        record = session.tasks.get(tid)
        if record is None:
            return None
        state, key, governor, row = record
        result = {"task": tid, "session": session.id, "state": STATE_NAMES[state],
                  "name": key, "governor": governor}
        if row >= 0:
            _, _, start, duration, _ = session.pending_rows[row]
            result["start_time"] = start
            result["duration"] = duration
        return result

    def group_tree(self, session, limit=5000):
        """Hierarchical groups: every prefix ``a``, ``a/b`` of a name ``a/b/c`` gets the sums
        of the names below it. Returns rows sorted by path, numbers in names by value."""
        nodes = {}
        keys = set(session.summary) | set(session.groups)
        for key in keys:
            total = session.summary.get(key, 0)
            group = session.groups.get(key)
            if group is not None:
                total = max(total, group.seen)
                counts = (group.running, group.finished, group.failed, group.duration,
                          group.timed)
            else:
                counts = (0, 0, 0, 0.0, 0)
            parts = [p for p in str(key).split("/")] or [str(key)]
            for depth in range(1, len(parts) + 1):
                path = "/".join(parts[:depth])
                node = nodes.get(path)
                if node is None:
                    node = nodes[path] = [depth - 1, 0, 0, 0, 0, 0.0, 0, path == key]
                node[1] += total
                node[2] += counts[0]
                node[3] += counts[1]
                node[4] += counts[2]
                node[5] += counts[3]
                node[6] += counts[4]
        rows = []
        for path in sorted(nodes, key=natural_key)[:limit]:
            level, total, running, finished, failed, duration, timed, _leaf = nodes[path]
            rows.append({
                "path": path, "level": level, "tasks": total,
                "waiting": max(0, total - running - finished - failed),
                "running": running, "finished": finished, "failed": failed,
                "mean_duration": duration / timed if timed else None,
                "total_duration": duration,
            })
        return rows
