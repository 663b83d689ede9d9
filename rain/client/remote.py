"""Python functions as tasks: ``@remote`` and ``Remote``.

``@remote`` turns ``def f(ctx, ...)`` into a task factory: calling ``f(...)`` creates a task
of type ``py/<name>`` in the active session. The function travels once per session as a
kept ``cloudpickle`` constant (input 0 of each of its tasks); the arguments are
cloudpickled into the task config, with every data object (or task) found anywhere in them
replaced by a reference to a task input. The executor side is ``rain.executor.runner``,
whose docstring defines the task config format.
"""
import functools
import inspect
import io
import pickle
import warnings

import cloudpickle

from ..common.content_type import check_content_type, merge_content_types
from ..common.errors import RainException, RainWarning
from ..common.ids import DataType
from .data import DataObject
from .input import Input, InputDir
from .output import Output, OutputDir
from .session import get_active_session
from .task import Task, retry_policy

#: Pickled arguments larger than this trigger a RainWarning (send big data as blobs).
ARGS_WARNING_SIZE = 256 * 1024

#: Keyword arguments of a call that configure the task instead of reaching the function
#: (unless the function itself has a parameter of that name).
RESERVED_KEYWORDS = ("outputs", "output", "name", "retries", "retry_on_error")

_MISSING = object()
_DATA = (DataObject, Task)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

# Load modes of the task config (see rain.executor.runner).
_AS_INSTANCE, _LOAD, _AUTO_LOAD = 0, 1, 2


class _Refs:
    """Task inputs collected from the arguments: input 0 is the function."""

    __slots__ = ("inputs", "index", "load", "ctypes", "default_mode")

    def __init__(self, function_obj, default_mode):
        self.inputs = [(None, function_obj)]
        self.index = {}              # id(DataObject) -> input index
        self.load = [_AS_INSTANCE]
        self.ctypes = {}
        self.default_mode = default_mode

    def add(self, value, label=None, decl=None):
        obj = value.output if isinstance(value, Task) else value
        index = self.index.get(id(obj))
        if index is not None:
            return index
        index = len(self.inputs)
        self.index[id(obj)] = index
        self.inputs.append((label, obj))
        mode = self.default_mode
        if decl is not None:
            _check_declaration(decl, obj, label)
            if decl.load is not None:
                mode = _LOAD if decl.load else _AS_INSTANCE
            if decl.content_type and obj.data_type != DataType.DIRECTORY:
                self.ctypes[index] = decl.content_type
        if mode == _AUTO_LOAD and obj.data_type == DataType.DIRECTORY:
            mode = _AS_INSTANCE
        self.load.append(mode)
        return index


def _check_declaration(decl, obj, label):
    what = f"argument {label!r}" if label else "an argument"
    if isinstance(decl, InputDir) or decl.content_type == "dir":
        if obj.data_type != DataType.DIRECTORY:
            raise RainException(f"{what} is declared as a directory (InputDir) but "
                                f"{obj!r} is a blob")
        return
    if decl.load and obj.data_type == DataType.DIRECTORY:
        raise RainException(f"{what}: {obj!r} is a directory and cannot be loaded")
    declared = obj._declared_content_type()
    if decl.content_type and declared:
        try:
            merge_content_types(declared, decl.content_type)
        except RainException:
            raise RainException(f"{what} expects content type {decl.content_type!r} but "
                                f"{obj!r} has content type {declared!r}") from None


class _ArgPickler(cloudpickle.Pickler):
    """cloudpickle with data objects (anywhere in the value) turned into input refs."""

    def __init__(self, file, refs, decl=None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._refs = refs
        self._decl = decl

    def persistent_id(self, obj):
        if isinstance(obj, _DATA):
            return self._refs.add(obj, None, self._decl)
        return None


_PLAIN_TYPES = frozenset([int, float, str, bytes, bool, type(None)])


def _plain(values):
    """Only scalars of builtin types: plain pickle does (no data objects, no code)."""
    for value in values:
        if type(value) not in _PLAIN_TYPES:
            return False
    return True


class _Discard:
    __slots__ = ()

    def write(self, data):
        return len(data)


class _Counter:
    """A file that only counts what is written to it."""

    __slots__ = ("size",)

    def __init__(self):
        self.size = 0

    def write(self, data):
        self.size += len(data)
        return len(data)


def _eval_annotation(annotation, globals_):
    """A string annotation (``from __future__ import annotations``) evaluated, or None."""
    try:
        return eval(annotation, globals_)  # noqa: S307 - the user's own code
    except Exception:
        return None


def _output_from_annotation(annotation, globals_):
    if isinstance(annotation, str):
        annotation = _eval_annotation(annotation, globals_)
    if isinstance(annotation, Output):
        return [annotation]
    if isinstance(annotation, (tuple, list)) and annotation and \
            all(isinstance(a, (Output, str)) for a in annotation):
        return list(annotation)
    return None


def _normalize_outputs(outputs, allow_objects):
    """A list of Output / DataObject items, or raise RainException."""
    if isinstance(outputs, (Output, str, DataObject)) or outputs is None:
        outputs = [outputs]
    elif isinstance(outputs, int) and not isinstance(outputs, bool):
        if outputs < 0:
            raise RainException(f"outputs must not be negative ({outputs})")
        return [Output() for _ in range(outputs)]
    result = []
    for item in outputs:
        if isinstance(item, Output):
            result.append(item)
        elif item is None or isinstance(item, str):
            result.append(Output(item))
        elif isinstance(item, DataObject) and allow_objects:
            result.append(item)
        else:
            raise RainException(f"Invalid output {item!r}: expected a label, an Output"
                                f"{' or a DataObject' if allow_objects else ''}")
    return result


class _Unset:
    """Default of the generated binder's parameters: "not given by the caller"."""

    __slots__ = ()

    def __repr__(self):
        return "__rain_unset__"


_UNSET = _Unset()


def _make_binder(signature, qualname):
    """A function with ``signature`` (no annotations, defaults replaced by a marker) that
    returns its ``locals()``: binding the call arguments costs a plain Python call
    (~0.4 us) instead of ``Signature.bind`` (~6 us), and a wrong call raises Python's own
    TypeError. ``None`` when the signature cannot be rebuilt as source."""
    try:
        params = [p.replace(annotation=inspect.Parameter.empty,
                            default=_UNSET if p.default is not inspect.Parameter.empty
                            else inspect.Parameter.empty)
                  for p in signature.parameters.values()]
        text = str(signature.replace(parameters=params,
                                     return_annotation=inspect.Signature.empty))
        namespace = {"__rain_unset__": _UNSET}
        exec(f"def __rain_bind__{text}:\n    return locals()\n", namespace)  # noqa: S102
        binder = namespace["__rain_bind__"]
    except Exception:
        return None
    binder.__qualname__ = qualname
    binder.__name__ = qualname.rpartition(".")[2]
    return binder


class Remote:
    """A Python function ``f(ctx, ...)`` made into a task factory (see ``remote``)."""

    def __init__(self, fn, *, inputs=(), outputs=None, auto_load=None, auto_encode=None,
                 name=None, cpus=1, retries=None, retry_on_error=False):
        if not callable(fn):
            raise RainException(f"remote needs a function, not {fn!r}")
        self.retry = retry_policy(retries, retry_on_error)     # None: the defaults
        functools.update_wrapper(self, fn, updated=())
        self.fn = fn
        self.name = name
        self.cpus = cpus
        self.auto_load = bool(auto_load)
        if auto_encode is not None:
            check_content_type(auto_encode)
        self.auto_encode = auto_encode
        qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) \
            or type(fn).__name__
        self.task_type = f"py/{name or qualname}"
        self._task_name = name or getattr(fn, "__name__", None) or qualname

        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        if not params or not (params[0].kind in _POSITIONAL or
                              params[0].kind == inspect.Parameter.VAR_POSITIONAL):
            raise RainException(f"{self._task_name}: a remote function takes the task "
                                "context as its first argument: def f(ctx, ...)")
        self._params = {p.name: p for p in params[1:]}
        self._kinds = {p.name: p.kind for p in params[1:]}
        self._binder = _make_binder(self.signature, getattr(fn, "__qualname__",
                                                            self._task_name))
        self._reserved = tuple(k for k in RESERVED_KEYWORDS if k not in self._params)
        globals_ = getattr(fn, "__globals__", {})

        # Input declarations: parameter annotations, then the `inputs` argument.
        decls = {}
        for param in params[1:]:
            annotation = param.annotation
            if isinstance(annotation, str) and "Input" in annotation:
                annotation = _eval_annotation(annotation, globals_)
            if isinstance(annotation, Input):
                decls[param.name] = annotation
        if isinstance(inputs, dict):
            items = inputs.items()
        else:
            positional = [p.name for p in params[1:]]
            inputs = list(inputs or ())
            if len(inputs) > len(positional):
                raise RainException(f"{self._task_name}: {len(inputs)} input declarations "
                                    f"for {len(positional)} parameters")
            items = zip(positional, inputs)
        for pname, decl in items:
            if decl is None:
                continue
            if pname not in self._params:
                raise RainException(f"{self._task_name}: input declaration for unknown "
                                    f"parameter {pname!r}")
            if not isinstance(decl, Input):
                raise RainException(f"{self._task_name}: input {pname!r} must be declared "
                                    f"with Input(...), not {decl!r}")
            decls[pname] = decl
        self.input_decls = decls

        # Outputs: the argument, else the return annotation, else one output.
        if outputs is None:
            annotated = None
            if self.signature.return_annotation is not inspect.Signature.empty:
                annotated = _output_from_annotation(self.signature.return_annotation,
                                                    globals_)
            outputs = annotated if annotated is not None else 1
        self.outputs = _normalize_outputs(outputs, allow_objects=False)
        self._default_outputs = None    # (outputs, auto_encode, encodes, task outputs)

    # -- calling --------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        outputs = output = name = _MISSING
        retry = self.retry
        if kwargs and self._reserved:
            if "outputs" in self._reserved:
                outputs = kwargs.pop("outputs", _MISSING)
            if "output" in self._reserved:
                output = kwargs.pop("output", _MISSING)
            if "name" in self._reserved:
                name = kwargs.pop("name", _MISSING)
            if "retries" in kwargs or "retry_on_error" in kwargs:
                retry = self._call_retry(kwargs, retry)
        binder = self._binder
        if binder is not None:
            try:
                arguments = binder(None, *args, **kwargs)
            except TypeError:
                self._bind_error(args, kwargs)
                raise
        else:
            try:
                arguments = self.signature.bind(None, *args, **kwargs).arguments
            except TypeError as exc:
                raise TypeError(f"{self._task_name}(): {exc}") from None

        session = get_active_session()
        function_obj = session._get_static(self, lambda: self._function_object(session))
        refs = _Refs(function_obj, _AUTO_LOAD if self.auto_load else _AS_INSTANCE)
        config = {}
        if args or kwargs:
            kinds = self._kinds
            decls = self.input_decls
            first = True
            for pname, value in arguments.items():
                if first:           # the ctx placeholder
                    first = False
                    continue
                if value is _UNSET:
                    continue
                decl = decls.get(pname)
                kind = kinds[pname]
                if kind == inspect.Parameter.VAR_POSITIONAL:
                    pairs = [(pname, v) for v in value]
                elif kind == inspect.Parameter.VAR_KEYWORD:
                    pairs = list(value.items())
                else:
                    pairs = ((pname, value),)
                for label, item in pairs:
                    if isinstance(item, _DATA):
                        refs.add(item, label, decl)
                    elif decl is not None and not isinstance(item, (int, float, str,
                                                                    bytes)):
                        _ArgPickler(_Discard(), refs, decl).dump(item)
            if len(refs.inputs) == 1 and _plain(args) and _plain(kwargs.values()):
                data = pickle.dumps((args, kwargs), pickle.HIGHEST_PROTOCOL)
            else:
                buffer = io.BytesIO()
                _ArgPickler(buffer, refs).dump((args, kwargs))
                data = buffer.getvalue()
            if len(data) > ARGS_WARNING_SIZE:
                self._warn_size(arguments, len(data))
            config["args"] = data
            if any(refs.load):
                config["load"] = refs.load
            if refs.ctypes:
                config["ctypes"] = refs.ctypes

        if output is not _MISSING:
            if outputs is not _MISSING:
                raise RainException("Give either 'output' or 'outputs', not both")
            out_items = _normalize_outputs([output], allow_objects=True)
        elif outputs is not _MISSING:
            out_items = self._merge_outputs(outputs)
        else:
            out_items = None
        if out_items is None:
            cached = self._default_outputs
            if cached is None or cached[0] is not self.outputs \
                    or cached[1] != self.auto_encode:
                cached = self._default_outputs = (self.outputs, self.auto_encode,
                                                  *self._with_encodes(self.outputs))
            encodes, task_outputs = cached[2:]
        else:
            encodes, task_outputs = self._with_encodes(out_items)
        if encodes is not None:
            config["encode"] = encodes
        task = Task(refs.inputs, task_outputs, config=config, session=session,
                    task_type=self.task_type, cpus=self.cpus,
                    name=self._task_name if name is _MISSING else name)
        if retry is not None:
            task._retries = retry
        return task

    def _call_retry(self, kwargs, retry):
        """The retry policy of one call: its ``retries=``/``retry_on_error=`` (those the
        function has no parameter of) over the decorator's."""
        retries, on_error = retry or (None, False)
        if "retries" in self._reserved:
            retries = kwargs.pop("retries", retries)
        if "retry_on_error" in self._reserved:
            on_error = kwargs.pop("retry_on_error", on_error)
        return retry_policy(retries, on_error)

    def _merge_outputs(self, outputs):
        """Outputs given at a call, merged position by position with the declared ones
        when as many are given: ``None`` keeps the declared output, a label renames it,
        an ``Output`` without a label takes the declared label."""
        declared = self.outputs
        if not isinstance(outputs, (list, tuple)) or len(outputs) != len(declared):
            return _normalize_outputs(outputs, allow_objects=True)
        merged = []
        for given, old in zip(outputs, declared):
            if given is None:
                merged.append(old)
            elif isinstance(given, str):
                merged.append(Output(given, size_hint=old.size_hint,
                                     content_type=old.content_type, encode=old.encode,
                                     path=old.path) if type(old) is Output
                              else type(old)(given, size_hint=old.size_hint, path=old.path))
            elif isinstance(given, Output) and given.label is None and \
                    old.label is not None:
                merged.append(OutputDir(old.label, size_hint=given.size_hint,
                                        path=given.path)
                              if isinstance(given, OutputDir) else
                              Output(old.label, size_hint=given.size_hint,
                                     content_type=given.content_type, encode=given.encode,
                                     path=given.path))
            else:
                merged.extend(_normalize_outputs([given], allow_objects=True))
        return merged

    def _bind_error(self, args, kwargs):
        """Raise the TypeError of ``Signature.bind`` for a missing argument: it names the
        argument (``missing a required argument: 'a'``) whatever its kind."""
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            if "missing" in str(exc):       # else Python's own message says more
                raise TypeError(f"{self._task_name}(): {exc}") from None

    def _warn_size(self, arguments, total):
        """A RainWarning for each argument whose pickle is over the limit."""
        named = False
        for pname, value in list(arguments.items())[1:]:
            if value is _UNSET:
                continue
            counter = _Counter()
            try:
                _ArgPickler(counter, _Refs(None, _AS_INSTANCE)).dump(value)
            except Exception:
                continue
            if counter.size > ARGS_WARNING_SIZE:
                named = True
                warnings.warn(RainWarning(
                    f"Pickled object {pname} length {counter.size} > {ARGS_WARNING_SIZE} "
                    f"in a call of {self._task_name}(); pass big data as blob() objects"),
                    stacklevel=3)
        if not named:
            warnings.warn(RainWarning(
                f"{self._task_name}(): the pickled arguments take {total} bytes "
                f"(more than {ARGS_WARNING_SIZE}); pass big data as blob() objects"),
                stacklevel=3)

    def _with_encodes(self, out_items):
        """(the ``encode`` list of the config or None, the task's outputs)."""
        encodes = [self._encode_of(item) for item in out_items]
        if all(e is None for e in encodes):
            return None, out_items
        return encodes, [Output(o.label, size_hint=o.size_hint, encode=e)
                         if e is not None and isinstance(o, Output) and not o.encode
                         else o for o, e in zip(out_items, encodes)]

    def _encode_of(self, item):
        if isinstance(item, DataObject):
            if item.data_type == DataType.DIRECTORY or item._declared_content_type():
                return None
            return self.auto_encode
        if isinstance(item, OutputDir):
            return None
        if item.encode:
            return item.encode
        if item.content_type is None:
            return self.auto_encode
        return None

    def _function_object(self, session):
        data = cloudpickle.dumps(self.fn, protocol=pickle.HIGHEST_PROTOCOL)
        obj = DataObject(label=getattr(self.fn, "__name__", None) or "function",
                         session=session, content_type="cloudpickle")
        obj._data = data
        obj.keep()
        return obj

    def __repr__(self):
        return f"<Remote {self.task_type}>"


def remote(outputs=None, inputs=(), auto_load=None, auto_encode=None, name=None, cpus=1,
           retries=None, retry_on_error=False):
    """Make ``def f(ctx, ...)`` a task factory; usable bare (``@remote``) or with options
    (``@remote(outputs=("a", "b"), auto_encode="pickle")``).

    - ``outputs``: an int, labels, ``Output`` items (default: the return annotation, or
      one output);
    - ``inputs``: ``{"param": Input(load=True, content_type=...)}`` or a list aligned with
      the parameters after ``ctx`` (parameter annotations with ``Input(...)`` work too);
    - ``auto_load``: give inputs that have a content type as loaded values instead of
      ``DataInstance``\\ s; ``auto_encode``: the default ``encode`` of outputs;
    - ``name``: the task type ``py/<name>`` and default task name; ``cpus``: CPUs per task;
    - ``retries``, ``retry_on_error``: see ``Task`` (None, False: the server's default).

    A call ``f(*args, outputs=..., output=..., name=..., retries=..., retry_on_error=...,
    **kwargs)`` creates the task; these keywords configure the task (unless the function
    has such a parameter).
    """
    if callable(outputs) and not isinstance(outputs, (Output, DataObject)):
        return Remote(outputs, inputs=inputs, auto_load=auto_load, auto_encode=auto_encode,
                      name=name, cpus=cpus, retries=retries, retry_on_error=retry_on_error)

    def decorate(fn):
        return Remote(fn, inputs=inputs, outputs=outputs, auto_load=auto_load,
                      auto_encode=auto_encode, name=name, cpus=cpus, retries=retries,
                      retry_on_error=retry_on_error)

    return decorate


__all__ = ["Remote", "remote"]
