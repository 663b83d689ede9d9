"""The governor's object store: small objects in memory, large ones as protected files.

An object is created *pending* when the governor learns of it (an output to produce or an
input to receive) and becomes *ready* once its bytes or file are here. Objects are files
only when they must be (large, a directory, or a program's input): a chain of tiny Python
tasks never touches the disk.
"""
import asyncio
import errno
import logging
import os
import shutil
import threading
import time

from .protect import protect, remove_tree

logger = logging.getLogger(__name__)

#: Objects up to this size produced in memory stay in memory.
MEMORY_LIMIT = 1 << 20

PENDING, READY, FAILED = range(3)
BLOB, DIRECTORY = 0, 1


class StoredObject:
    __slots__ = ("key", "label", "content_type", "data_type", "user", "size", "data", "path",
                 "state", "waiters", "info", "delete_at", "safe_link", "locations",
                 "fetching", "declared_content_type", "refs", "error", "uploaded")

    def __init__(self, key, label, content_type, data_type, user, size):
        self.key = key
        self.label = label
        self.content_type = content_type or None
        self.declared_content_type = self.content_type
        self.data_type = data_type
        self.user = user
        self.size = size
        self.data = None
        self.path = None
        self.state = PENDING
        self.waiters = None
        self.info = None         # dict (ObjectInfo fields) set when produced here
        self.delete_at = None
        self.safe_link = True    # False when the file could not be made immutable
        self.locations = ()
        self.fetching = None
        self.refs = 0            # running tasks using it right now
        self.error = None        # why it failed (FAILED): later waiters get it too
        self.uploaded = False    # a client's constant stored here before its submit

    def __repr__(self):
        return f"<StoredObject {self.key} state={self.state} size={self.size}>"


class Store:
    def __init__(self, workdir):
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.objects = {}
        self.to_delete = {}      # key -> StoredObject in the delayed-delete list
        self._delete_sorted = True   # to_delete is in deadline order (see expire)
        self._last_delete_at = 0.0
        self._materialize_lock = threading.Lock()
        self._materialized = {}  # key -> (path, safe_link) written, not yet on the object
        #: The loop whose thread owns the objects (set by the governor); worker threads
        #: hand their results to it.
        self.loop = None
        #: The governor core's hooks: a pending object with waiters became ready / failed.
        self.on_ready = None
        self.on_failed = None

    def path_for(self, key):
        return os.path.join(self.data_dir, f"{key[0]}-{key[1]}")

    # -- lifecycle ----------------------------------------------------------------------
    def add(self, key, label, content_type, data_type, user, size):
        obj = self.objects.get(key)
        if obj is None:
            obj = self.objects[key] = StoredObject(key, label, content_type, data_type, user,
                                                   size)
        elif obj.delete_at is not None:
            obj.delete_at = None
            self.to_delete.pop(key, None)
        return obj

    def add_assigned(self, rows):
        """Take in the objects of an assignment: rows ``(key, label, content_type,
        data_type, user, size, locations, data)`` (``data``: a constant's bytes, else
        None). Returns the objects that became ready with their bytes."""
        objects = self.objects
        arrived = []
        for key, label, content_type, data_type, user, size, locations, data in rows:
            obj = objects.get(key)
            if obj is None:
                obj = objects[key] = StoredObject(key, label, content_type, data_type, user,
                                                  size)
            else:
                if obj.delete_at is not None:
                    obj.delete_at = None
                    self.to_delete.pop(key, None)
                if obj.state == READY:
                    continue
            if data is not None:
                self.set_bytes(obj, data)
                arrived.append(obj)
            elif locations:
                if obj.state == FAILED or (obj.locations and
                                           list(obj.locations) != list(locations)):
                    # Its last fetch failed, or hangs on a governor the server has
                    # since given up: fetch again from where it is now.
                    obj.state = PENDING
                    obj.fetching = None     # the next waiting task fetches it anew
                obj.locations = locations
        return arrived

    def set_bytes(self, obj, data):
        obj.data = bytes(data) if not isinstance(data, bytes) else data
        obj.size = len(obj.data)
        self._ready(obj)

    def set_file(self, obj, path, size=None):
        """Take ownership of ``path`` (renamed into the store, then protected). Blocking
        file work: worker threads run ``place_file`` and give its result to
        ``file_placed`` on the loop thread instead."""
        self.file_placed(obj, *self.place_file(obj.key, path, size))

    def place_file(self, key, path, size=None):
        """Move ``path`` to the store's place for ``key`` and protect it; touches no
        object (safe in a worker thread). Returns ``(target, size, safe_link)``."""
        target = self.path_for(key)
        if os.path.lexists(target):
            remove_tree(target)
        if os.path.isdir(path) and not os.path.islink(path):
            # Moving a directory to another parent rewrites its "..": its owner needs
            # write permission on it (a copy of a read-only stored one, say).
            os.chmod(path, os.stat(path).st_mode | 0o200)
        try:
            os.rename(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(path, target)      # produced on another file system
        return target, size if size is not None else path_size(target), protect(target)

    def file_placed(self, obj, target, size, safe_link):
        """``place_file`` is done: the object is ready (loop thread)."""
        obj.path = target
        obj.size = size
        obj.safe_link = safe_link
        self._ready(obj)

    def _ready(self, obj):
        obj.state = READY
        if obj.waiters is not None:
            self.on_ready(obj)

    def fail(self, obj, exc):
        obj.state = FAILED
        if obj.waiters is not None:
            self.on_failed(obj, str(exc))

    # -- files -----------------------------------------------------------------------------
    def materialize(self, obj):
        """Return a file path holding the object (writing memory data out once)."""
        return self.materialize_link(obj)[0]

    def materialize_link(self, obj):
        """``(path, safe_link)``: a file holding the object, and whether tasks may be
        given a link to it (``protect``).

        Runs in worker threads: the lock makes concurrent first uses write it once, and
        the object learns its path on the loop thread (``_set_materialized``), so the
        answer comes from here, not from the object."""
        if obj.path is not None:
            return obj.path, obj.safe_link
        with self._materialize_lock:
            done = self._materialized.get(obj.key)
            if done is not None:
                return done
            if obj.path is not None:
                return obj.path, obj.safe_link
            target, safe_link = self._materialize(obj)
            self._materialized[obj.key] = (target, safe_link)
        loop = self.loop
        if loop is None or _on_thread_of(loop):
            self._set_materialized(obj)
        else:
            loop.call_soon_threadsafe(self._set_materialized, obj)
        return target, safe_link

    def _set_materialized(self, obj):
        with self._materialize_lock:
            target, safe_link = self._materialized.pop(obj.key)
        if self.objects.get(obj.key) is not obj:
            remove_tree(target)         # deleted meanwhile
        elif obj.path is None:
            obj.safe_link = safe_link   # first: threads read it once the path is set
            obj.path = target

    def _materialize(self, obj):
        target = self.path_for(obj.key)
        try:
            if obj.data_type == DIRECTORY:
                from ..common.data_instance import extract_tar
                extract_tar(obj.data, target)
            else:
                with open(target, "wb") as f:
                    f.write(obj.data)
        except BaseException:
            remove_tree(target)         # no partial file left (a full disk, say)
            raise
        return target, protect(target)

    def read_bytes(self, obj):
        """The object's bytes (a directory as a tar archive)."""
        if obj.data is not None:
            return obj.data
        if obj.data_type == DIRECTORY:
            from ..common.data_instance import make_tar
            return make_tar(obj.path)
        with open(obj.path, "rb") as f:
            return f.read()

    # -- deletion --------------------------------------------------------------------------
    def schedule_delete(self, key, delay):
        self.schedule_deletes((key,), delay)

    def schedule_deletes(self, keys, delay):
        """Move objects to the delete list, all with the same deadline (one clock read
        for a whole delete message); pending objects (and any with no delay) go now."""
        objects = self.objects
        to_delete = self.to_delete
        delete_at = time.monotonic() + delay
        added = False
        for key in keys:
            obj = objects.get(key)
            if obj is None:
                continue
            if obj.state != READY or delay <= 0:
                self.delete_now(key)
            elif obj.delete_at is None:
                obj.delete_at = delete_at
                to_delete[key] = obj
                added = True
        if added:
            if delete_at < self._last_delete_at:
                self._delete_sorted = False
            self._last_delete_at = delete_at

    def delete_now(self, key):
        obj = self.objects.pop(key, None)
        self.to_delete.pop(key, None)
        if obj is None:
            return
        if obj.state == PENDING:
            self.fail(obj, ObjectDeleted(f"object {key} was deleted"))
        obj.data = None
        if obj.path is not None:
            remove_tree(obj.path)
            obj.path = None

    def expire(self, now=None):
        """Delete what is due. ``to_delete`` is in insertion order, which is deadline
        order while every delay is the same (the governor's), so the scan stops at the
        first object not yet due instead of walking the whole list each time."""
        now = time.monotonic() if now is None else now
        if self._delete_sorted:
            expired = []
            for key, obj in self.to_delete.items():
                if obj.delete_at > now:
                    break
                expired.append(key)
        else:
            expired = [key for key, obj in self.to_delete.items() if obj.delete_at <= now]
        for key in expired:
            self.delete_now(key)
        if not self.to_delete:
            self._delete_sorted = True
            self._last_delete_at = 0.0
        return expired

    def next_expiry(self):
        """The earliest deadline in the delete list (None when it is empty)."""
        if not self.to_delete:
            return None
        if self._delete_sorted:
            return next(iter(self.to_delete.values())).delete_at
        return min(obj.delete_at for obj in self.to_delete.values())

    def clear(self):
        for key in list(self.objects):
            self.delete_now(key)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class ObjectDeleted(Exception):
    pass


def _on_thread_of(loop):
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def path_size(path):
    if os.path.isdir(path):
        total = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
        return total
    return os.path.getsize(path)
