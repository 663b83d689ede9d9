"""A governor's work directory: one live governor at a time, and nothing left behind.

A governor killed with SIGKILL cannot clean up. Its stored objects may be immutable (see
``protect``: even ``rm -rf`` as root fails on them), so whoever comes next does it: a
governor taking the same work directory clears what the dead one left, and a governor
with a temporary work directory removes those of dead governors in the temp dir.
"""
import logging
import os
import stat
import tempfile

from ..common.private import private_dir
from ..runtime_dir import pid_alive
from .protect import remove_tree

logger = logging.getLogger(__name__)

PID_FILE = "governor.pid"
#: What a governor keeps in its work directory (store, task directories, executors).
CONTENTS = ("data", "tasks", "executors")
TEMP_PREFIX = "rain-governor-"


class WorkdirInUse(OSError):
    """Another live governor works in this directory."""


def claim_workdir(workdir):
    """Make ``workdir`` this governor's: refuse it while a live governor has it, clear
    what a dead one left, and record this process."""
    private_dir(workdir)
    pid_path = os.path.join(workdir, PID_FILE)
    other = _read_pid(pid_path)
    if other is not None and other != os.getpid() and pid_alive(other):
        raise WorkdirInUse(f"the work directory {workdir} is in use by the governor with "
                           f"pid {other}; give each governor its own")
    _clear(workdir)
    with open(pid_path, "w") as f:
        f.write(f"{os.getpid()}\n")


def clear_workdir(workdir):
    """Remove what a governor that is gone left in ``workdir`` (``rain stop`` after its
    processes ended); a directory a live governor holds is left alone."""
    pid_path = os.path.join(workdir, PID_FILE)
    other = _read_pid(pid_path)
    if other is not None and pid_alive(other):
        return False
    _clear(workdir)
    release_workdir(workdir)
    return True


def _clear(workdir):
    for name in CONTENTS:
        path = os.path.join(workdir, name)
        if os.path.lexists(path):
            logger.info("removing %s, left by a governor that did not stop cleanly", path)
            remove_tree(path)


def release_workdir(workdir):
    try:
        os.unlink(os.path.join(workdir, PID_FILE))
    except FileNotFoundError:
        pass


def temp_workdir():
    """A new temporary work directory named after this process, after removing those of
    this user's governors that died without removing theirs."""
    tmp = tempfile.gettempdir()
    remove_abandoned(tmp, TEMP_PREFIX)
    return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=tmp)


def remove_abandoned(tmp, prefix):
    """Remove this user's ``<prefix><pid>-*`` directories in ``tmp`` whose process is
    gone, protected files included."""
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    uid = os.getuid()
    for name in names:
        pid, dash, _ = name[len(prefix):].partition("-")
        if not name.startswith(prefix) or not dash or not pid.isdigit():
            continue
        path = os.path.join(tmp, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_uid == uid and stat.S_ISDIR(info.st_mode) and not pid_alive(int(pid)):
            logger.info("removing %s, left by a governor that did not stop cleanly", path)
            remove_tree(path)


def _read_pid(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
