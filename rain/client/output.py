"""Output declarations: labels, content types and file paths of task outputs."""
from ..common.content_type import check_content_type
from ..common.errors import RainException
from ..common.ids import DataType
from .data import DataObject


class Output:
    """An output of a task, declared by label, content type, ``encode`` (Python tasks) or
    ``path`` (files of external programs)."""

    data_type = DataType.BLOB

    def __init__(self, label=None, *, size_hint=None, content_type=None, encode=None,
                 path=None):
        if content_type is not None and encode is not None:
            raise RainException("Give either 'content_type' or 'encode', not both")
        if encode is not None:
            check_content_type(encode)
        if content_type is not None:
            check_content_type(content_type)
        if label is None and path is not None:
            label = path
        self.label = label
        self.size_hint = size_hint
        self.content_type = content_type
        self.encode = encode
        self.path = path

    def _declared_content_type(self):
        return self.encode or self.content_type

    def create_data_object(self, session=None):
        return DataObject(label=self.label, session=session, data_type=self.data_type,
                          content_type=self._declared_content_type())

    def __repr__(self):
        return f"<{type(self).__name__} {self.label!r}>"


class OutputDir(Output):
    """A directory output."""

    data_type = DataType.DIRECTORY

    def __init__(self, label=None, *, size_hint=None, content_type=None, path=None):
        super().__init__(label, size_hint=size_hint, content_type=content_type, path=path)

    def _declared_content_type(self):
        return "dir"


def to_output(value):
    """An Output for a label, an Output, or ``None``."""
    if isinstance(value, Output):
        return value
    if value is None or isinstance(value, str):
        return Output(value)
    raise RainException(f"Invalid output {value!r}")
