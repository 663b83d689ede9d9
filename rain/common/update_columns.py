"""Governor -> server updates as columns: one packed array per field.

A governor reports thousands of task and object updates per second. Read as a list of
Cap'n Proto structs, each field of each entry costs the server a pycapnp call (~8 us per
task in all); as columns the whole batch is a few bulk reads. Ids travel as little-endian
uint64 pairs (session, id), states as one byte each, sizes as int64, and the variable parts
(info maps, content types) as one CBOR array. Task infos are maps nested in that array (not
CBOR bytes inside it): one ``cbor2.loads`` decodes a whole batch, where a byte string per
task cost the server a decoder call per finished task.
"""
import itertools

import cbor2

from .cbor import is_key
from .columns import ColumnError, pack, unpack  # noqa: F401 (ColumnError: this module's)

#: Finished blobs up to this size travel with their update, so that the server can answer
#: a client's fetch of a kept result itself (no second trip to the governor).
INLINE_DATA_MAX = 4096


def pack_ids(keys):
    """``keys``: (session, id) pairs -> bytes."""
    return pack("Q", itertools.chain.from_iterable(keys))


def unpack_ids(data, what="ids"):
    """bytes -> (sessions, ids), two sequences of equal length."""
    values = unpack("Q", data, what)
    if len(values) % 2:
        raise ColumnError(f"{what}: odd number of values")
    return values[0::2], values[1::2]


def encode_tasks(entries):
    """``entries``: (key, state, info) -> (ids, states, infos) column bytes; ``info`` is
    the TaskInfo map, or None when there is nothing to say ("running")."""
    return (pack_ids(e[0] for e in entries), bytes(e[1] for e in entries),
            cbor2.dumps([e[2] for e in entries]))


def decode_tasks(ids, states, infos):
    """Columns -> [(session, id, state, info)]; ``info`` is whatever the governor put
    there (a map, or None), for the server to check where it uses it."""
    sessions, task_ids = unpack_ids(ids, "task ids")
    infos = _cbor_list(infos, "task infos")
    if not len(sessions) == len(states) == len(infos):
        raise ColumnError("task update columns differ in length")
    return list(zip(sessions, task_ids, states, infos))


def encode_objects(entries):
    """``entries``: (key, state, size, content_type, info_bytes[, data]) -> column bytes
    (ids, states, sizes, details). ``data``: the bytes of a small finished blob (see
    ``INLINE_DATA_MAX``), or None; the data list is left out when no entry has any."""
    details = [[e[3] for e in entries], [e[4] for e in entries]]
    data = [e[5] if len(e) > 5 else None for e in entries]
    if any(value is not None for value in data):
        details.append(data)
    return (pack_ids(e[0] for e in entries), bytes(e[1] for e in entries),
            pack("q", (e[2] for e in entries)), cbor2.dumps(details))


def decode_objects(ids, states, sizes, details):
    """Columns -> [(session, id, state, size, content_type, info_bytes, data_or_None)]."""
    sessions, object_ids = unpack_ids(ids, "object ids")
    sizes = unpack("q", sizes, "object sizes")
    details = _cbor_list(details, "object details")
    if len(details) not in (2, 3):
        raise ColumnError("object details must be [content types, infos(, data)]")
    content_types, infos = details[0], details[1]
    data = details[2] if len(details) == 3 else [None] * len(sessions)
    if not all(isinstance(column, list) for column in (content_types, infos, data)) or \
            not len(sessions) == len(states) == len(sizes) == len(content_types) \
            == len(infos) == len(data):
        raise ColumnError("object update columns differ in length")
    if not all(type(value) is str for value in content_types) or \
            not all(type(value) is bytes for value in infos) or \
            not all(value is None or type(value) is bytes for value in data):
        raise ColumnError("object details: content types must be text, infos and data "
                          "bytes")
    return list(zip(sessions, object_ids, states, sizes, content_types, infos, data))


def pack_rows(objects, tasks):
    """A small update as one CBOR array ``[object entries, task entries]``, the entries
    as ``encode_objects`` / ``encode_tasks`` take them."""
    return cbor2.dumps([objects, tasks])


def _object_row(row):
    if type(row) is not list or len(row) not in (5, 6):
        raise ColumnError("an object entry is not a list of 5 or 6 fields")
    key, state, size, content_type, info = row[:5]
    data = row[5] if len(row) == 6 else None
    if not is_key(key):
        raise ColumnError("an object entry: its key is not a (session, id) pair")
    if type(state) is not int or not 0 <= state < 256 or type(size) is not int \
            or type(content_type) is not str or type(info) is not bytes \
            or (data is not None and type(data) is not bytes):
        raise ColumnError(f"object entry ({key[0]}, {key[1]}): a field of the wrong kind")
    return (key[0], key[1], state, size, content_type, info, data)


def _task_row(row):
    if type(row) is not list or len(row) != 3:
        raise ColumnError("a task entry is not a list of 3 fields")
    key, state, info = row
    if not is_key(key):
        raise ColumnError("a task entry: its key is not a (session, id) pair")
    if type(state) is not int or not 0 <= state < 256:
        raise ColumnError(f"task entry ({key[0]}, {key[1]}): invalid state {state!r}")
    return (key[0], key[1], state, info)


def read_rows(data):
    """(objects, tasks) of a small update, as ``decode_objects`` / ``decode_tasks`` give
    them."""
    value = _cbor_list(data, "update rows")
    if len(value) != 2 or type(value[0]) is not list or type(value[1]) is not list:
        raise ColumnError("update rows must be [object entries, task entries]")
    return [_object_row(row) for row in value[0]], [_task_row(row) for row in value[1]]


def _cbor_list(data, what):
    if not data:
        return []
    try:
        value = cbor2.loads(data)
    except Exception as exc:
        raise ColumnError(f"{what}: invalid CBOR ({exc})") from None
    if not isinstance(value, list):
        raise ColumnError(f"{what}: expected a CBOR array")
    return value
