"""Where the chunks of a received object go: memory, a file, or an HTTP response.

A sink is fed by ``DataConnection`` on the event loop: ``begin(meta)`` once the reply is
known, ``write(chunk)`` for each chunk (a memoryview valid during the call only: copy what is
kept; it may return an awaitable: reading from the peer pauses until it is done, which is
how a slow consumer slows the sender down), then
``end()`` or, when anything failed, ``abort()`` (which removes partial files). A sink that
is ``spliceable`` also takes bytes waiting in a pipe (``write_from_pipe``): a body read
from the socket by ``splice`` goes to its file without passing through this process.
A directory travels as a tar archive: file sinks keep it as ``<path>.tar`` and
``finish_directory`` extracts it off the loop.
"""
import asyncio
import os
import shutil

from ..common.data_instance import extract_tar_file
from ..common.errors import RainException

#: Bytes in one body frame of a transfer; a shorter frame ends the body (see ``peer``).
CHUNK_SIZE = 1 << 21
#: A chunk goes to its file in writes of at most this many bytes. On the virtual machine
#: of the recorded runs, which hands free 2 MiB blocks of memory back to its host (free
#: page reporting), one write of a whole 2 MiB chunk cost the kernel three to four times
#: the time per GiB of 128 KiB writes (``benchmarks/write_size.py``): each big write
#: seems to get a 2 MiB page-cache folio, made of memory the host must supply again.
WRITE_SIZE = 1 << 17


class TransferError(Exception):
    """An object could not be moved: the peer refused, went away or sent a bad body."""


class Sink:
    """Base: counts the bytes and checks a blob's announced size at the end."""

    def __init__(self):
        self.meta = None
        self.received = 0

    def begin(self, meta):
        self.meta = meta

    #: Whether ``write_from_pipe`` may be called (after ``begin``).
    spliceable = False

    def write(self, chunk):
        self.received += len(chunk)

    def end(self):
        meta = self.meta
        if meta is not None and meta["data_type"] == 0 and meta["size"] >= 0 and \
                self.received != meta["size"]:
            raise TransferError(f"received {self.received} bytes of a {meta['size']}-byte "
                                "object")

    def abort(self):
        pass


class MemorySink(Sink):
    """The whole object in memory (``fetch()`` into a ``DataInstance``, small objects)."""

    def __init__(self):
        super().__init__()
        self.chunks = []

    def write(self, chunk):
        self.received += len(chunk)
        self.chunks.append(bytes(chunk))

    def take(self):
        chunks, self.chunks = self.chunks, []
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)


#: A whole chunk of zeros is skipped (a hole) instead of written: sparse files stay sparse.
_ZEROS = bytes(CHUNK_SIZE)


class FileSink(Sink):
    """Chunks written to ``path`` as they come (``path + '.tar'`` for a directory)."""

    def __init__(self, path, write_back=False):
        super().__init__()
        self.path = path
        self.file_path = None
        self.fd = None
        self.hole = False        # the file ends in a skipped chunk: set its length at end
        # Start writing each chunk to disk at once, for a file that is written to disk
        # whole once received (a root governor's immutable flag): the kernel then finds
        # little left to write at that moment, instead of a whole object's worth.
        self.write_back = write_back
        self.offset = 0
        self.written_back = 0    # the write-back of the file up to here was started

    def begin(self, meta):
        super().begin(meta)
        self.file_path = self.path + ".tar" if meta["data_type"] == 1 else self.path
        self.fd = os.open(self.file_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(self, chunk):
        self.received += len(chunk)
        fd = self.fd
        if len(chunk) == CHUNK_SIZE and chunk[:64] == _ZEROS[:64] and \
                chunk.tobytes() == _ZEROS:
            self._start_write_back()
            os.lseek(fd, CHUNK_SIZE, os.SEEK_CUR)
            self.offset += CHUNK_SIZE
            self.written_back = self.offset
            self.hole = True
            return
        self.hole = False
        with memoryview(chunk) as view:
            done, size = 0, len(view)
            while done < size:
                done += os.write(fd, view[done:done + WRITE_SIZE])
        self._wrote(len(chunk))

    @property
    def spliceable(self):
        return self.fd is not None

    def write_from_pipe(self, pipe, count):
        """Move ``count`` bytes waiting in ``pipe`` (its read end) into the file."""
        self.received += count
        self.hole = False
        fd, left = self.fd, count
        while left:
            moved = os.splice(pipe, fd, left)
            if not moved:
                raise TransferError("the pipe held fewer bytes than announced")
            left -= moved
        self._wrote(count)

    def _wrote(self, count):
        self.offset += count
        if self.offset - self.written_back >= CHUNK_SIZE:
            self._start_write_back()

    def _start_write_back(self):
        """Start writing what was written since the last call to disk (``write_back``)."""
        if self.write_back and self.offset > self.written_back:
            # On pages not yet written this only starts their write-back: they stay in
            # the page cache for the task that reads them next.
            os.posix_fadvise(self.fd, self.written_back, self.offset - self.written_back,
                             os.POSIX_FADV_DONTNEED)
        self.written_back = self.offset

    def end(self):
        super().end()
        if self.hole:
            os.ftruncate(self.fd, self.received)
        self._start_write_back()
        self._close()

    def _close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def abort(self):
        try:
            self._close()
        except OSError:
            pass
        for path in (self.file_path, self.path):
            if path is not None:
                remove_any(path)


class SpoolSink(Sink):
    """Small blobs in memory, the rest in a file: what a governor receiving an input
    needs (small objects never touch the disk, big ones never sit in memory)."""

    def __init__(self, path, memory_limit, write_back=False):
        super().__init__()
        self.memory_limit = memory_limit
        self.file = FileSink(path, write_back)
        self.memory = None

    def begin(self, meta):
        super().begin(meta)
        if meta["data_type"] == 0 and 0 <= meta["size"] <= self.memory_limit:
            self.memory = MemorySink()
            self.memory.begin(meta)
        else:
            self.file.begin(meta)

    def write(self, chunk):
        (self.memory or self.file).write(chunk)

    @property
    def spliceable(self):
        return self.memory is None and self.file.spliceable

    def write_from_pipe(self, pipe, count):
        self.file.write_from_pipe(pipe, count)

    def end(self):
        (self.memory or self.file).end()

    def abort(self):
        self.file.abort()

    @property
    def in_memory(self):
        return self.memory is not None


async def finish_directory(sink):
    """Extract the tar a ``FileSink`` received into ``sink.path`` (off the loop); the
    archive is removed either way and a bad one leaves nothing behind."""
    tar_path = sink.file_path
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, extract_tar_file, tar_path, sink.path)
    except (RainException, OSError) as exc:
        await loop.run_in_executor(None, remove_any, sink.path)
        raise TransferError(f"bad directory archive: {exc}") from None
    finally:
        remove_any(tar_path)


def remove_any(path):
    """Remove a file or a directory tree if it exists."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
