"""Content types: how the bytes of a data object are to be interpreted.

A content type lets the runtime check that connected tasks agree on a format and lets
``DataInstance.load`` turn bytes back into Python values. Sub-types are written by
extending a type with ``-`` or ``/`` (``text-latin1`` is a ``text``), and
``cloudpickle`` is a ``pickle``.
"""

import codecs
import json
import pickle

from .errors import RainException

_SIMPLE_TYPES = frozenset(["pickle", "cloudpickle", "json", "cbor", "arrow", "text", "dir"])
_NAMESPACES = ("mime/", "user/")
_BYTES_TYPES = (bytes, bytearray, memoryview)


def _is_unknown(content_type):
    return content_type is None or content_type == ""


def check_content_type(content_type):
    """Raise ``RainException`` unless ``content_type`` is a valid content type."""
    if _is_unknown(content_type):
        return
    if not isinstance(content_type, str):
        raise RainException("invalid content type {!r}: not a string".format(content_type))
    if content_type in _SIMPLE_TYPES:
        return
    if content_type.startswith("text-"):
        encoding = content_type[5:]
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise RainException("invalid content type {!r}: unknown text encoding"
                                .format(content_type)) from None
        return
    for namespace in _NAMESPACES:
        if content_type.startswith(namespace):
            rest = content_type[len(namespace):]
            if rest and not rest.startswith("/") and not rest.endswith("/") \
                    and "//" not in rest:
                return
            break
    raise RainException("invalid content type {!r}".format(content_type))


def is_type_instance(sub, sup):
    """True if every value of type ``sub`` is also of type ``sup``.

    An unknown ``sup`` (None or "") accepts anything; otherwise ``sub`` must equal
    ``sup`` or extend it after a ``-`` or ``/`` separator.
    """
    if _is_unknown(sup):
        return True
    if _is_unknown(sub):
        return False
    if sub == sup:
        return True
    if sup == "pickle" and sub == "cloudpickle":
        return True
    return sub.startswith(sup + "-") or sub.startswith(sup + "/")


def merge_content_types(a, b):
    """The most specific type compatible with both; ``RainException`` if they conflict."""
    if _is_unknown(a):
        return b if not _is_unknown(b) else a
    if _is_unknown(b):
        return a
    if is_type_instance(a, b):
        return a
    if is_type_instance(b, a):
        return b
    raise RainException("incompatible content types {!r} and {!r}".format(a, b))


def _text_encoding(content_type):
    if content_type == "text":
        return "utf-8"
    return content_type[5:]


def _is_text(content_type):
    return content_type == "text" or content_type.startswith("text-")


#: Schema metadata of an Arrow stream that carries a plain Python value, and how to
#: turn the table back into it (Arrow tables and batches carry none: they load as tables).
_ARROW_VALUE_KEY = b"rain.python_value"


def _encode_arrow(value):
    import pyarrow as pa

    kind = None
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        value = pa.table({"values": value})
    elif isinstance(value, (pa.Table, pa.RecordBatch)):
        pass
    else:
        try:
            if isinstance(value, dict) and value and all(
                    isinstance(k, str) and isinstance(v, (list, tuple))
                    for k, v in value.items()):
                value, kind = pa.table({k: list(v) for k, v in value.items()}), b"columns"
            elif isinstance(value, (list, tuple)):
                value, kind = pa.table({"values": pa.array(list(value))}), b"list"
            else:
                value, kind = pa.table({"value": pa.array([value])}), b"scalar"
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise RainException("cannot encode {} as 'arrow': {}".format(
                type(value).__name__, exc)) from None
        value = value.replace_schema_metadata({_ARROW_VALUE_KEY: kind})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, value.schema) as writer:
        writer.write(value)
    return sink.getvalue().to_pybytes()


def _decode_arrow(data):
    import pyarrow as pa

    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    kind = (table.schema.metadata or {}).get(_ARROW_VALUE_KEY)
    if kind == b"columns":
        return table.to_pydict()
    if kind == b"list":
        return table.column("values").to_pylist()
    if kind == b"scalar":
        return table.column("value").to_pylist()[0]
    return table


def encode_value(value, content_type):
    """Serialize a Python value into bytes of the given content type."""
    check_content_type(content_type)
    if _is_unknown(content_type):
        raise RainException("cannot encode a value without a content type")
    try:
        if content_type in ("pickle", "cloudpickle"):
            import cloudpickle

            return cloudpickle.dumps(value)
        if content_type == "json":
            return json.dumps(value).encode("utf-8")
        if content_type == "cbor":
            import cbor2

            return cbor2.dumps(value)
    except RainException:
        raise
    except Exception as e:
        raise RainException("cannot encode {} as {!r}: {}".format(
            type(value).__name__, content_type, e)) from e
    if content_type == "arrow":
        return _encode_arrow(value)
    if _is_text(content_type):
        if not isinstance(value, str):
            raise RainException("cannot encode {} as {!r}: expected a str".format(
                type(value).__name__, content_type))
        try:
            return value.encode(_text_encoding(content_type))
        except UnicodeError as e:
            raise RainException("cannot encode str as {!r}: {}".format(content_type, e)) from e
    if content_type.startswith(_NAMESPACES):
        if isinstance(value, _BYTES_TYPES):
            return bytes(value)
        raise RainException("cannot encode {} as {!r}: only bytes are accepted".format(
            type(value).__name__, content_type))
    raise RainException("cannot encode a value as {!r}".format(content_type))


def decode_value(data, content_type):
    """Deserialize bytes of the given content type into a Python value."""
    check_content_type(content_type)
    if _is_unknown(content_type):
        raise RainException("cannot decode data without a content type")
    if isinstance(data, memoryview):
        data = data.tobytes()
    try:
        if content_type in ("pickle", "cloudpickle"):
            return pickle.loads(data)
        if content_type == "json":
            return json.loads(data)
        if content_type == "cbor":
            import cbor2

            return cbor2.loads(data)
        if content_type == "arrow":
            return _decode_arrow(data)
        if _is_text(content_type):
            return bytes(data).decode(_text_encoding(content_type))
    except Exception as e:
        raise RainException("cannot decode data as {!r}: {}".format(content_type, e)) from e
    raise RainException("no decoder for content type {!r}; use get_bytes() instead"
                        .format(content_type))
