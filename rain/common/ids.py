"""Identifiers of tasks and data objects, and the kind of data an object holds.

An ID is the pair (session id, id within the session); it is a tuple so it can be
used as a dictionary key and sent over the wire as a two-element list.
"""

import enum
from typing import NamedTuple


class ID(NamedTuple):
    """Globally unique identifier of a task or data object."""

    session_id: int
    id: int

    def __repr__(self):
        return "ID(session_id={}, id={})".format(self.session_id, self.id)


def id_from_pair(seq):
    """Build an ID from any two-element sequence such as ``[session_id, id]``."""
    session_id, id_ = seq
    return ID(int(session_id), int(id_))


class DataType(enum.Enum):
    """Whether a data object is a single blob of bytes or a directory tree."""

    BLOB = "blob"
    DIRECTORY = "dir"

    @classmethod
    def from_str(cls, value):
        """Parse the wire/JSON name (``"blob"`` or ``"dir"``)."""
        for member in cls:
            if member.value == value:
                return member
        raise ValueError("invalid data type: {!r}".format(value))

    def to_str(self):
        """Return the wire/JSON name."""
        return self.value
