"""The run model of a running server (no Bokeh needed: the REST API uses it too)."""
import asyncio
from itertools import islice

from .graph import group_edges
from .run_model import RunModel

#: Rows read from the event log per step of a replay; the loop serves other work between.
REPLAY_CHUNK = 20_000
#: Rounds of chunked reading before the rest is read in one go (a run may add events as
#: fast as a replay reads them; each round only covers what came during the previous one).
REPLAY_ROUNDS = 4


class ReadyModel:
    """A model that already exists (post mortem): the same ``await models.get()`` as live."""

    def __init__(self, model):
        self.model = model

    async def get(self):
        return self.model


class LiveModel:
    """The run model of a running server, built when someone first looks.

    Folding every event into the model as it happened cost the server ~7 us of its loop per
    task whether anyone watched or not. Instead, the first dashboard page or REST call
    replays the event log written so far and only then follows the log. The replay reads
    in chunks, serving other requests in between, and goes round again for what the run
    added meanwhile; the last rows are read and the model starts following without
    yielding to the loop, so no event falls between the two.

    Following is in bulk, not a call per event on the server's hot path: each ``get`` folds
    the events recorded since the last one (the log's ``pending``), and each batch the log
    hands to its writer is folded up to its end (``batch_listeners``). A page polls once a
    second at most, so the events arrive in a few long runs.
    """

    def __init__(self, server):
        self.server = server
        self.model = None
        self._building = None
        self._folded = 0        # events of the log's ``pending`` already in the model

    async def get(self):
        if self.model is not None:
            self._catch_up()
            return self.model
        if self._building is None:
            self._building = asyncio.ensure_future(self._build())
        try:
            return await asyncio.shield(self._building)
        except Exception:
            self._building = None       # a failed replay is tried again by the next viewer
            raise

    async def _build(self):
        events = self.server.events
        model = RunModel(task_type_resolver(self.server.core))
        last = 0
        for _round in range(REPLAY_ROUNDS):
            newest = await events.newest_id()
            if newest - last <= REPLAY_CHUNK:
                break
            while last < newest:
                rows = await events.rows_after(last, REPLAY_CHUNK)
                if not rows:
                    break
                last = model.feed_stored(rows, last)
        model.feed_stored(events.rows_after_now(last), last)
        self._folded = 0        # the log's pending list is empty right after that read
        events.batch_listeners.append(self._fold_batch)
        self.model = model
        return model

    def _catch_up(self):
        pending = self.server.events.pending
        if len(pending) > self._folded:
            self._fold(pending, self._folded)
            self._folded = len(pending)

    def _fold_batch(self, batch):
        """The log's pending list leaves for the writer: fold what is left of it."""
        self._fold(batch, self._folded)
        self._folded = 0

    def _fold(self, recorded, start):
        feed = self.model.feed_live
        for when, event in islice(recorded, start, None):
            feed(event, when)


def task_type_resolver(core):
    """The group of an unnamed task: its type, while its session is open."""

    def task_type_of(session_id, task_id):
        session = core.sessions.get(session_id)
        task = session.tasks.get(task_id) if session is not None else None
        return task.task_type if task is not None else None

    return task_type_of


def live_model(server):
    """The server's one ``LiveModel`` (created on first use; built on first ``get``)."""
    models = getattr(server, "live_model", None)
    if models is None:
        models = server.live_model = LiveModel(server)
    return models


def live_edges_provider(server):
    """Edges of a session's graph from the server's core (only while the session is open).

    ``detailed``: one node per task; else the edges between task-name groups. Runs once per
    submit a viewer looks at (O(tasks)), never per event."""
    core = server.core

    def provider(session_id, detailed):
        session = core.sessions.get(session_id)
        if session is None or not session.tasks:
            return None
        tasks = session.tasks.values()
        if detailed:
            nodes = [(t.id, t.name or t.task_type) for t in tasks]
            edges = [(obj.producer.id, t.id) for t in tasks for obj in t.inputs
                     if obj.producer is not None]
            return {"mode": "tasks", "nodes": nodes, "edges": edges}
        return {"mode": "groups", "edges": group_edges(tasks)}

    return provider
