"""The server's network side: decodes frames into core calls, encodes what the core queued.

One asyncio loop. Each connection starts with a ``Hello``; a bad hello, a garbage frame or
an unknown message closes that connection only (after an error reply where one is
possible). Replies and governor work leave once per loop turn.

Encoding for one peer never fails anyone else: a reply that cannot be encoded becomes an
error for that request (or closes that client's connection), tasks and objects that
cannot be encoded for a governor fail their own sessions while the rest of its work
leaves, and events that cannot be encoded are left out of a subscriber's batch.
"""
import asyncio
import logging
from operator import attrgetter

import capnp

from ..auth import token_matches
from ..capnp import PROTOCOL_VERSION, TRAVERSAL_LIMIT, rain_capnp
from ..common import assign_columns, update_columns
from ..common.cbor import ROWS_MAX, dumps_or_empty, loads_or
from ..common.framing import FrameProtocol
from ..common.keepalive import set_keepalive
from ..common.waiting_room import WaitingRoom
from .core import UNSCHEDULABLE_TIMEOUT, RequestError, ServerCore, SessionFailed
from .graph import (ASSIGNED, FINISHED, OBJ_FINISHED, OBJECT_STATE_NAMES, REMOVED,
                    TASK_STATE_NAMES, Task)
from .submit_batch import read_rows, read_submit, read_uploads

logger = logging.getLogger(__name__)

R = rain_capnp
#: Largest frame accepted before a successful Hello (a Hello is a token and a few small
#: fields): an unknown peer must not make the server buffer anything big.
HELLO_MAX_SIZE = 2**16
#: Largest frame accepted from a client or governor once it is accepted (``rain server
#: --max-submit-size``). A client's requests are small but for a submit, which carries the
#: graph and its constants; a governor's updates carry what tasks reported (their info and
#: results of at most ``update_columns.INLINE_DATA_MAX`` bytes). Object data of any size
#: travels between governors and clients over the data ports, in chunks.
MAX_SUBMIT_SIZE = 2**30
#: Seconds a governor may stay silent before it is given up (``rain server
#: --heartbeat-timeout``); the governors give up a server silent as long.
HEARTBEAT_TIMEOUT = 30.0
#: The first bytes of a TLS handshake record (what a TLS client says first).
TLS_RECORD = b"\x16\x03"


class _RpcConnection(FrameProtocol):
    """A connection to the RPC port, which the server watches until its Hello."""

    def __init__(self, server):
        super().__init__(server._on_frame, server._on_close, max_frame_size=HELLO_MAX_SIZE)
        self._server = server
        self._first_read = True

    def buffer_updated(self, nbytes):
        if self._first_read:
            self._first_read = False
            if self._server.tls is None and self._buf[self._start:self._start + 2] == TLS_RECORD:
                logger.warning("refused a connection from %s: it speaks TLS and this server "
                               "does not (give the server --tls-cert/--tls-key, or the peer "
                               "RAIN_TLS=off)", self.peer)
                self.close()
                return
        super().buffer_updated(nbytes)

    def connection_made(self, transport):
        super().connection_made(transport)
        self._server._on_connect(self)

    def frame_too_large(self, error):
        self._server._on_frame_too_large(self, error)


TASK_STATE_ENUM = {name: i for i, name in enumerate(TASK_STATE_NAMES)}


class ProtocolError(Exception):
    pass


def decode_cbor(data, what, default=None):
    """``loads_or`` for peer-supplied bytes: undecodable CBOR is the sender's error."""
    try:
        return loads_or(data, default)
    except Exception as exc:
        raise RequestError(f"{what} is not valid CBOR: {exc}") from None


class LocalConnection:
    """The ``conn`` of a client living inside the server process (the REST API): replies
    are handed to ``on_reply(request_id, kind, payload)`` instead of being encoded."""

    closed = False

    def __init__(self, on_reply):
        self.on_reply = on_reply


class ServerComm:
    """The ``comm`` of the core: turns its decisions into frames."""

    def __init__(self, server):
        self.server = server
        self.loop = None
        self._dirty = set()
        self._schedule_pending = False
        self._turn_scheduled = False

    def reply(self, client, request_id, kind, payload):
        conn = client.conn
        if conn is None or conn.closed:
            return
        if type(conn) is LocalConnection:
            conn.on_reply(request_id, kind, payload)
            return
        try:
            frame = encode_response(request_id, kind, payload)
        except Exception as exc:
            frame = self._unencodable_reply(client, request_id, kind, exc)
            if frame is None:
                return
        # At once, not at the end of the turn: a client has one or two requests waiting
        # at most, and the write saves the loop callback that would flush it.
        conn.send_now((frame,))

    @staticmethod
    def _unencodable_reply(client, request_id, kind, exc):
        """An error reply in place of one that could not be encoded; None when even that
        cannot be, and then the client's connection is closed."""
        logger.error("cannot encode the %s reply to request %s of client %s: %r",
                     kind, request_id, client.id, exc)
        try:
            return encode_response(request_id, "error", RequestError(
                f"Internal server error: the reply could not be encoded ({exc!r})"))
        except Exception:
            logger.exception("closing the connection of client %s", client.id)
            client.conn.close()
            return None

    def governor_dirty(self, governor):
        self._dirty.add(governor)
        self._end_turn_soon()

    def schedule_soon(self):
        self._schedule_pending = True
        self._end_turn_soon()

    def event(self, event):
        self.server.events.add(event)

    def _end_turn_soon(self):
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self.loop.call_soon(self._end_turn)

    def hold_turn(self):
        """Until ``end_turn_now``, what asks for the end of the turn queues no callback."""
        self._turn_scheduled = True

    def end_turn_now(self):
        """Schedule and send the governors their work now rather than at the end of the
        loop turn: for a submit, whose tasks should not wait for its reply to be encoded
        and sent. (A callback queued before ``hold_turn`` then finds nothing left.)"""
        self._end_turn()

    def _end_turn(self):
        """Once per loop turn that changed something: schedule, then send every governor
        its work at once. One callback and no further turns: each loop turn costs an
        ``epoll_wait`` and the callback machinery, which on a small machine is as much as
        the scheduling itself."""
        try:
            if self._schedule_pending:
                self._schedule_pending = False
                self.server.run_schedule()
            if self._dirty:
                self.flush_governors()
        finally:
            self._turn_scheduled = False
            if self._schedule_pending or self._dirty:
                self._end_turn_soon()

    def flush_governors(self):
        dirty, self._dirty = self._dirty, set()
        for governor in dirty:
            conn = governor.conn
            if conn is None:
                governor.out_objects.clear()
                governor.out_tasks.clear()
                governor.out_stop.clear()
                governor.out_delete.clear()
                continue
            try:
                frames = encode_governor_work(governor)
            except Exception as exc:
                frames = self._work_without_culprits(governor, exc)
            conn.send_now(frames)

    def _work_without_culprits(self, governor, exc):
        """``encode_governor_work`` failed: the tasks and objects that cannot be encoded
        fail their sessions (``ServerCore.undeliverable``), and the rest is encoded again.
        Should that fail too, the governor is given up with the reason logged: its tasks go
        elsewhere, and no other governor or client waits on it."""
        logger.warning("cannot encode the work of governor %s (%r): looking for the tasks "
                       "and objects at fault", governor.id, exc)
        culprits = [o for o in governor.out_objects
                    if not _encodes(_assigned_object_rows([o]), [])]
        culprits += [t for t in governor.out_tasks
                     if not _encodes([], _assigned_task_rows(governor, [t]))]
        self.server.core.undeliverable(culprits, repr(exc))
        try:
            return encode_governor_work(governor)
        except Exception as again:
            logger.exception("giving up governor %s: its work cannot be encoded", governor.id)
            governor.out_objects.clear()
            governor.out_tasks.clear()
            governor.out_stop.clear()
            governor.out_delete.clear()
            self.server.drop_governor(governor, f"its work could not be encoded: {again!r}")
            return ()


class RainServer:
    def __init__(self, events, *, token="", test_mode=False, debug_mode=False,
                 heartbeat_timeout=HEARTBEAT_TIMEOUT, max_submit_size=MAX_SUBMIT_SIZE,
                 unschedulable_timeout=UNSCHEDULABLE_TIMEOUT, tls=None):
        self.events = events
        self.token = token
        self.max_submit_size = max_submit_size
        self.tls = tls                # rain.tls.Tls of the RPC port (None: plain TCP)
        self.heartbeat_timeout = heartbeat_timeout
        self._last_tick = None
        self.comm = ServerComm(self)
        self.core = ServerCore(self.comm, test_mode=test_mode, debug_mode=debug_mode,
                               unschedulable_timeout=unschedulable_timeout)
        self._info_requests = {}
        self._next_info_request = 1
        self.rpc_server = None
        self.event_subscribers = {}   # Client -> filter session (-1: all)
        self.unaccepted = WaitingRoom()   # connections before their Hello

    async def listen(self, host, port):
        loop = asyncio.get_running_loop()
        self.comm.loop = loop
        if self.tls is None:
            factory = lambda: _RpcConnection(self)     # noqa: E731
        else:
            factory = lambda: self.tls.listening_protocol(  # noqa: E731
                _RpcConnection(self), "RPC port", self.unaccepted)
        self.rpc_server = await loop.create_server(factory, host, port)
        if self.heartbeat_timeout:
            loop.call_later(self.heartbeat_timeout / 4, self._heartbeat)
        if self.core.unschedulable_timeout:
            loop.call_later(self._unschedulable_tick(), self._check_unschedulable)
        return self.rpc_server.sockets[0].getsockname()[:2]

    def _unschedulable_tick(self):
        """Seconds between two looks for tasks waiting too long for a governor: a tenth of
        the timeout, within 0.2..5 s."""
        return min(5.0, max(0.2, self.core.unschedulable_timeout / 10))

    def _check_unschedulable(self):
        self.core.check_unschedulable()
        self.comm.loop.call_later(self._unschedulable_tick(), self._check_unschedulable)

    def _heartbeat(self):
        """Every quarter of the timeout: give up governors that sent nothing for longer
        than the timeout (dead host, frozen process), and show the others that the server
        is alive. Any frame of a governor counts (``Governor.heard``), so a busy one is
        never dropped, and the check costs nothing per frame beyond setting a flag."""
        loop = self.comm.loop
        timeout = self.heartbeat_timeout
        now = loop.time()
        # A late tick means the server itself was busy (a huge submit): the governors'
        # frames wait unread, so this round judges no one.
        late = self._last_tick is not None and now - self._last_tick > timeout / 2
        self._last_tick = now
        frame = None
        for governor in list(self.core.governors.values()):
            conn = governor.conn
            if conn is None or type(conn) is LocalConnection:
                continue
            if governor.heard or governor.heard_at is None or late:
                governor.heard = False
                governor.heard_at = now
            elif now - governor.heard_at > timeout:
                self._drop_silent(governor, now - governor.heard_at)
                continue
            if frame is None:
                msg = R.ServerToGovernor.new_message()
                msg.heartbeat = timeout
                frame = msg.to_bytes()
            conn.send(frame)
        loop.call_later(timeout / 4, self._heartbeat)

    def _drop_silent(self, governor, silent):
        logger.warning("governor %s silent for %.1f s: giving it up", governor.id, silent)
        self.drop_governor(governor, f"silent for {silent:.1f} s (heartbeat timeout "
                                     f"{self.heartbeat_timeout:g} s)")

    def drop_governor(self, governor, reason):
        """Give a governor up and cut its connection at once (its tasks go elsewhere)."""
        conn = governor.conn
        self._on_close(conn, None, reason=reason)
        if conn.transport is not None:
            conn.closed = True
            conn.transport.abort()       # a frozen peer would never take a flush

    def run_schedule(self):
        try:
            self.core.schedule()
        except Exception:
            logger.exception("scheduling failed")

    # -- connection dispatch ----------------------------------------------------------------
    def _on_connect(self, conn):
        self.unaccepted.enter(conn)

    def _on_frame_too_large(self, conn, error):
        """A peer announced a frame longer than its connection takes: tell a client why
        its connection is closed (a request id 0 error fails all its requests)."""
        state = conn.state
        if state is None:
            return                       # a stranger is told nothing
        if state[0] == "client":
            logger.warning("closing the connection of client %s: %s", state[1].id, error)
            self.comm.reply(state[1], 0, "error", RequestError(
                f"A request of {error.length} bytes exceeds the server's limit of "
                f"{error.limit} bytes (rain server --max-submit-size); the server closed "
                "the connection"))
        elif state[0] == "governor":
            logger.warning("closing the connection of governor %s: %s", state[1].id, error)

    def _on_frame(self, conn, frame):
        state = conn.state
        if state is None:
            self._on_hello(conn, frame)
        elif state[0] == "client":
            self._on_client_frame(conn, state[1], frame)
        elif state[0] == "governor":
            self._on_governor_frame(conn, state[1], frame)
        else:
            raise ProtocolError("unexpected frame")

    def _on_close(self, conn, exc, reason="connection lost"):
        self.unaccepted.leave(conn)
        state = conn.state
        conn.state = ("closed", None)
        if state is None and self.tls is not None:
            logger.info("the connection from %s closed before its hello (a peer that does "
                        "not accept this server's certificate closes it so)", conn.peer)
        if state is None or state[0] == "closed":
            return
        try:
            if state[0] == "client":
                if self.event_subscribers.pop(state[1], None) is not None:
                    self._listen_for_subscribers()
                self.core.remove_client(state[1])
            elif state[0] == "governor":
                if exc is not None or reason == "connection lost":
                    logger.warning("governor %s disconnected", state[1].id)
                self.core.remove_governor(state[1], reason)
                for pending in list(self._info_requests.values()):
                    pending[1].discard(state[1].id)
                    self._maybe_finish_info(pending)
        except Exception:
            logger.exception("cleanup after a closed connection failed")

    def _reply_hello(self, conn, ok, error="", governor_id=""):
        msg = R.HelloReply.new_message(ok=ok, error=error, governorId=governor_id,
                                       protocolVersion=PROTOCOL_VERSION)
        conn.send(msg.to_bytes())

    def _on_hello(self, conn, frame):
        self.unaccepted.leave(conn)
        try:
            with R.Hello.from_bytes(frame, traversal_limit_in_words=2**20) as hello:
                version = hello.protocolVersion
                token = hello.token
                role = str(hello.role)
                data_address = hello.dataAddress
                cpus = hello.cpus
                resources = hello.resources
        except Exception as exc:
            logger.info("bad hello from %s: %s", conn.peer, exc)
            self._reply_hello(conn, False, "Invalid hello message")
            conn.close()
            return
        if version != PROTOCOL_VERSION:
            self._reply_hello(conn, False, f"Protocol version {version} is not supported "
                                           f"(server speaks {PROTOCOL_VERSION})")
            conn.close()
            return
        if not token_matches(self.token, token):
            logger.warning("refused a %s from %s: wrong or missing token", role, conn.peer)
            self._reply_hello(conn, False, "Authentication failed: wrong or missing token")
            conn.close()
            return
        conn.max_frame_size = self.max_submit_size
        if conn.transport is not None:
            set_keepalive(conn.transport.get_extra_info("socket"),
                          self.heartbeat_timeout or HEARTBEAT_TIMEOUT)
        if role == "client":
            client = self.core.add_client(conn)
            conn.state = ("client", client)
            self._reply_hello(conn, True)
        elif role == "governor":
            try:
                resources = decode_cbor(resources, "resources", {})
                if not isinstance(resources, dict) or not all(
                        isinstance(k, str) and isinstance(v, (int, float))
                        and not isinstance(v, bool) and v >= 0
                        for k, v in resources.items()):
                    raise ValueError("resources must map names to non-negative numbers")
                if cpus < 0:
                    raise ValueError("negative cpus")
                governor_id = data_address
                if not governor_id:
                    raise ValueError("no data address")
                if governor_id.startswith("0.0.0.0:") or governor_id.startswith(":"):
                    host = conn.peer[0] if conn.peer else "127.0.0.1"
                    governor_id = f"{host}:{governor_id.rsplit(':', 1)[1]}"
                governor = self.core.add_governor(governor_id, cpus, resources, conn)
            except (RequestError, ValueError) as exc:
                self._reply_hello(conn, False, f"Governor rejected: {exc}")
                conn.close()
                return
            conn.state = ("governor", governor)
            self._reply_hello(conn, True, governor_id=governor.id)
            logger.info("governor %s registered with %d cpus", governor.id, cpus)
        else:
            self._reply_hello(conn, False, f"Role {role} is not served on this port")
            conn.close()

    # -- clients ----------------------------------------------------------------------------
    def _on_client_frame(self, conn, client, frame):
        request_id = 0
        try:
            with R.ClientRequest.from_bytes(frame,
                                            traversal_limit_in_words=TRAVERSAL_LIMIT) as req:
                request_id = req.requestId
                self._dispatch_client(client, request_id, req)
        except (RequestError, ProtocolError) as exc:
            self.comm.reply(client, request_id, "error", exc)
        except Exception as exc:
            if request_id == 0:
                # Undecodable: the client cannot even learn which request failed.
                logger.info("malformed frame from client %s: %s", client.id, exc)
                self.comm.reply(client, 0, "error",
                                ProtocolError(f"Malformed request: {exc}"))
                conn.flush()
                conn.close()
                return
            logger.exception("request %s of client %s failed", request_id, client.id)
            self.comm.reply(client, request_id, "error",
                            RequestError(f"Internal server error: {exc!r}"))

    def _dispatch_client(self, client, request_id, req):
        which = req.which()
        core = self.core
        if which == "submit":
            submit = req.submit
            comm = self.comm
            comm.hold_turn()
            try:
                core.submit_batch(client, submit.session, decode_submit(submit))
            finally:
                comm.end_turn_now()
            comm.reply(client, request_id, "ok", None)
        elif which == "wait":
            ids = req.wait
            core.wait(client, request_id, ids.session, list(ids.tasks), list(ids.objects))
        elif which == "waitSome":
            ids = req.waitSome
            core.wait(client, request_id, ids.session, list(ids.tasks), list(ids.objects),
                      some=True)
        elif which == "waitAll":
            core.wait_all(client, request_id, req.waitAll)
        elif which == "fetch":
            core.fetch(client, request_id, req.fetch.session, req.fetch.id)
        elif which == "getState":
            ids = req.getState
            items = core.get_state(client, ids.session, list(ids.tasks), list(ids.objects))
            self.comm.reply(client, request_id, "state", items)
        elif which == "unkeep":
            ids = req.unkeep
            core.unkeep(client, ids.session, list(ids.objects))
            self.comm.reply(client, request_id, "ok", None)
        elif which == "newSession":
            spec = decode_cbor(req.newSession, "session spec", {})
            if not isinstance(spec, dict):
                raise RequestError("session spec must be a map")
            session_id = core.new_session(client, spec)
            self.comm.reply(client, request_id, "session", session_id)
        elif which == "closeSession":
            core.close_session(client, req.closeSession)
            self.comm.reply(client, request_id, "ok", None)
        elif which == "serverInfo":
            self._start_info_request(client, request_id)
        elif which == "subscribe":
            spec = decode_cbor(req.subscribe, "subscribe spec", {})
            session = spec.get("session", -1) if isinstance(spec, dict) else -1
            self.event_subscribers[client] = session
            self._listen_for_subscribers()
            self.comm.reply(client, request_id, "ok", None)
        else:
            raise ProtocolError(f"Unknown request {which!r}")

    def _listen_for_subscribers(self):
        """Be an event-log listener only while someone subscribed: a listener is called
        for every event, two per task."""
        listeners = self.events.listeners
        listening = self._push_event in listeners
        if self.event_subscribers and not listening:
            listeners.append(self._push_event)
        elif not self.event_subscribers and listening:
            listeners.remove(self._push_event)

    def _push_event(self, event):
        for client, session in self.event_subscribers.items():
            if session != -1 and event.get("session", session) != session:
                continue
            queue = client.subscriptions
            if queue is None:
                queue = client.subscriptions = []
                self.comm.loop.call_soon(self._flush_events, client)
            queue.append(event)

    def _flush_events(self, client):
        queue, client.subscriptions = client.subscriptions, None
        if queue and client.conn is not None and not client.conn.closed:
            msg = R.ServerToClient.new_message()
            try:
                msg.events = dumps_or_empty(queue)
            except Exception as exc:
                logger.error("events for client %s left out: cannot encode them (%r)",
                             client.id, exc)
                msg.events = dumps_or_empty([e for e in queue if _encodes_cbor(e)])
            client.conn.send(msg.to_bytes())

    # -- server info --------------------------------------------------------------------------
    def _start_info_request(self, client, request_id):
        governors = [g for g in self.core.governors.values() if g.conn is not None]
        number = self._next_info_request
        self._next_info_request += 1
        pending = [client, {g.id for g in governors}, {}, request_id, number]
        self._info_requests[number] = pending
        for governor in governors:
            msg = R.ServerToGovernor.new_message()
            msg.infoRequest = number
            governor.conn.send(msg.to_bytes())
        self._maybe_finish_info(pending)

    def _maybe_finish_info(self, pending):
        client, waiting, results, request_id, number = pending
        if waiting or number not in self._info_requests:
            return
        del self._info_requests[number]
        governors = []
        for governor in self.core.governors.values():
            held = results.get(governor.id)
            if held is None:
                continue
            tasks, objects, to_delete = held
            governors.append({
                "governor_id": governor.id,
                "tasks": tasks,
                "objects": objects,
                "objects_to_delete": to_delete,
                "resources": {"cpus": governor.cpus, **governor.resources},
            })
        self.comm.reply(client, request_id, "serverInfo", {"governors": governors})

    # -- governors ----------------------------------------------------------------------------
    def _on_governor_frame(self, conn, governor, frame):
        governor.heard = True
        with R.GovernorToServer.from_bytes(frame,
                                           traversal_limit_in_words=TRAVERSAL_LIMIT) as msg:
            which = msg.which()
            if which == "update":
                objects, tasks = decode_governor_update(msg.update)
                if objects:
                    self.core.on_object_updates(governor, objects)
                if tasks:
                    self.core.on_task_updates(governor, tasks)
            elif which == "info":
                info = msg.info
                pending = self._info_requests.get(info.requestId)
                if pending is not None:
                    pending[2][governor.id] = (
                        [[i.session, i.id] for i in info.tasks],
                        [[i.session, i.id] for i in info.objects],
                        [[i.session, i.id] for i in info.objectsToDelete])
                    pending[1].discard(governor.id)
                    self._maybe_finish_info(pending)
            elif which == "heartbeat":
                pass                     # ``heard`` is all it is for
            elif which == "draining":
                self.core.drain_governor(governor)
            elif which == "monitoring":
                data = loads_or(msg.monitoring, {})
                if isinstance(data, dict):
                    data["type"] = "Monitoring"
                    data["governor"] = governor.id
                    self.events.add(data)
            else:
                raise ProtocolError(f"Unknown governor message {which!r}")


# ----------------------------------------------------------------------------------------------
# Encoding and decoding

def decode_submit(submit):
    """The ``SubmitBatch`` of a ``Submit`` message (rows or columns checked for shape)."""
    try:
        rows = submit.rows
        batch = read_rows(rows) if rows else read_submit(submit.tasks, submit.objects)
        if submit.uploads:
            read_uploads(submit.uploads, batch)
        return batch
    except capnp.KjException as exc:
        # e.g. a list of task structs where a column struct belongs: a client built
        # against another version of the schema
        raise RequestError(f"Malformed submit (not the columnar format of this server): "
                           f"{getattr(exc, 'description', exc)}") from None


def _set_error(error, exc):
    error.message = str(exc)
    if isinstance(exc, SessionFailed):
        error.kind = "session"
        error.task = exc.task_id
        error.debug = exc.debug or ""
    else:
        error.kind = "request"
        error.task = -1


def encode_response(request_id, kind, payload):
    msg = R.ServerToClient.new_message()
    resp = msg.init("response")
    resp.requestId = request_id
    if kind == "ok":
        resp.ok = None
    elif kind == "error":
        _set_error(resp.init("error"), payload)
    elif kind == "session":
        resp.session = payload
    elif kind == "some":
        tasks, objects = payload
        state = resp.init("state")
        tl = state.init("tasks", len(tasks))
        for i, tid in enumerate(tasks):
            tl[i].id = tid
            tl[i].state = TASK_STATE_NAMES[FINISHED]
        ol = state.init("objects", len(objects))
        for i, oid in enumerate(objects):
            ol[i].id = oid
            ol[i].state = OBJECT_STATE_NAMES[OBJ_FINISHED]
    elif kind == "state":
        tasks = [i for i in payload if isinstance(i, Task)]
        objects = [i for i in payload if not isinstance(i, Task)]
        state = resp.init("state")
        tl = state.init("tasks", len(tasks))
        for i, task in enumerate(tasks):
            entry = tl[i]
            entry.id = task.id
            entry.state = TASK_STATE_NAMES[task.state]
            entry.info = dumps_or_empty(task.info)
        ol = state.init("objects", len(objects))
        for i, obj in enumerate(objects):
            entry = ol[i]
            entry.id = obj.id
            entry.state = OBJECT_STATE_NAMES[obj.state]
            info = loads_or(obj.info, {}) or {}
            if obj.size >= 0:
                info["size"] = obj.size
            if obj.content_type:
                info.setdefault("content_type", obj.content_type)
            entry.info = dumps_or_empty(info)
    elif kind == "fetch":
        obj, data, location = payload
        fetch = resp.init("fetch")
        info = loads_or(obj.info, {}) or {}
        info["size"] = obj.size
        fetch.info = dumps_or_empty(info)
        fetch.dataType = "directory" if obj.data_type == 1 else "blob"
        fetch.contentType = obj.content_type or ""
        fetch.size = obj.size
        if data is not None:
            fetch.data = data
        else:
            fetch.location = location
    elif kind == "serverInfo":
        resp.serverInfo = dumps_or_empty(payload)
    else:
        raise ValueError(kind)
    return msg.to_bytes()


def decode_governor_update(update):
    """``(objects, tasks)`` of an update, as ``ServerCore.on_object_updates`` and
    ``on_task_updates`` take them."""
    # Each field read is a pycapnp call (~0.4 us): read each once.
    try:
        rows = update.rows
        if rows:
            return update_columns.read_rows(rows)
        ids = update.objectIds
        objects = update_columns.decode_objects(
            ids, update.objectStates, update.objectSizes, update.objectDetails) if ids else ()
        ids = update.taskIds
        tasks = update_columns.decode_tasks(
            ids, update.taskStates, update.taskInfos) if ids else ()
    except update_columns.ColumnError as exc:
        raise ProtocolError(f"malformed governor update: {exc}") from None
    return objects, tasks


# Ids taken with ``map(_ID, ...)``: a comprehension would be one more function to run
# for each of a one-task round trip's messages (see benchmarks/RESULTS.md).
_ID = attrgetter("id")


def _assigned_object_rows(objects):
    """Rows for ``assign_columns`` of the objects not removed meanwhile: an object whose
    bytes the server holds (a constant, a small result) carries them, any other finished
    object the governors that hold it."""
    return [((o.session.id, o.id), o.label, o.content_type, o.data_type, o.user or b"",
             o.size, list(map(_ID, o.locations)) if o.data is None
             and o.state == OBJ_FINISHED and o.locations else [], o.data)
            for o in objects if o.state != REMOVED]


def _encodes(object_rows, task_rows):
    """Whether these assignment rows encode, as rows and as columns."""
    try:
        msg = R.ServerToGovernor.new_message()
        msg.init("assign").rows = assign_columns.pack_rows(object_rows, task_rows)
        msg.to_bytes()
        msg = R.ServerToGovernor.new_message()
        assign_columns.fill_columns(msg.init("assign"), object_rows, task_rows)
        msg.to_bytes()
    except Exception:
        return False
    return True


def _encodes_cbor(value):
    try:
        dumps_or_empty(value)
    except Exception:
        return False
    return True


def _assigned_task_rows(governor, tasks):
    """Rows for ``assign_columns`` of the tasks still assigned to ``governor``."""
    return [((t.session.id, t.id), t.task_type, t.name, t.cpus, t.config or b"",
             list(map(_ID, t.inputs)), t.input_labels, list(map(_ID, t.outputs)),
             dumps_or_empty(t.resources) if t.resources else b"", t.user or b"")
            for t in tasks if t.governor is governor and t.state == ASSIGNED]


def encode_governor_work(governor):
    """Frames for everything queued for one governor: stops and deletes first, then one
    assignment with objects before the tasks that use them."""
    frames = []
    if governor.out_stop:
        msg = R.ServerToGovernor.new_message()
        msg.stopTasks = assign_columns.pack_keys(governor.out_stop)
        governor.out_stop = []
        frames.append(msg.to_bytes())
    if governor.out_delete:
        msg = R.ServerToGovernor.new_message()
        msg.deleteObjects = assign_columns.pack_keys(governor.out_delete)
        governor.out_delete = []
        frames.append(msg.to_bytes())
    if governor.out_tasks or governor.out_objects:
        msg = R.ServerToGovernor.new_message()
        assign = msg.init("assign")
        object_rows = _assigned_object_rows(governor.out_objects)
        task_rows = _assigned_task_rows(governor, governor.out_tasks)
        if len(object_rows) + len(task_rows) <= ROWS_MAX:
            assign.rows = assign_columns.pack_rows(object_rows, task_rows)
        else:
            assign_columns.fill_columns(assign, object_rows, task_rows)
        governor.out_objects = []
        governor.out_tasks = []
        frames.append(msg.to_bytes())
    return frames
