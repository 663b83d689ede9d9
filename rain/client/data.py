"""Data objects of the graph, and constants made on the client (``blob``, ``pickled``,
``directory``). A big constant (``UPLOAD_MIN`` bytes or more, or an open file that big) is
not read into the submit: ``submit()`` streams it into a governor's store first."""
import os

from ..common.attributes import ObjectInfo, ObjectSpec
from ..common.content_type import check_content_type, encode_value, is_type_instance
from ..common.data_instance import make_tar
from ..common.errors import RainException
from ..common.ids import ID, DataType
from ..transfer.upload import UPLOAD_MIN, BytesSource, DirectorySource, file_source, tree_size
from .session import get_active_session


#: Looked up once: attribute access on an Enum class is slow, and every object needs it.
_BLOB = DataType.BLOB


class DataObject:
    """A node of the graph holding data: a task output or a constant.

    Fields live in slots and ``spec`` is built on first use (from then on it is what
    gets submitted), as for tasks: a big graph has millions of objects.
    """

    __slots__ = ("session", "_id", "_label", "_content_type", "_data_type", "_keep", "_data",
                 "_upload", "_spec_cache", "_state", "_info", "__weakref__")

    def __init__(self, label=None, session=None, data_type=_BLOB, content_type=None):
        if session is None:
            session = get_active_session()
        if data_type is not _BLOB:
            if isinstance(data_type, str):
                data_type = DataType.from_str(data_type)
            if not isinstance(data_type, DataType):
                raise TypeError(f"invalid data_type {data_type!r}")
        if content_type is not None:
            check_content_type(content_type)
            if data_type == DataType.DIRECTORY and content_type not in ("", "dir"):
                raise RainException("A directory object cannot have content type "
                                    f"{content_type!r}")
        self.session = session
        self._id = session._register_dataobj(self)
        self._label = label
        self._content_type = content_type
        self._data_type = data_type
        self._spec_cache = None
        self._keep = False
        self._data = None           # bytes of a constant
        self._upload = None         # or the source of a big one (rain.transfer.upload)
        self._state = None
        self._info = None

    # -- identity ---------------------------------------------------------------------------
    @property
    def id(self):
        return ID(self.session.session_id, self._id)

    @property
    def label(self):
        spec = self._spec_cache
        return self._label if spec is None else spec.label

    @property
    def spec(self):
        """The ``ObjectSpec``; built on first use, and from then on what is submitted."""
        spec = self._spec_cache
        if spec is None:
            spec = self._spec_cache = ObjectSpec(
                id=ID(self.session.session_id, self._id), label=self._label,
                content_type=self._content_type, data_type=self._data_type)
            if self._state is not None:
                spec._freeze()
        return spec

    @property
    def _session(self):
        """Rain 0.4's name of ``session``."""
        return self.session

    @property
    def info(self):
        return self._info

    @property
    def state(self):
        return self._state

    @property
    def data_type(self):
        spec = self._spec_cache
        return self._data_type if spec is None else spec.data_type

    def _declared_content_type(self):
        """The content type given when the object was declared (or set on its spec)."""
        spec = self._spec_cache
        return self._content_type if spec is None else spec.content_type

    @property
    def content_type(self):
        """The content type known at run time when compatible, else the declared one."""
        declared = self._declared_content_type()
        if self._info is not None and self._info.content_type:
            known = self._info.content_type
            if not declared or is_type_instance(known, declared):
                return known
        return declared

    def __repr__(self):
        label = f" {self.label!r}" if self.label else ""
        return f"<DataObject {self.session.session_id}/{self._id}{label}>"

    # -- keeping ----------------------------------------------------------------------------
    def keep(self):
        """Keep the object after it is no longer needed by tasks (to fetch it)."""
        if self._state is not None:
            raise RainException("keep() is only possible before the object is submitted")
        self._keep = True
        return self

    def unkeep(self):
        self.session.unkeep([self])

    def is_kept(self):
        return self._keep

    def expect_dir(self):
        if self.data_type != DataType.DIRECTORY:
            raise RainException(f"{self!r} is not a directory object")

    # -- server interaction ---------------------------------------------------------------
    def wait(self):
        self.session.wait([self])

    def fetch(self):
        """Wait until the object is finished and return its ``DataInstance``."""
        return self.session.fetch(self)

    def fetch_to(self, path):
        """Wait until the object is finished and stream it into ``path`` (a file, or a
        directory for a directory object; it must not exist yet) without holding it in
        memory. Returns a ``DataInstance`` backed by ``path``."""
        return self.session.fetch_to(self, path)

    def update(self):
        self.session.update([self])

    def _set_info(self, info_json):
        if info_json:
            self._info = ObjectInfo.from_json(info_json)


def blob(value, label="const", content_type=None, encode=None):
    """A constant object made of ``value``: bytes as they are, ``str`` as ``text``, an
    open binary file's content from its current position (``blob(open(path, "rb"))``,
    sent from the file when submitted, never read into memory), or any value serialized
    with ``encode`` ("json", "pickle", "cbor", "arrow", ...)."""
    if encode is None and not isinstance(value, (bytes, bytearray, memoryview, str)) \
            and hasattr(value, "read"):
        return _file_blob(value, label, content_type)
    if encode is not None:
        if content_type is not None:
            raise RainException("Give either 'content_type' or 'encode', not both")
        check_content_type(encode)
        data = encode_value(value, encode)
        content_type = encode
    elif isinstance(value, str):
        if content_type is None:
            content_type = "text"
        elif not is_type_instance(content_type, "text"):
            raise RainException(f"A str cannot have content type {content_type!r}; "
                                "encode it or pass bytes")
        encoding = content_type[5:] if content_type.startswith("text-") else "utf-8"
        data = value.encode(encoding)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise RainException(f"blob() needs bytes or str, not {type(value).__name__}; "
                            "use encode=\"pickle\" (or \"json\", ...) to serialize it")
    obj = DataObject(label=label, content_type=content_type)
    if len(data) >= UPLOAD_MIN:
        obj._upload = BytesSource(data)
    else:
        obj._data = data
    return obj


def _file_blob(file, label, content_type):
    if isinstance(getattr(file, "mode", "b"), str) and "b" not in getattr(file, "mode", "b"):
        raise RainException("blob() needs a file opened in binary mode ('rb')")
    source = file_source(file)
    if source is None or source.size < UPLOAD_MIN:
        data = file.read()
        if not isinstance(data, (bytes, bytearray)):
            raise RainException("blob() needs a file opened in binary mode ('rb')")
        return blob(bytes(data), label=label, content_type=content_type)
    if content_type is not None:
        check_content_type(content_type)
    obj = DataObject(label=label, content_type=content_type)
    obj._upload = source
    return obj


def pickled(value, label="pickle"):
    """A constant holding ``value`` pickled (with cloudpickle)."""
    return blob(value, label=label, encode="pickle")


def directory(path, label="const_dir"):
    """A constant directory object with the content of the local directory ``path``."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise RainException(f"directory(): {path!r} is not a directory")
    obj = DataObject(label=label, data_type=DataType.DIRECTORY, content_type="dir")
    if tree_size(path, UPLOAD_MIN) >= UPLOAD_MIN:
        obj._upload = DirectorySource(path)
    else:
        obj._data = make_tar(path)
    return obj


def to_dataobj(value):
    """A data object for ``value``: a DataObject as is, a Task's single output, bytes or
    str as a new constant."""
    from .task import Task
    if isinstance(value, DataObject):
        return value
    if isinstance(value, Task):
        return value.output
    if isinstance(value, (bytes, str)):
        return blob(value)
    raise RainException(f"{value!r} cannot be used as a data object")
