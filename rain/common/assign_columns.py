"""Server -> governor assignments as columns (``Assignment`` in ``rain.capnp``).

The server hands a governor thousands of tasks per second. Filled and read as one Cap'n
Proto struct per task and object, every field of every entry costs a pycapnp call at both
ends; as columns a whole assignment is a few packed arrays, string tables and slices.

The server side calls ``fill_objects`` / ``fill_tasks`` with one Python list per field; a
governor gets rows back from ``read_objects`` / ``read_tasks``, which check the columns
for shape and raise ``AssignmentError`` when they do not fit together.
"""
from itertools import accumulate, chain, islice, repeat

import cbor2

from . import columns
from .cbor import is_key
from .columns import ColumnError, pack, sparse_indexes, string_table

class AssignmentError(ColumnError):
    """The columns of an assignment do not fit together."""


# ----------------------------------------------------------------------------------------
# Packing (server)

def pack_keys(keys):
    """(session, id) pairs as one column of Int32 pairs (task or object ids)."""
    return pack("i", chain.from_iterable(keys))


def _fill_strings(builder, name, values):
    """The ``StringColumn`` ``name``; left out when every value is empty (a small
    assignment then costs no struct to fill)."""
    packed = string_table(values)
    if packed is None:
        return
    column = builder.init(name)
    column.table = packed[0]
    column.index = pack("i", packed[1])


def _fill_sparse(builder, name, values):
    """The ``SparseData`` ``name``: bytes for the items whose value is not empty."""
    if not any(values):
        return
    indexes = sparse_indexes(values)
    column = builder.init(name)
    column.indexes = pack("i", indexes)
    column.values = [values[i] for i in indexes]


def fill_objects(builder, keys, labels, content_types, directories, users, sizes,
                 locations, data):
    """An ``AssignedObjects``. One entry per object in each list (strings may be None
    for ""): ``keys`` (session, id) pairs, ``directories`` bools, ``users`` CBOR bytes
    (b"": none), ``locations`` lists of addresses, ``data`` bytes or None (not a
    constant)."""
    builder.ids = pack_keys(keys)
    _fill_strings(builder, "labels", labels)
    _fill_strings(builder, "contentTypes", content_types)
    if any(directories):
        builder.directories = pack("i", [i for i, d in enumerate(directories) if d])
    _fill_sparse(builder, "user", users)
    builder.sizes = pack("q", sizes)
    if any(locations):
        builder.locationCounts = pack("i", map(len, locations))
        _fill_strings(builder, "locations", list(chain.from_iterable(locations)))
    constants = [i for i, value in enumerate(data) if value is not None]
    if constants:
        sparse = builder.init("data")
        sparse.indexes = pack("i", constants)
        sparse.values = [data[i] for i in constants]


def fill_tasks(builder, keys, types, names, cpus, configs, input_ids, input_labels,
               output_ids, resources, users):
    """An ``AssignedTasks``. One entry per task in each list (strings may be None for
    ""): ``keys`` (session, id) pairs, ``configs`` / ``resources`` / ``users`` CBOR bytes
    (b"": none), ``input_ids`` / ``input_labels`` / ``output_ids`` one list per task
    (ids within its session)."""
    builder.ids = pack_keys(keys)
    _fill_strings(builder, "types", types)
    _fill_strings(builder, "names", names)
    if any(cpu != 1 for cpu in cpus):
        builder.cpus = pack("i", cpus)
    if any(configs):
        builder.configs = b"".join(configs)
        builder.configEnds = pack("i", accumulate(map(len, configs)))
    builder.inputCounts = pack("i", map(len, input_ids))
    builder.inputIds = pack("i", chain.from_iterable(input_ids))
    _fill_strings(builder, "inputLabels", list(chain.from_iterable(input_labels)))
    builder.outputCounts = pack("i", map(len, output_ids))
    builder.outputIds = pack("i", chain.from_iterable(output_ids))
    _fill_sparse(builder, "resources", resources)
    _fill_sparse(builder, "user", users)


def pack_rows(objects, tasks):
    """A small assignment as one CBOR array ``[object rows, task rows]``. A row holds one
    item's entries of the lists ``fill_objects`` / ``fill_tasks`` take, in their order."""
    return cbor2.dumps([objects, tasks])


def fill_columns(assign, objects, tasks):
    """Fill an ``Assignment``'s columns from the same rows ``pack_rows`` takes."""
    fill_objects(assign.init("objects"), *(list(zip(*objects)) or [()] * 8))
    fill_tasks(assign.init("tasks"), *(list(zip(*tasks)) or [()] * 10))


# ----------------------------------------------------------------------------------------
# Reading (governor)

def _ints(typecode, data, what, count=None):
    return columns.unpack(typecode, data, what, count, AssignmentError).tolist()


def read_keys(data, what):
    """The (session, id) pairs of a ``pack_keys`` column."""
    flat = _ints("i", data, what)
    if len(flat) % 2:
        raise AssignmentError(f"column {what}: an odd number of values, not (session, id) "
                              "pairs")
    return list(zip(flat[0::2], flat[1::2]))


def _strings(parent, name, what, count):
    """The StringColumn ``name`` of ``parent`` (absent: all ""). Absent columns are
    checked with ``_has``, a third of a field read: small assignments read fast."""
    if not parent._has(name):
        return [""] * count
    column = getattr(parent, name)
    index_data = column.index
    if not index_data:
        return [""] * count
    return columns.strings(list(column.table), index_data, what, count, AssignmentError)


def _index_set(data, what, count):
    return columns.index_set(data, what, count, AssignmentError)


def _sparse(parent, name, what, count, default):
    """A list of ``count`` values: ``default`` except where the SparseData ``name`` of
    ``parent`` has bytes."""
    if not parent._has(name):
        return [default] * count
    column = getattr(parent, name)
    indexes = _index_set(column.indexes, f"{what}.indexes", count)
    values = list(column.values) if indexes else ()
    return columns.sparse(indexes, values, what, count, default, AssignmentError)


def _bounds(counts, total, what):
    """(start, end) offsets of each item's part of a flattened column."""
    if counts and min(counts) < 0:
        raise AssignmentError(f"column {what} has a negative count")
    ends = list(accumulate(counts))
    if (ends[-1] if ends else 0) != total:
        raise AssignmentError(f"column {what} adds up to {ends[-1] if ends else 0}, but "
                              f"{total} items were sent")
    starts = [0]
    starts.extend(ends[:-1])
    return starts, ends


def read_objects(column):
    """Rows ``(key, label, content_type, data_type, user, size, locations, data)`` of an
    ``AssignedObjects`` reader (data: bytes of a constant, else None; locations: a list,
    empty when none)."""
    keys = read_keys(column.ids, "objects.ids")
    n = len(keys)
    labels = _strings(column, "labels", "objects.labels", n)
    content_types = _strings(column, "contentTypes", "objects.contentTypes", n)
    data_types = [0] * n
    if column._has("directories"):
        for index in _index_set(column.directories, "objects.directories", n):
            data_types[index] = 1
    users = _sparse(column, "user", "objects.user", n, b"")
    sizes = _ints("q", column.sizes, "objects.sizes", n)
    if column._has("locationCounts"):
        counts = _ints("i", column.locationCounts, "objects.locationCounts", n)
        flat = _strings(column, "locations", "objects.locations", sum(counts))
        starts, ends = _bounds(counts, len(flat), "objects.locationCounts")
        locations = [flat[a:b] for a, b in zip(starts, ends)]
    else:
        locations = [[]] * n
    data = _sparse(column, "data", "objects.data", n, None)
    return list(zip(keys, labels, content_types, data_types, users, sizes, locations, data))


def _configs(blob, ends_data, count):
    if not ends_data:
        if blob:
            raise AssignmentError("configs given without their end offsets")
        return [b""] * count
    ends = _ints("i", ends_data, "tasks.configEnds", count)
    if ends and (ends[0] < 0 or ends[-1] != len(blob)):
        raise AssignmentError(f"config offsets do not cover the {len(blob)} bytes of "
                              "configs")
    if len(ends) > 1 and not all(map(int.__le__, ends, islice(ends, 1, None))):
        raise AssignmentError("config offsets go backwards")
    view = memoryview(blob)
    starts = [0]
    starts.extend(ends[:-1])
    return [bytes(view[a:b]) if a != b else b"" for a, b in zip(starts, ends)]


def _per_task(counts_data, ids_data, sessions, what, count):
    """Each task's list of (session, id) keys of a flattened id column."""
    counts = _ints("i", counts_data, f"tasks.{what}Counts", count)
    ids = _ints("i", ids_data, f"tasks.{what}Ids")
    starts, ends = _bounds(counts, len(ids), f"tasks.{what}Counts")
    keys = list(zip(chain.from_iterable(map(repeat, sessions, counts)), ids))
    return [keys[a:b] for a, b in zip(starts, ends)], starts, ends


def read_tasks(column):
    """Rows ``(key, task_type, config, input_keys, input_labels, output_keys, cpus,
    resources, name, user)`` of an ``AssignedTasks`` reader (config / user: CBOR bytes,
    b"" for none; resources: a dict or None)."""
    keys = read_keys(column.ids, "tasks.ids")
    n = len(keys)
    sessions = [key[0] for key in keys]
    types = _strings(column, "types", "tasks.types", n)
    names = _strings(column, "names", "tasks.names", n)
    cpus = _ints("i", column.cpus, "tasks.cpus", n) if column._has("cpus") else [1] * n
    if column._has("configEnds") or column._has("configs"):
        configs = _configs(column.configs, column.configEnds, n)
    else:
        configs = [b""] * n
    inputs, starts, ends = _per_task(column.inputCounts, column.inputIds, sessions,
                                     "input", n)
    flat_labels = _strings(column, "inputLabels", "tasks.inputLabels",
                           ends[-1] if ends else 0)
    labels = [flat_labels[a:b] for a, b in zip(starts, ends)]
    outputs = _per_task(column.outputCounts, column.outputIds, sessions, "output", n)[0]
    resources = _sparse(column, "resources", "tasks.resources", n, None)
    if column._has("resources"):
        for index, raw in enumerate(resources):
            if raw is not None:
                resources[index] = _resource_map(raw, keys[index])
    users = _sparse(column, "user", "tasks.user", n, b"")
    return list(zip(keys, types, configs, inputs, labels, outputs, cpus, resources, names,
                    users))


def _resource_map(raw, key):
    try:
        value = cbor2.loads(raw)
    except Exception as exc:
        raise AssignmentError(f"task {key}: resources are not valid CBOR ({exc})") from None
    if not isinstance(value, dict):
        raise AssignmentError(f"task {key}: resources are not a map")
    return value or None


# ----------------------------------------------------------------------------------------
# Reading rows (governor)

# Checks are spelled out (type tuples, loops) rather than helper calls: this is the path
# of a single task's round trip, where each extra function costs its first call.
_TEXT = (str, type(None))


def _key(value, what):
    if not is_key(value):
        raise AssignmentError(f"{what}: its key is not a (session, id) pair")
    return (value[0], value[1])


def _object_row(row):
    """One row of ``pack_rows`` as ``read_objects`` gives it."""
    if type(row) is not list or len(row) != 8:
        raise AssignmentError("an object row is not a list of 8 fields")
    key, label, content_type, directory, user, size, locations, data = row
    key = _key(key, "an object row")
    wrong = type(label) not in _TEXT or type(content_type) not in _TEXT or \
        type(directory) is not int or type(user) is not bytes or type(size) is not int or \
        type(locations) is not list or (data is not None and type(data) is not bytes)
    if not wrong:
        for item in locations:
            if type(item) is not str:
                wrong = True
    if wrong:
        raise AssignmentError(f"object {key}: a field of the wrong kind")
    return (key, label or "", content_type or "", 1 if directory else 0, user, size,
            locations, data)


def _task_row(row):
    """One row of ``pack_rows`` as ``read_tasks`` gives it."""
    if type(row) is not list or len(row) != 10:
        raise AssignmentError("a task row is not a list of 10 fields")
    key, task_type, name, cpus, config, input_ids, input_labels, output_ids, resources, \
        user = row
    key = _key(key, "a task row")
    wrong = type(task_type) not in _TEXT or type(name) not in _TEXT or \
        type(cpus) is not int or type(config) is not bytes or type(input_ids) is not list \
        or type(input_labels) is not list or len(input_labels) != len(input_ids) or \
        type(output_ids) is not list or type(resources) is not bytes or type(user) is not bytes
    if not wrong:
        for oid, label in zip(input_ids, input_labels):
            if type(oid) is not int or type(label) not in _TEXT:
                wrong = True
        for oid in output_ids:
            if type(oid) is not int:
                wrong = True
    if wrong:
        raise AssignmentError(f"task {key}: a field of the wrong kind")
    session = key[0]
    return (key, task_type or "", config, [(session, oid) for oid in input_ids],
            [label or "" for label in input_labels], [(session, oid) for oid in output_ids],
            cpus, _resource_map(resources, key) if resources else None, name or "", user)


def read_rows(data):
    """(object rows, task rows) of a small assignment, as ``read_objects`` and
    ``read_tasks`` give them."""
    try:
        value = cbor2.loads(data)
    except Exception as exc:
        raise AssignmentError(f"rows: invalid CBOR ({exc})") from None
    if type(value) is not list or len(value) != 2 or type(value[0]) is not list \
            or type(value[1]) is not list:
        raise AssignmentError("rows must be [object rows, task rows]")
    return [_object_row(row) for row in value[0]], [_task_row(row) for row in value[1]]
