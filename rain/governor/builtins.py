"""Built-in tasks (``buildin/*``), run inside the governor.

Each takes a ``BuiltinCall`` and returns one result per output: ``("bytes", data)``,
``("path", path)`` (a file or directory the store takes over) or ``("same", obj)`` (the
output has the same content as the stored input ``obj``). ``TaskError`` fails the task
with its message. Blocking file work runs in the default thread pool.
"""
import asyncio
import os
import shutil
import tempfile

from .execute import run_program
from .store import DIRECTORY


class TaskError(Exception):
    """A task failed for a reason its author must read (bad input, failing program...)."""


class BuiltinCall:
    def __init__(self, governor, task, config, inputs, outputs):
        self.governor = governor
        self.task = task
        self.config = config if config is not None else {}
        self.inputs = inputs      # [StoredObject], ready
        self.outputs = outputs    # [StoredObject], pending
        self.store = governor.store
        self.temp_dirs = []       # removed by the governor once the outputs are stored

    def temp_path(self, name="out"):
        directory = tempfile.mkdtemp(prefix="t-", dir=self.governor.tasks_dir)
        self.temp_dirs.append(directory)
        return os.path.join(directory, name)

    def require(self, key, kind=None):
        if not isinstance(self.config, dict) or key not in self.config:
            raise TaskError(f"{self.task.task_type}: missing '{key}' in the task config")
        value = self.config[key]
        if kind is not None and not isinstance(value, kind):
            raise TaskError(f"{self.task.task_type}: '{key}' must be of type {kind.__name__}")
        return value


async def in_thread(func, *args):
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


FRIENDLY_NAMES = {"buildin/open": "Load", "buildin/open_dir": "LoadDir",
                  "buildin/export": "Store"}


def _absolute(call, path):
    if not isinstance(path, str) or not os.path.isabs(path):
        name = FRIENDLY_NAMES.get(call.task.task_type, call.task.task_type)
        raise TaskError(f"{name}: path {path!r} is not absolute")
    return path


async def concat(call):
    parts = []
    for obj in call.inputs:
        _check_blob(obj)
        parts.append(obj.data if obj.data is not None else
                     await in_thread(call.store.read_bytes, obj))
    return [("bytes", b"".join(parts))]


def concat_now(call):
    """``concat`` when every input is in memory; None when one must be read from a file."""
    parts = []
    for obj in call.inputs:
        _check_blob(obj)
        if obj.data is None:
            return None
        parts.append(obj.data)
    return [("bytes", b"".join(parts))]


def _check_blob(obj):
    if obj.data_type != 0:
        raise TaskError(f"Concat: input {obj.key[1]} is a directory, only blobs can be "
                        "concatenated")


async def sleep(call):
    seconds = call.config if isinstance(call.config, (int, float)) else \
        call.require("seconds", (int, float))
    if len(call.inputs) != 1:
        raise TaskError("Sleep takes exactly one input")
    await asyncio.sleep(max(0.0, float(seconds)))
    return [("same", call.inputs[0])]


def _copy_file_in(source, target):
    shutil.copyfile(source, target)
    return target


async def open_file(call):
    path = _absolute(call, call.require("path", str))
    if not os.path.isfile(path):
        raise TaskError(f"Load: file {path!r} does not exist (or is not a regular file)")
    target = call.temp_path()
    try:
        await in_thread(_copy_file_in, path, target)
    except OSError as exc:
        raise TaskError(f"Load: cannot read {path!r}: {exc}") from None
    return [("path", target)]


async def open_dir(call):
    path = _absolute(call, call.require("path", str))
    if not os.path.isdir(path):
        raise TaskError(f"LoadDir: directory {path!r} does not exist")
    target = call.temp_path()
    try:
        await in_thread(lambda: shutil.copytree(path, target, symlinks=True))
    except (OSError, shutil.Error) as exc:
        raise TaskError(f"LoadDir: cannot copy {path!r}: {exc}") from None
    return [("path", target)]


def _export(store, obj, path):
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    if obj.data_type == DIRECTORY:
        if obj.path is not None:
            shutil.copytree(obj.path, path, symlinks=True)
            _make_writable(path)
        else:
            from ..common.data_instance import extract_tar
            extract_tar(obj.data, path)
    elif obj.data is not None:
        with open(path, "wb") as f:
            f.write(obj.data)
    else:
        shutil.copyfile(obj.path, path)


def _make_writable(path):
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o644)


async def export(call):
    path = _absolute(call, call.require("path", str))
    if len(call.inputs) != 1:
        raise TaskError("Store takes exactly one input")
    parent = os.path.dirname(path) or "/"
    if not os.path.isdir(parent):
        raise TaskError(f"Store: directory {parent!r} does not exist")
    try:
        await in_thread(_export, call.store, call.inputs[0], path)
    except OSError as exc:
        raise TaskError(f"Store: cannot write {path!r}: {exc}") from None
    return []


def _safe_relpath(task_name, path):
    if not isinstance(path, str) or not path or os.path.isabs(path):
        raise TaskError(f"{task_name}: path {path!r} must be a non-empty relative path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TaskError(f"{task_name}: path {path!r} must not contain '..'")
    return os.path.join(*parts) if parts else ""


def _make_directory(store, entries, target):
    os.makedirs(target)
    for relpath, obj in entries:
        full = os.path.join(target, relpath) if relpath else target
        if obj.data_type == DIRECTORY:
            if relpath and os.path.lexists(full):
                raise TaskError(f"MakeDirectory: {relpath!r} given twice")
            if obj.path is not None:
                shutil.copytree(obj.path, full, symlinks=True, dirs_exist_ok=not relpath)
                _make_writable(full)
            else:
                from ..common.data_instance import extract_tar
                if relpath:
                    extract_tar(obj.data, full)
                else:
                    tmp = full + ".extract"
                    extract_tar(obj.data, tmp)
                    shutil.copytree(tmp, full, dirs_exist_ok=True)
                    shutil.rmtree(tmp)
        else:
            if not relpath:
                raise TaskError("MakeDirectory: a blob needs a file name")
            if os.path.lexists(full):
                raise TaskError(f"MakeDirectory: {relpath!r} given twice")
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if obj.data is not None:
                with open(full, "wb") as f:
                    f.write(obj.data)
            else:
                shutil.copyfile(obj.path, full)


async def make_directory(call):
    paths = call.require("paths", list)
    if len(paths) != len(call.inputs):
        raise TaskError("MakeDirectory: the number of paths differs from the inputs")
    entries = [(_safe_relpath("MakeDirectory", p) if p not in ("", ".", "./") else "", obj)
               for p, obj in zip(paths, call.inputs)]
    target = call.temp_path()
    try:
        await in_thread(_make_directory, call.store, entries, target)
    except OSError as exc:
        raise TaskError(f"MakeDirectory: {exc}") from None
    return [("path", target)]


def _slice(source, relpath, as_dir, target):
    full = os.path.join(source, relpath)
    if as_dir:
        if not os.path.isdir(full):
            raise TaskError(f"SliceDirectory: {relpath!r} is not a directory in the input")
        shutil.copytree(full, target, symlinks=True)
        _make_writable(target)
    else:
        if not os.path.isfile(full):
            raise TaskError(f"SliceDirectory: {relpath!r} is not a file in the input")
        shutil.copyfile(full, target)


async def slice_directory(call):
    path = call.require("path", str)
    if len(call.inputs) != 1 or call.inputs[0].data_type != DIRECTORY:
        raise TaskError("SliceDirectory takes one directory input")
    as_dir = path.endswith("/")
    relpath = _safe_relpath("SliceDirectory", path)
    source = call.inputs[0]
    source_path = await in_thread(call.store.materialize, source)
    target = call.temp_path()
    await in_thread(_slice, source_path, relpath, as_dir, target)
    return [("path", target)]


async def run(call):
    return await run_program(call, TaskError)


#: Synchronous forms of built-ins, tried first: they return None when they would have to
#: wait (file work), and the task then runs as a coroutine with the form in BUILTINS.
BUILTINS_NOW = {
    "buildin/concat": concat_now,
}

BUILTINS = {
    "buildin/concat": concat,
    "buildin/sleep": sleep,
    "buildin/open": open_file,
    "buildin/open_dir": open_dir,
    "buildin/export": export,
    "buildin/make_directory": make_directory,
    "buildin/slice_directory": slice_directory,
    "buildin/run": run,
}
