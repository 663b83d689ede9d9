"""Encoding a submit as columns (``Submit`` in ``rain.capnp``), or as rows when small.

Each field of all tasks (or objects) becomes one packed column, built with list
comprehensions and ``array``: the per-item cost stays far below that of filling one
Cap'n Proto struct per task. Items whose ``spec`` was materialized are read from it,
since it may have been changed by the user before the submit.
"""
from itertools import accumulate
from operator import attrgetter

import cbor2

from ..common.cbor import ROWS_MAX
from ..common.columns import pack, string_table
from ..common.ids import DataType

_ID = attrgetter("_id")


def int32s(values):
    """A packed little-endian Int32 column."""
    return pack("i", values)


def fill_strings(builder, values):
    """A ``StringColumn``: distinct strings in a table plus an index per item (none at
    all when every value is empty)."""
    packed = string_table(values)
    if packed is not None:
        builder.table = packed[0]
        builder.index = pack("i", packed[1])


def fill_sparse(builder, items):
    """A ``SparseData`` from (index, bytes) pairs in ascending index order."""
    if items:
        builder.indexes = int32s([index for index, _ in items])
        builder.values = [value for _, value in items]


class TaskRow:
    """One task's submitted fields, read from its materialized ``spec``."""

    __slots__ = ("_id", "_task_type", "_config", "_input_objs", "_input_labels",
                 "_output_ids", "_cpus", "_resources", "_name", "_user", "_retries")

    def __init__(self, spec, retries=None):
        self._id = spec.id[1]
        self._task_type = spec.task_type
        self._config = spec.config
        self._input_objs = [item.id[1] for item in spec.inputs]
        labels = tuple(item.label for item in spec.inputs)
        self._input_labels = labels if any(labels) else None
        self._output_ids = [oid[1] for oid in spec.outputs]
        resources = dict(spec.resources)
        self._cpus = resources.pop("cpus", 1)
        self._resources = resources or None
        self._name = spec.name
        self._user = spec.user or None
        self._retries = retries


def flatten_ids(items):
    """(count per task, all ids) of tasks' ``_in`` or ``_out`` (an object or a tuple)."""
    counts = []
    ids = []
    add_count = counts.append
    add_id = ids.append
    for item in items:
        if item.__class__ is tuple:
            add_count(len(item))
            ids.extend([obj._id for obj in item])
        else:
            add_count(1)
            add_id(item._id)
    return counts, ids


def _rows(tasks):
    """Tasks as rows of plain ids: (rows, input ids per row, output ids per row)."""
    rows, input_ids, output_ids = [], [], []
    for task in tasks:
        spec = task._spec_cache
        if spec is None:
            rows.append(task)
            input_ids.append(list(map(_ID, task._input_objs)))
            output_ids.append(list(map(_ID, task._output_objs)))
        else:
            row = TaskRow(spec, task._retries)
            rows.append(row)
            input_ids.append(row._input_objs)
            output_ids.append(row._output_ids)
    return rows, input_ids, output_ids


def fill_tasks(builder, tasks):
    """Fill ``TaskColumns`` from client ``Task`` objects (in creation order)."""
    if not tasks:
        return
    if any(task._spec_cache is not None for task in tasks):
        tasks, input_lists, output_lists = _rows(tasks)
        input_counts = [len(ids) for ids in input_lists]
        input_ids = [oid for ids in input_lists for oid in ids]
        output_counts = [len(ids) for ids in output_lists]
        output_ids = [oid for ids in output_lists for oid in ids]
    else:
        input_counts, input_ids = flatten_ids([task._in for task in tasks])
        output_counts, output_ids = flatten_ids([task._out for task in tasks])
    builder.ids = int32s([task._id for task in tasks])
    fill_strings(builder.init("types"), [task._task_type for task in tasks])
    fill_strings(builder.init("names"), [task._name for task in tasks])
    cpus = [task._cpus for task in tasks]
    if cpus.count(1) != len(cpus):
        builder.cpus = int32s(cpus)
    configs = [task._config for task in tasks]
    if configs.count(None) != len(configs):
        dumps = cbor2.dumps
        blobs = [b"" if config is None else dumps(config) for config in configs]
        builder.configs = b"".join(blobs)
        builder.configEnds = int32s(accumulate(map(len, blobs)))
    builder.inputCounts = int32s(input_counts)
    builder.inputIds = int32s(input_ids)
    if any(task._input_labels for task in tasks):
        labels = []
        for task, count in zip(tasks, input_counts):
            labels.extend(task._input_labels or (None,) * count)
        fill_strings(builder.init("inputLabels"), labels)
    builder.outputCounts = int32s(output_counts)
    builder.outputIds = int32s(output_ids)
    fill_sparse(builder.init("resources"),
                [(index, cbor2.dumps(task._resources)) for index, task in enumerate(tasks)
                 if task._resources])
    fill_sparse(builder.init("user"),
                [(index, cbor2.dumps(task._user)) for index, task in enumerate(tasks)
                 if task._user])
    policies = [task._retries for task in tasks]
    if policies.count(None) != len(policies):
        builder.retries = int32s([-1 if policy is None or policy[0] is None else policy[0]
                                  for policy in policies])
        on_error = [index for index, policy in enumerate(policies)
                    if policy is not None and policy[1]]
        if on_error:
            builder.retryOnError = int32s(on_error)


def fill_objects(builder, objects):
    """Fill ``ObjectColumns`` from client ``DataObject`` objects."""
    if not objects:
        return
    builder.ids = int32s([obj._id for obj in objects])
    specs = [(index, obj._spec_cache) for index, obj in enumerate(objects)
             if obj._spec_cache is not None]
    labels = [obj._label for obj in objects]
    content_types = [obj._content_type for obj in objects]
    blob = DataType.BLOB
    directories = [index for index, obj in enumerate(objects) if obj._data_type is not blob]
    users = []
    if specs:
        for index, spec in specs:
            labels[index] = spec.label
            content_types[index] = spec.content_type
            if spec.user:
                users.append((index, cbor2.dumps(spec.user)))
        directories = sorted(set(directories).difference(index for index, _ in specs).union(
            index for index, spec in specs if spec.data_type is not blob))
    fill_strings(builder.init("labels"), labels)
    fill_strings(builder.init("contentTypes"), content_types)
    if directories:
        builder.directories = int32s(directories)
    keep = [index for index, obj in enumerate(objects) if obj._keep]
    if keep:
        builder.keep = int32s(keep)
    fill_sparse(builder.init("data"), [(index, obj._data) for index, obj in enumerate(objects)
                                       if obj._data is not None])
    fill_sparse(builder.init("user"), users)


def submit_rows(tasks, objects):
    """A small submit as one CBOR array ``[task rows, object rows]``, in the tuple form of
    ``SubmitBatch.from_tuples`` on the server. Task row: [id, type, config CBOR or null,
    [[input id, label or null], ...], [output id, ...], cpus, resources map or null,
    name or null, user CBOR or null], followed by [retries or null, retry on error] when
    the task has a retry policy; object row: [id, label or null, content type or
    null, 0 blob / 1 directory, user CBOR or null, keep, constant bytes or null]."""
    dumps = cbor2.dumps
    task_rows = []
    rows, input_lists, output_lists = _rows(tasks)
    for row, input_ids, output_ids in zip(rows, input_lists, output_lists):
        labels = row._input_labels or (None,) * len(input_ids)
        config, resources, user = row._config, row._resources, row._user
        task_row = [
            row._id, row._task_type, None if config is None else dumps(config),
            list(zip(input_ids, labels)), output_ids,      # pairs go as CBOR arrays
            row._cpus, resources or None, row._name, dumps(user) if user else None]
        if row._retries is not None:
            task_row.extend(row._retries)
        task_rows.append(task_row)
    blob = DataType.BLOB
    object_rows = []
    for obj in objects:
        spec = obj._spec_cache
        if spec is None:
            label, content_type, data_type, user = (obj._label, obj._content_type,
                                                    obj._data_type, None)
        else:
            label, content_type, data_type, user = (spec.label, spec.content_type,
                                                    spec.data_type, spec.user)
        object_rows.append([obj._id, label, content_type, 0 if data_type is blob else 1,
                            dumps(user) if user else None, obj._keep, obj._data])
    return dumps([task_rows, object_rows])


def fill_submit(builder, session_id, tasks, objects, rows=None):
    """Fill a ``Submit`` with everything created in the session since the last one: as
    rows when it is small, else as columns (``rows`` True/False forces one)."""
    builder.session = session_id
    if rows is None:
        rows = len(tasks) + len(objects) <= ROWS_MAX
    if rows:
        builder.rows = submit_rows(tasks, objects)
        return
    fill_tasks(builder.init("tasks"), tasks)
    fill_objects(builder.init("objects"), objects)
