"""Errors of client requests, shared by the core and the decoding of client messages."""


class RequestError(Exception):
    """A client request that cannot be honoured; the message goes back to that client."""
