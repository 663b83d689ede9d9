"""State enums of tasks and data objects, as the server reports them (names and order
from ``rain.common.states``)."""
import enum

from ...common.states import OBJECT_STATE_NAMES, TASK_STATE_NAMES

TaskState = enum.Enum("TaskState", [(name, name) for name in TASK_STATE_NAMES],
                      module=__name__)
DataObjectState = enum.Enum("DataObjectState", [(name, name) for name in OBJECT_STATE_NAMES],
                            module=__name__)
