"""The assignment (server -> governor), as columns and as rows: every field survives the
wire, and malformed columns or rows are refused with a clear error instead of crashing the
governor."""
import logging
import struct

import cbor2
import pytest

from rain.capnp import rain_capnp as R
from rain.common import assign_columns
from rain.common.assign_columns import AssignmentError

OBJECTS = dict(
    keys=[(1, 10), (1, 11), (2, 5), (1, 12)],
    labels=["in", None, "", "dir"],
    content_types=["text", "", None, "mime:x"],
    directories=[0, 0, 0, 1],
    users=[b"", cbor2.dumps({"a": 1}), b"", b""],
    sizes=[3, -1, 2**40, 0],
    locations=[[], ["1.2.3.4:5", "6.7.8.9:10"], (), ["1.2.3.4:5"]],
    data=[b"abc", None, None, b""],
)

TASKS = dict(
    keys=[(1, 20), (2, 21), (1, 22)],
    types=["buildin/concat", "py/f", "buildin/concat"],
    names=["", "named", None],
    cpus=[1, 3, 0],
    configs=[b"", cbor2.dumps({"x": [1, 2]}), b""],
    input_ids=[[10, 11], [5], []],
    input_labels=[[None, "second"], [""], []],
    output_ids=[[12], [6, 7], [13]],
    resources=[b"", cbor2.dumps({"gpu": 2}), b""],
    users=[b"", b"", cbor2.dumps({"u": "v"})],
)


def _assignment(objects=OBJECTS, tasks=TASKS, mangle=None):
    msg = R.ServerToGovernor.new_message()
    assign = msg.init("assign")
    assign_columns.fill_objects(assign.init("objects"), **objects)
    assign_columns.fill_tasks(assign.init("tasks"), **tasks)
    if mangle is not None:
        mangle(assign)
    # Read from the bytes, as a governor does; the reader stays open for the test.
    reading = R.ServerToGovernor.from_bytes(msg.to_bytes())
    _OPEN_READERS.append(reading)
    return reading.__enter__().assign


_OPEN_READERS = []


def test_objects_round_trip_every_field():
    rows = assign_columns.read_objects(_assignment().objects)
    assert rows == [
        ((1, 10), "in", "text", 0, b"", 3, [], b"abc"),
        ((1, 11), "", "", 0, cbor2.dumps({"a": 1}), -1, ["1.2.3.4:5", "6.7.8.9:10"], None),
        ((2, 5), "", "", 0, b"", 2**40, [], None),
        ((1, 12), "dir", "mime:x", 1, b"", 0, ["1.2.3.4:5"], b""),
    ]


def test_tasks_round_trip_every_field():
    rows = assign_columns.read_tasks(_assignment().tasks)
    assert rows == [
        ((1, 20), "buildin/concat", b"", [(1, 10), (1, 11)], ["", "second"], [(1, 12)], 1,
         None, "", b""),
        ((2, 21), "py/f", cbor2.dumps({"x": [1, 2]}), [(2, 5)], [""], [(2, 6), (2, 7)], 3,
         {"gpu": 2}, "named", b""),
        ((1, 22), "buildin/concat", b"", [], [], [(1, 13)], 0, None, "",
         cbor2.dumps({"u": "v"})),
    ]


def test_empty_assignment():
    empty_objects = {name: [] for name in OBJECTS}
    empty_tasks = {name: [] for name in TASKS}
    assign = _assignment(empty_objects, empty_tasks)
    assert assign_columns.read_objects(assign.objects) == []
    assert assign_columns.read_tasks(assign.tasks) == []


def _rows(columns):
    return [list(row) for row in zip(*columns.values())]


def _assignment_rows(objects=OBJECTS, tasks=TASKS):
    msg = R.ServerToGovernor.new_message()
    msg.init("assign").rows = assign_columns.pack_rows(_rows(objects), _rows(tasks))
    reading = R.ServerToGovernor.from_bytes(msg.to_bytes())
    _OPEN_READERS.append(reading)
    return reading.__enter__().assign


def test_rows_read_as_the_columns_do():
    columns = _assignment()
    objects, tasks = assign_columns.read_rows(_assignment_rows().rows)
    assert objects == assign_columns.read_objects(columns.objects)
    assert tasks == assign_columns.read_tasks(columns.tasks)
    assert assign_columns.read_rows(assign_columns.pack_rows([], [])) == ([], [])


def test_columns_filled_from_rows_read_back_the_same():
    msg = R.ServerToGovernor.new_message()
    assign_columns.fill_columns(msg.init("assign"), _rows(OBJECTS), _rows(TASKS))
    with R.ServerToGovernor.from_bytes(msg.to_bytes()) as reader:
        assert assign_columns.read_objects(reader.assign.objects) == \
            assign_columns.read_objects(_assignment().objects)
        assert assign_columns.read_tasks(reader.assign.tasks) == \
            assign_columns.read_tasks(_assignment().tasks)


def _object_row(**changes):
    row = dict(key=[1, 2], label="l", content_type="", directory=0, user=b"", size=3,
               locations=[], data=None)
    row.update(changes)
    return list(row.values())


def _task_row(**changes):
    row = dict(key=[1, 3], type="py/f", name="", cpus=1, config=b"", input_ids=[2],
               input_labels=[None], output_ids=[4], resources=b"", user=b"")
    row.update(changes)
    return list(row.values())


@pytest.mark.parametrize("value, message", [
    (b"\xff", "invalid CBOR"),
    (cbor2.dumps({"objects": []}), "must be \\[object rows, task rows\\]"),
    (cbor2.dumps([[[1, 2]], []]), "8 fields"),
    (cbor2.dumps([[], [[1, 2]]]), "10 fields"),
    (cbor2.dumps([[_object_row(key=[1])], []]), "not a \\(session, id\\) pair"),
    (cbor2.dumps([[_object_row(size="3")], []]), r"object \(1, 2\): a field of the wrong"),
    (cbor2.dumps([[_object_row(locations=[7])], []]), "wrong kind"),
    (cbor2.dumps([[_object_row(data="text")], []]), "wrong kind"),
    (cbor2.dumps([[], [_task_row(key=["1", 3])]]), "pair"),
    (cbor2.dumps([[], [_task_row(input_labels=[])]]), r"task \(1, 3\): a field of the"),
    (cbor2.dumps([[], [_task_row(output_ids=[None])]]), "wrong kind"),
    (cbor2.dumps([[], [_task_row(cpus=1.5)]]), "wrong kind"),
    (cbor2.dumps([[], [_task_row(resources=cbor2.dumps([1]))]]), "not a map"),
])
def test_malformed_rows_are_refused(value, message):
    with pytest.raises(AssignmentError, match=message):
        assign_columns.read_rows(value)


def _set(path, value):
    def mangle(assign):
        builder = assign
        for name in path[:-1]:
            builder = getattr(builder, name)
        setattr(builder, path[-1], value)
    return mangle


def _i32(*values):
    return struct.pack(f"<{len(values)}i", *values)


@pytest.mark.parametrize("path, value, message", [
    (("tasks", "ids"), b"\x01\x00\x00", "not a whole number"),
    (("tasks", "ids"), _i32(1, 2, 3), "odd number"),
    (("tasks", "cpus"), _i32(1, 1), "2 values for 3 items"),
    (("tasks", "inputCounts"), _i32(2, 1, 5), "adds up to 8"),
    (("tasks", "inputCounts"), _i32(4, -1, 0), "negative"),
    (("tasks", "configEnds"), _i32(0, 5, 5), "do not cover"),
    (("tasks", "outputIds"), _i32(1), "adds up to 4"),
    (("objects", "sizes"), b"\x00" * 8, "1 values for 4 items"),
    (("objects", "locationCounts"), _i32(0, 1, 0, 0), "locations.index has 3 values for 1 items"),
    (("objects", "directories"), _i32(7), "outside 0..3"),
    (("objects", "directories"), _i32(2, 1), "not ascending"),
    (("tasks", "types", "index"), _i32(0, 1, 9), "outside its table"),
])
def test_malformed_columns_are_refused(path, value, message):
    assign = _assignment(mangle=_set(path, value))
    with pytest.raises(AssignmentError, match=message):
        assign_columns.read_objects(assign.objects)
        assign_columns.read_tasks(assign.tasks)


def test_sparse_column_with_values_and_indexes_apart():
    assign = _assignment(mangle=_set(("objects", "data", "indexes"), _i32(0)))
    with pytest.raises(AssignmentError, match="1 indexes and 2 values"):
        assign_columns.read_objects(assign.objects)


def test_resources_must_be_a_cbor_map():
    tasks = dict(TASKS, resources=[b"", cbor2.dumps([1]), b""])
    with pytest.raises(AssignmentError, match=r"task \(2, 21\): resources are not a map"):
        assign_columns.read_tasks(_assignment(tasks=tasks).tasks)


def test_governor_ignores_a_malformed_assignment(tmp_path, caplog):
    from rain.governor.governor import Governor
    governor = Governor(cpus=1, workdir=str(tmp_path / "w"), logdir=str(tmp_path / "l"))
    assign = _assignment(mangle=_set(("tasks", "inputCounts"), _i32(9, 9, 9)))
    with caplog.at_level(logging.ERROR):
        governor._on_assign(assign)
    assert "malformed assignment from the server" in caplog.text
    assert "tasks.inputCounts" in caplog.text
    assert governor.tasks == {} and governor.store.objects == {}
    caplog.clear()
    msg = R.ServerToGovernor.new_message()
    msg.init("assign").rows = cbor2.dumps([[], [_task_row(cpus="all")]])
    with R.ServerToGovernor.from_bytes(msg.to_bytes()) as reader, \
            caplog.at_level(logging.ERROR):
        governor._on_assign(reader.assign)
    assert "malformed assignment from the server" in caplog.text
    assert governor.tasks == {} and governor.store.objects == {}


def test_stop_and_delete_keys_round_trip():
    keys = [(1, 2), (3, -1), (2**31 - 1, 0)]
    msg = R.ServerToGovernor.new_message()
    msg.deleteObjects = assign_columns.pack_keys(keys)
    with R.ServerToGovernor.from_bytes(msg.to_bytes()) as reader:
        assert reader.which() == "deleteObjects"
        assert assign_columns.read_keys(reader.deleteObjects, "deleteObjects") == keys
    with pytest.raises(AssignmentError, match="stopTasks: an odd number"):
        assign_columns.read_keys(_i32(1, 2, 3), "stopTasks")
