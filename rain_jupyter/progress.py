"""Progress of one session per task-name group, fed by server events.

Pure state: no Jupyter, no threads, no I/O. The owner serializes access (the session
tracker holds one lock around every call). Events arrive as the dicts the server pushes
(``ClientSubmit``, ``TaskStarted``, ``TaskFinished``, ``TaskFailed``, ``SessionFailed``,
``SessionClosed``); tasks can also be registered directly when the graph is known on the
client (``register``), which gives unnamed tasks the same group the server uses (their
task type).

Hierarchical names fold: a task named ``a/b/c`` counts in the groups ``a``, ``a/b`` and
``a/b/c``. ``snapshot()`` picks the deepest level that still fits ``max_rows`` rows.
"""
import time

from rain.common.states import FAILED_PHASE as FAILED
from rain.common.states import FINISHED_PHASE as FINISHED
from rain.common.states import PHASE_NAMES as STATE_NAMES
from rain.common.states import RUNNING_PHASE as RUNNING
from rain.common.states import WAITING_PHASE as WAITING
UNNAMED = "(unnamed)"

# counts vectors: [total, running, finished, failed]; waiting = total - the other three
_TOTAL = 0


#: Order of a group no task has been seen in yet (after every real task id).
UNORDERED = 1 << 40


class GroupNode:
    __slots__ = ("name", "path", "depth", "children", "counts", "own", "order")

    def __init__(self, name, path, depth, order):
        self.name = name
        self.path = path
        self.depth = depth
        self.children = {}
        self.counts = [0, 0, 0, 0]     # this group and every sub-group
        self.own = [0, 0, 0, 0]        # tasks whose name is exactly this path
        self.order = order


def counts_dict(counts, ended=False):
    """Counts by state. Once the session has ``ended`` (failed or closed), the tasks that
    were still waiting or running will never finish: they count as cancelled."""
    total, running, finished, failed = counts
    waiting = total - running - finished - failed
    cancelled = 0
    if ended:
        cancelled, waiting, running = waiting + running, 0, 0
    return {"total": total, "waiting": waiting, "running": running, "finished": finished,
            "failed": failed, "cancelled": cancelled}


class ProgressModel:
    """Task states of one session, counted per name group."""

    def __init__(self, session_id=None, name=None):
        self.session_id = session_id
        self.name = name
        self.root = GroupNode("", "", 0, 0)
        self._paths = {}          # group -> tuple of GroupNode, top to leaf
        self._tasks = {}          # task id -> [group, state]
        self._provisional = set()  # task ids whose group is a guess
        self._node_count = 0
        self.max_depth = 0
        self.totals = [0, 0, 0, 0]
        self.closed = False
        self.failure = None       # {"message", "task"} once the session failed
        # How a failure's message is shown (the kernel maps frames of cells to them).
        self.describe_failure = lambda message: message
        self.recovery = {"retried": 0, "recomputed": 0, "governors_lost": 0}
        self.warning = None       # tasks no connected governor can run, while they wait
        self.task_info = {}       # task id -> (governor, duration, error)
        self.observers = []       # callables(task_id, old_state, new_state) of known tasks
        self.version = 0          # bumped on every visible change
        self.first_event = None
        self.last_event = None
        self.done_at = None       # when the work ended (all tasks done, or the failure)

    # -- groups -----------------------------------------------------------------------------
    def _path(self, group):
        path = self._paths.get(group)
        if path is None:
            nodes = []
            node = self.root
            prefix = ""
            for depth, part in enumerate(group.split("/"), 1):
                prefix = f"{prefix}/{part}" if prefix else part
                child = node.children.get(part)
                if child is None:
                    self._node_count += 1
                    # Ordered by the first task id seen in it (below), so rows follow
                    # the order tasks were created in, whichever source (the submit or
                    # an earlier event) reported the group first.
                    child = node.children[part] = GroupNode(part, prefix, depth,
                                                            UNORDERED + self._node_count)
                    if depth > self.max_depth:
                        self.max_depth = depth
                nodes.append(child)
                node = child
            path = self._paths[group] = tuple(nodes)
        return path

    def _add(self, group, state, sign, task_id=None):
        path = self._path(group)
        if task_id is not None:
            for node in path:
                if task_id < node.order:
                    node.order = task_id
        for node in path:
            counts = node.counts
            counts[0] += sign
            if state:
                counts[state] += sign
        own = path[-1].own
        own[0] += sign
        totals = self.totals
        totals[0] += sign
        if state:
            own[state] += sign
            totals[state] += sign

    def _set_state(self, path, old, new):
        for node in path:
            counts = node.counts
            if old:
                counts[old] -= 1
            if new:
                counts[new] += 1
        own = path[-1].own
        totals = self.totals
        if old:
            own[old] -= 1
            totals[old] -= 1
        if new:
            own[new] += 1
            totals[new] += 1

    # -- input -------------------------------------------------------------------------------
    def register(self, entries):
        """Tasks known on the client: ``(task_id, group, state)`` triples."""
        tasks = self._tasks
        for task_id, group, state in entries:
            group = group or UNNAMED
            record = tasks.get(task_id)
            if record is None:
                tasks[task_id] = [group, state]
                self._add(group, state, 1, task_id)
            else:
                if record[0] != group and task_id in self._provisional:
                    self._move(task_id, record, group)
                self._provisional.discard(task_id)
                if state and record[1] == WAITING:
                    record[1] = state
                    self._set_state(self._paths[record[0]], WAITING, state)
                    self._notify(task_id, WAITING, state)
        self._check_done(time.time())
        self.version += 1

    def _move(self, task_id, record, group):
        self._add(record[0], record[1], -1)
        record[0] = group
        self._add(group, record[1], 1, task_id)

    def _task(self, task_id, name):
        record = self._tasks.get(task_id)
        if record is None:
            record = self._tasks[task_id] = [name or UNNAMED, WAITING]
            self._add(record[0], WAITING, 1, task_id)
        elif name and task_id in self._provisional:
            self._provisional.discard(task_id)
            if record[0] != name:
                self._move(task_id, record, name)
        return record

    def _transition(self, task_id, name, new):
        record = self._task(task_id, name)
        old = record[1]
        if old == new or old == FAILED:
            return
        record[1] = new
        self._set_state(self._paths[record[0]], old, new)
        self._notify(task_id, old, new)

    def _notify(self, task_id, old, new):
        for observer in self.observers:
            observer(task_id, old, new)

    def apply(self, events):
        """Apply a batch of event dicts (other sessions' events are skipped). Returns
        whether anything visible changed."""
        changed = False
        session_id = self.session_id
        for event in events:
            if session_id is not None and event.get("session", session_id) != session_id:
                continue
            kind = event.get("type")
            if kind == "TaskFinished":
                self._transition(event["task"], event.get("name"), FINISHED)
                info = event.get("info") or {}
                self.task_info[event["task"]] = (event.get("governor"), info.get("duration"),
                                                 None)
            elif kind == "TaskStarted":
                self._transition(event["task"], event.get("name"), RUNNING)
            elif kind == "TaskFailed":
                self._transition(event["task"], event.get("name"), FAILED)
                info = event.get("info") or {}
                self.task_info[event["task"]] = (event.get("governor"), info.get("duration"),
                                                 info.get("error") or "failed")
            elif kind == "ClientSubmit":
                self._on_submit(event)
            elif kind == "TaskRetried":
                # its executor or governor died under it: waiting to run again
                self._transition(event["task"], event.get("name"), WAITING)
                self.recovery["retried"] += 1
            elif kind == "ObjectsRecomputed":
                for task_id in event.get("tasks") or ():
                    self._transition(task_id, None, WAITING)
                self.recovery["recomputed"] += len(event.get("tasks") or ())
            elif kind == "GovernorLost":
                self.recovery["governors_lost"] += 1
            elif kind == "TasksUnschedulable":
                timeout = event.get("timeout")
                self.warning = (f"{event.get('count')} task(s) cannot run now: "
                                f"{event.get('reason')}; " + (
                                    "waiting for a governor that can" if timeout is None
                                    else f"they fail unless one joins within {timeout:g} s"))
            elif kind == "TasksSchedulable":
                self.warning = None
            elif kind == "SessionFailed":
                self.failure = {"message": self.describe_failure(event.get("message", "")),
                                "task": event.get("task")}
            elif kind == "SessionClosed":
                self.closed = True
                if event.get("reason") not in (None, "ClientClose") and self.failure is None:
                    self.failure = {"message": event.get("message") or event["reason"],
                                    "task": None}
            elif kind == "SessionNew":
                if self.name is None:
                    self.name = (event.get("spec") or {}).get("name")
            else:
                continue
            changed = True
        if changed:
            now = time.time()
            if self.first_event is None:
                self.first_event = now
            self.last_event = now
            self._check_done(now)
            self.version += 1
        return changed

    @property
    def ended(self):
        """No task of the session will run any more: it failed or was closed."""
        return self.failure is not None or self.closed

    def _work_left(self):
        total, running, finished, failed = self.totals
        return bool(total) and finished + failed < total and not self.ended

    def _check_done(self, now):
        """The clock of the run stops when its work ends (not when the session is
        closed later), and runs again if more tasks come."""
        if self._work_left():
            self.done_at = None
        elif self.done_at is None and self.totals[0]:
            self.done_at = now

    def _on_submit(self, event):
        names = event.get("task_names") or {}
        only = next(iter(names)) if len(names) == 1 else None
        tasks = self._tasks
        for task_id in event.get("tasks", ()):
            if task_id in tasks:
                continue
            tasks[task_id] = [only or UNNAMED, WAITING]
            if only is None:
                self._provisional.add(task_id)
            self._add(tasks[task_id][0], WAITING, 1, task_id)

    # -- output ------------------------------------------------------------------------------
    def state_of(self, task_id):
        record = self._tasks.get(task_id)
        return None if record is None else record[1]

    def group_of(self, task_id):
        record = self._tasks.get(task_id)
        return None if record is None else record[0]

    @property
    def status(self):
        total, running, finished, failed = self.totals
        if failed or self.failure is not None:
            return "failed"
        if total and finished == total:
            return "finished"
        if self.closed:
            return "closed"
        if not total:
            return "empty"
        if running or finished:
            return "running"
        return "waiting"

    def rows(self, depth=None, max_rows=12):
        """Rows of the progress table: the groups at ``depth`` (None: the deepest level
        with at most ``max_rows`` rows). Beyond ``max_rows`` rows, the rest are summed up
        in one "more groups" row."""
        level = [(node, node.counts) for node in self.root.children.values() if node.counts[0]]
        chosen = 1
        target = depth if depth is not None else self.max_depth
        while chosen < target:
            expanded = []
            grew = False
            for node, counts in level:
                if node.children and counts is node.counts:
                    grew = True
                    if node.own[0]:
                        expanded.append((node, node.own))
                    expanded.extend((child, child.counts) for child in node.children.values()
                                    if child.counts[0])
                else:
                    expanded.append((node, counts))
            if not grew or (depth is None and len(expanded) > max_rows):
                break
            level = expanded
            chosen += 1
        level.sort(key=lambda item: item[0].order)
        rows = []
        ended = self.ended
        for node, counts in level[:max_rows if len(level) <= max_rows else max_rows - 1]:
            row = counts_dict(counts, ended)
            row["group"] = node.path
            row["folded"] = bool(node.children) and counts is node.counts
            rows.append(row)
        if len(level) > max_rows:
            rest = [0, 0, 0, 0]
            for _node, counts in level[max_rows - 1:]:
                for i in range(4):
                    rest[i] += counts[i]
            row = counts_dict(rest, ended)
            row["group"] = f"({len(level) - max_rows + 1} more groups)"
            row["folded"] = True
            rows.append(row)
        return rows, chosen

    def snapshot(self, depth=None, max_rows=12):
        rows, chosen = self.rows(depth, max_rows)
        totals = counts_dict(self.totals, self.ended)
        elapsed = None
        if self.first_event is not None:
            elapsed = (self.done_at or self.last_event) - self.first_event
        return {"session": self.session_id, "name": self.name, "status": self.status,
                "totals": totals, "rows": rows, "depth": chosen, "max_depth": self.max_depth,
                "groups": len(self._paths), "failure": self.failure, "elapsed": elapsed,
                "closed": self.closed, "recovery": dict(self.recovery),
                "warning": self.warning}
