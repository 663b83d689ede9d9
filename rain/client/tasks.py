"""Built-in tasks, run inside the governor (task types ``buildin/*``).

Every one takes ``retries=`` and ``retry_on_error=`` as ``Task`` does."""
import os

from ..common.errors import RainException
from ..common.ids import DataType
from .data import DataObject, to_dataobj
from .output import Output, OutputDir, to_output
from .program import Execute, Program  # noqa: F401  (exported here as in Rain 0.4)
from .task import Task


def _output(output, default_label, directory=False, content_type=None):
    """The output spec of a one-output built-in; ``content_type`` as in Rain 0.4's
    ``Load(path, content_type=...)`` (only with a label or no ``output``)."""
    if content_type is not None and not (output is None or isinstance(output, str)):
        raise RainException("Give the content type in the Output, not beside it")
    if isinstance(output, DataObject):
        return output
    if output is None:
        output = default_label
    if isinstance(output, str):
        if directory:
            if content_type not in (None, "dir"):
                raise RainException("A directory has content type 'dir'")
            return OutputDir(output)
        return Output(output, content_type=content_type)
    output = to_output(output)
    if directory and not isinstance(output, OutputDir):
        raise RainException("This task produces a directory: use OutputDir")
    return output


class Concat(Task):
    """Join blobs into one."""

    __slots__ = ()

    def __init__(self, inputs, *, name=None, session=None, retries=None,
                 retry_on_error=False):
        super().__init__(list(inputs), 1, task_type="buildin/concat", name=name,
                         session=session, retries=retries,
                         retry_on_error=retry_on_error)


class Sleep(Task):
    """Pass the input through after ``seconds``."""

    __slots__ = ()

    def __init__(self, input, seconds, *, cpus=1, name=None, session=None, retries=None,
                 retry_on_error=False):
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise RainException(f"Sleep: invalid number of seconds {seconds!r}") from None
        obj = to_dataobj(input)
        content_type = obj._declared_content_type()
        super().__init__([obj], [Output(content_type=content_type)
                                 if content_type else Output()],
                         config={"seconds": seconds}, task_type="buildin/sleep", cpus=cpus,
                         name=name, session=session, retries=retries,
                         retry_on_error=retry_on_error)


class Load(Task):
    """Copy a file of the governor's file system (absolute path) into the cluster."""

    __slots__ = ()

    def __init__(self, path, output=None, *, content_type=None, name=None, session=None,
                 retries=None, retry_on_error=False):
        super().__init__((), [_output(output, os.path.basename(str(path)) or "data",
                                      content_type=content_type)],
                         config={"path": str(path)}, task_type="buildin/open", name=name,
                         session=session, retries=retries,
                         retry_on_error=retry_on_error)


class LoadDir(Task):
    """Copy a directory of the governor's file system (absolute path) into the cluster."""

    __slots__ = ()

    def __init__(self, path, output=None, *, content_type=None, name=None, session=None,
                 retries=None, retry_on_error=False):
        super().__init__((), [_output(output, os.path.basename(str(path).rstrip("/"))
                                      or "dir", directory=True, content_type=content_type)],
                         config={"path": str(path)}, task_type="buildin/open_dir", name=name,
                         session=session, retries=retries,
                         retry_on_error=retry_on_error)


class Store(Task):
    """Write an object to an absolute path on the governor's file system."""

    __slots__ = ()

    def __init__(self, input, path, *, name=None, session=None, retries=None,
                 retry_on_error=False):
        super().__init__([to_dataobj(input)], 0, config={"path": str(path)},
                         task_type="buildin/export", name=name, session=session,
                         retries=retries, retry_on_error=retry_on_error)


class MakeDirectory(Task):
    """Assemble objects into one directory: ``{relpath: obj}`` or pairs."""

    __slots__ = ()

    def __init__(self, paths_objects, *, name=None, session=None, retries=None,
                 retry_on_error=False):
        items = paths_objects.items() if isinstance(paths_objects, dict) else paths_objects
        paths, inputs = [], []
        for path, obj in items:
            paths.append(str(path))
            inputs.append(to_dataobj(obj))
        super().__init__(inputs, [OutputDir("dir")], config={"paths": paths},
                         task_type="buildin/make_directory", name=name, session=session,
                         retries=retries, retry_on_error=retry_on_error)


class SliceDirectory(Task):
    """Take a file (or a sub-directory, when ``path`` ends with '/') out of a directory."""

    __slots__ = ()

    def __init__(self, input, path, output=None, *, content_type=None, name=None,
                 session=None, retries=None, retry_on_error=False):
        obj = to_dataobj(input)
        obj.expect_dir()
        is_dir = str(path).endswith("/")
        label = os.path.basename(str(path).rstrip("/")) or "slice"
        super().__init__([obj], [_output(output, label, directory=is_dir,
                                         content_type=content_type)],
                         config={"path": str(path)}, task_type="buildin/slice_directory",
                         name=name, session=session, retries=retries,
                         retry_on_error=retry_on_error)


# Lower-case names of the earliest Rain clients.
concat = Concat
sleep = Sleep
load = open = Load
load_dir = LoadDir
store = export = Store
make_directory = MakeDirectory
slice_directory = SliceDirectory
execute = Execute

__all__ = ["Concat", "Sleep", "Load", "LoadDir", "Store", "MakeDirectory", "SliceDirectory",
           "Execute", "Program", "DataType"]
