"""The REST API (JSON over the server's HTTP port): inspect the cluster and run graphs from
any language. Documented with examples in ``docs/rest-api.md``.

Reading (governors, sessions, tasks, groups, events) uses the dashboard's run model, so it
covers closed sessions too; objects and the edges of a graph come from the live core while
their session is open. Sessions created here belong to one in-process core client whose
connection is a ``LocalConnection``: the core's replies (wait done, fetch location,
errors) come back as Python calls and resolve the futures the handlers await. Object bytes
are fetched from the governor holding them over its data port, as a Python client does.

Errors are JSON ``{"error": message}`` with a 4xx status: 400 malformed request, 403 a
session of another client, 404 unknown id or path, 405 wrong method, 408 wait timeout,
409 a failed or closed session.
"""
import asyncio
import base64
import binascii
import json
import logging

import cbor2
import tornado.web

from ..common.cbor import dumps_or_empty, loads_or
from ..transfer.peer import PeerPool, TransferError
from ..transfer.sinks import Sink
from .connections import LocalConnection
from .core import FIRST_ID, RequestError, SessionFailed
from .errors import SessionNotOpen, UnknownItem
from .events import EventFilterError
from ..common.states import PHASE_NAMES
from .graph import OBJECT_STATE_NAMES, TASK_STATE_NAMES
from .http import JsonHandler

logger = logging.getLogger(__name__)

PREFIX = "/api"
MAX_LIST = 10000
TEXT_TYPES = ("text", "json")


class RestError(tornado.web.HTTPError):
    def __init__(self, status, message, **extra):
        super().__init__(status, message.replace("%", "%%"))
        self.message = message
        self.extra = extra


class RestClient:
    """The core client that owns the sessions created through REST."""

    def __init__(self, server):
        self.server = server
        self.client = None
        self.sessions = set()
        self._pending = {}
        self._next_request = 1
        self.peers = PeerPool(getattr(server, "token", "") or "", getattr(server, "tls", None))

    @property
    def core(self):
        return self.server.core

    def core_client(self):
        if self.client is None:
            self.client = self.core.add_client(LocalConnection(self._on_reply))
        return self.client

    def _on_reply(self, request_id, kind, payload):
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result((kind, payload))

    def request(self):
        request_id = self._next_request
        self._next_request += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return request_id, future

    def forget(self, request_id):
        self._pending.pop(request_id, None)


def core_error(exc):
    """A core exception as the REST error it means."""
    if isinstance(exc, SessionFailed):
        return RestError(409, f"session failed: {exc}", task=exc.task_id, debug=exc.debug)
    if isinstance(exc, SessionNotOpen):
        return RestError(409, str(exc))
    if isinstance(exc, UnknownItem):
        return RestError(404, str(exc))
    return RestError(400, str(exc))


class RestHandler(JsonHandler):
    #: Whether the handler reads the run model (the first such request builds it).
    uses_model = True

    def initialize(self, rest, models):
        self.rest = rest
        self.models = models
        self.model = None

    async def prepare(self):
        if self.uses_model:
            self.model = await self.models.get()

    @property
    def core(self):
        return self.rest.core

    def write_error(self, status_code, **kwargs):
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, RestError):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": exc.message, **exc.extra}, default=str))
            return
        if status_code == 405:
            allowed = [m for m in ("GET", "POST", "DELETE", "PUT", "PATCH")
                       if getattr(type(self), m.lower()) is not
                       getattr(tornado.web.RequestHandler, m.lower())]
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": f"method {self.request.method} is not allowed "
                                             f"on {self.request.path}", "allowed": allowed}))
            return
        if status_code >= 500:
            logger.error("REST %s %s failed", self.request.method, self.request.path,
                         exc_info=kwargs.get("exc_info"))
        super().write_error(status_code, **kwargs)

    def body_object(self, required=True):
        body = self.read_json()
        if body is None:
            if required:
                raise RestError(400, "the request needs a JSON object body")
            return {}
        if not isinstance(body, dict):
            raise RestError(400, "the request body must be a JSON object")
        return body

    def int_arg(self, name, default=None, minimum=None):
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise RestError(400, f"query argument {name!r} must be an integer") from None
        if minimum is not None and value < minimum:
            raise RestError(400, f"query argument {name!r} must be >= {minimum}")
        return value

    def model_session(self, sid_text):
        sid = int(sid_text)
        session = self.model.sessions.get(sid)
        if session is None:
            raise RestError(404, f"no session {sid}")
        return session

    def own_session(self, sid_text):
        """A session this API may change: created through REST and still open."""
        session = self.model_session(sid_text)
        if session.id not in self.rest.sessions:
            raise RestError(403, f"session {session.id} was not created through the REST "
                                 "API; it can only be inspected here")
        if session.status == "failed" and session.id in self.core.sessions:
            return session
        if session.id not in self.core.sessions:
            raise RestError(409, f"session {session.id} is {session.status}")
        return session

    def live_session(self, session):
        live = self.core.sessions.get(session.id)
        if live is None:
            raise RestError(409, f"session {session.id} is {session.status}; objects and "
                                 "graph edges are only known while a session is open")
        return live


# ------------------------------------------------------------------------------------------

class IndexHandler(RestHandler):
    uses_model = False

    def get(self):
        self.send_json({"api": "rain", "endpoints": ENDPOINTS, "docs": "docs/rest-api.md"})


class GovernorsHandler(RestHandler):
    def get(self):
        self.send_json([governor_json(self.core, g) for g in self.model.governors.values()])


class GovernorHandler(RestHandler):
    def get(self, gid):
        governor = self.model.governors.get(gid)
        if governor is None:
            raise RestError(404, f"no governor {gid!r}")
        result = governor_json(self.core, governor)
        limit = self.int_arg("samples", 60, 0)
        n = len(governor.times)
        start = max(0, n - limit)
        result["monitoring"] = {"time": governor.times[start:], "cpu_usage":
                                governor.cpu[start:], "mem_usage": governor.mem[start:]}
        self.send_json(result)


def governor_json(core, governor):
    result = governor.to_json()
    live = core.governors.get(governor.id)
    if live is not None:
        result["free_cpus"] = live.free_cpus
        result["assigned_tasks"] = len(live.tasks)
    return result


class AllocationsHandler(RestHandler):
    """``GET``: the batch allocations of autoscalers (``rain alloc``) and the governors
    each brought; ``POST``: an autoscaler reports one of its jobs' state."""

    def get(self):
        self.send_json(self.model.allocations.to_json())

    def post(self):
        try:
            report = self.core.report_allocation(self.body_object())
        except RequestError as exc:
            raise RestError(400, str(exc)) from None
        self.send_json(report)


class SessionsHandler(RestHandler):
    def get(self):
        self.send_json([self.session_json(s) for s in self.model.sessions.values()])

    def post(self):
        body = self.body_object(required=False)
        spec = {}
        name = body.get("name", "REST session")
        if not isinstance(name, str):
            raise RestError(400, "'name' must be a string")
        spec["name"] = name
        unknown = set(body) - {"name"}
        if unknown:
            raise RestError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        sid = self.core.new_session(self.rest.core_client(), spec)
        self.rest.sessions.add(sid)
        self.set_status(201)
        self.send_json({"session": sid, "name": name})

    def session_json(self, session):
        result = session.to_json()
        result["rest"] = session.id in self.rest.sessions
        return result


class SessionHandler(RestHandler):
    session_json = SessionsHandler.session_json

    def get(self, sid):
        session = self.model_session(sid)
        result = self.session_json(session)
        result["groups"] = self.model.group_tree(session)
        self.send_json(result)

    def delete(self, sid):
        session = self.model_session(sid)
        if session.id not in self.rest.sessions:
            raise RestError(403, f"session {session.id} was not created through the REST API")
        if session.id in self.core.sessions:
            try:
                self.core.close_session(self.rest.core_client(), session.id)
            except RequestError as exc:
                raise core_error(exc) from None
        self.send_json({"session": session.id, "closed": True})


class SubmitHandler(RestHandler):
    def post(self, sid):
        session = self.own_session(sid)
        body = self.body_object()
        tasks, objects = parse_graph(body)
        try:
            self.core.submit(self.rest.core_client(), session.id, tasks, objects)
        except RequestError as exc:
            raise core_error(exc) from None
        self.send_json({"session": session.id, "tasks": [t[0] for t in tasks],
                        "objects": [o[0] for o in objects]})


class WaitHandler(RestHandler):
    async def post(self, sid):
        session = self.own_session(sid)
        body = self.body_object(required=False)
        task_ids = id_list(body, "tasks")
        object_ids = id_list(body, "objects")
        unknown = set(body) - {"tasks", "objects"}
        if unknown:
            raise RestError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        timeout = self.get_query_argument("timeout", None)
        try:
            timeout = float(timeout) if timeout is not None else None
        except ValueError:
            raise RestError(400, "'timeout' must be a number of seconds") from None
        request_id, future = self.rest.request()
        try:
            if task_ids or object_ids:
                self.core.wait(self.rest.core_client(), request_id, session.id, task_ids,
                               object_ids)
            else:
                self.core.wait_all(self.rest.core_client(), request_id, session.id)
        except RequestError as exc:
            self.rest.forget(request_id)
            raise core_error(exc) from None
        try:
            kind, payload = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self.rest.forget(request_id)
            raise RestError(408, f"not finished after {timeout} s") from None
        if kind == "error":
            raise core_error(payload)
        self.send_json({"session": session.id, "finished": True})


class UnkeepHandler(RestHandler):
    def post(self, sid):
        session = self.own_session(sid)
        object_ids = id_list(self.body_object(), "objects")
        try:
            self.core.unkeep(self.rest.core_client(), session.id, object_ids)
        except RequestError as exc:
            raise core_error(exc) from None
        self.send_json({"session": session.id, "unkept": object_ids})


class TasksHandler(RestHandler):
    def get(self, sid):
        session = self.model_session(sid)
        want = self.get_query_argument("state", None)
        if want is not None and want not in PHASE_NAMES:
            raise RestError(400, "'state' must be waiting, running, finished or failed")
        name = self.get_query_argument("name", None)
        offset = self.int_arg("offset", 0, 0)
        limit = min(self.int_arg("limit", 1000, 0), MAX_LIST)
        result = []
        skipped = 0
        for ids in session.submits:
            for tid in ids:
                entry = self.model.task_json(session, tid) or {
                    "task": tid, "session": session.id, "state": "waiting", "name": None,
                    "governor": None}
                if want is not None and entry["state"] != want:
                    continue
                if name is not None and not _name_matches(entry["name"], name):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                if len(result) >= limit:
                    break
                result.append(entry)
        self.send_json(result)


def _name_matches(key, prefix):
    if key is None:
        return False
    return key == prefix or key.startswith(prefix.rstrip("/") + "/")


class TaskHandler(RestHandler):
    def get(self, sid, tid):
        session = self.model_session(sid)
        tid = int(tid)
        entry = self.model.task_json(session, tid)
        live = self.core.sessions.get(session.id)
        task = live.tasks.get(tid) if live is not None else None
        if entry is None:
            if task is None and not any(tid in ids for ids in session.submits):
                raise RestError(404, f"no task {tid} in session {session.id}")
            entry = {"task": tid, "session": session.id, "state": "waiting", "name": None,
                     "governor": None}
        if task is not None:
            entry.update({
                "name": task.name or entry.get("name"), "task_type": task.task_type,
                "core_state": TASK_STATE_NAMES[task.state], "cpus": task.cpus,
                "resources": task.resources,
                "inputs": [{"id": o.id, "label": label or None}
                           for o, label in zip(task.inputs, task.input_labels)],
                "outputs": [o.id for o in task.outputs],
                "info": task.info,
            })
        self.send_json(entry)


class GroupsHandler(RestHandler):
    def get(self, sid):
        self.send_json(self.model.group_tree(self.model_session(sid)))


class ObjectsHandler(RestHandler):
    def get(self, sid):
        live = self.live_session(self.model_session(sid))
        offset = self.int_arg("offset", 0, 0)
        limit = min(self.int_arg("limit", 1000, 0), MAX_LIST)
        objects = list(live.objects.values())[offset:offset + limit]
        self.send_json([object_json(o) for o in objects])


class ObjectHandler(RestHandler):
    def get(self, sid, oid):
        live = self.live_session(self.model_session(sid))
        obj = live.objects.get(int(oid))
        if obj is None:
            raise RestError(404, f"no object {oid} in session {sid}")
        self.send_json(object_json(obj))


def object_json(obj):
    return {"id": obj.id, "label": obj.label or None, "content_type": obj.content_type or None,
            "data_type": "directory" if obj.data_type == 1 else "blob", "keep": obj.keep,
            "state": OBJECT_STATE_NAMES[obj.state], "size": obj.size if obj.size >= 0 else None,
            "producer": obj.producer.id if obj.producer is not None else None,
            "locations": [g.id for g in obj.locations], "info": _cbor_json(obj.info)}


class ObjectDataHandler(RestHandler):
    """The bytes of a kept object (waits until it is finished); a directory comes as tar."""

    async def get(self, sid, oid):
        session = self.own_session(sid)
        oid = int(oid)
        request_id, future = self.rest.request()
        try:
            self.core.fetch(self.rest.core_client(), request_id, session.id, oid)
        except RequestError as exc:
            self.rest.forget(request_id)
            raise core_error(exc) from None
        timeout = self.get_query_argument("timeout", None)
        try:
            timeout = float(timeout) if timeout is not None else None
        except ValueError:
            raise RestError(400, "'timeout' must be a number of seconds") from None
        try:
            kind, payload = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self.rest.forget(request_id)
            raise RestError(408, f"object {oid} not finished after {timeout} s") from None
        if kind == "error":
            raise core_error(payload)
        obj, data, location = payload
        self._set_type_headers(obj.data_type, obj.content_type or "")
        if data is not None:
            self.finish(bytes(data))
            return
        sink = _ResponseSink(self)
        try:
            await self.rest.peers.fetch_into(location, (session.id, oid), sink)
        except (TransferError, OSError) as exc:
            if not sink.started:
                raise RestError(409, f"object {oid} could not be read from governor "
                                     f"{location}: {exc}") from None
            logger.warning("object %s/%s: the transfer from %s broke off: %s", session.id,
                           oid, location, exc)
            self.request.connection.close()
            return
        await sink.drained()
        if sink.gone is not None:
            self.request.connection.close()
            return
        self.finish()

    def _set_type_headers(self, data_type, content_type):
        if data_type == 1:
            mime = "application/x-tar"
        elif content_type == "json":
            mime = "application/json"
        elif content_type.startswith("text"):
            encoding = content_type[5:] if content_type.startswith("text-") else "utf-8"
            mime = f"text/plain; charset={encoding}"
        elif content_type.startswith("mime/"):
            mime = content_type[5:]
        else:
            mime = "application/octet-stream"
        self.set_header("Content-Type", mime)
        self.set_header("X-Rain-Content-Type", content_type)
        self.set_header("X-Rain-Data-Type", "directory" if data_type == 1 else "blob")


class _ResponseSink(Sink):
    """An object's chunks written to an HTTP response as they come from the governor;
    reading from it waits while the HTTP client is behind.

    One flush at a time: tornado resolves only the newest of overlapping ``flush()``
    futures, so a second flush issued before the first completed would leave the first
    unresolved and the governor connection paused for good."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.started = False
        self.gone = None
        self._flushing = None     # the task flushing what was written so far
        self._unflushed = False

    def begin(self, meta):
        super().begin(meta)
        content_type = meta.get("content_type")
        if content_type:
            self.handler._set_type_headers(meta["data_type"], content_type)

    def write(self, chunk):
        if self.gone is not None:
            raise self.gone
        self.received += len(chunk)
        self.started = True
        self.handler.write(bytes(chunk))
        self._unflushed = True
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())
        return self._flushing

    async def _flush(self):
        try:
            while self._unflushed and self.gone is None:
                self._unflushed = False
                await self.handler.flush()
        except Exception as exc:  # the HTTP client went away
            self.gone = TransferError(f"HTTP client gone: {exc}")
        finally:
            self._flushing = None

    async def drained(self):
        """Wait until every chunk written so far has left (before ``finish``)."""
        while self._flushing is not None:
            await self._flushing


class GraphHandler(RestHandler):
    """Nodes (tasks with state and name) and edges (producer -> consumer) of an open
    session; ``limit`` caps the nodes (default 10000)."""

    def get(self, sid):
        session = self.model_session(sid)
        live = self.live_session(session)
        limit = min(self.int_arg("limit", MAX_LIST, 0), 1000000)
        nodes, edges = [], []
        for task in live.tasks.values():
            if len(nodes) >= limit:
                break
            record = session.tasks.get(task.id)
            nodes.append({"id": task.id, "name": task.name or None,
                          "task_type": task.task_type,
                          "state": TASK_STATE_NAMES[task.state],
                          "governor": record[2] if record else None})
            for obj in task.inputs:
                if obj.producer is not None:
                    edges.append({"from": obj.producer.id, "to": task.id, "object": obj.id})
        self.send_json({"session": session.id, "nodes": nodes, "edges": edges,
                        "truncated": len(nodes) < len(live.tasks)})


class EventsHandler(RestHandler):
    """``GET /api/events?after=ID&type=T&session=N&limit=N``: the event log."""
    uses_model = False

    async def get(self):
        filter_ = {"limit": min(self.int_arg("limit", 1000, 0), MAX_LIST)}
        after = self.int_arg("after", None)
        if after is not None:
            filter_["id"] = {"value": after, "mode": ">"}
        session = self.int_arg("session", None)
        if session is not None:
            filter_["session"] = {"value": session, "mode": "="}
        types = self.get_query_arguments("type")
        if types:
            filter_["event_types"] = [{"value": t, "mode": "="} for t in types]
        try:
            rows = await self.rest.server.events.query(filter_)
        except EventFilterError as exc:
            raise RestError(400, str(exc)) from None
        self.send_json(rows)


class NotFound(RestHandler):
    def prepare(self):
        raise RestError(404, f"no such endpoint: {self.request.method} {self.request.path} "
                             f"(see GET {PREFIX})")


# ------------------------------------------------------------------------------------------
# Graph JSON -> the core's submit tuples

def _fail(where, message):
    raise RestError(400, f"{where}: {message}")


def _int(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"expected an integer, got {json.dumps(value)[:60]}")
    if not -2**31 <= value < 2**31:
        _fail(where, f"{value} is out of range (a 32-bit integer)")
    return value


def _str(value, where, default=""):
    if value is None:
        return default
    if not isinstance(value, str):
        _fail(where, "expected a string")
    return value


def id_list(body, key):
    value = body.get(key, [])
    if not isinstance(value, list):
        raise RestError(400, f"'{key}' must be a list of ids")
    return [_int(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _object_spec(spec, where):
    if not isinstance(spec, dict):
        _fail(where, "expected an object")
    unknown = set(spec) - {"id", "label", "content_type", "data_type", "keep", "user", "data"}
    if unknown:
        _fail(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    oid = _int(spec.get("id"), f"{where}.id")
    if oid < FIRST_ID:
        _fail(f"{where}.id", f"ids start at {FIRST_ID}")
    content_type = _str(spec.get("content_type"), f"{where}.content_type")
    data_type = spec.get("data_type", "blob")
    if data_type not in ("blob", "directory"):
        _fail(f"{where}.data_type", "must be 'blob' or 'directory'")
    keep = spec.get("keep", False)
    if not isinstance(keep, bool):
        _fail(f"{where}.keep", "must be true or false")
    user = spec.get("user")
    if user is not None and not isinstance(user, dict):
        _fail(f"{where}.user", "must be an object")
    data = spec.get("data")
    if data is not None:
        if isinstance(data, str):
            data = data.encode()
            content_type = content_type or "text"
        elif isinstance(data, dict) and set(data) == {"base64"}:
            try:
                data = base64.b64decode(_str(data["base64"], f"{where}.data.base64"),
                                        validate=True)
            except (binascii.Error, ValueError) as exc:
                _fail(f"{where}.data.base64", f"invalid base64 ({exc})")
        elif isinstance(data, dict) and set(data) == {"json"}:
            data = json.dumps(data["json"]).encode()
            content_type = content_type or "json"
        else:
            _fail(f"{where}.data", 'expected a string, {"base64": ...} or {"json": ...}')
    return (oid, _str(spec.get("label"), f"{where}.label"), content_type,
            1 if data_type == "directory" else 0, dumps_or_empty(user), keep, data)


def parse_graph(body):
    """``{"objects": [...], "tasks": [...]}`` (see docs/rest-api.md) -> core tuples."""
    unknown = set(body) - {"objects", "tasks"}
    if unknown:
        raise RestError(400, f"unknown field(s): {', '.join(sorted(unknown))} "
                             "(expected 'objects' and 'tasks')")
    raw_objects = body.get("objects", [])
    raw_tasks = body.get("tasks", [])
    if not isinstance(raw_objects, list) or not isinstance(raw_tasks, list):
        raise RestError(400, "'objects' and 'tasks' must be lists")
    objects = [_object_spec(spec, f"objects[{i}]") for i, spec in enumerate(raw_objects)]
    tasks = []
    for i, spec in enumerate(raw_tasks):
        where = f"tasks[{i}]"
        if not isinstance(spec, dict):
            _fail(where, "expected an object")
        unknown = set(spec) - {"id", "type", "task_type", "inputs", "outputs", "config",
                               "cpus", "resources", "name", "user", "retries",
                               "retry_on_error"}
        if unknown:
            _fail(where, f"unknown field(s) {', '.join(sorted(unknown))}")
        tid = _int(spec.get("id"), f"{where}.id")
        task_type = _str(spec.get("type", spec.get("task_type")), f"{where}.type")
        if not task_type:
            _fail(f"{where}.type", "missing task type (e.g. \"buildin/concat\")")
        inputs = []
        raw_inputs = spec.get("inputs", [])
        if not isinstance(raw_inputs, list):
            _fail(f"{where}.inputs", "must be a list")
        for j, item in enumerate(raw_inputs):
            if isinstance(item, dict):
                unknown = set(item) - {"id", "label"}
                if unknown:
                    _fail(f"{where}.inputs[{j}]", f"unknown field(s) {', '.join(unknown)}")
                inputs.append((_int(item.get("id"), f"{where}.inputs[{j}].id"),
                               _str(item.get("label"), f"{where}.inputs[{j}].label")))
            else:
                inputs.append((_int(item, f"{where}.inputs[{j}]"), ""))
        outputs = []
        raw_outputs = spec.get("outputs", [])
        if not isinstance(raw_outputs, list):
            _fail(f"{where}.outputs", "must be a list")
        for j, item in enumerate(raw_outputs):
            if isinstance(item, dict):
                obj = _object_spec(item, f"{where}.outputs[{j}]")
                if obj[6] is not None:
                    _fail(f"{where}.outputs[{j}]", "a task output cannot have data")
                objects.append(obj)
                outputs.append(obj[0])
            else:
                outputs.append(_int(item, f"{where}.outputs[{j}]"))
        cpus = _int(spec.get("cpus", 1), f"{where}.cpus")
        resources = spec.get("resources")
        if resources is not None:
            if not isinstance(resources, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for v in resources.values()):
                _fail(f"{where}.resources", "must map names to non-negative numbers")
        user = spec.get("user")
        if user is not None and not isinstance(user, dict):
            _fail(f"{where}.user", "must be an object")
        config = spec.get("config")
        task = (tid, task_type, cbor2.dumps(config) if config is not None else b"",
                inputs, outputs, cpus, resources or None,
                _str(spec.get("name"), f"{where}.name"), dumps_or_empty(user))
        retries = spec.get("retries")
        on_error = spec.get("retry_on_error", False)
        if retries is not None and (_int(retries, f"{where}.retries") < 0):
            _fail(f"{where}.retries", "must be a non-negative integer (or null: the "
                                      "server's default)")
        if not isinstance(on_error, bool):
            _fail(f"{where}.retry_on_error", "must be true or false")
        if retries is not None or on_error:
            task += (retries, on_error)
        tasks.append(task)
    return tasks, objects


def _cbor_json(data):
    try:
        return loads_or(data, None)
    except Exception:
        return None


ENDPOINTS = [
    "GET /api/governors", "GET /api/governors/{governor}",
    "GET /api/allocations", "POST /api/allocations",
    "GET /api/sessions", "POST /api/sessions", "GET /api/sessions/{s}",
    "DELETE /api/sessions/{s}", "POST /api/sessions/{s}/submit",
    "POST /api/sessions/{s}/wait", "POST /api/sessions/{s}/unkeep",
    "GET /api/sessions/{s}/tasks", "GET /api/sessions/{s}/tasks/{t}",
    "GET /api/sessions/{s}/groups", "GET /api/sessions/{s}/graph",
    "GET /api/sessions/{s}/objects", "GET /api/sessions/{s}/objects/{o}",
    "GET /api/sessions/{s}/objects/{o}/data", "GET /api/events",
]


def rest_handlers(server, models=None):
    if models is None:
        from .live_model import live_model
        models = live_model(server)
    rest = getattr(server, "rest", None)
    if rest is None:
        rest = server.rest = RestClient(server)
    args = {"rest": rest, "models": models}
    s = rf"{PREFIX}/sessions/(\d+)"
    return [
        (rf"{PREFIX}/?", IndexHandler, args),
        (rf"{PREFIX}/governors/?", GovernorsHandler, args),
        (rf"{PREFIX}/governors/([^/]+)/?", GovernorHandler, args),
        (rf"{PREFIX}/allocations/?", AllocationsHandler, args),
        (rf"{PREFIX}/sessions/?", SessionsHandler, args),
        (rf"{s}/?", SessionHandler, args),
        (rf"{s}/submit/?", SubmitHandler, args),
        (rf"{s}/wait/?", WaitHandler, args),
        (rf"{s}/unkeep/?", UnkeepHandler, args),
        (rf"{s}/tasks/?", TasksHandler, args),
        (rf"{s}/tasks/(\d+)/?", TaskHandler, args),
        (rf"{s}/groups/?", GroupsHandler, args),
        (rf"{s}/graph/?", GraphHandler, args),
        (rf"{s}/objects/?", ObjectsHandler, args),
        (rf"{s}/objects/(\d+)/?", ObjectHandler, args),
        (rf"{s}/objects/(\d+)/data/?", ObjectDataHandler, args),
        (rf"{PREFIX}/events/?", EventsHandler, args),
        (rf"{PREFIX}/.*", NotFound, args),
    ]
