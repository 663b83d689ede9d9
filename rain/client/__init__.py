"""Rain's Python client: build a task graph, submit it, wait for and fetch results."""
from ..common.errors import RainException, RainWarning, SessionException, TaskException
from . import data, input, output, rpc, session, tasks  # noqa: F401
from .client import Client
from .data import DataObject, blob, directory, pickled
from .input import Input, InputDir
from .output import Output, OutputDir
from .program import Program
from .remote import Remote, remote
from .session import Session
from .task import Task

__all__ = ["Client", "Task", "DataObject", "tasks", "blob", "pickled", "directory",
           "remote", "Remote", "Program", "Input", "InputDir", "Output", "OutputDir",
           "RainException", "RainWarning", "SessionException", "TaskException", "Session"]
