"""Exception and warning types shared by the client, server, governor and executors.

They live in one module so that every component raises (and every caller catches)
the same classes regardless of where an error was detected.
"""


class RainException(Exception):
    """Base class of all errors reported by Rain."""


class RainWarning(Warning):
    """Warning category for non-fatal problems (e.g. ignored options)."""


class SessionException(RainException):
    """The session failed; further operations on it are refused."""


class TaskException(SessionException):
    """A task failed, which also fails its session."""
