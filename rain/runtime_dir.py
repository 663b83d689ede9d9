"""The per-user runtime directory where clusters leave their state files.

Records there tell ``rain status``, ``rain stop``, ``rain token`` and the clients which
servers and clusters exist, so whoever can write into the directory could make us signal
or delete what they name. The directory must therefore be ours and closed to others (as
ssh and tmux demand of theirs), and a record's fields are checked before they are used.
"""
import json
import logging
import os
import stat
import tempfile

logger = logging.getLogger(__name__)


class RuntimeDirError(RuntimeError):
    """The runtime directory cannot be trusted (another owner, open to others, a link)."""


def runtime_dir():
    """``$RAIN_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/rain``, else ``<tmp>/rain-<uid>``;
    created user-only (0700), refused when someone else could write into it."""
    path = os.environ.get("RAIN_RUNTIME_DIR")
    if not path:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        path = os.path.join(xdg, "rain") if xdg else \
            os.path.join(tempfile.gettempdir(), f"rain-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass                        # a link or a file: check_private_dir says what is wrong
    check_private_dir(path)
    return path


def check_private_dir(path):
    """Raise RuntimeDirError unless ``path`` is a real directory owned by this user that
    nobody else may enter or write into."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise RuntimeDirError(f"Rain's runtime directory {path}: "
                              f"{exc.strerror or exc}") from None
    fix = ("remove it (if it is not in use) or set RAIN_RUNTIME_DIR to a directory of "
           "yours with mode 0700")
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise RuntimeDirError(f"Rain's runtime directory {path} is not a directory but "
                              f"{'a link' if stat.S_ISLNK(info.st_mode) else 'a file'}: "
                              f"{fix}")
    if info.st_uid != os.getuid():
        raise RuntimeDirError(f"Rain's runtime directory {path} belongs to another user "
                              f"(uid {info.st_uid}), who could plant records in it: {fix}")
    if info.st_mode & 0o077:
        raise RuntimeDirError(f"Rain's runtime directory {path} is open to other users "
                              f"(mode {stat.S_IMODE(info.st_mode):04o}): "
                              f"run `chmod 700 {path}`")


def read_records(directory, fields=None):
    """Yield ``(path, dict)`` for every readable ``*.json`` record in ``directory``.

    ``fields`` maps the keys a record must have to their type (a type or a tuple of
    types); a record without them is skipped with a warning, never half-used. Without
    ``fields`` every JSON object is yielded (check it with ``record_problem``)."""
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        problem = record_problem(record, fields or {})
        if problem:
            logger.warning("ignoring the record %s: %s", path, problem)
            continue
        yield path, record


def record_problem(record, fields):
    """What is wrong with ``record`` for the given ``fields``, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, types in fields.items():
        if key not in record:
            return f"no {key!r}"
        value = record[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in
                                            (types if isinstance(types, tuple) else (types,))):
            return f"{key!r} has the wrong type ({type(value).__name__})"
    return None


def clusters_dir():
    return os.path.join(runtime_dir(), "clusters")


def pid_alive(pid):
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def remove_file(path):
    """Remove a record file of ours if it is there (``None``: nothing to remove)."""
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def tokens_dir():
    path = os.path.join(runtime_dir(), "tokens")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def remove_token_file(path):
    """Remove a token file of ours. Records name the file, so a path outside our tokens
    directory, or anything but a plain file of ours, is never deleted on their word."""
    if not path or not isinstance(path, str):
        return
    if os.path.dirname(os.path.abspath(path)) != tokens_dir() or not path.endswith(".token"):
        logger.warning("not removing %s: not a token file of this runtime directory", path)
        return
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        logger.warning("not removing %s: not a plain file of this user", path)
        return
    remove_file(path)


def pid_is_ours(pid, created=None):
    """Whether ``pid`` is a live process of this user (and, given ``created``, the one
    started at that time: a pid reused by another process is not ours)."""
    import psutil
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.uids().real != os.getuid():
            return False
        return created is None or abs(process.create_time() - created) < 0.01
    except psutil.Error:
        return False
