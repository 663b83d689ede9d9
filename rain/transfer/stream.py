"""Sending an object's body over a ``FrameProtocol`` connection in chunks.

The body is a run of frames of exactly ``CHUNK_SIZE`` bytes closed by one shorter frame
(maybe empty): an object below one chunk is a single frame, as small objects always were,
and a body of any length needs no length field wider than a frame's. Files go from the
page cache to the socket with ``sendfile`` (over TLS, which the kernel cannot encrypt, each
chunk is read in a worker thread and written); every chunk waits until the transport has room
(``drain``), so a slow receiver holds the sender to a few chunks of memory.
"""
import asyncio
import os
import queue
import threading

from ..common.data_instance import write_tar
from .sinks import CHUNK_SIZE


async def send_bytes(conn, data):
    """Send in-memory bytes as a body."""
    size = len(data)
    if size < CHUNK_SIZE:
        conn.send(data)
        await conn.drain()
        return
    with memoryview(data) as view:
        for start in range(0, size, CHUNK_SIZE):
            conn.send(view[start:start + CHUNK_SIZE])
            await conn.drain()
            if conn.closed:
                raise ConnectionError("connection closed during the transfer")
    if size % CHUNK_SIZE == 0:
        conn.send(b"")
        await conn.drain()


def without_holes(fd, offset, size):
    """Whether ``size`` bytes of open file ``fd`` from ``offset`` hold no hole: a receiver
    may then write them without looking at them (``DataReply.dense``)."""
    try:
        return os.lseek(fd, offset, os.SEEK_HOLE) >= offset + size
    except OSError:
        return False


async def send_open_file(conn, f, offset, size, name=None):
    """Send ``size`` bytes of the open binary file ``f`` from ``offset`` as a body (over
    TLS read by a worker thread and written: the kernel cannot encrypt what sendfile
    sends)."""
    loop = asyncio.get_running_loop()
    tls = conn.transport.get_extra_info("ssl_object") is not None
    if size < CHUNK_SIZE:
        data = os.pread(f.fileno(), size, offset) if size else b""
        if len(data) != size:
            raise OSError(f"{name or f} shrank while it was sent")
        await send_bytes(conn, data)
        return
    end = offset + size
    while True:
        count = min(CHUNK_SIZE, end - offset)
        await conn.drain()
        if conn.closed:
            raise ConnectionError("connection closed during the transfer")
        conn.transport.write(encode_frame_of(count))
        if count:
            if tls:
                chunk = await loop.run_in_executor(None, os.pread, f.fileno(), count, offset)
                conn.transport.write(chunk)
                sent = len(chunk)
            else:
                sent = await loop.sendfile(conn.transport, f, offset, count)
            if sent != count:
                raise OSError(f"{name or f} shrank while it was sent")
        offset += count
        if count < CHUNK_SIZE:
            break


def encode_frame_of(count):
    return count.to_bytes(4, "little")


class _ChunkWriter:
    """A file-like ``write`` that cuts what it gets into ``CHUNK_SIZE`` pieces on a
    bounded queue (the tar writer thread blocks while the sender is behind)."""

    def __init__(self, chunks, stop):
        self.chunks = chunks
        self.stop = stop
        self.buffer = bytearray()

    def write(self, data):
        self.buffer += data
        while len(self.buffer) >= CHUNK_SIZE:
            self._put(bytes(self.buffer[:CHUNK_SIZE]))
            del self.buffer[:CHUNK_SIZE]
        return len(data)

    def _put(self, item):
        while True:
            if self.stop.is_set():
                raise _Stopped()
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def close_body(self):
        self._put(bytes(self.buffer))


class _Stopped(Exception):
    pass


async def send_directory(conn, path):
    """Send directory ``path`` as a tar body, made by a thread as it is sent: the archive
    is never whole in memory or on disk."""
    loop = asyncio.get_running_loop()
    chunks = queue.Queue(maxsize=2)
    stop = threading.Event()
    outcome = {}

    def produce():
        writer = _ChunkWriter(chunks, stop)
        try:
            write_tar(path, writer)
            writer.close_body()
        except _Stopped:
            return
        except BaseException as exc:  # reported to the sender, which closes the body
            outcome["error"] = exc
            try:
                writer._put(None)
            except _Stopped:
                pass

    producer = loop.run_in_executor(None, produce)
    try:
        while True:
            chunk = await loop.run_in_executor(None, chunks.get)
            if chunk is None:
                raise OSError(f"archiving {path} failed: {outcome.get('error')}")
            conn.send(chunk)
            await conn.drain()
            if conn.closed:
                raise ConnectionError("connection closed during the transfer")
            if len(chunk) < CHUNK_SIZE:
                break
    finally:
        stop.set()
        await producer

