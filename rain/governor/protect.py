"""Read-only protection of stored objects that holds even against programs run as root.

File modes do not stop root. The kernel's *immutable* inode flag (``chattr +i``) does: no
process, root included, may write, truncate, rename or unlink an immutable file until the
flag is cleared, which takes ``CAP_LINUX_IMMUTABLE`` and a deliberate ioctl. So:

- running as root where mount namespaces work (``use_read_only_view``): the governor's
  programs and executors each see the store through a read-only bind mount of their own
  (``mountns``); stored files are read-only by mode for everyone else, and input files are
  given to tasks as symlinks to them;
- running as root elsewhere (a container without ``CAP_SYS_ADMIN``), on a file system that
  supports the flag (ext2/3/4, xfs, btrfs, ...): stored files and directories are made
  immutable, with the same symlinks. ext4 writes a file to disk before it sets the flag,
  which is why the read-only view comes first;
- not root: the files are made read-only by mode (0444, dirs 0555). That stops other
  users and slips, but not the governor's own programs: they run as the files' owner and
  may ``chmod`` them back. So ``protect`` reports ``False`` and callers give tasks a private
  copy instead of a link;
- root on a file system without the flag: ``protect`` reports ``False`` too, with the same
  private copies, so the store cannot be changed either way.
"""
import errno
import fcntl
import logging
import os
import stat
import struct

from ..common.lifetime import killed_with_parent
from .mountns import ReadOnlyView

logger = logging.getLogger(__name__)

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010

IS_ROOT = os.geteuid() == 0
#: The ``ReadOnlyView`` of the store that programs enter (``use_read_only_view``), or None.
_view = None


def use_read_only_view(directory):
    """Root: give every program and executor started through ``program_preexec`` a
    read-only view of ``directory`` from now on, and protect files in it by mode alone.
    False (the immutable flag stays in use) where the kernel refuses."""
    global _view
    if not IS_ROOT:
        return False
    try:
        view = ReadOnlyView(directory)
    except OSError as exc:
        logger.info("no read-only view of %s (%s): stored files are made immutable",
                    directory, exc)
        return False
    if _view is not None:
        _view.close()
    _view = view
    return True


def program_preexec():
    """``preexec_fn`` of the governor's programs and executors: killed with the governor,
    and seeing the store read-only when there is a read-only view."""
    killed_with_parent()
    if _view is not None:
        _view.enter()


def protect_flushes():
    """Whether protecting a file writes it to disk first: ext4 (and others) flush a
    regular file's dirty pages before setting the immutable flag. Writers of big files
    start their write-back early then (see ``FileSink``), or the flush takes seconds per
    GiB."""
    return IS_ROOT and _view is None


def _in_view(path):
    return _view is not None and \
        os.path.abspath(path).startswith(_view.directory + os.sep)


def _set_immutable(path, on):
    flags_fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        buf = fcntl.ioctl(flags_fd, FS_IOC_GETFLAGS, struct.pack("l", 0))
        flags = struct.unpack("l", buf)[0]
        new = (flags | FS_IMMUTABLE_FL) if on else (flags & ~FS_IMMUTABLE_FL)
        if new != flags:
            fcntl.ioctl(flags_fd, FS_IOC_SETFLAGS, struct.pack("l", new))
    finally:
        os.close(flags_fd)


def _walk_bottom_up(path):
    """Yield every file and directory under ``path`` (children before parents)."""
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    yield full
            for name in dirs:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    yield full
    yield path


def protect(path):
    """Make ``path`` (file or tree) read-only; True when that holds against the
    governor's programs too (read-only view or immutable), so tasks may be given links
    to it."""
    if _in_view(path):
        _set_modes(path)
        return True
    if IS_ROOT:
        try:
            for item in _walk_bottom_up(path):
                _set_immutable(item, True)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM,
                                 errno.ENOSYS):
                raise
            logger.debug("immutable flag unsupported for %s: %s", path, exc)
            unprotect(path)
            return False
    _set_modes(path)
    return False


def _set_modes(path):
    for item in _walk_bottom_up(path):
        mode = os.lstat(item).st_mode
        if stat.S_ISDIR(mode):
            os.chmod(item, 0o555)
        elif stat.S_ISREG(mode):
            os.chmod(item, 0o444)


def unprotect(path):
    """Undo ``protect`` so that the store can delete or move the object."""
    if not os.path.lexists(path):
        return
    items = list(_walk_bottom_up(path))
    if IS_ROOT:
        for item in reversed(items):
            try:
                _set_immutable(item, False)
            except OSError:
                pass
    for item in reversed(items):
        try:
            mode = os.lstat(item).st_mode
            if stat.S_ISDIR(mode):
                os.chmod(item, 0o755)
            elif stat.S_ISREG(mode):
                os.chmod(item, 0o644)
        except OSError:
            pass


def remove_tree(path):
    """Delete a protected or unprotected file or tree."""
    import shutil
    if not os.path.lexists(path):
        return
    unprotect(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
