"""CBOR helpers for the free-form fields of the wire protocol (empty bytes mean "none")."""
import cbor2


def dumps_or_empty(value):
    """Encode ``value``; falsy values (None, {}, []) become b"" to keep messages small."""
    if not value:
        return b""
    return cbor2.dumps(value)


def loads_or(data, default=None):
    """Decode CBOR bytes; empty input gives ``default``."""
    if not data:
        return default
    return cbor2.loads(data)
