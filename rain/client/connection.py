"""The client's connection to the server, run by one background I/O thread.

Rain's client API is synchronous, and it must also work inside a Jupyter kernel whose main
thread already runs an event loop. So each ``Client`` owns a daemon thread with its own
asyncio loop that reads the connection; a synchronous call encodes its request and writes
it to the socket in the caller's own thread (no hand-over to the loop thread, which would
cost a thread wake-up per request), then blocks on a ``concurrent.futures`` future that
the loop resolves when the reply arrives. Pushed server events are delivered to
subscribers on the loop thread (subscribers must not block).
"""
import asyncio
import concurrent.futures
import logging
import os
import select
import threading

from ..capnp import PROTOCOL_VERSION, TRAVERSAL_LIMIT, rain_capnp
from ..common.cbor import loads_or
from ..common.errors import RainException
from ..common.framing import FrameProtocol, encode_frame
from ..governor.transfer import PeerPool, TransferError

logger = logging.getLogger(__name__)
R = rain_capnp


class ServerError(RainException):
    """An error reply of the server; ``kind`` is request, session or server."""

    def __init__(self, message, kind="request", task_id=-1, debug=""):
        super().__init__(message)
        self.kind = kind
        self.task_id = task_id
        self.debug = debug


class ConnectionLost(RainException):
    pass


def decode_response(resp):
    """Turn a ``ServerResponse`` into a Python value (or a ServerError to raise)."""
    which = resp.which()
    if which == "ok":
        return None
    if which == "error":
        e = resp.error
        return ServerError(e.message, str(e.kind), e.task, e.debug)
    if which == "session":
        return resp.session
    if which == "state":
        state = resp.state
        return ([(t.id, str(t.state), t.info) for t in state.tasks],
                [(o.id, str(o.state), o.info) for o in state.objects])
    if which == "fetch":
        f = resp.fetch
        kind = f.which()
        return {"info": loads_or(f.info, {}), "data_type": str(f.dataType),
                "content_type": f.contentType or None, "size": f.size,
                "data": f.data if kind == "data" else None,
                "location": f.location if kind == "location" else None}
    if which == "serverInfo":
        return loads_or(resp.serverInfo, {})
    return ServerError(f"unexpected response {which!r}", "server")


class ServerConnection:
    def __init__(self, host, port, token=""):
        self.host = host
        self.port = port
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="rain-client-io", daemon=True)
        self._pending = {}
        self._next_request = 1
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._fd = None       # the connection's socket, written by callers (see _write)
        self.conn = None
        self.closed = False
        self.event_listeners = []
        self.peers = None
        self._started = threading.Event()
        self.thread.start()
        self._started.wait()
        try:
            self._on_loop(self._connect()).result()
        except BaseException:
            self.close()
            raise

    # -- loop thread --------------------------------------------------------------------------
    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def _on_loop(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def _connect(self):
        self.peers = PeerPool(self.token)
        self._hello = self.loop.create_future()
        try:
            _transport, self.conn = await self.loop.create_connection(
                lambda: FrameProtocol(self._on_frame, self._on_close), self.host, self.port)
        except OSError as exc:
            raise RainException(f"Cannot connect to the Rain server at "
                                f"{self.host}:{self.port}: {exc.strerror or exc}") from None
        hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, token=self.token,
                                    role="client")
        self.conn.send(hello.to_bytes())
        ok, error = await self._hello
        if not ok:
            raise RainException(f"The server refused the connection: {error}")
        self._fd = _transport.get_extra_info("socket").fileno()

    def _on_frame(self, conn, frame):
        if not self._hello.done():
            with R.HelloReply.from_bytes(frame) as reply:
                self._hello.set_result((reply.ok, reply.error))
            return
        with R.ServerToClient.from_bytes(frame,
                                         traversal_limit_in_words=TRAVERSAL_LIMIT) as msg:
            if msg.which() == "events":
                events = loads_or(msg.events, [])
                for listener in list(self.event_listeners):
                    try:
                        listener(events)
                    except Exception:
                        logger.exception("event listener failed")
                return
            resp = msg.response
            request_id = resp.requestId
            value = decode_response(resp)
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is None:
            if isinstance(value, ServerError) and request_id == 0:
                logger.error("server error: %s", value)
            return
        if isinstance(value, ServerError):
            future.set_exception(value)
        else:
            future.set_result(value)

    def _on_close(self, conn, exc):
        # Runs before the transport closes the socket: no caller writes to it after this.
        with self._send_lock:
            self._fd = None
        self.closed = True
        if not self._hello.done():
            self._hello.set_exception(RainException("The server closed the connection"))
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost("Connection to the server was lost"))

    # -- caller side ----------------------------------------------------------------------------
    def request_async(self, fill):
        """Send a request built by ``fill(request_builder)``; return a future of its reply."""
        if self.closed:
            raise ConnectionLost("The client is not connected (closed or server lost)")
        future = concurrent.futures.Future()
        with self._lock:
            request_id = self._next_request
            self._next_request += 1
            self._pending[request_id] = future
        msg = R.ClientRequest.new_message(requestId=request_id)
        fill(msg)
        frame = msg.to_bytes()
        try:
            self._write(frame)
        except OSError:
            with self._lock:
                self._pending.pop(request_id, None)
            raise ConnectionLost("Connection to the server was lost") from None
        return future

    def _write(self, frame):
        """Write one frame from the caller's thread; waits while the socket's buffer is
        full (a big submit), so a fast producer is held back by the server's reading.
        The loop thread only reads this socket after the hello."""
        pending = [memoryview(encode_frame(frame)), memoryview(frame)]
        with self._send_lock:
            while pending:
                fd = self._fd
                # Closing (e.g. aborted) but not yet told: nobody would read the reply.
                if fd is None or self.conn.transport.is_closing():
                    raise ConnectionResetError("connection closed")
                try:
                    sent = os.writev(fd, pending)
                except BlockingIOError:
                    select.select([], [fd], [], 1.0)
                    continue
                while sent and pending:
                    head = pending[0]
                    if sent >= len(head):
                        sent -= len(head)
                        pending.pop(0)
                    else:
                        pending[0] = head[sent:]
                        sent = 0

    def request(self, fill, timeout=None):
        return self.request_async(fill).result(timeout)

    def fetch_from_governor(self, address, key):
        """Fetch object bytes straight from the governor that holds them."""
        try:
            return self._on_loop(self.peers.fetch(address, key)).result()
        except (TransferError, OSError) as exc:
            raise RainException(f"Fetching object {key} from governor {address} failed: "
                                f"{exc}") from None

    def close(self):
        if self.thread is None:
            return

        def shutdown():
            if self.conn is not None:
                self.conn.close()
            if self.peers is not None:
                self.peers.close()
            self.loop.call_later(0.01, self.loop.stop)

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(shutdown)
            if threading.current_thread() is not self.thread:
                self.thread.join(timeout=5)
        self.closed = True
        self.thread = None
