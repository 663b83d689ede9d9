"""Whether a directory holds anything, asked of a descriptor kept open.

The Python executor empties its working directory after every call. Listing it
(``os.listdir``: open, stat, read twice, close) is most of what that costs when the call
left nothing behind, the common case. Here the directory stays open: one ``lseek`` and
one ``getdents64`` read its entries, and only a directory that holds something is listed
and emptied. Where the C library has no ``getdents64`` (not glibc 2.30 or later),
``open_probe`` returns None and the caller lists the directory.
"""
import ctypes
import os
import struct

#: Room for the entries "." and ".." and a few more: enough to tell "empty" from not.
_BUFFER = 1024
_RECLEN = struct.Struct("H")        # d_reclen of a linux_dirent64, at offset 16
_NAME_AT = 19                       # d_name follows d_ino, d_off, d_reclen, d_type
#: "." and ".." alone: two records of 24 bytes (19 + the name and its NUL, 8-aligned).
_ONLY_DOTS = 48
_DOTDOT_AT = 24 + _NAME_AT


def _getdents64():
    try:
        libc = ctypes.CDLL(None, use_errno=True)   # this process's C library
        function = libc.getdents64
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    function.restype = ctypes.c_ssize_t
    return function


_GETDENTS64 = _getdents64()


class DirectoryProbe:
    """An open directory: ``has_entries()`` reads it afresh on every call."""

    __slots__ = ("path", "fd", "_buffer")

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._buffer = ctypes.create_string_buffer(_BUFFER)

    def has_entries(self):
        """True when the directory holds an entry besides "." and "..", and also when
        it cannot be read or was removed (the caller then looks by name)."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        size = _GETDENTS64(self.fd, self._buffer, _BUFFER)
        if size <= 0:           # an error, or a removed directory (no "." left)
            return True
        raw = self._buffer.raw
        if size == _ONLY_DOTS and raw[_NAME_AT:_NAME_AT + 2] == b".\0" and \
                raw[_DOTDOT_AT:_DOTDOT_AT + 3] == b"..\0":
            return False        # the common case, without walking the records
        position = 0
        while position < size:
            start = position + _NAME_AT
            name = raw[start:raw.index(b"\0", start)]
            if name != b"." and name != b"..":
                return True
            position += _RECLEN.unpack_from(raw, position + 16)[0]
        return False

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_probe(path):
    """A ``DirectoryProbe`` of ``path``, or None where it cannot work."""
    if _GETDENTS64 is None:
        return None
    try:
        return DirectoryProbe(path)
    except OSError:
        return None
