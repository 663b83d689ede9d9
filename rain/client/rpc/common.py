"""State enums of tasks and data objects, as the server reports them."""
import enum


class TaskState(enum.Enum):
    notAssigned = "notAssigned"
    ready = "ready"
    assigned = "assigned"
    running = "running"
    finished = "finished"
    failed = "failed"


class DataObjectState(enum.Enum):
    unfinished = "unfinished"
    finished = "finished"
    removed = "removed"
