"""Sessions: the unit of a graph's life on the server, and the *active session* stack.

Tasks and data objects are created in the active session (the innermost ``with session:``
or ``bind_only()``), else in the default session. A session collects what was created
since its last ``submit()`` and sends it as one message.
"""
import contextvars
import logging
import os
import sys

from ..common.attributes import ObjectInfo, TaskInfo
from ..common.cbor import dumps_or_empty, loads_or
from ..common.data_instance import DataInstance
from ..common.errors import RainException, SessionException, TaskException
from ..common.ids import DataType
from .connection import ServerError
from .submit_encoding import fill_submit
from .upload import drop_uploads, upload_constants
from .rpc.common import DataObjectState, TaskState

logger = logging.getLogger(__name__)

FIRST_ID = 10

#: The stack of active sessions (innermost last) of this thread or async context: a
#: ``with session:`` in one thread does not change what another thread creates in.
_active_sessions = contextvars.ContextVar("rain_active_sessions", default=())
_default_session = None


def get_active_session():
    stack = _active_sessions.get()
    if stack:
        return stack[-1]
    if _default_session is not None and not _default_session._closed:
        return _default_session
    raise SessionException("No active session")


def _push_active(session):
    _active_sessions.set(_active_sessions.get() + (session,))


def _pop_active(session):
    """Remove the innermost entry of ``session`` from the active stack."""
    stack = _active_sessions.get()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is session:
            _active_sessions.set(stack[:i] + stack[i + 1:])
            return


def _set_default(session):
    global _default_session
    _default_session = session


class Session:
    def __init__(self, client, session_id, default=False):
        self.client = client
        self.session_id = session_id
        self._next_id = FIRST_ID
        self._tasks = []            # created since the last submit
        self._dataobjs = []
        self._submitted_tasks = {}  # id -> Task
        self._submitted_objects = {}
        self._closed = False
        self._failure = None        # TaskException once the session failed
        self._static_data = {}      # Remote functions shipped in this session
        self.name = None
        if default:
            self.set_as_default()

    # -- identity & state ----------------------------------------------------------------
    @property
    def active(self):
        return not self._closed

    @property
    def closed(self):
        return self._closed

    @property
    def task_count(self):
        """Tasks created and not yet submitted."""
        return len(self._tasks)

    @property
    def dataobj_count(self):
        """Data objects created and not yet submitted."""
        return len(self._dataobjs)

    @property
    def submitted_tasks(self):
        return list(self._submitted_tasks.values())

    def _new_id(self):
        value = self._next_id
        self._next_id += 1
        return value

    def _register_task(self, task):
        if self._closed:
            raise RainException(f"Session {self.session_id} is closed")
        self._tasks.append(task)
        return self._new_id()

    def _register_dataobj(self, obj):
        if self._closed:
            raise RainException(f"Session {self.session_id} is closed")
        self._dataobjs.append(obj)
        return self._new_id()

    def __repr__(self):
        return f"<Session {self.session_id}{' closed' if self._closed else ''}>"

    # -- activation -----------------------------------------------------------------------
    # As in Rain 0.4: ``with s:`` makes ``s`` active and closes it at the end, nested or
    # not (an inner ``with s:`` inside another ``with s:`` closes it too); ``bind_only()``
    # only activates. Activating a closed session is allowed (programs written for Rain 0.4
    # re-enter closed sessions to check the active stack); using it raises.
    def __enter__(self):
        _push_active(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        """Restore the session that was active before, and close this one."""
        _pop_active(self)
        self.close()

    def bind_only(self):
        """Make this the active session without closing it at the end of a ``with``."""
        return _BoundSession(self)

    def set_as_default(self):
        if self._closed:
            raise RainException("A closed session cannot be the default session")
        _set_default(self)

    # -- server calls ---------------------------------------------------------------------
    def _check_open(self):
        if self._closed:
            raise RainException(f"Session {self.session_id} is closed")
        if self.client is None:
            raise RainException("This session is not connected to a server")
        if self._failure is not None:
            raise self._failure

    def _request(self, fill):
        try:
            return self.client._connection.request(fill)
        except ServerError as exc:
            raise self._translate(exc) from None

    def _translate(self, exc):
        if exc.kind == "session":
            if self._failure is None:
                self._failure = TaskException(self._failure_message(exc))
                self._failure.task_id = exc.task_id
            return self._failure
        return RainException(str(exc))

    def _failure_message(self, exc):
        task = self._submitted_tasks.get(exc.task_id)
        if task is None:
            return f"Session {self.session_id} failed: {exc}"
        parts = [f"Task {task.id[1]}{f' ({task.name})' if task.name else ''} of type "
                 f"{task.task_type!r} failed:", str(exc).rstrip()]
        if exc.debug:
            parts.append("Task debug log:\n" + exc.debug.rstrip())
        if task._created_at:
            filename, lineno, function = task._created_at
            parts.append(f"The task was created at {filename}:{lineno}, in {function}")
        return "\n".join(parts)

    def keep_all(self):
        """Keep every data object created since the last submit."""
        for obj in self._dataobjs:
            obj.keep()

    def submit(self):
        """Send every task and data object created since the last submit."""
        self._check_open()
        tasks, objects = self._tasks, self._dataobjs
        if not tasks and not objects:
            return
        session_id = self.session_id
        uploads = upload_constants(self, objects, tasks)

        def fill(msg):
            submit = msg.init("submit")
            fill_submit(submit, session_id, tasks, objects)
            if uploads:
                submit.uploads = dumps_or_empty(uploads)

        try:
            self._request(fill)
        except BaseException:
            drop_uploads(self, uploads)
            raise
        finally:
            # A rejected submit is dropped whole: resending it could only fail again,
            # and the session stays usable for a corrected graph.
            self._tasks = []
            self._dataobjs = []
        not_assigned = TaskState.notAssigned
        submitted = self._submitted_tasks
        for task in tasks:
            task._state = not_assigned
            if task._spec_cache is not None:
                task._spec_cache._freeze()
            submitted[task._id] = task
        finished, unfinished = DataObjectState.finished, DataObjectState.unfinished
        submitted = self._submitted_objects
        for obj in objects:
            obj._state = unfinished if obj._data is None and obj._upload is None \
                else finished
            if obj._upload is not None:     # the governor has it now
                obj._upload.close()
                obj._upload = None
            if obj._spec_cache is not None:
                obj._spec_cache._freeze()
            submitted[obj._id] = obj
        client = self.client
        if client is not None and client._submit_listeners:
            for listener in list(client._submit_listeners):
                try:
                    listener(self, tasks, objects)
                except Exception:
                    logger.exception("submit listener failed")

    def _split(self, items, what):
        tasks, objects = [], []
        from .data import DataObject
        from .task import Task
        for item in items:
            if isinstance(item, Task):
                if item._state is None:
                    raise RainException(f"Cannot {what} task {item.id[1]}: it was not "
                                        "submitted yet")
                if item.session is not self:
                    raise RainException(f"Task {item.id} belongs to another session")
                tasks.append(item)
            elif isinstance(item, DataObject):
                if item._state is None:
                    raise RainException(f"Cannot {what} data object {item.id[1]}: it was "
                                        "not submitted yet")
                if item.session is not self:
                    raise RainException(f"Data object {item.id} belongs to another session")
                objects.append(item)
            else:
                raise TypeError(f"Cannot {what} {item!r}: expected tasks or data objects")
        return tasks, objects

    def _fill_ids(self, builder, tasks, objects):
        builder.session = self.session_id
        tl = builder.init("tasks", len(tasks))
        for i, task in enumerate(tasks):
            tl[i] = task.id[1]
        ol = builder.init("objects", len(objects))
        for i, obj in enumerate(objects):
            ol[i] = obj.id[1]

    def wait(self, items):
        """Block until all ``items`` (tasks and data objects) are finished; their ``state``
        and ``info`` are then up to date."""
        items = _as_list(items)
        tasks, objects = self._split(items, "wait for")
        self._check_open()
        reply = self._request(lambda msg: self._fill_ids(msg.init("wait"), tasks, objects))
        if reply is not None:
            # states only: info is brought by update() and fetch(), as in Rain
            self._apply_states(tasks, objects, reply, info=False)
            return
        for task in tasks:
            task._state = TaskState.finished
        for obj in objects:
            if obj._state == DataObjectState.unfinished:
                obj._state = DataObjectState.finished

    def _apply_states(self, tasks, objects, reply, info=True):
        task_states, object_states = reply
        for task, (_tid, state, task_info) in zip(tasks, task_states):
            task._state = TaskState[state]
            if info:
                task._info = TaskInfo.from_json(loads_or(task_info, {}))
        for obj, (_oid, state, obj_info) in zip(objects, object_states):
            obj._state = DataObjectState[state]
            if info:
                obj._set_info(loads_or(obj_info, {}))

    def wait_some(self, items):
        """Block until at least one of ``items`` is finished; return the finished
        ``(tasks, data_objects)``."""
        items = _as_list(items)
        tasks, objects = self._split(items, "wait for")
        self._check_open()
        finished_tasks, finished_objects = self._request(
            lambda msg: self._fill_ids(msg.init("waitSome"), tasks, objects))
        done_tasks = {t[0] for t in finished_tasks}
        done_objects = {o[0] for o in finished_objects}
        result_tasks = [t for t in tasks if t.id[1] in done_tasks]
        result_objects = [o for o in objects if o.id[1] in done_objects]
        for task in result_tasks:
            task._state = TaskState.finished
        for obj in result_objects:
            if obj._state == DataObjectState.unfinished:
                obj._state = DataObjectState.finished
        return result_tasks, result_objects

    def wait_all(self):
        """Block until every submitted task of the session is finished."""
        self._check_open()
        session_id = self.session_id

        def fill(msg):
            msg.waitAll = session_id

        self._request(fill)
        for task in self._submitted_tasks.values():
            task._state = TaskState.finished

    def _fetch_reply(self, dataobj):
        """The server's answer to a fetch: the bytes, or the governor holding them."""
        from .data import DataObject
        if not isinstance(dataobj, DataObject):
            from .task import Task
            if isinstance(dataobj, Task):
                dataobj = dataobj.output
            else:
                raise TypeError(f"Cannot fetch {dataobj!r}")
        self._split([dataobj], "fetch")
        if not dataobj._keep:
            raise RainException(f"Data object {dataobj.id[1]} is not kept; call keep() "
                                "before submit() to fetch it")
        self._check_open()

        def fill(msg):
            f = msg.init("fetch")
            f.session = self.session_id
            f.id = dataobj._id

        return dataobj, self._request(fill)

    def fetch_to(self, dataobj, path):
        """Wait for a kept data object and write it to ``path`` (which must not exist) as
        it arrives, never holding it whole; returns a ``DataInstance`` backed by ``path``."""
        path = os.path.abspath(os.fspath(path))
        if os.path.lexists(path):
            raise RainException(f"{path!r} already exists")
        if not os.path.isdir(os.path.dirname(path)):
            raise RainException(f"parent directory of {path!r} does not exist")
        dataobj, reply = self._fetch_reply(dataobj)
        data_type = DataType.DIRECTORY if reply["data_type"] == "directory" else DataType.BLOB
        info = reply["info"]
        if reply["data"] is not None:
            DataInstance(data=reply["data"], data_type=data_type).write(path)
        else:
            meta = self.client._connection.fetch_to_path(
                reply["location"], (self.session_id, dataobj.id[1]), path)
            info = {**meta.get("info", {}), **info} if meta.get("info") else info
        dataobj._set_info(info)
        dataobj._state = DataObjectState.finished
        return DataInstance(path=path, data_type=data_type,
                            content_type=reply["content_type"] or dataobj.spec.content_type,
                            spec=dataobj.spec, info=dataobj._info, object_id=dataobj.id)

    def fetch(self, dataobj):
        """Wait for a kept data object and return its content as a ``DataInstance``."""
        dataobj, reply = self._fetch_reply(dataobj)
        data = reply["data"]
        info = reply["info"]
        if data is None:
            meta, data = self.client._connection.fetch_from_governor(
                reply["location"], (self.session_id, dataobj.id[1]))
            info = {**meta.get("info", {}), **info} if meta.get("info") else info
        dataobj._set_info(info)
        dataobj._state = DataObjectState.finished
        data_type = DataType.DIRECTORY if reply["data_type"] == "directory" else DataType.BLOB
        return DataInstance(data=data, data_type=data_type,
                            content_type=reply["content_type"] or dataobj.spec.content_type,
                            spec=dataobj.spec, info=dataobj._info, object_id=dataobj.id)

    def unkeep(self, dataobjs):
        """Release kept data objects (the server drops them once no task needs them)."""
        _tasks, objects = self._split(_as_list(dataobjs), "unkeep")
        self._check_open()
        self._request(lambda msg: self._fill_ids(msg.init("unkeep"), [], objects))
        for obj in objects:
            obj._keep = False

    def update(self, items):
        """Refresh ``state`` and ``info`` of tasks and data objects from the server."""
        tasks, objects = self._split(_as_list(items), "update")
        self._check_open()
        reply = self._request(
            lambda msg: self._fill_ids(msg.init("getState"), tasks, objects))
        self._apply_states(tasks, objects, reply)

    def close(self):
        """Close the session on the server: stop its tasks, free its objects."""
        if self._closed:
            return
        if _default_session is self:
            _set_default(None)
        self._closed = True
        if self.client is None:
            return
        self.client._sessions.discard(self)
        connection = self.client._connection
        if connection is None or connection.closed:
            return
        session_id = self.session_id

        def fill(msg):
            msg.closeSession = session_id

        try:
            connection.request(fill)
        except ServerError as exc:
            logger.debug("closing session %s: %s", session_id, exc)

    # -- static data (functions of @remote) -----------------------------------------------
    def _get_static(self, key, make):
        obj = self._static_data.get(key)
        if obj is None:
            obj = self._static_data[key] = make()
        return obj


class _BoundSession:
    """Returned by ``bind_only()``: a context manager that makes the session active and
    deactivates it (without closing it) at its end."""

    def __init__(self, session):
        self.session = session

    def __enter__(self):
        _push_active(self.session)
        return self.session

    def __exit__(self, exc_type, exc, tb):
        _pop_active(self.session)


def _as_list(items):
    from .data import DataObject
    from .task import Task
    if isinstance(items, (Task, DataObject)):
        return [items]
    return list(items)


def client_location():
    """``(file, line, function)`` of the first frame outside the rain package.

    Cheap (a frame walk, no traceback formatting): it runs for every created task.
    """
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if "/rain/client/" not in filename and "/rain/common/" not in filename:
            return (filename, frame.f_lineno, frame.f_code.co_name)
        frame = frame.f_back
    return None


__all__ = ["Session", "get_active_session", "dumps_or_empty", "ObjectInfo"]
