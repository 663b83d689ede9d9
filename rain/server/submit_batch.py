"""One submit as columns: what the connection layer decodes and ``ServerCore.submit`` adds.

Columns are plain lists with one entry per task, object, input or output, so that the core
checks and builds a graph of a million tasks with bulk operations (sets, ``min``/``max``,
``zip``) instead of per-field work. Everything read from the wire is checked for shape
here (lengths, ranges, offsets); the graph itself (ids, references, cycles) is checked by
the core. Any problem is a ``RequestError`` for the submitting client.
"""
from array import array
from itertools import accumulate, islice
from operator import le

from ..common import columns
from ..common.cbor import loads_or
from .errors import RequestError

if array("i").itemsize != 4:      # pragma: no cover - every supported platform
    raise ImportError("array('i') is not 32 bits wide here")


def _submit_error(message):
    return RequestError(f"Submit: {message}")


class SubmitBatch:
    """The tasks and objects of one submit, column by column.

    Tasks: ``task_ids``, ``task_types``, ``names``, ``cpus``, ``configs`` (bytes, b"" for
    none), ``users`` (CBOR bytes, b"" for none), ``resources`` ({index: dict}, sparse);
    inputs flattened in task order as ``input_counts`` + ``input_ids`` + ``input_labels``
    (None: all unlabeled); outputs as ``output_counts`` + ``output_ids``.
    ``retries`` ({index: (retries or None, retry on error)}, sparse: the tasks that have
    a retry policy). Objects: ``object_ids``, ``labels``, ``content_types``,
    ``data_types`` (0 blob, 1 directory), ``keep`` (bools), ``object_users`` (CBOR
    bytes), ``data`` ({index: bytes}, the constants), ``uploads`` ({index: (governor id, size)}, the constants the client
    stored on a governor itself).
    """

    __slots__ = ("task_ids", "task_types", "names", "cpus", "configs", "users", "resources",
                 "input_counts", "input_ids", "input_labels", "output_counts", "output_ids",
                 "object_ids", "labels", "content_types", "data_types", "keep",
                 "object_users", "data", "retries", "uploads")

    def __init__(self):
        self.task_ids = []
        self.task_types = []
        self.names = []
        self.cpus = []
        self.configs = []
        self.users = []
        self.resources = {}
        self.input_counts = []
        self.input_ids = []
        self.input_labels = None
        self.output_counts = []
        self.output_ids = []
        self.object_ids = []
        self.labels = []
        self.content_types = []
        self.data_types = []
        self.keep = []
        self.object_users = []
        self.data = {}
        self.retries = {}
        self.uploads = {}

    @property
    def size(self):
        return len(self.task_ids) + len(self.object_ids)

    @classmethod
    def from_tuples(cls, tasks, objects):
        """From tuples, for callers inside the server (REST API, tests, simulations).

        ``tasks``: (id, type, config, [(input_id, label)], [output_id], cpus, resources,
        name, user), optionally followed by (retries or None, retry on error);
        ``objects``: (id, label, content_type, data_type, user, keep,
        data-or-None).
        """
        batch = cls()
        input_labels = []
        for index, (tid, task_type, config, inputs, outputs, cpus, resources, name,
                    user, *retry) in enumerate(tasks):
            batch.task_ids.append(tid)
            batch.task_types.append(task_type)
            batch.names.append(name or "")
            batch.cpus.append(cpus)
            batch.configs.append(config or b"")
            batch.users.append(user or b"")
            if resources:
                batch.resources[index] = check_resources(resources, tid)
            batch.input_counts.append(len(inputs))
            for input_id, label in inputs:
                batch.input_ids.append(input_id)
                input_labels.append(label or "")
            batch.output_counts.append(len(outputs))
            batch.output_ids.extend(outputs)
            if retry:
                batch.retries[index] = check_retry(retry, tid)
        if any(input_labels):
            batch.input_labels = input_labels
        for index, (oid, label, content_type, data_type, user, keep,
                    data) in enumerate(objects):
            if data_type not in (0, 1):
                raise RequestError(f"Object {oid}: invalid data type")
            batch.object_ids.append(oid)
            batch.labels.append(label or "")
            batch.content_types.append(content_type or "")
            batch.data_types.append(data_type)
            batch.keep.append(bool(keep))
            batch.object_users.append(user or b"")
            if data is not None:
                batch.data[index] = data
        return batch


def check_resources(resources, tid):
    """A task's resource map (besides cpus): names to non-negative numbers."""
    if not isinstance(resources, dict):
        raise RequestError(f"Task {tid}: resources must be a map")
    for name, amount in resources.items():
        if not isinstance(name, str) or isinstance(amount, bool) \
                or not isinstance(amount, (int, float)) or amount < 0:
            raise RequestError(f"Task {tid}: invalid resource {name!r}")
    return resources


def check_retry(retry, tid):
    """A task's ``(retries or None, retry on error)``."""
    if len(retry) != 2:
        raise RequestError(f"Task {tid}: a retry policy is (retries, retry on error)")
    retries, on_error = retry
    if retries is not None and (type(retries) is not int or not 0 <= retries < 2**31):
        raise RequestError(f"Task {tid}: retries must be a non-negative integer or null")
    if type(on_error) is not bool:
        raise RequestError(f"Task {tid}: retry on error must be true or false")
    return (retries, on_error)


# ----------------------------------------------------------------------------------------
# Reading columns from the wire

def int_column(data, what, count=None):
    """A packed little-endian Int32 column as a list; ``count`` values when given."""
    return columns.ints(data, what, count, _submit_error)


def string_column(table, index_data, what, count):
    """``count`` strings from a table and an index column (empty index: all "")."""
    return columns.strings(table, index_data, what, count, _submit_error)


def index_set_column(data, what, count):
    """Ascending unique indexes below ``count`` (a sparse column's positions)."""
    return columns.index_set(data, what, count, _submit_error)


def sparse_column(index_data, values, what, count):
    """{index: bytes} from a sparse column."""
    indexes = index_set_column(index_data, f"{what}.indexes", count)
    if len(indexes) != len(values):
        raise RequestError(f"Submit: column {what} has {len(indexes)} indexes and "
                           f"{len(values)} values")
    return dict(zip(indexes, values))


def dense(sparse, count, default):
    """A list of ``count`` entries: ``default`` except where ``sparse`` has a value."""
    result = [default] * count
    for index, value in sparse.items():
        result[index] = value
    return result


def configs_column(blob, ends_data, count):
    """Each task's config bytes cut from the concatenated blob at the end offsets."""
    if not ends_data:
        if blob:
            raise RequestError("Submit: configs given without their end offsets")
        return [b""] * count
    ends = int_column(ends_data, "tasks.configEnds", count)
    if ends and (ends[0] < 0 or ends[-1] != len(blob)):
        raise RequestError(f"Submit: config offsets do not cover the {len(blob)} bytes of "
                           "configs")
    if len(ends) > 1 and not all(map(le, ends, islice(ends, 1, None))):
        raise RequestError("Submit: config offsets go backwards")
    view = memoryview(blob)
    starts = [0]
    starts.extend(islice(ends, len(ends) - 1))
    return [bytes(view[a:b]) if a != b else b"" for a, b in zip(starts, ends)]


def flat_column(counts_data, ids_data, what, count):
    """(counts, ids) of a per-task list flattened in task order; counts sum to len(ids)."""
    counts = int_column(counts_data, f"tasks.{what}Counts", count)
    ids = int_column(ids_data, f"tasks.{what}Ids")
    if counts and min(counts) < 0:
        raise RequestError(f"Submit: negative {what} count")
    total = sum(counts)
    if total != len(ids):
        raise RequestError(f"Submit: {what} counts add up to {total} but {len(ids)} "
                           f"{what} ids were sent")
    return counts, ids


def read_submit(tasks, objects):
    """A ``SubmitBatch`` from the ``TaskColumns`` and ``ObjectColumns`` readers."""
    batch = SubmitBatch()
    task_ids = batch.task_ids = int_column(tasks.ids, "tasks.ids")
    n = len(task_ids)
    types = tasks.types
    batch.task_types = string_column(list(types.table), types.index, "tasks.types", n)
    names = tasks.names
    batch.names = string_column(list(names.table), names.index, "tasks.names", n)
    cpus = tasks.cpus
    batch.cpus = int_column(cpus, "tasks.cpus", n) if cpus else [1] * n
    batch.configs = configs_column(tasks.configs, tasks.configEnds, n)
    batch.input_counts, batch.input_ids = flat_column(tasks.inputCounts, tasks.inputIds,
                                                      "input", n)
    labels = tasks.inputLabels
    if labels.index:
        batch.input_labels = string_column(list(labels.table), labels.index,
                                           "tasks.inputLabels", len(batch.input_ids))
    batch.output_counts, batch.output_ids = flat_column(tasks.outputCounts, tasks.outputIds,
                                                        "output", n)
    resources = tasks.resources
    for index, raw in sparse_column(resources.indexes, list(resources.values),
                                    "tasks.resources", n).items():
        tid = task_ids[index]
        try:
            value = loads_or(raw, None)
        except Exception as exc:
            raise RequestError(f"Task {tid}: resources is not valid CBOR: {exc}") from None
        if value:
            batch.resources[index] = check_resources(value, tid)
        elif value is not None and not isinstance(value, dict):
            raise RequestError(f"Task {tid}: resources must be a map")
    user = tasks.user
    batch.users = dense(sparse_column(user.indexes, list(user.values), "tasks.user", n),
                        n, b"")
    if tasks.retries:
        retries = int_column(tasks.retries, "tasks.retries", n)
        if min(retries) < -1:
            raise RequestError("Submit: tasks.retries below -1")
        on_error = set(index_set_column(tasks.retryOnError, "tasks.retryOnError", n))
        batch.retries = {index: (None if count == -1 else count, index in on_error)
                         for index, count in enumerate(retries)
                         if count != -1 or index in on_error}
    elif tasks.retryOnError:
        raise RequestError("Submit: tasks.retryOnError without tasks.retries")

    object_ids = batch.object_ids = int_column(objects.ids, "objects.ids")
    m = len(object_ids)
    labels = objects.labels
    batch.labels = string_column(list(labels.table), labels.index, "objects.labels", m)
    ctypes = objects.contentTypes
    batch.content_types = string_column(list(ctypes.table), ctypes.index,
                                        "objects.contentTypes", m)
    data_types = batch.data_types = [0] * m
    for index in index_set_column(objects.directories, "objects.directories", m):
        data_types[index] = 1
    keep = batch.keep = [False] * m
    for index in index_set_column(objects.keep, "objects.keep", m):
        keep[index] = True
    data = objects.data
    batch.data = sparse_column(data.indexes, list(data.values), "objects.data", m)
    user = objects.user
    batch.object_users = dense(sparse_column(user.indexes, list(user.values),
                                             "objects.user", m), m, b"")
    return batch


# ----------------------------------------------------------------------------------------
# Reading a small submit's rows

# Checks are spelled out (type tuples, comparisons) rather than helper calls: this is the
# path of a single task's round trip, where each extra function costs its first call.
_TEXT = (str, type(None))
_BLOB = (bytes, type(None))
_INT32 = range(-2**31, 2**31)     # ``in`` on a range is a comparison, in C


def _task_row_problem(row):
    """What is wrong with a task row (see ``submit_rows`` in the client), or None."""
    if type(row) is not list or len(row) not in (9, 11):
        return "not a list of 9 fields (or 11 with a retry policy)"
    tid, task_type, config, inputs, outputs, cpus, resources, name, user = row[:9]
    if type(tid) is not int or tid not in _INT32:
        return "its id is not a 32-bit integer"
    if type(task_type) is not str or type(config) not in _BLOB or type(name) not in _TEXT \
            or type(user) not in _BLOB:
        return "type, name, config or user of the wrong kind"
    if type(inputs) is not list:
        return "inputs are not [id, label] pairs"
    for item in inputs:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int \
                or item[0] not in _INT32 or type(item[1]) not in _TEXT:
            return "inputs are not [id, label] pairs"
    if type(outputs) is not list:
        return "outputs are not ids"
    for oid in outputs:
        if type(oid) is not int or oid not in _INT32:
            return "outputs are not ids"
    if type(cpus) is not int or cpus < 0 or cpus not in _INT32:
        return "cpus is not a non-negative integer"
    if resources is not None and type(resources) is not dict:
        return "resources is not a map"
    if len(row) == 11 and ((row[9] is not None and (type(row[9]) is not int or not
                                                     0 <= row[9] < 2**31))
                           or type(row[10]) is not bool):
        return "retries is not a non-negative integer or null, or retry on error not a bool"
    return None


def _object_row_problem(row):
    if type(row) is not list or len(row) != 7:
        return "not a list of 7 fields"
    oid, label, content_type, data_type, user, keep, data = row
    if type(oid) is not int or oid not in _INT32:
        return "its id is not a 32-bit integer"
    if type(label) not in _TEXT or type(content_type) not in _TEXT or \
            type(user) not in _BLOB or type(data) not in _BLOB or \
            type(data_type) is not int or data_type not in (0, 1) or type(keep) is not bool:
        return "a field of the wrong kind"
    return None


def read_rows(data):
    """A ``SubmitBatch`` from a small submit's rows (one CBOR array, see ``Submit.rows``)."""
    try:
        value = loads_or(data, None)
    except Exception as exc:
        raise RequestError(f"Submit: rows are not valid CBOR: {exc}") from None
    if type(value) is not list or len(value) != 2 or type(value[0]) is not list \
            or type(value[1]) is not list:
        raise RequestError("Submit: rows must be [task rows, object rows]")
    tasks, objects = value
    for row in tasks:
        problem = _task_row_problem(row)
        if problem:
            raise RequestError(f"Submit: malformed task row ({problem})")
    for row in objects:
        problem = _object_row_problem(row)
        if problem:
            raise RequestError(f"Submit: malformed object row ({problem})")
    return SubmitBatch.from_tuples(tasks, objects)


def read_uploads(data, batch):
    """Fill ``batch.uploads`` from a submit's ``uploads`` (CBOR ``[[object id, governor
    id, size], ...]``, see the schema)."""
    try:
        value = loads_or(data, None)
    except Exception as exc:
        raise RequestError(f"Submit: uploads are not valid CBOR: {exc}") from None
    if type(value) is not list:
        raise RequestError("Submit: uploads must be a list")
    index_of = {oid: index for index, oid in enumerate(batch.object_ids)}
    uploads = batch.uploads
    for entry in value:
        if type(entry) is not list or len(entry) != 3 or type(entry[1]) is not str \
                or type(entry[2]) is not int or entry[2] < -1:
            raise RequestError("Submit: an upload must be [object id, governor id, size]")
        oid, governor_id, size = entry
        index = index_of.get(oid)
        if index is None:
            raise RequestError(f"Submit: uploaded object {oid!r} is not an object of this "
                               "submit")
        if index in batch.data or index in uploads:
            raise RequestError(f"Object {oid}: uploaded twice or also given as bytes")
        uploads[index] = (governor_id, size)


def task_positions(counts):
    """For a flattened per-task column: the task index of every entry."""
    if counts.count(1) == len(counts):
        return list(range(len(counts)))
    positions = []
    extend = positions.extend
    for index, count in enumerate(counts):
        if count == 1:
            positions.append(index)
        elif count:
            extend([index] * count)
    return positions


def offsets(counts):
    """Start offset of every task's entries in a flattened column."""
    result = [0]
    result.extend(accumulate(counts))
    return result
