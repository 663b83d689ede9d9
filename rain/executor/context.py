"""The ``ctx`` object a Python task receives as its first argument.

Everything here is built lazily: a trivial task that never touches ``ctx.spec`` or
``ctx.info`` pays for neither (this is the hot path of tiny tasks).
"""
import os

from ..common.attributes import TaskInfo, TaskSpec, TaskSpecInput
from ..common.content_type import check_content_type, encode_value, is_type_instance
from ..common.data_instance import DataInstance
from ..common.errors import RainException
from ..common.ids import ID, DataType


class Context:
    """Run-time context of one Python task.

    - ``spec``: the task's ``TaskSpec`` (id, task_type, config, inputs, outputs,
      resources, name, user);
    - ``info``: a writable ``TaskInfo``; ``info.user`` and ``info.debug`` go back to the
      client;
    - ``function``: the Python function being run;
    - ``debug(fmt, *args)``, ``blob(...)``, ``pickled(...)``, ``stage_file(...)``,
      ``stage_directory(...)``.
    """

    __slots__ = ("function", "_task", "_call", "_config", "_spec", "_info", "_executor")

    def __init__(self, call, function, config, executor=None):
        self.function = function
        self._executor = executor
        self._call = call
        self._task = call["task"]
        self._config = config
        self._spec = None
        self._info = None

    # -- attributes -------------------------------------------------------------------
    @property
    def spec(self):
        """The ``TaskSpec`` of the running task."""
        spec = self._spec
        if spec is None:
            task = self._task
            session, task_id = task["id"]
            spec = TaskSpec(
                id=ID(session, task_id), task_type=task.get("type"), config=self._config,
                inputs=[TaskSpecInput(ID(*i["id"]), i.get("label"))
                        for i in self._call["inputs"]],
                outputs=[ID(*o["id"]) for o in self._call["outputs"]],
                resources=dict(task.get("resources") or {"cpus": 1}),
                name=task.get("name"), user=dict(task.get("user") or {}))
            spec._freeze()
            self._spec = spec
        return spec

    @property
    def info(self):
        """The writable ``TaskInfo`` of the running task."""
        info = self._info
        if info is None:
            info = self._info = TaskInfo()
        return info

    @property
    def task_id(self):
        return ID(*self._task["id"])

    # -- helpers ----------------------------------------------------------------------
    def debug(self, fmt, *args):
        """Append a line to ``info.debug`` (``fmt.format(*args)`` when args are given).

        The debug log is returned with the task and shown in the error of a failed task.
        """
        message = fmt.format(*args) if args else str(fmt)
        info = self.info
        info.debug = f"{info.debug}\n{message}" if info.debug else message

    def blob(self, value, content_type=None, encode=None):
        """A ``DataInstance`` to return as an output: bytes as they are, ``str`` as
        ``text``, or any value serialized with ``encode`` (json, pickle, cbor, arrow...)."""
        if encode is not None:
            if content_type is not None:
                raise RainException("Give either 'content_type' or 'encode', not both")
            return DataInstance(data=encode_value(value, encode), content_type=encode)
        if isinstance(value, str):
            if content_type is None:
                content_type = "text"
            elif not is_type_instance(content_type, "text"):
                raise RainException(f"A str cannot have content type {content_type!r}; "
                                    "encode it or pass bytes")
            encoding = content_type[5:] if content_type.startswith("text-") else "utf-8"
            return DataInstance(data=value.encode(encoding), content_type=content_type)
        if isinstance(value, (bytes, bytearray, memoryview)):
            check_content_type(content_type)
            return DataInstance(data=bytes(value), content_type=content_type)
        raise RainException(f"ctx.blob() needs bytes or str, not {type(value).__name__}; "
                            "use encode=\"pickle\" (or \"json\", ...) to serialize it")

    def pickled(self, value):
        """``blob(value, encode="pickle")``."""
        return self.blob(value, encode="pickle")

    def stage_file(self, path, content_type=None):
        """A ``DataInstance`` of the file at ``path``, to return as an output.

        The file is *moved* out of the working directory at once (and into the governor's
        store when the task ends): do not use it afterwards.
        """
        check_content_type(content_type)
        path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(path):
            raise RainException(f"stage_file(): {path!r} is not a file")
        if self._executor is not None:
            path = self._executor.stage(path)
        return DataInstance(path=path, data_type=DataType.BLOB, content_type=content_type)

    def stage_directory(self, path):
        """A ``DataInstance`` of the directory at ``path``, to return as a directory
        output. The directory is *moved* into the governor's store when the task ends."""
        path = os.path.abspath(os.fspath(path))
        if not os.path.isdir(path):
            raise RainException(f"stage_directory(): {path!r} is not a directory")
        if self._executor is not None:
            path = self._executor.stage(path)
        return DataInstance(path=path, data_type=DataType.DIRECTORY, content_type="dir")

    def __repr__(self):
        session, task_id = self._task["id"]
        return f"<Context of task {session}/{task_id} {self._task.get('type')!r}>"
