"""The client's connection to the server.

Rain's client API is synchronous, and it must also work inside a Jupyter kernel whose main
thread already runs an event loop. So each ``Client`` owns a daemon thread with its own
asyncio loop (connecting, fetching from governors). A synchronous call encodes its request
and writes it to the socket in the caller's own thread, then waits for the reply in one of
two ways:

- *Direct* (until someone subscribes to events): the waiting caller reads the socket
  itself, so the reply wakes that thread alone. Handing each reply over from an I/O thread
  cost a second wake-up per request, which on a small virtual machine is most of a short
  round trip. With several calling threads, one reads for all (the others wait on a
  condition and are woken when their reply has been read).
- *Through the I/O thread*, from the first ``subscribe_events`` on: pushed events must
  arrive while no caller waits, so the loop reads everything and resolves each caller's
  reply (``_Reply``). Events are delivered to subscribers on the loop thread
  (subscribers must not block).
"""
import asyncio
import logging
import os
import select
import threading
import time

from ..capnp import PROTOCOL_VERSION, TRAVERSAL_LIMIT, rain_capnp
from ..common.cbor import loads_or
from ..common.errors import RainException
from ..common.frame_reader import FrameReader
from ..common.framing import FrameProtocol, encode_frame, hello_future
from ..transfer.peer import PeerPool, TransferError
from ..transfer.sinks import FileSink, finish_directory
from ..transfer.upload import drop, upload

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


#: How long a caller reading directly waits in one ``select`` before looking whether the
#: I/O thread took over (seconds).
READ_SLICE = 0.2


class _Reply:
    """One request's reply, set by whichever thread reads it. Lighter than a
    ``concurrent.futures.Future``: most replies are read by the waiting caller itself, so a
    thread event is made only when the caller must wait for another thread."""

    __slots__ = ("_value", "_error", "_done", "_event")

    def __init__(self):
        self._done = False
        self._event = None

    def done(self):
        return self._done

    def set_result(self, value):
        self._value, self._error = value, None
        self._finish()

    def set_exception(self, error):
        self._value, self._error = None, error
        self._finish()

    def _finish(self):
        self._done = True           # before looking for an event (see ``result``)
        event = self._event
        if event is not None:
            event.set()

    def result(self, timeout=None):
        if not self._done:
            if self._event is None:
                self._event = threading.Event()     # before looking at ``_done`` again
            if not self._done and not self._event.wait(timeout):
                raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


class _HandedOver(Exception):
    """The I/O thread reads from now on; the caller waits for its future instead."""


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
    """``tls``: a ``rain.tls.Tls`` to speak TLS with (None: plain TCP). Over TLS the I/O
    thread reads and writes everything: a caller cannot use the socket directly."""

    def __init__(self, host, port, token="", tls=None):
        self.host = host
        self.port = port
        self.token = token
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="rain-client-io", daemon=True)
        self._pending = {}
        self._next_request = 1
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._fd = None       # the connection's socket, written by callers (see _write)
        # callers read their own replies (see the module docstring); not over TLS
        self._direct = tls is None
        # Entered directly (a C call) on the common path; the condition on it is notified
        # only when some thread waits on it (``_read_waiters``).
        self._read_lock = threading.Lock()
        self._read_cond = threading.Condition(self._read_lock)
        self._read_waiters = 0
        self._reading = False           # a caller is reading for everyone
        self._read_deadline = None
        self._frames = FrameReader(self._recv_direct)
        self.conn = None
        self.closed = False
        self._last_words = ""    # the server's error for the whole connection, if any
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
        self.peers = PeerPool(self.token, self.tls)
        self._hello = hello_future(self.loop)
        factory = lambda: FrameProtocol(self._on_frame, self._on_close)  # noqa: E731
        try:
            if self.tls is None:
                _transport, self.conn = await self.loop.create_connection(
                    factory, self.host, self.port)
            else:
                _transport, self.conn = await self.tls.connect(self.loop, factory,
                                                               self.host, self.port)
        except OSError as exc:
            raise RainException(f"Cannot connect to the Rain server at "
                                f"{self.host}:{self.port}: {exc.strerror or exc}") from None
        hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, token=self.token,
                                    role="client")
        self.conn.send(hello.to_bytes())
        ok, error = await self._hello
        if not ok:
            hint = ""
            if error.startswith("Authentication"):
                hint = (" (the token of a server of this user on this machine is found by "
                        "itself; for any other, set RAIN_TOKEN or pass Client(..., token=))")
            raise RainException(f"The server refused the connection: {error}{hint}")
        self._fd = _transport.get_extra_info("socket").fileno()
        if not self._direct:
            return
        # poll, not select: a process may well have more than FD_SETSIZE files open
        self._readable = select.poll()
        self._readable.register(self._fd, select.POLLIN)
        # Callers read their replies (the server sends nothing unasked after the hello).
        _transport.pause_reading()

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
                self._last_words = str(value)
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
            hint = "" if self.tls is not None else (
                " (a TLS server closes plain connections so: give its certificate with "
                "RAIN_TLS_CERT or its fingerprint with RAIN_TLS_PIN)")
            self._hello.set_exception(RainException(
                f"The server closed the connection before answering{hint}"))
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(
                    f"Connection to the server was lost: {self._last_words}"
                    if self._last_words else "Connection to the server was lost"))

    # -- caller side ----------------------------------------------------------------------------
    def _send_request(self, fill):
        """Send a request built by ``fill(request_builder)``; return a future of its reply
        (resolved only while someone reads: see ``request``)."""
        if self.closed:
            raise ConnectionLost("The client is not connected (closed or server lost)")
        future = _Reply()
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
        The loop thread reads this socket, if at all, but never writes it after the hello."""
        if not self._direct:
            self._write_on_loop(frame)
            return
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
                    writable = select.poll()
                    writable.register(fd, select.POLLOUT)
                    writable.poll(1000)
                    continue
                while sent and pending:
                    head = pending[0]
                    if sent >= len(head):
                        sent -= len(head)
                        pending.pop(0)
                    else:
                        pending[0] = head[sent:]
                        sent = 0

    def _write_on_loop(self, frame):
        """Over TLS: the I/O thread writes; the caller waits until the frame is taken
        (below the transport's high-water mark), as a direct write would. Each frame is
        queued whole on the loop, so callers need no lock (and must hold none: the loop
        takes ``_send_lock`` when the connection closes)."""
        if self._fd is None or self.conn.closed:
            raise ConnectionResetError("connection closed")
        self._on_loop(self._send_and_drain(frame)).result()

    async def _send_and_drain(self, frame):
        conn = self.conn
        if conn.closed:
            raise ConnectionResetError("connection closed")
        conn.send_now((frame,))
        await conn.drain()

    def request(self, fill, timeout=None):
        """Send a request built by ``fill(request_builder)`` and wait for its reply (a
        ``TimeoutError`` after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        future = self._send_request(fill)
        if self._direct:
            self._read_until(future, deadline)
        if deadline is not None:
            timeout = max(0.0, deadline - time.monotonic())
        return future.result(timeout)

    # -- direct reading -----------------------------------------------------------------------
    def _read_until(self, future, deadline):
        """Read frames in this thread until ``future`` has its reply, unless another caller
        is reading (then wait until it has read ours or stopped)."""
        lock = self._read_lock
        with lock:
            while self._reading and not future.done():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                self._wait_read(remaining)
            if future.done() or not self._direct:
                return
            self._reading = True
        try:
            self._read_deadline = deadline
            while not future.done():
                try:
                    frame = self._frames.next()
                except _HandedOver:
                    return
                except TimeoutError:        # the caller's deadline (an OSError too)
                    raise
                except (OSError, ValueError) as exc:   # a broken socket or a bad frame
                    self._lost_direct(exc)
                    return
                if frame is None:
                    self._lost_direct(None)
                    return
                try:
                    self._on_frame(self.conn, frame)
                except Exception as exc:
                    logger.error("malformed message from the server: %s", exc)
                    self._lost_direct(exc)
                    return
                if not future.done():
                    with lock:             # it may be another waiting caller's
                        if self._read_waiters:
                            self._read_cond.notify_all()
        finally:
            with lock:
                self._reading = False
                if self._read_waiters:
                    self._read_cond.notify_all()

    def _wait_read(self, timeout=None):
        """Wait on the read condition (its lock held)."""
        self._read_waiters += 1
        try:
            self._read_cond.wait(timeout)
        finally:
            self._read_waiters -= 1

    def _recv_direct(self, want):
        """One read for ``FrameReader``: waits in slices of ``READ_SLICE`` to notice the
        I/O thread taking over and the caller's deadline. It waits before it reads: the
        reader asks for more only when all it had is used, so a reply is rarely there yet
        and a read tried first would mostly cost a system call for nothing."""
        while True:
            fd = self._fd
            if fd is None:
                return b""
            if not self._direct:
                raise _HandedOver
            timeout = READ_SLICE
            if self._read_deadline is not None:
                remaining = self._read_deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                timeout = min(timeout, remaining)
            if not self._readable.poll(timeout * 1000):
                continue
            try:
                return os.read(fd, want)
            except BlockingIOError:     # woken for nothing
                pass

    def _lost_direct(self, exc):
        """End of file or a broken connection, seen by a reading caller."""
        self._on_close(self.conn, exc)
        try:
            self.loop.call_soon_threadsafe(self.conn.transport.abort)
        except RuntimeError:        # the client was closed meanwhile: nothing to abort
            pass

    def use_io_thread(self):
        """Let the I/O thread read everything from now on (before the first event
        subscription: events arrive while no caller waits). Irreversible."""
        with self._read_lock:
            if not self._direct:
                return
            self._direct = False
            while self._reading:        # the reading caller stops within READ_SLICE
                self._wait_read()
            leftover = self._frames.take_buffered()
        conn = self.conn

        def resume():
            if conn.closed:
                return
            if leftover:
                conn.data_received(leftover)
            conn.transport.resume_reading()

        self.loop.call_soon_threadsafe(resume)

    def fetch_from_governor(self, address, key):
        """Fetch object bytes straight from the governor that holds them."""
        try:
            return self._on_loop(self.peers.fetch(address, key)).result()
        except (TransferError, OSError) as exc:
            raise RainException(f"Fetching object {key} from governor {address} failed: "
                                f"{exc}") from None

    def fetch_to_path(self, address, key, path):
        """Stream an object from the governor that holds it into ``path`` (a file, or a
        directory for a directory object) as it arrives; nothing is left on failure."""
        async def fetch():
            sink = FileSink(path)
            meta = await self.peers.fetch_into(address, key, sink)
            if meta["data_type"] == 1:
                await finish_directory(sink)
            return meta

        try:
            return self._on_loop(fetch()).result()
        except (TransferError, OSError) as exc:
            raise RainException(f"Fetching object {key} from governor {address} into "
                                f"{path!r} failed: {exc}") from None

    def upload_to_governor(self, address, key, source, label, content_type):
        """Stream a big constant into the store of the governor at ``address``; returns
        the size stored there."""
        try:
            return self._on_loop(upload(address, self.token, key, source, label,
                                        content_type, self.tls)).result()
        except (TransferError, OSError) as exc:
            raise RainException(f"Uploading object {key} to governor {address} failed: "
                                f"{exc}") from None

    def drop_upload(self, address, key):
        try:
            self._on_loop(drop(address, self.token, key, self.tls)).result()
        except (TransferError, OSError) as exc:
            raise RainException(f"Dropping object {key} from governor {address} failed: "
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
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()       # its selector and wake-up pipe are file descriptors
        self.thread = None
