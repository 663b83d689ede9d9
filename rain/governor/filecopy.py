"""Private copies of stored files that cost what their data costs, not their size.

A task's private copy of an input (``write=True``, or every input of a governor that
cannot make its store immutable) must not turn a sparse multi-GiB object into that many
bytes written: the copy is a reflink where the file system offers one, else only the
data extents are copied and the holes stay holes.
"""
import errno
import fcntl
import os

FICLONE = 0x40049409
CHUNK = 1 << 30


def copy_file(source, target):
    """Copy the file ``source`` to a new file ``target`` (mode 0644 before umask)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass                     # no reflinks here (ext4, tmpfs, another fs, ...)
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                break                # only a hole is left
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            _copy_range(src.fileno(), dst.fileno(), start, end)
            offset = end
        dst.truncate(size)


def _copy_range(src, dst, start, end):
    while start < end:
        try:
            count = os.copy_file_range(src, dst, min(end - start, CHUNK), start, start)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            _copy_range_by_reads(src, dst, start, end)    # an older kernel or file system
            return
        if count == 0:
            raise OSError(errno.EIO, f"the source ended at {start} of {end} bytes")
        start += count


def _copy_range_by_reads(src, dst, start, end):
    while start < end:
        data = os.pread(src, min(end - start, 1 << 20), start)
        if not data:
            raise OSError(errno.EIO, f"the source ended at {start} of {end} bytes")
        os.pwrite(dst, data, start)
        start += len(data)
