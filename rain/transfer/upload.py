"""What a client uploads: the bytes of a big constant (``blob()`` of bytes or of an open
file, ``directory()``), sent to a governor's store as a body without ever being whole in
memory on the way (a file goes with ``sendfile``, a directory as a tar made while it is
sent). Small constants do not come here: they travel inside the submit.
"""
import os
import stat

from .peer import DataConnection
from .stream import send_bytes, send_directory, send_open_file, without_holes

#: Constants of at least this many bytes are uploaded to a governor instead of travelling
#: in the submit (and being held by the server).
UPLOAD_MIN = 32 << 20


class BytesSource:
    """Bytes already in the client's memory."""
    is_directory = False
    dense = False      # chunks of zeros in it are stored as holes

    def __init__(self, data):
        self.data = data
        self.size = len(data)

    async def send(self, conn):
        await send_bytes(conn, self.data)

    def close(self):
        self.data = None


class FileSource:
    """The rest of an open binary file, from its position when the constant was made (the
    file is closed once it is sent, or with the constant)."""
    is_directory = False

    def __init__(self, file, offset, size):
        self.file = file
        self.offset = offset
        self.size = size

    @property
    def dense(self):
        """Whether the file holds no hole there (``DataRequest.dense``)."""
        return without_holes(self.file.fileno(), self.offset, self.size)

    async def send(self, conn):
        await send_open_file(conn, self.file, self.offset, self.size)

    def close(self):
        self.file.close()


class DirectorySource:
    """A local directory, archived as it is sent."""
    is_directory = True
    dense = False
    size = -1

    def __init__(self, path):
        self.path = path

    async def send(self, conn):
        await send_directory(conn, self.path)

    def close(self):
        pass


def file_source(file):
    """A ``FileSource`` for an open binary file, or None when it is no regular file
    (then it is read like any stream)."""
    try:
        fd = file.fileno()
        info = os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    offset = file.tell()
    # A file of its own (the same open file description): the caller may close theirs
    # before the submit, as ``with open(...) as f: blob(f)`` does.
    own = os.fdopen(os.dup(fd), "rb")
    return FileSource(own, offset, max(0, info.st_size - offset))


def tree_size(path, limit):
    """Bytes of the regular files under ``path``, counting stops past ``limit``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
            if total > limit:
                return total
    return total


async def upload(address, token, key, source, label="", content_type="", tls=None):
    """Store constant ``key`` from ``source`` on the governor at ``address`` over a
    connection of its own; returns the size stored there."""
    conn = DataConnection(address, token, tls)
    await conn.connect()
    try:
        return await conn.upload(key, source, label, content_type)
    finally:
        conn.close()


async def drop(address, token, key, tls=None):
    """Undo an ``upload`` whose submit the server refused."""
    conn = DataConnection(address, token, tls)
    await conn.connect()
    try:
        await conn.drop(key)
    finally:
        conn.close()
