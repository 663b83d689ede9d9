"""Input declarations: how a task receives a data object (label, file path, loading)."""
from ..common.content_type import check_content_type
from ..common.errors import RainException
from ..common.ids import DataType


class Input:
    """An input of a task: ``label``, the ``path`` an external program sees it at,
    ``dataobj`` (bound data), ``load`` (Python tasks get the decoded value),
    ``content_type`` (expected type) and ``write`` (a private writable copy)."""

    data_type = DataType.BLOB

    def __init__(self, label=None, path=None, dataobj=None, load=None, content_type=None,
                 write=False):
        if content_type is not None:
            check_content_type(content_type)
        if dataobj is not None:
            from .data import to_dataobj
            dataobj = to_dataobj(dataobj)
            if self.data_type == DataType.DIRECTORY:
                dataobj.expect_dir()
        self.label = label
        self.path = path
        self.dataobj = dataobj
        self.load = load
        self.content_type = content_type
        self.write = write

    def bind(self, dataobj):
        """A copy of this declaration bound to ``dataobj``."""
        return type(self)(self.label, path=self.path, dataobj=dataobj, load=self.load,
                          content_type=self.content_type, write=self.write)

    def __repr__(self):
        return f"<{type(self).__name__} {self.label!r}>"


class InputDir(Input):
    """A directory input."""

    data_type = DataType.DIRECTORY

    def __init__(self, label=None, path=None, dataobj=None, content_type="dir", write=False):
        if content_type not in (None, "dir"):
            raise RainException("A directory input has content type 'dir'")
        super().__init__(label, path=path, dataobj=dataobj, load=False,
                         content_type=content_type, write=write)

    def bind(self, dataobj):
        return type(self)(self.label, path=self.path, dataobj=dataobj,
                          content_type=self.content_type, write=self.write)
