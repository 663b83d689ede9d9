"""The server's event log: SQLite at ``<logdir>/events.db``, written in batches.

Events are collected in memory as they happen and written at least every half second by a
single writer thread, so the event loop never waits for the disk. Times are stored as epoch
seconds and turned into ISO-8601 text when read; the two task events that make up the bulk
of a run are encoded from templates (see ``encode_event``). Queries (``POST /events``,
the dashboard, post-mortem replay) run on the same thread after a flush, so they always see
every event recorded before the query arrived.
"""
import asyncio
import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..common.timestamps import utc_isoformat

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
_time = time.time
_dumps = json.JSONEncoder(default=str).encode
_encode_str = json.encoder.encode_basestring

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    type TEXT NOT NULL,
    session INTEGER,
    event TEXT NOT NULL
);
"""

#: Secondary indexes, built the first time a query filters on their column and kept up
#: from then on. Maintaining both on every insert was a third of the cost of recording a
#: task; most runs are never queried by type or session while they run, and a post-mortem
#: query on a log without them scans the table (correct, only slower).
INDEXES = {
    "event_types": "CREATE INDEX IF NOT EXISTS events_type ON events(type)",
    "session": "CREATE INDEX IF NOT EXISTS events_session ON events(session)",
}

MODES = {"<": "<", ">": ">", "=": "=", "<=": "<=", ">=": ">=", "==": "="}


class EventFilterError(ValueError):
    """A malformed filter of ``POST /events``."""


def _time_text(value):
    """A row's time as ISO-8601 text (logs written before times were stored as numbers
    already hold text)."""
    return utc_isoformat(value) if isinstance(value, (int, float)) else value


def _json_scalar(value):
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return _dumps(value)


_STANDARD_INFO = frozenset(("start_time", "duration", "governor"))


def _encode_info(info):
    if info.keys() == _STANDARD_INFO and type(info["start_time"]) is str:
        return (f'{{"start_time": {_encode_str(info["start_time"])}, '
                f'"duration": {_json_scalar(info["duration"])}, '
                f'"governor": {_json_scalar(info["governor"])}}}')
    return _dumps(info)


def encode_event(event):
    """JSON text of one event. ``TaskStarted`` and ``TaskFinished`` (two per task, nearly
    every row of a big run) are filled into templates, ~5x cheaper than the generic
    encoder; anything else, or those with unexpected fields, goes through ``json``."""
    kind = event.get("type")
    if kind == "TaskStarted" and len(event) == 5 and "name" in event:
        return (f'{{"type": "TaskStarted", "session": {_json_scalar(event["session"])}, '
                f'"task": {_json_scalar(event["task"])}, '
                f'"governor": {_json_scalar(event["governor"])}, '
                f'"name": {_json_scalar(event["name"])}}}')
    if kind == "TaskFinished" and len(event) == 6 and "name" in event \
            and type(event.get("info")) is dict:
        return (f'{{"type": "TaskFinished", "session": {_json_scalar(event["session"])}, '
                f'"task": {_json_scalar(event["task"])}, '
                f'"governor": {_json_scalar(event["governor"])}, '
                f'"name": {_json_scalar(event["name"])}, "info": {_encode_info(event["info"])}}}')
    return _dumps(event)


def build_query(filter_):
    """Translate the JSON filter of ``POST /events`` into SQL (conditions AND-ed; the
    event-type conditions OR-ed among themselves)."""
    if filter_ is None:
        filter_ = {}
    if not isinstance(filter_, dict):
        raise EventFilterError("the filter must be a JSON object")
    unknown = set(filter_) - {"id", "event_types", "session", "limit"}
    if unknown:
        raise EventFilterError(f"unknown filter key(s): {', '.join(sorted(unknown))}")
    where, params = [], []

    def condition(column, spec, cast):
        if not isinstance(spec, dict) or "value" not in spec:
            raise EventFilterError(f"'{column}' must be {{\"value\": ..., \"mode\": ...}}")
        mode = spec.get("mode", "=")
        mode = MODES.get(mode) if isinstance(mode, str) else None
        if mode is None:
            raise EventFilterError(f"invalid mode {spec.get('mode')!r} for '{column}'")
        try:
            value = cast(spec["value"])
        except (TypeError, ValueError, OverflowError):
            raise EventFilterError(f"invalid value {spec['value']!r} for '{column}'") from None
        return f"{column} {mode} ?", value

    def as_int(value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        value = int(value)
        if not -2**63 <= value < 2**63:     # SQLite integers are 64-bit
            raise OverflowError
        return value

    def as_str(value):
        if not isinstance(value, str):
            raise TypeError
        return value

    if "id" in filter_:
        sql, value = condition("id", filter_["id"], as_int)
        where.append(sql)
        params.append(value)
    if "session" in filter_:
        sql, value = condition("session", filter_["session"], as_int)
        where.append(sql)
        params.append(value)
    if "event_types" in filter_:
        types = filter_["event_types"]
        if not isinstance(types, list):
            raise EventFilterError("'event_types' must be a list")
        parts = []
        for spec in types:
            sql, value = condition("type", spec, as_str)
            parts.append(sql)
            params.append(value)
        if parts:
            where.append("(" + " OR ".join(parts) + ")")
    query = "SELECT id, time, event FROM events"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY id"
    if "limit" in filter_:
        try:
            query += f" LIMIT {as_int(filter_['limit'])}"
        except (TypeError, ValueError, OverflowError):
            raise EventFilterError("'limit' must be an integer") from None
    return query, params


class EventLog:
    def __init__(self, path):
        self.path = path
        self._pending = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rain-events")
        self._db = None
        self._indexed = set()       # filter keys whose index exists
        self._executor.submit(self._open).result()
        self._timer = None
        self.listeners = []     # callables(event_dict) for live subscribers
        # callables(batch): each batch of (time, event) as it goes to the writer, for
        # readers that fold events in bulk instead of one call per event (see ``pending``)
        self.batch_listeners = []

    def _open(self):
        # User-only from the start: SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every ~64 MiB of log instead of SQLite's 4 MiB: a checkpoint copies
        # the pages back into the database, and the table's last pages, rewritten by
        # every half-second batch, were copied again and again.
        self._db.execute("PRAGMA wal_autocheckpoint=16384")
        self._db.executescript(SCHEMA)
        self._db.commit()

    def add(self, event):
        """Record one event (a dict with a ``type``); cheap, called on the hot path."""
        self._pending.append((_time(), event))
        for listener in self.listeners:
            listener(event)

    def start(self, loop=None):
        loop = loop or asyncio.get_running_loop()

        def tick():
            self.flush_async()
            self._timer = loop.call_later(FLUSH_INTERVAL, tick)

        self._timer = loop.call_later(FLUSH_INTERVAL, tick)

    def flush_async(self):
        if not self._pending:
            return None
        batch, self._pending = self._pending, []
        for listener in self.batch_listeners:
            try:
                listener(batch)
            except Exception:       # a reader's failure must not cost the log its events
                logger.exception("event batch listener failed")
        return self._executor.submit(self._write, batch)

    @property
    def pending(self):
        """The (time, event) pairs recorded since the last batch left for the writer, in
        order; the list becomes the next batch (``batch_listeners``) as it is."""
        return self._pending

    def _write(self, batch):
        encode = encode_event
        rows = [(ts, event["type"],
                 event.get("session") if type(event.get("session")) is int else None,
                 encode(event))
                for ts, event in batch]
        try:
            self._db.executemany(
                "INSERT INTO events (time, type, session, event) VALUES (?, ?, ?, ?)", rows)
            self._db.commit()
        except sqlite3.Error:
            logger.exception("writing %d events failed", len(rows))

    async def query(self, filter_):
        """Run a ``POST /events`` filter; returns ``[{"id", "time", "event"}]``."""
        query, params = build_query(filter_)
        return await self._after_flush(self._query, query, params, filter_)

    async def _after_flush(self, fn, *args):
        """Run ``fn(*args)`` on the writer thread once every event recorded so far is
        written (the thread takes its work in order)."""
        self.flush_async()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def rows_after(self, last_id, limit):
        """Up to ``limit`` stored rows ``(id, time, event JSON)`` after ``last_id``, every
        event recorded so far included (the live model's replay reads the log in chunks)."""
        return await self._after_flush(read_rows, self._db, last_id, limit)

    async def newest_id(self):
        """The id of the newest event recorded so far (0 for none)."""
        return await self._after_flush(self._newest_id)

    def _newest_id(self):
        return self._db.execute("SELECT max(id) FROM events").fetchone()[0] or 0

    def rows_after_now(self, last_id):
        """All stored rows after ``last_id``, waiting for the writer here: the caller (on
        the loop) needs the log complete up to this instant, with no event added between."""
        self.flush_async()
        return self._executor.submit(read_rows, self._db, last_id).result()

    def _ensure_indexes(self, filter_):
        """Create the indexes a filter can use (once; SQLite keeps them up afterwards)."""
        for key in filter_ or ():
            sql = INDEXES.get(key)
            if sql is not None and key not in self._indexed:
                try:
                    self._db.execute(sql)
                    self._db.commit()
                except sqlite3.Error:
                    logger.exception("creating an index for %r failed", key)
                self._indexed.add(key)

    def _query(self, query, params, filter_=None):
        self._ensure_indexes(filter_)
        rows = self._db.execute(query, params).fetchall()
        return [{"id": row[0], "time": _time_text(row[1]), "event": json.loads(row[2])}
                for row in rows]

    def close(self):
        if self._timer is not None:
            self._timer.cancel()
        self.flush_async()
        self._executor.submit(self._db.close).result()
        self._executor.shutdown(wait=True)


def read_rows(db, last_id=0, limit=None):
    """Rows as stored, ``(id, time, event JSON text)``, after ``last_id`` in id order (what
    a replay needs: no filter, no time formatting)."""
    sql = "SELECT id, time, event FROM events WHERE id > ? ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return db.execute(sql, (last_id,)).fetchall()


@contextlib.contextmanager
def _read_only(path):
    """An ``events.db`` on disk, opened read-only (post mortem)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def read_rows_file(path, last_id=0):
    """``read_rows`` of an ``events.db`` on disk."""
    with _read_only(path) as db:
        return read_rows(db, last_id)


def query_file(path, filter_=None):
    """Read events from an ``events.db`` of a finished run (post-mortem use)."""
    query, params = build_query(filter_)
    with _read_only(path) as db:
        rows = db.execute(query, params).fetchall()
    return [{"id": row[0], "time": _time_text(row[1]), "event": json.loads(row[2])}
            for row in rows]
