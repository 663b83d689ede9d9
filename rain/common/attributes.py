"""Specifications and run-time information of tasks and data objects.

A *spec* is what the client declares when building the graph (and is frozen once
submitted); an *info* is filled in by the server, governors and executors while the
graph runs. Both travel as JSON dictionaries in which empty values are omitted.
"""

from .errors import RainException
from .ids import ID, DataType, id_from_pair

_MISSING = object()


def _is_empty(value):
    return value is None or (isinstance(value, (str, dict, list, tuple)) and len(value) == 0)


def _to_id(value):
    if value is None or isinstance(value, ID):
        return value
    return id_from_pair(value)


def _to_data_type(value):
    if isinstance(value, DataType):
        return value
    return DataType.from_str(value)


def _id_json(value):
    return [value[0], value[1]]


class TaskSpecInput:
    """One input of a task: the data object's ID and the label it has in the task."""

    __slots__ = ("id", "label")
    __hash__ = None

    def __init__(self, id, label=None):
        self.id = _to_id(id)
        self.label = label

    def to_json(self):
        result = {"id": _id_json(self.id)}
        if self.label is not None:
            result["label"] = self.label
        return result

    @classmethod
    def from_json(cls, data):
        return cls(id_from_pair(data["id"]), data.get("label"))

    def __eq__(self, other):
        if not isinstance(other, TaskSpecInput):
            return NotImplemented
        return self.id == other.id and self.label == other.label

    def __repr__(self):
        return "TaskSpecInput(id={!r}, label={!r})".format(self.id, self.label)


def _to_input(value):
    if isinstance(value, TaskSpecInput):
        return value
    if isinstance(value, dict):
        return TaskSpecInput.from_json(value)
    return TaskSpecInput(value)


class _Attributes:
    """Keyword-only record with JSON conversion.

    Subclasses list their fields in ``_fields`` as ``(name, default_factory)``;
    ``_coerce`` maps a field to a normaliser applied on construction, ``_encode`` and
    ``_decode`` map a field to its JSON conversion in each direction.
    """

    __slots__ = ()
    __hash__ = None
    _fields = ()
    _coerce = {}
    _encode = {}
    _decode = {}
    _keep_falsy = frozenset()

    def __init__(self, **kwargs):
        cls = type(self)
        setter = object.__setattr__
        for name, factory in cls._fields:
            value = kwargs.pop(name, _MISSING)
            if value is _MISSING:
                value = factory()
            elif name in cls._coerce:
                value = cls._coerce[name](value)
            setter(self, name, value)
        if kwargs:
            raise TypeError("{}() got unknown attribute(s): {}".format(
                cls.__name__, ", ".join(repr(k) for k in sorted(kwargs))))

    def to_json(self):
        """Dictionary for JSON; empty values (None, "", {}, []) are left out."""
        result = {}
        encode = self._encode
        for name, _ in self._fields:
            value = getattr(self, name)
            if name in self._keep_falsy:
                if value is None:
                    continue
            elif _is_empty(value):
                continue
            if name in encode:
                value = encode[name](value)
            elif isinstance(value, dict):
                value = dict(value)
            result[name] = value
        return result

    @classmethod
    def from_json(cls, data):
        """Inverse of ``to_json``; missing keys get their defaults."""
        kwargs = {}
        decode = cls._decode
        for name, _ in cls._fields:
            if name in data:
                value = data[name]
                if value is not None and name in decode:
                    value = decode[name](value)
                kwargs[name] = value
        return cls(**kwargs)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name, _ in self._fields)

    def __repr__(self):
        return "{}({})".format(type(self).__name__, ", ".join(
            "{}={!r}".format(name, getattr(self, name)) for name, _ in self._fields))


class _FrozenAfterSubmit(_Attributes):
    """Attributes that become read-only once the object is submitted."""

    __slots__ = ("_frozen",)

    def __init__(self, **kwargs):
        object.__setattr__(self, "_frozen", False)
        super().__init__(**kwargs)

    def _freeze(self):
        """Forbid any further attribute assignment."""
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        if self._frozen:
            raise RainException("cannot set {!r}: {} is frozen after submit".format(
                name, type(self).__name__))
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if self._frozen:
            raise RainException("cannot delete {!r}: {} is frozen after submit".format(
                name, type(self).__name__))
        object.__delattr__(self, name)


def _none():
    return None


def _empty_str():
    return ""


class TaskSpec(_FrozenAfterSubmit):
    """What a task is: type, configuration, inputs, outputs and resource needs."""

    __slots__ = ("id", "task_type", "config", "inputs", "outputs", "resources", "name",
                 "user")
    _fields = (
        ("id", _none),
        ("task_type", _none),
        ("config", _none),
        ("inputs", list),
        ("outputs", list),
        ("resources", lambda: {"cpus": 1}),
        ("name", _none),
        ("user", dict),
    )
    _coerce = {
        "id": _to_id,
        "inputs": lambda v: [_to_input(i) for i in v],
        "outputs": lambda v: [_to_id(o) for o in v],
    }
    _encode = {
        "id": _id_json,
        "inputs": lambda v: [i.to_json() for i in v],
        "outputs": lambda v: [_id_json(o) for o in v],
    }
    _decode = {
        "id": id_from_pair,
        "inputs": lambda v: [TaskSpecInput.from_json(i) for i in v],
        "outputs": lambda v: [id_from_pair(o) for o in v],
    }
    # A configuration such as {} or 0 is meaningful and must survive a round trip.
    _keep_falsy = frozenset(["config"])


class TaskInfo(_Attributes):
    """What happened when a task ran (filled in by the runtime)."""

    __slots__ = ("error", "start_time", "duration", "governor", "debug", "user")
    _fields = (
        ("error", _empty_str),
        ("start_time", _empty_str),
        ("duration", _none),
        ("governor", _empty_str),
        ("debug", _empty_str),
        ("user", dict),
    )


class ObjectSpec(_FrozenAfterSubmit):
    """What a data object is declared to be: label, content type, blob or directory."""

    __slots__ = ("id", "label", "content_type", "data_type", "user")
    _fields = (
        ("id", _none),
        ("label", _none),
        ("content_type", _none),
        ("data_type", lambda: DataType.BLOB),
        ("user", dict),
    )
    _coerce = {"id": _to_id, "data_type": _to_data_type}
    _encode = {"id": _id_json, "data_type": DataType.to_str}
    _decode = {"id": id_from_pair, "data_type": DataType.from_str}


class ObjectInfo(_Attributes):
    """What is known about a data object once produced (filled in by the runtime)."""

    __slots__ = ("error", "size", "content_type", "debug", "user")
    _fields = (
        ("error", _empty_str),
        ("size", _none),
        ("content_type", _none),
        ("debug", _empty_str),
        ("user", dict),
    )
