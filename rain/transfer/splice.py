"""Receiving a body from the socket straight into its file with ``splice``.

A body read by the frame protocol is copied twice: from the socket into the receive
buffer, then from there into the page cache. ``splice`` moves the socket's bytes into a
pipe by reference (over loopback they can be the sender's own page-cache pages) and from
the pipe into the file: one copy, done by the kernel. On the 2-core machine of the
recorded runs a plain loopback copy was 1.0 to 2.0 times as fast this way as with
``recv_into`` and ``write`` (``benchmarks/transfer.py``, its splice row; ``transfer.md``).

Used for blobs stored without holes (``DataReply.dense``: the receiver cannot see zeros
it does not read, and a sparse file must stay sparse) over plain TCP (the kernel cannot
decrypt TLS), into sinks that write a file (``Sink.spliceable``). The frame protocol hands
its socket over for the body (``FrameProtocol.hand_over``); everything runs on the event
loop, woken by the socket's readiness.
"""
import asyncio
import fcntl
import logging
import os
import socket

from ..common.framing import HEADER_SIZE, LOW_WATER
from .sinks import CHUNK_SIZE, TransferError

logger = logging.getLogger(__name__)

#: Bytes a pipe holds between the socket and the file (``F_SETPIPE_SZ``; the default limit
#: for ordinary users). Larger pipes made fewer, cheaper moves in the measurements above.
PIPE_SIZE = 1 << 20
#: Bytes moved per wake-up at most, so that other connections get their turn.
TURN_BYTES = 4 * CHUNK_SIZE
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def splice_body(conn, dense, size, sink, done):
    """Have the next ``size`` bytes of body read from ``conn`` into ``sink`` by splice
    (``SplicedBody``, calling ``done(error)``) when they may go that way: a blob without
    holes (``dense``) of a chunk or more, into a sink that takes pipe bytes, over a
    connection that can hand its socket over. Call from ``on_frame``, after
    ``sink.begin``; otherwise the frames come to ``on_frame`` as usual."""
    if dense and size >= CHUNK_SIZE and sink.spliceable and conn.can_hand_over:
        conn.hand_over(SplicedBody(conn, size, sink, done))


class FrameSizes:
    """The payload sizes of a ``size``-byte body's frames, next first (see ``stream``);
    counted, not listed: the size comes from the peer."""

    def __init__(self, size):
        full, self.last = divmod(size, CHUNK_SIZE)
        self.left = full + 1                    # frames still to come
        self.wire_bytes = size + HEADER_SIZE * self.left

    def __bool__(self):
        return self.left > 0

    def pop(self):
        self.left -= 1
        return CHUNK_SIZE if self.left else self.last


class SplicedBody:
    """One body of ``size`` bytes moved from ``conn``'s socket into ``sink`` by ``splice``.

    Bytes go to the sink as long as it is ``spliceable`` (an aborted sink is not) and has
    taken every byte before; after its first error the rest of the body is read and
    dropped. Once the whole body was read, ``done(error)`` is called with that error or
    None. If the connection fails first, it is closed, and its owner learns it as of any
    lost connection.
    """

    def __init__(self, conn, size, sink, done):
        self.conn = conn
        self.sink = sink
        self.done = done
        self.error = None
        self.size = size
        self.frames = FrameSizes(size)    # payload sizes still to come
        self.header = bytearray()         # the next frame's header, as far as read
        self.payload_left = 0             # bytes of the current frame's payload to come
        self.wire_left = self.frames.wire_bytes
        self.sock = None                  # our own duplicate of the connection's socket
        self.pipe = None                  # (read end, write end)
        self.devnull = None               # where dropped bytes go
        self.low_water = None
        self.loop = None

    # -- called by the frame protocol --------------------------------------------------
    def start(self, unread):
        """Take the bytes read already, then wait for the socket."""
        self.loop = asyncio.get_running_loop()
        logger.debug("receiving a body of %d bytes from %s by splice", self.size,
                     self.conn.peer)
        try:
            used = self._take(unread)
        except _BadBody as exc:
            self._lost(f"bad body: {exc}", logging.WARNING)
            return
        if self._finished():
            self._finish(unread[used:])
            return
        try:
            self.sock = self.conn.transport.get_extra_info("socket").dup()
            self.sock.setblocking(False)
            self.pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(self.pipe[1], _F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:          # above the system's limit: the default size works
                pass
            self.loop.add_reader(self.sock.fileno(), self._readable)
        except OSError as exc:
            self._lost(f"cannot read the body: {exc}")
            return
        self._set_low_water()

    def stop(self):
        """The connection is gone: release what we hold (the owner fails the transfer)."""
        if self.sock is not None:
            try:
                self.loop.remove_reader(self.sock.fileno())
            except (ValueError, OSError):
                pass
            self.sock.close()
            self.sock = None
        for fd in self.pipe or ():
            os.close(fd)
        self.pipe = None
        if self.devnull is not None:
            os.close(self.devnull)
            self.devnull = None

    # -- reading ------------------------------------------------------------------------
    def _take(self, data):
        """Consume what ``data`` holds of the body (headers and payload); returns how many
        bytes that was."""
        used = 0
        with memoryview(data) as view:
            while used < len(view) and not self._finished():
                if self.payload_left:
                    piece = view[used:used + self.payload_left]
                    self._write(piece)
                    count = len(piece)
                    self.payload_left -= count
                else:
                    count = min(HEADER_SIZE - len(self.header), len(view) - used)
                    self.header += view[used:used + count]
                    self._header_read()
                used += count
                self.wire_left -= count
        return used

    def _header_read(self):
        if len(self.header) < HEADER_SIZE:
            return
        length = int.from_bytes(self.header, "little")
        expected = self.frames.pop()
        self.header.clear()
        if length != expected:
            raise _BadBody(f"a frame of {length} bytes where the body's next has "
                           f"{expected}")
        self.payload_left = length

    def _finished(self):
        return not self.frames and not self.payload_left and not self.header

    def _readable(self):
        moved = 0
        try:
            while not self._finished() and moved < TURN_BYTES:
                if self.payload_left:
                    count = self._splice()
                else:
                    data = self.sock.recv(HEADER_SIZE - len(self.header))
                    if not data:
                        raise _Lost("the peer closed the connection")
                    self.header += data
                    count = len(data)
                    self._header_read()
                moved += count
                self.wire_left -= count
        except (BlockingIOError, InterruptedError):
            pass
        except _BadBody as exc:
            self._lost(f"bad body: {exc}", logging.WARNING)
            return
        except (_Lost, OSError) as exc:
            self._lost(str(exc))
            return
        if self._finished():
            self._finish(b"")
        else:
            self._set_low_water()

    def _splice(self):
        """Move what the socket has of this frame into the pipe, then into the sink."""
        read_end, write_end = self.pipe
        count = os.splice(self.sock.fileno(), write_end, min(self.payload_left, PIPE_SIZE),
                          flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        if not count:
            raise _Lost("the peer closed the connection")
        self.payload_left -= count
        if self._taking():
            try:
                self.sink.write_from_pipe(read_end, count)
                return count
            except Exception as exc:   # a full disk: the body is read to its end anyway
                self.error = exc
        self._drop_pipe()
        return count

    def _taking(self):
        return self.error is None and self.sink.spliceable

    def _drop_pipe(self):
        """Empty the pipe into /dev/null (the bytes of a failed transfer)."""
        if self.devnull is None:
            self.devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        read_end = self.pipe[0]
        while True:
            try:
                if not os.splice(read_end, self.devnull, PIPE_SIZE,
                                 flags=os.SPLICE_F_NONBLOCK):
                    return
            except BlockingIOError:
                return

    def _write(self, piece):
        if self._taking():
            try:
                self.sink.write(piece)
            except Exception as exc:
                self.error = exc

    def _set_low_water(self):
        """Wake up only once ``LOW_WATER`` bytes (or the rest of the body, which the peer
        sends for sure) are there."""
        low_water = max(1, min(self.wire_left, LOW_WATER))
        if low_water != self.low_water and self.sock is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, low_water)
                self.low_water = low_water
            except OSError:
                pass

    # -- the end ------------------------------------------------------------------------
    def _finish(self, rest):
        self.stop()
        try:
            self.done(self.error)
        finally:
            self.conn.take_back(rest)

    def _lost(self, reason, level=logging.INFO):
        logger.log(level, "closing the data connection with %s: %s", self.conn.peer, reason)
        self.stop()
        self.conn.close()


class _Lost(Exception):
    pass


class _BadBody(TransferError):
    pass
