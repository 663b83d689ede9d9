"""Length-prefixed frames over asyncio transports, written once per event-loop turn.

Why Cap'n Proto messages in our own framing rather than pycapnp's RPC system: measured on
the 2-core reference machine (``python benchmarks/protocol_choice.py``, pycapnp 2.2.4,
Python 3.11; full table in ``benchmarks/protocol_choice.md``), client and server in two
processes on loopback:

=====================================  ==============  ===================
                                       pycapnp RPC     messages + framing
=====================================  ==============  ===================
submit of 10,000 tasks, per task       10.6 us         11.1 us
governor update, per update            25.4 us          6.3 us
round trip (median / p90)              154 / 211 us    86 / 97 us
=====================================  ==============  ===================

A submit costs the same either way (the time is in reading and writing struct fields from
Python), but every small message costs RPC four times as much and a round trip nearly
twice as long: the per-call promise and capability bookkeeping and the bridge between
pycapnp's KJ loop and asyncio. Small messages are the hot path of a running graph
(governor updates, assignments, waits), so we send plain messages and batch them.

A frame is a 4-byte little-endian unsigned length followed by that many bytes. Writes are
queued and flushed together by one ``loop.call_soon`` callback, so many messages produced
in the same turn of the loop leave in one system call, without a batching timer.

Nothing here buffers without bound: a peer that stops reading while frames keep coming
(a stalled dashboard subscribed to events, a client that never reads) is disconnected once
the transport holds more than ``max_write_buffer`` bytes, and bulk senders (object
transfers) wait on ``drain()``, which honours the transport's pause/resume. Nor does a
frame's header alone make us allocate: a frame longer than the connection's
``max_frame_size`` (set by its owner for the messages expected there) closes it, and the
receive buffer grows with the bytes that actually came, at most doubling per read, so a
peer announcing a gigabyte it never sends costs nothing.
"""
import asyncio
import logging
import socket

logger = logging.getLogger(__name__)

HEADER_SIZE = 4
#: Largest frame accepted from a peer (a garbage length must not make us allocate GiBs).
MAX_FRAME_SIZE = 2**31 - 1


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


class FrameTooLarge(FrameError):
    """A frame header announcing more than the connection accepts."""

    def __init__(self, length, limit):
        super().__init__(f"frame of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length
        self.limit = limit


def encode_frame(payload):
    """Return the header for ``payload`` (the payload itself is written separately)."""
    return len(payload).to_bytes(HEADER_SIZE, "little")


#: Free space offered to each read: small frames arrive many to a read.
READ_SIZE = 1 << 16
#: A receive buffer grown beyond this for a big frame is dropped once it is empty.
KEEP_SIZE = 1 << 18
#: Bytes a transport may hold for a peer that does not read before it is disconnected.
MAX_WRITE_BUFFER = 1 << 28
#: On bulk connections, while more of a big frame is to come, the loop is woken only once
#: this much of it (or all the rest) has arrived (``SO_RCVLOWAT``): otherwise every few
#: dozen kilobytes wake it, and waking costs more than reading.
LOW_WATER = 1 << 19


def hello_future(loop):
    """A future for the peer's answer to our hello, which nobody may ever wait for: a
    connection that fails after it was made but before the hello was sent (a TLS peer
    refused by its certificate) fails it on closing, and that is not reported as an error
    never retrieved. Whoever awaits it still gets the error."""
    future = loop.create_future()
    future.add_done_callback(_retrieved)
    return future


def _retrieved(future):
    if not future.cancelled():
        future.exception()


class FrameProtocol(asyncio.BufferedProtocol):
    """An asyncio protocol delivering whole frames to ``on_frame(protocol, frame)``.

    ``on_close(protocol, exc)`` is called once when the connection ends for any reason.
    Exceptions raised by ``on_frame`` close the connection (the handler decides what to
    tell the peer before raising).

    The socket is read into one buffer that lives as long as the connection
    (``recv_into``): reading into a fresh 256 KiB object each time, as plain protocols
    do, maps and unmaps memory on every read, which costs more than the read itself.
    """

    def __init__(self, on_frame, on_close=None, max_frame_size=MAX_FRAME_SIZE,
                 keep_size=KEEP_SIZE, max_write_buffer=MAX_WRITE_BUFFER, views=False):
        self.on_frame = on_frame
        # ``views``: frames are handed over as memoryviews of the receive buffer, valid
        # during the call only (released after it): bulk data goes to a file uncopied.
        self.views = views
        self.on_close = on_close
        self.max_frame_size = max_frame_size
        self.keep_size = keep_size       # a receiver of big frames keeps a big buffer
        self.max_write_buffer = max_write_buffer
        self.transport = None
        self.peer = None
        self.closed = False
        # Made at the first read and dropped when the connection is lost: a peer that
        # sends nothing, or is gone but still referred to (a timer), holds no buffer.
        self._buf = bytearray()
        self._start = 0             # unread bytes are self._buf[_start:_end]
        self._end = 0
        self._needed = HEADER_SIZE  # bytes from _start that make the next frame whole
        self._out = []
        self._flush_scheduled = False
        self._loop = None
        self.state = None  # owner's per-connection state
        self._drain_waiters = []
        self._paused = False
        self._sock = None            # bulk connections over plain TCP: for SO_RCVLOWAT
        self._low_water = 1
        self._reader = None          # who reads the socket instead (``hand_over``)

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.peer = transport.get_extra_info("peername")
        if self.views and transport.get_extra_info("sslcontext") is None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.type == socket.SOCK_STREAM and \
                    sock.family in (socket.AF_INET, socket.AF_INET6):
                self._sock = sock

    def get_buffer(self, sizehint):
        want = self._needed - (self._end - self._start)
        if want > READ_SIZE:
            # Towards a big frame by doubling, as its bytes come (see the module's doc).
            want = min(want, len(self._buf))
        want = max(READ_SIZE, want)
        self._reserve(want)
        # No read goes past the end of a big frame: the buffer is then empty once the
        # frame is delivered, instead of holding the start of the next one, which would
        # have to be moved to the front (megabytes per frame of a transfer).
        end = self._end
        return memoryview(self._buf)[end:end + want]

    def buffer_updated(self, nbytes):
        self._end += nbytes
        if self._end - self._start >= self._needed:
            self._deliver()
        if self._sock is not None and self._reader is None:
            self._set_low_water()

    def _set_low_water(self):
        """Wake the loop for the next ``LOW_WATER`` bytes of a big frame at once, never
        for more than the frame still needs (the peer may send nothing after it)."""
        rest = self._needed - (self._end - self._start)
        low_water = min(rest, LOW_WATER) if rest > READ_SIZE else 1
        if low_water != self._low_water and not self.closed:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, low_water)
                self._low_water = low_water
            except OSError:
                self._sock = None

    def data_received(self, data):
        """Feed bytes read elsewhere (e.g. by a thread that read the socket before)."""
        size = len(data)
        self._reserve(size)
        self._buf[self._end:self._end + size] = data
        self.buffer_updated(size)

    def _reserve(self, want):
        """Make ``want`` bytes free after the unread ones: move those to the front, into a
        bigger buffer if this one is too small."""
        buf, start, end = self._buf, self._start, self._end
        if len(buf) - end >= want:
            return
        unread = end - start
        if unread + want > len(buf):
            new = bytearray(max(unread + want, 2 * len(buf), 2 * READ_SIZE))
            new[:unread] = memoryview(buf)[start:end]
            self._buf = new
        else:
            # Same length: the buffer is not resized (a reader may still hold a view).
            buf[:unread] = buf[start:end]
        self._start, self._end = 0, unread

    def _deliver(self):
        buf = self._buf
        offset, end = self._start, self._end
        needed = HEADER_SIZE        # for the frame at ``offset`` to be whole
        try:
            with memoryview(buf) as view:
                while end - offset >= HEADER_SIZE:
                    length = int.from_bytes(view[offset:offset + HEADER_SIZE], "little")
                    if length > self.max_frame_size:
                        raise FrameTooLarge(length, self.max_frame_size)
                    frame_end = offset + HEADER_SIZE + length
                    if frame_end > end:
                        needed = HEADER_SIZE + length
                        break
                    if self.views:
                        frame = view[offset + HEADER_SIZE:frame_end]
                        offset = frame_end
                        if self.closed:
                            frame.release()
                            return
                        try:
                            self.on_frame(self, frame)
                        finally:
                            frame.release()
                        if self._reader is not None:
                            break
                        continue
                    frame = bytes(view[offset + HEADER_SIZE:frame_end])
                    offset = frame_end
                    if self.closed:
                        return
                    self.on_frame(self, frame)
        except Exception as exc:  # a bad peer must only lose its own connection
            if not isinstance(exc, FrameError):
                logger.debug("closing connection from %s: %s", self.peer, exc, exc_info=True)
            else:
                logger.info("closing connection from %s: %s", self.peer, exc)
            self._start = offset
            if isinstance(exc, FrameTooLarge):
                self._start = self._end = 0
                self.frame_too_large(exc)
            self.close()
            return
        if self._reader is not None:
            self._give_away(offset, end)
            return
        self._needed = needed
        if offset == end:
            self._start = self._end = 0
            if len(buf) > self.keep_size:     # grown for a big frame: do not keep it
                self._buf = bytearray(2 * READ_SIZE)
        else:
            self._start = offset

    # -- another reader of the socket ---------------------------------------------------
    @property
    def can_hand_over(self):
        """Whether ``hand_over`` may be called: a bulk connection over plain TCP."""
        return self._sock is not None and not self.closed

    def hand_over(self, reader):
        """From ``on_frame``: the bytes after this frame go to ``reader``, which reads them
        from the socket itself (``rain.transfer.splice``). Once ``on_frame`` returns,
        reading is paused and ``reader.start(unread)`` gets the bytes read already; the
        reader calls ``take_back(rest)`` when its part is done, with any bytes it read past
        it. If the connection is lost meanwhile, ``reader.stop()`` is called."""
        if not self.can_hand_over or self._reader is not None:
            raise RuntimeError("this connection cannot hand its socket over")
        self._reader = reader

    def _give_away(self, offset, end):
        with memoryview(self._buf) as view:
            unread = bytes(view[offset:end])
        self._start = self._end = 0
        self._needed = HEADER_SIZE
        self.transport.pause_reading()
        self._reader.start(unread)

    def take_back(self, rest=b""):
        """Read frames again (see ``hand_over``), starting with ``rest``."""
        self._reader = None
        if self.closed:
            return
        if self._sock is not None:
            self._low_water = None     # the reader may have set its own
            self._set_low_water()
        self.transport.resume_reading()
        if rest:
            self.data_received(rest)

    def frame_too_large(self, error):
        """Called with the ``FrameTooLarge`` before the connection is closed: an owner
        that can tell its peer why overrides this and sends its last message."""

    def connection_lost(self, exc):
        self.closed = True
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.stop()
        self._buf = bytearray()
        self._start = self._end = 0
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback(self, exc)

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- sending ------------------------------------------------------------------------
    def send(self, payload):
        """Queue one frame; it leaves at the end of this loop turn."""
        if self.closed:
            return
        self._out.append(encode_frame(payload))
        self._out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def send_now(self, payloads):
        """Write complete frames at once (after anything queued), without waiting for the
        end of the loop turn: for a caller that already batched a turn's worth."""
        if self.closed:
            return
        out = self._out
        for payload in payloads:
            out.append(encode_frame(payload))
            out.append(payload)
        if out and self.transport is not None:
            self._out = []
            self._write(out)

    def flush(self):
        self._flush_scheduled = False
        if self._out and not self.closed and self.transport is not None:
            out, self._out = self._out, []
            self._write(out)

    def _write(self, out):
        transport = self.transport
        transport.writelines(out)
        # Beyond the high-water mark the transport has paused us: only then can the
        # buffer be too big (the check is not free on a path taken for every reply).
        if self._paused and transport.get_write_buffer_size() > self.max_write_buffer:
            logger.warning("closing connection to %s: it stopped reading and %d bytes are "
                           "waiting for it", self.peer, transport.get_write_buffer_size())
            self.closed = True
            transport.abort()

    async def drain(self):
        """Wait until the transport's buffer is below its high-water mark."""
        self.flush()
        if self._paused and not self.closed:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def close(self):
        if not self.closed:
            self.flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()
