"""Errors of client requests, shared by the core and the decoding of client messages.

Each kind of refusal is its own type, so that every front end (the RPC connection, the
REST API) tells them apart by type, never by the wording of the message.
"""


class RequestError(Exception):
    """A client request that cannot be honoured; the message goes back to that client."""


class SessionNotOpen(RequestError):
    """The request names a session that is closed, unknown, or another client's."""


class UnknownItem(RequestError):
    """The request names a task or object that its session does not have."""
