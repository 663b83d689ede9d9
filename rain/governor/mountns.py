"""A child process that sees one directory read-only (Linux mount namespaces, root).

Root ignores file modes, so a root governor must keep its programs from writing the store
some other way. The immutable flag does it, but ext4 writes a file to disk before it sets
the flag: every input received or produced waits for the disk (seconds per GiB). A mount
namespace of the program's own, where the store is bind-mounted read-only onto itself,
stops its writes (``EROFS``, root included).

One such namespace is made when the governor starts and kept alive by a file descriptor
(``ReadOnlyView``); each program enters it (``setns``) as it starts. Making and tearing
down a namespace per program would cost milliseconds per program (the kernel waits for an
RCU grace period when a namespace goes away). Nothing outside sees the mount, and it goes
away with the governor's descriptor: there is nothing to clean up.
"""
import ctypes
import os
import subprocess

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000
MS_RELATIME = 0x200000

#: ``statvfs`` flags of the mount that a read-only remount must keep (the kernel refuses to
#: drop some of them, and the program should see the store as it is otherwise).
_KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
               (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
               (os.ST_RELATIME, MS_RELATIME))

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_ulong, ctypes.c_void_p)
        _libc.unshare.argtypes = (ctypes.c_int,)
        _libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
    return _libc


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def see_read_only(directory):
    """From now on this process and the children it starts see ``directory`` (and all
    below it) read-only. For a ``preexec_fn`` (a freshly forked child): it leaves the
    mount namespace it shared with its parent. OSError when the kernel refuses."""
    libc = _lib()
    path = os.fsencode(directory)
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Mounts made here must not propagate back into the governor's namespace.
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None),
           "making / a slave mount")
    _check(libc.mount(path, path, None, MS_BIND | MS_REC, None), f"bind-mounting {directory}")
    kept = os.statvfs(path).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for st_flag, ms_flag in _KEPT_FLAGS:
        if kept & st_flag:
            flags |= ms_flag
    _check(libc.mount(b"none", path, None, flags, None), f"remounting {directory} read-only")


class ReadOnlyView:
    """A mount namespace in which ``directory`` is read-only and the rest is as in ours.

    Made by a short-lived child that builds it (``see_read_only``), checks that it cannot
    write into ``directory`` there, and stays until we hold its namespace open. OSError
    when the kernel refuses (no ``CAP_SYS_ADMIN``, say) or the check fails."""

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        _lib()
        probe = os.path.join(self.directory, f".view-probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        self.fd = None
        try:
            try:
                holder = subprocess.Popen(
                    ["/bin/sh", "-c", 'if (echo x > "$0") 2>/dev/null; then echo writable; '
                     'else echo read-only; fi; read line', probe],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    preexec_fn=lambda: see_read_only(self.directory))
            except subprocess.SubprocessError as exc:
                raise OSError(f"cannot make a read-only view of {self.directory}: "
                              f"{exc}") from None
            try:
                answer = holder.stdout.readline().strip()
                if answer == b"read-only":
                    self.fd = os.open(f"/proc/{holder.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            finally:
                holder.stdin.close()
                holder.stdout.close()
                holder.wait()
            if self.fd is None or os.path.getsize(probe) != 0:
                self.close()
                raise OSError(f"{self.directory} stays writable in a read-only view "
                              f"({answer.decode(errors='replace') or 'no answer'})")
        finally:
            os.unlink(probe)

    def enter(self):
        """Move this (freshly forked, single-threaded) process into the view; for a
        ``preexec_fn``: the working directory stays the one it had."""
        cwd = os.getcwd()
        _check(_lib().setns(self.fd, CLONE_NEWNS), "setns(CLONE_NEWNS)")
        os.chdir(cwd)

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
