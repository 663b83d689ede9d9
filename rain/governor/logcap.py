"""Executor and program output written to files of bounded size, keeping the end.

A process writing gigabytes to its stdout or stderr must not fill the governor's disk,
and what matters when it fails is what it wrote last. So its output comes down a pipe
and is written here: once a file would grow beyond ``cap`` bytes it is renamed to
``<path>.1`` (replacing the one before) and a fresh one is begun. At most ``2 * cap``
bytes are kept per stream, always including the last ``cap`` (``tail`` reads across
the two files).
"""
import asyncio
import logging
import os

logger = logging.getLogger(__name__)

#: Bytes per log file (``rain governor --executor-log-max``).
LOG_MAX = 64 << 20
#: The smallest cap taken: a tail must fit in one file.
LOG_MIN = 4096
#: Bytes of the end kept in memory too (what a failure message quotes, even when the
#: disk is full and the file could not take them).
RECENT = 8192


def rotated(path):
    return path + ".1"


def tail(path, size):
    """The last ``size`` bytes written to ``path`` (with its rotated part), as text."""
    data = b""
    for part in (path, rotated(path)):
        try:
            with open(part, "rb") as f:
                f.seek(0, os.SEEK_END)
                length = f.tell()
                f.seek(max(0, length - (size - len(data))))
                data = f.read() + data
        except OSError:
            pass
        if len(data) >= size:
            break
    return data[-size:].decode("utf-8", "replace")


class CappedLog(asyncio.Protocol):
    """Reads a pipe into ``path`` until the writers close it, rotating at ``cap``."""

    def __init__(self, path, cap=LOG_MAX):
        self.path = path
        self.cap = max(cap, LOG_MIN)
        self.file = open(path, "wb")
        self.size = 0
        self.transport = None
        self.done = asyncio.get_running_loop().create_future()
        self._recent = bytearray()

    def recent(self, size=RECENT):
        """The last ``size`` (at most ``RECENT``) bytes read, as text."""
        return bytes(self._recent[-size:]).decode("utf-8", "replace")

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self._recent += data[-RECENT:]
        if len(self._recent) > 2 * RECENT:
            del self._recent[:-RECENT]
        if self.file is None:
            return
        try:
            if self.size + len(data) > self.cap:
                self._rotate()
                if len(data) > self.cap:
                    data = data[-self.cap:]
            self.file.write(data)
            self.file.flush()
            self.size += len(data)
        except OSError as exc:       # a full disk: stop writing, keep reading the pipe
            logger.warning("cannot write %s: %s", self.path, exc)
            self._close_file()

    def _rotate(self):
        self.file.close()
        os.replace(self.path, rotated(self.path))
        self.file = open(self.path, "wb")
        self.size = 0

    def connection_lost(self, exc):
        self._close_file()
        if not self.done.done():
            self.done.set_result(None)

    def _close_file(self):
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None

    def close(self):
        if self.transport is not None:
            self.transport.close()
        else:
            self._close_file()


async def capped_pipe(path, cap=LOG_MAX):
    """A pipe whose reading end is drained into ``path`` by a ``CappedLog``: returns
    ``(writing end's fd, log)``; the caller hands the fd to a child and closes it."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    try:
        log = CappedLog(path, cap)
        await asyncio.get_running_loop().connect_read_pipe(lambda: log, reader)
    except BaseException:
        reader.close()
        os.close(write_fd)
        raise
    return write_fd, log
