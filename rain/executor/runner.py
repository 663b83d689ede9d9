"""Running ``call`` messages of Python tasks: the executor's pure core (no sockets).

``PyExecutor.call(body)`` (or ``run`` and, once the result left, ``tidy``) takes the body
of a ``call`` message and returns the body of the ``result`` message;
``drop_cached(body)`` handles ``drop_cached``. The socket loop in ``main.py`` only moves
frames. See ``docs/executor-protocol.md``.

Task config of a ``py/NAME`` task (CBOR map; every key optional):

- ``"args"``: bytes, a pickle of ``(args: tuple, kwargs: dict)``. Data objects found in
  the arguments were replaced by pickle *persistent ids*: the int index of the task
  input that carries them. Absent: no arguments.
- ``"load"``: [int per task input] how the function receives input i: 0 = a
  ``DataInstance``; 1 = the loaded value (``DataInstance.load()``, failing without a
  content type); 2 = loaded when it has a content type and is a blob, else a
  ``DataInstance`` (``auto_load``). Absent: all 0.
- ``"ctypes"``: {input index: content type} expected content types of inputs, checked
  before the function runs. An input of unknown type is treated as the expected type.
- ``"encode"``: [content type or None per output] outputs whose returned value is
  serialized with ``encode_value``.

Input 0 is always the cloudpickled function.
"""
import hashlib
import io
import os
import pickle
import shutil
import traceback

import cbor2

from ..common.content_type import encode_value, is_type_instance
from ..common.data_instance import DataInstance, extract_tar
from ..common.errors import RainException
from ..common.ids import ID, DataType
from .context import Context

#: How many deserialized functions are kept by content (oldest dropped first).
FUNCTION_CACHE_SIZE = 256

#: Beside the working directory (``<workdir>`` + this): where staged files and, with
#: pipelined calls, outputs wait for the governor (see ``PyExecutor.pipeline``).
OUTPUTS_SUFFIX = ".outputs"
#: Handed-over outputs still there this many calls later were refused by the governor.
STALE_OUTPUTS_AFTER = 1000

_BYTES = (bytes, bytearray, memoryview)
#: Declared content types a returned Python value is encoded into.
_ENCODABLE = frozenset(["pickle", "cloudpickle", "json", "cbor", "arrow"])
_PLAIN_OUTPUTS = (DataInstance, str) + _BYTES
_EMPTY = ((), {})


class TaskError(Exception):
    """The task fails with this message (no traceback: the message says it all)."""


class _ArgUnpickler(pickle.Unpickler):
    __slots__ = ("_resolve",)

    def __init__(self, data, resolve):
        super().__init__(io.BytesIO(data))
        self._resolve = resolve

    def persistent_load(self, pid):
        return self._resolve(pid)


class PyExecutor:
    """The state of one Python executor process: function caches and its directory."""

    def __init__(self, workdir=None, pipeline=False):
        self.workdir = os.path.abspath(workdir or os.getcwd())
        self.functions = {}     # digest of the pickled function -> function
        self.by_id = {}         # object id (session, id) -> function (inputs we keep)
        # With pipelined calls the next call runs before the governor has moved the
        # previous call's output files: those are handed over under unique names in
        # the outputs directory beside the working directory, which stays empty.
        self.pipeline = pipeline
        self.outputs_dir = self.workdir.rstrip(os.sep) + OUTPUTS_SUFFIX
        self._calls = 0
        self._staged = []           # files staged by the running call
        self._taken = set()         # ... of those, the ones returned as outputs

    # -- messages ---------------------------------------------------------------------
    def drop_cached(self, body):
        by_id = self.by_id
        for key in body.get("objects") or ():
            by_id.pop(tuple(key), None)

    def call(self, body):
        """Run one task; returns the ``result`` body."""
        try:
            return self.run(body)
        finally:
            self.tidy()

    def run(self, body):
        """``call`` without the look at the working directory afterwards: the caller sends
        the result first and then calls ``tidy()``, before the next call."""
        self._calls += 1
        newly_cached = []
        ctx = None
        try:
            task = body["task"]
            inputs = body["inputs"]
            function = self._function(inputs, newly_cached)
            config = task.get("config")
            config = cbor2.loads(config) if config else {}
            if not isinstance(config, dict):
                raise TaskError("invalid Python task config (expected a CBOR map)")
            ctx = Context(body, function, config, self)
            args, kwargs = self._arguments(config, inputs)
            try:
                value = function(ctx, *args, **kwargs)
            except BaseException as exc:  # noqa: B036 - SystemExit etc. fail the task too
                return self._failure(_user_traceback(exc), ctx, newly_cached)
            outputs = self._outputs(value, body["outputs"], config, inputs, task)
        except TaskError as exc:
            return self._failure(str(exc), ctx, newly_cached)
        except RainException as exc:
            return self._failure(f"{type(exc).__name__}: {exc}", ctx, newly_cached)
        except Exception as exc:
            return self._failure("Python executor error:\n" + "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)), ctx,
                newly_cached)
        result = {"success": True, "outputs": outputs}
        info = ctx._info
        if info is not None:
            result["info"] = _info_map(info)
        if newly_cached:
            result["cached"] = newly_cached
        return result

    # -- pieces -----------------------------------------------------------------------
    def _function(self, inputs, newly_cached):
        if not inputs:
            raise TaskError("a Python task needs its function as input 0")
        entry = inputs[0]
        key = tuple(entry["id"])
        location = entry["location"]
        kind = location[0]
        if kind == "cached":
            function = self.by_id.get(key)
            if function is None:
                raise TaskError(f"executor protocol error: object {list(key)} was sent as "
                                "'cached' but this executor does not keep it")
            return function
        if kind == "memory":
            data = location[1]
        elif kind == "path":
            with open(location[1], "rb") as f:
                data = f.read()
        else:
            raise TaskError(f"invalid location {location!r} of the function input")
        digest = hashlib.sha1(data).digest()
        functions = self.functions
        function = functions.get(digest)
        if function is None:
            try:
                function = pickle.loads(data)
            except Exception as exc:
                raise TaskError("cannot unpickle the function of the task: "
                                f"{type(exc).__name__}: {exc}") from None
            if not callable(function):
                raise TaskError(f"input 0 of the task is not a function but "
                                f"{type(function).__name__}")
            if len(functions) >= FUNCTION_CACHE_SIZE:
                del functions[next(iter(functions))]
            functions[digest] = function
        if key not in self.by_id:
            self.by_id[key] = function
            newly_cached.append(entry["id"])
        return function

    def _arguments(self, config, inputs):
        data = config.get("args")
        if not data:
            return _EMPTY
        if len(inputs) == 1:
            args = pickle.loads(data)
        else:
            resolver = _InputResolver(inputs, config)
            try:
                args = _ArgUnpickler(data, resolver.get).load()
            except TaskError:
                raise
            except RainException as exc:
                raise TaskError(str(exc)) from None
        try:
            args, kwargs = args
        except (TypeError, ValueError):
            raise TaskError("invalid Python task arguments (expected (args, kwargs))") \
                from None
        return args, kwargs

    def _outputs(self, value, outputs, config, inputs, task):
        count = len(outputs)
        encodes = config.get("encode") or ()
        if count == 1:
            encode = encodes[0] if encodes else None
            if encode is None:
                if isinstance(value, (tuple, list)) and len(value) == 1:
                    value = value[0]
                elif isinstance(value, dict) and len(value) == 1 \
                        and outputs[0].get("label") in value:
                    value = value[outputs[0]["label"]]
            return [self._output(value, outputs[0], encode, 0, inputs, task)]
        if count == 0:
            if value is None or value == ():
                return []
            raise TaskError(f"{_task_name(task)}: the task has no outputs but the "
                            f"function returned a value of type {type(value).__name__}")
        if isinstance(value, dict):
            labels = [o.get("label") for o in outputs]
            if None in labels or set(labels) != set(value):
                raise TaskError(
                    f"{_task_name(task)}: the function returned a dict with keys "
                    f"{sorted(map(str, value))} but the task's outputs are labeled {labels}")
            values = [value[label] for label in labels]
        elif isinstance(value, (tuple, list)):
            if len(value) != count:
                raise TaskError(f"{_task_name(task)}: the function returned "
                                f"{len(value)} values but the task has {count} outputs")
            values = value
        else:
            raise TaskError(f"{_task_name(task)}: the task has {count} outputs; return a "
                            f"tuple/list of {count} values or a dict keyed by output "
                            f"label, not {type(value).__name__}")
        return [self._output(v, spec, encodes[i] if i < len(encodes) else None, i, inputs,
                             task)
                for i, (v, spec) in enumerate(zip(values, outputs))]

    def _output(self, value, spec, encode, index, inputs, task):
        declared = spec.get("content_type")
        is_dir = spec.get("data_type") == "dir"
        if encode is None and declared in _ENCODABLE and not isinstance(
                value, _PLAIN_OUTPUTS):
            encode = declared           # a value for an output declared e.g. "pickle"
        if isinstance(value, DataInstance):
            content_type = value.content_type
            if (value.data_type == DataType.DIRECTORY) != is_dir:
                raise TaskError(f"{_output_name(task, spec, index)} must be "
                                f"{'a directory' if is_dir else 'a blob'}, the function "
                                f"returned {'a directory' if not is_dir else 'a blob'}"
                                f"{'; use ctx.stage_directory(path)' if is_dir else ''}")
            object_id = value.object_id
            if object_id is not None and _is_input(object_id, inputs):
                location = ["other", [object_id[0], object_id[1]]]
            elif value.path is not None:
                path = value.path
                if os.path.dirname(path) != self.outputs_dir:
                    path = self.stage(path)
                self._taken.add(path)
                location = ["path", path]
            elif is_dir:
                path = os.path.join(self._outputs_dir(), f"{self._calls}-dir-{index}")
                extract_tar(value.data, path)
                self._staged.append(path)
                self._taken.add(path)
                location = ["path", path]
            else:
                location = ["memory", value.data]
        elif is_dir:
            raise TaskError(f"{_output_name(task, spec, index)} is a directory: return "
                            f"ctx.stage_directory(path), not {type(value).__name__}")
        elif encode is not None:
            try:
                location = ["memory", encode_value(value, encode)]
            except RainException as exc:
                raise TaskError(f"{_output_name(task, spec, index)}: {exc}") from None
            content_type = encode
        elif isinstance(value, _BYTES):
            location = ["memory", bytes(value)]
            content_type = None
        elif isinstance(value, str):
            if declared and declared.startswith("text-"):
                content_type = declared
                try:
                    data = value.encode(declared[5:])
                except UnicodeError as exc:
                    raise TaskError(f"{_output_name(task, spec, index)}: {exc}") from None
            else:
                content_type = "text"
                data = value.encode()
            location = ["memory", data]
        else:
            raise TaskError(
                f"{_output_name(task, spec, index)}: the function returned a value of type "
                f"{type(value).__name__!r}; return bytes, str or a DataInstance (e.g. "
                f"ctx.blob(value, encode=\"pickle\")), or declare the output with "
                f"Output(encode=...)")
        if content_type and declared and not is_type_instance(content_type, declared):
            raise TaskError(f"{_output_name(task, spec, index)}: content type "
                            f"{content_type!r} is not a sub-type of the declared "
                            f"{declared!r}")
        result = {"location": location, "content_type": content_type or None}
        if isinstance(value, DataInstance) and value._info is not None and \
                value._info.user:
            result["info"] = {"user": value._info.user}
        return result

    def _outputs_dir(self):
        directory = self.outputs_dir
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
        return directory

    def stage(self, path):
        """Move the file or directory at ``path`` out of the working directory at once
        (``ctx.stage_file``); returns where it waits for the governor."""
        target = os.path.join(self._outputs_dir(),
                              f"{self._calls}-s{len(self._staged)}-{os.path.basename(path)}")
        try:
            os.rename(path, target)
        except OSError:         # another file system
            shutil.move(path, target)
        self._staged.append(target)
        return target

    def _failure(self, message, ctx, newly_cached):
        info = _info_map(ctx._info) if ctx is not None and ctx._info is not None else {}
        info["error"] = message
        result = {"success": False, "info": info}
        if newly_cached:
            result["cached"] = newly_cached
        return result

    def tidy(self):
        """After a call: back to the working directory, and empty it (every entry the
        function left, links and all); staged files it did not return are removed.
        Staged outputs stay until the governor moved them."""
        self._empty_workdir()
        if self._staged:
            for path in self._staged:
                if path not in self._taken:
                    _remove(path)
            self._staged = []
        if self._taken:
            self._taken = set()
        if self._calls % STALE_OUTPUTS_AFTER == 0 and os.path.isdir(self.outputs_dir):
            self._prune_outputs()

    def _empty_workdir(self):
        """Go back into the working directory, wherever the call went (into a new one of
        that name if the call removed or replaced it), and remove every entry. (Only the
        directory itself is made anew: where the governor removed the directory it sits
        in, the executor is on its way out and must leave nothing behind.)"""
        try:
            os.chdir(self.workdir)
        except FileNotFoundError:
            os.mkdir(self.workdir)
            os.chdir(self.workdir)
        for name in os.listdir(self.workdir):
            _remove(os.path.join(self.workdir, name))

    def _prune_outputs(self):
        """Remove handed-over outputs the governor left (it refused them): those of
        calls long past, which it has surely dealt with."""
        directory = self.outputs_dir
        for name in os.listdir(directory):
            number = name.partition("-")[0]
            if number.isdigit() and int(number) < self._calls - STALE_OUTPUTS_AFTER:
                _remove(os.path.join(directory, name))


def _remove(path):
    """Remove a file, link or directory tree, ignoring what is already gone."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


class _InputResolver:
    """Turns persistent ids (input indices) into DataInstances or loaded values."""

    __slots__ = ("inputs", "load", "ctypes", "values")

    def __init__(self, inputs, config):
        self.inputs = inputs
        self.load = config.get("load") or ()
        self.ctypes = config.get("ctypes") or {}
        self.values = {}

    def get(self, index):
        values = self.values
        if index in values:
            return values[index]
        inputs = self.inputs
        if not isinstance(index, int) or not 0 < index < len(inputs):
            raise TaskError(f"invalid input reference {index!r} in the task's arguments")
        entry = inputs[index]
        content_type = entry.get("content_type")
        expected = self.ctypes.get(index)
        if expected:
            if not content_type:
                content_type = expected
            elif not is_type_instance(content_type, expected):
                raise TaskError(f"{_input_name(entry, index)} has content type "
                                f"{content_type!r}, expected {expected!r}")
        data_type = DataType.DIRECTORY if entry.get("data_type") == "dir" else DataType.BLOB
        location = entry["location"]
        kind = location[0]
        object_id = ID(*entry["id"])
        if kind == "memory":
            instance = DataInstance(data=location[1], data_type=data_type,
                                    content_type=content_type, object_id=object_id)
        elif kind == "path":
            instance = DataInstance(path=location[1], data_type=data_type,
                                    content_type=content_type, object_id=object_id)
        else:
            raise TaskError(f"{_input_name(entry, index)}: unexpected location "
                            f"{location!r}")
        mode = self.load[index] if index < len(self.load) else 0
        value = instance
        if mode == 1 or (mode == 2 and content_type and data_type == DataType.BLOB):
            if data_type == DataType.DIRECTORY:
                raise TaskError(f"{_input_name(entry, index)} is a directory and cannot be "
                                "loaded")
            if not content_type:
                raise TaskError(f"{_input_name(entry, index)} cannot be loaded: it has no "
                                "content type")
            try:
                value = instance.load()
            except RainException as exc:
                raise TaskError(f"{_input_name(entry, index)}: {exc}") from None
        values[index] = value
        return value


def _is_input(object_id, inputs):
    session, oid = object_id
    for entry in inputs:
        entry_id = entry["id"]
        if entry_id[1] == oid and entry_id[0] == session:
            return True
    return False


def _info_map(info):
    result = {}
    if info.debug:
        result["debug"] = str(info.debug)
    if info.user:
        result["user"] = info.user
    return result


def _task_name(task):
    return f"Python task {task.get('method') or task.get('type')!r}"


def _output_name(task, spec, index):
    label = spec.get("label")
    return f"{_task_name(task)}: output {index}" + (f" ({label!r})" if label else "")


def _input_name(entry, index):
    label = entry.get("label")
    return f"input {index}" + (f" ({label!r})" if label else "")


def _user_traceback(exc):
    """The traceback of an exception raised by the task's function, without our frame."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is PyExecutor.run.__code__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
