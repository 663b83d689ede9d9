"""Types shared by the Rain client, server, governor and executors."""

from . import attributes, content_type  # noqa: F401
from .data_instance import DataInstance
from .errors import RainException, RainWarning, SessionException, TaskException
from .ids import ID, DataType
from .labeled_list import LabeledList

__all__ = [
    "LabeledList",
    "DataInstance",
    "ID",
    "DataType",
    "RainException",
    "RainWarning",
    "SessionException",
    "TaskException",
    "attributes",
    "content_type",
]
