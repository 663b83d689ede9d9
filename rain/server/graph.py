"""The server's per-item records: small ``__slots__`` objects of ints and references.

A million-task graph lives in these, so they hold no dicts, futures or asyncio objects.
"""

from ..common.states import (  # noqa: F401 (the server's modules take them from here)
    ASSIGNED, BLOB, DIRECTORY, FAILED, FINISHED, NOT_ASSIGNED, OBJ_FINISHED,
    OBJECT_STATE_NAMES, READY, REMOVED, RUNNING, TASK_STATE_NAMES, UNFINISHED)

#: Times a task is run again after its executor or governor died under it (or an input
#: could not be transferred) before its session fails, unless it has ``retries=``.
DEFAULT_RETRIES = 3


class Task:
    __slots__ = ("id", "session", "task_type", "config", "inputs", "input_labels", "outputs",
                 "cpus", "resources", "name", "user", "state", "waiting", "governor", "info")

    def __init__(self, session, task_id, task_type, config, inputs, input_labels, outputs,
                 cpus, resources, name, user):
        self.id = task_id
        self.session = session
        self.task_type = task_type
        self.config = config
        self.inputs = inputs              # [DataObject]
        self.input_labels = input_labels  # [str] parallel to inputs
        self.outputs = outputs            # [DataObject]
        self.cpus = cpus
        self.resources = resources        # dict name -> amount, or None
        self.name = name
        self.user = user                  # CBOR bytes
        self.state = NOT_ASSIGNED
        self.waiting = 0                  # inputs not finished yet
        self.governor = None
        self.info = None                  # the TaskInfo map from the governor, once over

    @property
    def key(self):
        return (self.session.id, self.id)

    def __repr__(self):
        return f"<Task {self.session.id}/{self.id} {self.task_type} {TASK_STATE_NAMES[self.state]}>"


class DataObject:
    __slots__ = ("id", "session", "label", "content_type", "data_type", "user", "keep", "data",
                 "producer", "consumers", "dependents", "state", "size", "locations", "known_by", "info",
                 "testing")

    def __init__(self, session, object_id, label, content_type, data_type, user, keep, data):
        self.id = object_id
        self.session = session
        self.label = label
        self.content_type = content_type
        self.data_type = data_type
        self.user = user            # CBOR bytes
        self.keep = keep
        self.data = data            # bytes of a client constant (kept at the server), or None
        self.producer = None
        self.consumers = 0          # unfinished tasks that need it
        self.dependents = None      # [Task] waiting for it to be produced, until it is
        self.state = UNFINISHED
        self.size = -1
        # [Governor] holding it / told about it (they must be told to drop it). Both are
        # the shared () until first needed and again once the object is removed: a big
        # graph has a million of them.
        self.locations = ()
        self.known_by = ()
        self.info = b""
        self.testing = None         # RAIN_TEST_MODE: [Governor] it pretends to be on

    @property
    def key(self):
        return (self.session.id, self.id)

    def __repr__(self):
        return f"<DataObject {self.session.id}/{self.id} {OBJECT_STATE_NAMES[self.state]}>"


class Governor:
    __slots__ = ("id", "cpus", "free_cpus", "resources", "free_resources", "tasks",
                 "running_count", "out_objects", "out_tasks", "out_stop", "out_delete", "conn",
                 "index", "closing", "prefetch", "avg_duration", "heard", "heard_at")

    def __init__(self, governor_id, cpus, resources, conn=None):
        self.id = governor_id
        self.cpus = cpus
        self.free_cpus = cpus            # may go negative down to -prefetch (queued tasks)
        self.resources = dict(resources or {})
        self.free_resources = dict(self.resources)
        self.tasks = set()               # assigned, unfinished
        self.running_count = 0
        self.out_objects = []            # ObjectAssignment to send
        self.out_tasks = []              # TaskAssignment to send
        self.out_stop = []               # task keys
        self.out_delete = []             # object keys
        self.conn = conn
        self.index = 0
        self.closing = False
        self.prefetch = cpus * 2         # queued tasks allowed beyond the CPUs (adaptive)
        self.avg_duration = None         # moving average of task run times (seconds)
        self.heard = True                # a frame came since the last heartbeat check
        self.heard_at = None             # when a check last found ``heard`` (I/O clock)

    def has_output(self):
        return bool(self.out_objects or self.out_tasks or self.out_stop or self.out_delete)

    def __repr__(self):
        return f"<Governor {self.id} cpus={self.cpus} free={self.free_cpus}>"


class Session:
    __slots__ = ("id", "client", "name", "spec", "tasks", "objects", "error", "closed",
                 "unfinished_tasks", "waiters", "stats", "inline_bytes", "retained_bytes",
                 "crashes", "retries")

    def __init__(self, session_id, client, name, spec):
        self.id = session_id
        self.client = client
        self.name = name
        self.spec = spec
        self.tasks = {}
        self.objects = {}
        self.error = None          # SessionError once a task failed
        self.closed = False
        self.unfinished_tasks = 0
        self.waiters = {}          # item (Task/DataObject) -> [Waiter]
        self.stats = [0, 0, 0]     # submitted, finished, failed tasks
        self.inline_bytes = 0      # results' bytes held here for fetches (see INLINE_BUDGET)
        self.retained_bytes = 0    # released constants kept for recomputes (CONSTANTS_KEPT)
        self.crashes = None        # {task id: failed runs retried or ended}, once one failed
        self.retries = None        # {task id: (retries or None, retry on error)}: the few
        #                            tasks submitted with a retry policy


class SessionError:
    __slots__ = ("message", "task_id", "debug")

    def __init__(self, message, task_id=-1, debug=""):
        self.message = message
        self.task_id = task_id
        self.debug = debug


class Client:
    __slots__ = ("id", "sessions", "conn", "subscriptions")

    def __init__(self, client_id, conn=None):
        self.id = client_id
        self.sessions = set()
        self.conn = conn
        self.subscriptions = None


class Waiter:
    """A pending wait/wait_some/fetch of one client request."""
    __slots__ = ("client", "request_id", "remaining", "kind", "session", "items", "done")

    def __init__(self, client, request_id, kind, session, remaining, items=None):
        self.client = client
        self.request_id = request_id
        self.kind = kind            # "wait", "some", "fetch"
        self.session = session
        self.remaining = remaining
        self.items = items
        self.done = False


GROUP_EDGES_MAX = 5000


def group_edges(tasks, limit=GROUP_EDGES_MAX):
    """The edges between task-name groups (the name, else the task type) of these tasks:
    sorted ``(producer group, consumer group)`` pairs, at most ``limit`` of them."""
    edges = set()
    for task in tasks:
        group = task.name or task.task_type
        for obj in task.inputs:
            producer = obj.producer
            if producer is not None:
                edges.add((producer.name or producer.task_type, group))
    return sorted(edges)[:limit]
