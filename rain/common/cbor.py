"""CBOR helpers for the free-form fields of the wire protocol (empty bytes mean "none")."""
import cbor2


#: Submits, assignments and governor updates of up to this many items travel as one CBOR
#: array of rows instead of columns: the columns cost a fixed amount per field, which a
#: single task's round trip feels; rows cost per item, which a big graph would.
ROWS_MAX = 16


def is_key(value):
    """Whether a decoded CBOR value is a (session, id) pair of integers."""
    return type(value) is list and len(value) == 2 and type(value[0]) is int \
        and type(value[1]) is int


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
