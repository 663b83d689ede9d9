"""Live state of one session, fed by server events and by the client's submits.

A tracker joins the session's event stream (through the client's ``EventHub``) and the
client's submit listeners, and keeps a ``ProgressModel`` and a ``GraphModel`` up to date.
Events arrive on the client's I/O thread; the tracker only updates plain Python state
there and tells its watchers that something changed. Watchers (the live widgets) decide
when to redraw. When the session closes, the tracker detaches itself.
"""
import logging
import threading
import weakref

from rain.client.rpc.common import TaskState

from .cell_frames import point_at_cells_of_kernel
from .events import hub_for
from .graph_view import GraphModel
from .progress import FAILED, FINISHED, RUNNING, WAITING, ProgressModel

logger = logging.getLogger(__name__)

_STATE = {None: WAITING, TaskState.notAssigned: WAITING, TaskState.ready: WAITING,
          TaskState.assigned: WAITING, TaskState.running: RUNNING,
          TaskState.finished: FINISHED, TaskState.failed: FAILED}

_trackers = weakref.WeakKeyDictionary()
_trackers_lock = threading.Lock()


def tracker_for(session, create=True):
    """The tracker of ``session`` (one per session), created on first use."""
    with _trackers_lock:
        tracker = _trackers.get(session)
        if tracker is None and create:
            tracker = _trackers[session] = SessionTracker(session)
        return tracker


class SessionTracker:
    def __init__(self, session, max_nodes=150):
        self._session = weakref.ref(session)
        self.client = session.client
        self.session_id = session.session_id
        self.lock = threading.Lock()
        self.progress = ProgressModel(session.session_id, getattr(session, "name", None))
        self.progress.describe_failure = point_at_cells_of_kernel
        self.graph = GraphModel(max_nodes)
        self.progress.observers.append(self.graph.on_transition)
        self._producers = {}        # object id -> producing task id
        self._watchers = []
        self.attached = False
        self.events_received = 0
        if self.client is not None and self.client.connected:
            self._attach(session)
        else:
            self.progress.closed = session.closed
        self.on_submit(session, list(session._submitted_tasks.values()),
                       list(session._submitted_objects.values()))

    @property
    def session(self):
        return self._session()

    # -- wiring -----------------------------------------------------------------------------
    def _attach(self, session):
        self._hub = hub_for(self.client)
        self._hub.add(self.session_id, self._on_events)
        self.client._submit_listeners.append(self.on_submit)
        self.attached = True
        if session.closed:
            self.progress.closed = True
            self.detach()

    def detach(self):
        """Stop following the session (done automatically when it closes)."""
        if not self.attached:
            return
        self.attached = False
        self._hub.remove(self.session_id, self._on_events)
        try:
            self.client._submit_listeners.remove(self.on_submit)
        except ValueError:
            pass

    def add_watcher(self, callback):
        """``callback()`` is called (on any thread) after each change."""
        self._watchers.append(callback)

    def remove_watcher(self, callback):
        try:
            self._watchers.remove(callback)
        except ValueError:
            pass

    def _changed(self):
        for watcher in list(self._watchers):
            try:
                watcher()
            except Exception:
                logger.exception("tracker watcher failed")

    # -- inputs ------------------------------------------------------------------------------
    def _on_events(self, events):
        """On the client's I/O thread: update state, never draw."""
        with self.lock:
            self.events_received += len(events)
            changed = self.progress.apply(events)
            closed = self.progress.closed
        if changed:
            self._changed()
        if closed:
            self.detach()

    def on_submit(self, session, tasks, objects):
        """A submit listener of the client (in the submitting thread)."""
        if session.session_id != self.session_id or session.client is not self.client:
            return
        producers = self._producers
        entries, graph_entries = [], []
        state_of = _STATE.get
        # tasks come in creation order: a task's producers are known before it
        for task in tasks:
            spec = task._spec
            task_id = spec.id[1]
            inputs = []
            for item in spec.inputs:
                producer = producers.get(item.id[1])
                if producer is not None and producer not in inputs:
                    inputs.append(producer)
            for oid in spec.outputs:
                producers[oid[1]] = task_id
            group = spec.name or spec.task_type
            entries.append((task_id, group, state_of(task._state, WAITING)))
            graph_entries.append((task_id, group, inputs))
        if not entries:
            return
        with self.lock:
            self.progress.register(entries)
            self.graph.add_tasks(graph_entries, self.progress.state_of)
        self._changed()

    # -- outputs -----------------------------------------------------------------------------
    def take(self, depth=None, max_rows=12):
        """``(progress snapshot, graph layout)``, consistent with each other."""
        with self.lock:
            snapshot = self.progress.snapshot(depth, max_rows)
            snapshot["graph"] = self.graph.describe()
            layout = self.graph.layout(self.progress.ended)
        return snapshot, layout

    def snapshot(self, depth=None, max_rows=12):
        with self.lock:
            snapshot = self.progress.snapshot(depth, max_rows)
            snapshot["graph"] = self.graph.describe()
        return snapshot

    def layout(self):
        with self.lock:
            return self.graph.layout(self.progress.ended)

    def task_state(self, task_id):
        with self.lock:
            return self.progress.state_of(task_id), self.progress.task_info.get(task_id)

    @property
    def finished(self):
        """The session reached its end (all done, failed or closed)."""
        status = self.progress.status
        return status in ("finished", "failed", "closed")
