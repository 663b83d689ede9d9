"""The submit, as columns and as rows: what the client encodes is what the server decodes,
field by field, and the core builds the same graph from it as from tuples. No cluster
needed."""
import cbor2
import pytest

from rain.capnp import TRAVERSAL_LIMIT, rain_capnp as R
from rain.client import DataObject, Task, blob, directory, tasks
from rain.client.session import Session
from rain.client.submit_encoding import fill_submit
from rain.common.errors import RainException
from rain.common.ids import ID
from rain.server.connections import decode_submit
from rain.server.core import RequestError, ServerCore
from rain.server.graph import DIRECTORY, OBJ_FINISHED, UNFINISHED
from rain.server.submit_batch import SubmitBatch


def round_trip(session, rows=None):
    """Encode the session's unsubmitted graph, send it through bytes, decode it."""
    msg = R.ClientRequest.new_message(requestId=1)
    fill_submit(msg.init("submit"), session.session_id, session._tasks, session._dataobjs,
                rows=rows)
    with R.ClientRequest.from_bytes(msg.to_bytes(),
                                    traversal_limit_in_words=TRAVERSAL_LIMIT) as req:
        assert req.submit.session == session.session_id
        return decode_submit(req.submit)


@pytest.fixture
def graph(tmp_path):
    (tmp_path / "f.txt").write_text("content")
    session = Session(None, 3)
    with session.bind_only():
        c1 = blob(b"abc", label="c1", content_type="text").keep()
        d = directory(str(tmp_path))
        out = DataObject(label="out", content_type="json")
        t1 = Task([("first", c1), c1, ("second", d)], [out], config={"k": [1, 2]},
                  task_type="test/a", cpus=2, name="alpha", user_spec={"u": 1},
                  resources={"gpu": 1.5}, retries=2, retry_on_error=True)
        t2 = tasks.Concat((out, c1))
        plain = tasks.Concat((c1,), retries=0)
    return session, c1, d, out, t1, t2, plain


@pytest.mark.parametrize("rows", [False, True], ids=["columns", "rows"])
def test_every_field_survives_the_round_trip(graph, rows):
    session, c1, d, out, t1, t2, plain = graph
    c1.spec.user["tag"] = "x"             # a materialized spec is what gets submitted
    t2.spec.name = "renamed"
    batch = round_trip(session, rows)

    assert batch.task_ids == [t1.id.id, t2.id.id, plain.id.id]
    assert batch.task_types == ["test/a", "buildin/concat", "buildin/concat"]
    assert batch.names == ["alpha", "renamed", ""]
    assert batch.cpus == [2, 1, 1]
    assert batch.configs == [cbor2.dumps({"k": [1, 2]}), b"", b""]
    assert batch.users == [cbor2.dumps({"u": 1}), b"", b""]
    assert batch.resources == {0: {"gpu": 1.5}}
    assert batch.retries == {0: (2, True), 2: (0, False)}
    assert batch.input_counts == [3, 2, 1]
    ids = {"c1": c1.id.id, "d": d.id.id, "out": out.id.id}
    assert batch.input_ids == [ids["c1"], ids["c1"], ids["d"], ids["out"], ids["c1"],
                               ids["c1"]]
    assert batch.input_labels == ["first", "", "second", "", "", ""]
    assert batch.output_counts == [1, 1, 1]
    assert batch.output_ids == [out.id.id, t2.output.id.id, plain.output.id.id]

    objects = [c1, d, out, t2.output, plain.output]
    assert batch.object_ids == [obj.id.id for obj in objects]
    assert batch.labels == ["c1", "const_dir", "out", "", ""]
    assert batch.content_types == ["text", "dir", "json", "", ""]
    assert batch.data_types == [0, DIRECTORY, 0, 0, 0]
    assert batch.keep == [True, False, False, False, False]
    assert batch.object_users == [cbor2.dumps({"tag": "x"}), b"", b"", b"", b""]
    assert batch.data == {0: b"abc", 1: d._data}


def test_small_submits_travel_as_rows_and_big_ones_as_columns(graph):
    session = graph[0]
    msg = R.ClientRequest.new_message(requestId=1)
    fill_submit(msg.init("submit"), 3, session._tasks, session._dataobjs)
    assert msg.submit.rows and not msg.submit.tasks.ids
    with session.bind_only():
        for _ in range(20):
            tasks.Concat((blob(b"x"),))
    big = R.ClientRequest.new_message(requestId=1)
    fill_submit(big.init("submit"), 3, session._tasks, session._dataobjs)
    assert not big.submit.rows and len(big.submit.tasks.ids) == 4 * 23


def test_rows_and_columns_decode_alike(graph):
    session = graph[0]
    columns, rows = round_trip(session, False), round_trip(session, True)
    for field in SubmitBatch.__slots__:
        assert getattr(rows, field) == getattr(columns, field), field


@pytest.mark.parametrize("rows, message", [
    (cbor2.dumps({"tasks": []}), "must be \\[task rows, object rows\\]"),
    (b"\xff\x00", "not valid CBOR"),
    (cbor2.dumps([[[1, "t", None, [], [2], 1, None, None]], []]), "9 fields"),
    (cbor2.dumps([[[2**40, "t", None, [], [2], 1, None, None, None]], []]), "32-bit"),
    (cbor2.dumps([[[1, 7, None, [], [2], 1, None, None, None]], []]), "wrong kind"),
    (cbor2.dumps([[[1, "t", None, [[3]], [2], 1, None, None, None]], []]), "pairs"),
    (cbor2.dumps([[[1, "t", None, [], ["2"], 1, None, None, None]], []]), "outputs"),
    (cbor2.dumps([[[1, "t", None, [], [2], -1, None, None, None]], []]), "cpus"),
    (cbor2.dumps([[[1, "t", None, [], [2], True, None, None, None]], []]), "cpus"),
    (cbor2.dumps([[[1, "t", None, [], [2], 1, [1], None, None]], []]), "resources"),
    (cbor2.dumps([[[1, "t", None, [], [2], 1, {"gpu": -1}, None, None]], []]), "resource"),
    (cbor2.dumps([[[1, "t", None, [], [2], 1, None, None, None, -1, False]], []]),
     "retries"),
    (cbor2.dumps([[[1, "t", None, [], [2], 1, None, None, None, 1, 1]], []]), "retries"),
    (cbor2.dumps([[[1, "t", None, [], [2], 1, None, None, None, 1]], []]), "9 fields"),
    (cbor2.dumps([[], [[1, None, None, 2, None, False, None]]]), "wrong kind"),
    (cbor2.dumps([[], [[1, None, None, 0, None, 1, None]]]), "wrong kind"),
    (cbor2.dumps([[], [[1, None, None, 0, None, False, "text"]]]), "wrong kind"),
    (cbor2.dumps([[], [[1, None, None]]]), "7 fields"),
])
def test_malformed_rows_are_request_errors(rows, message):
    msg = R.ClientRequest.new_message(requestId=1)
    msg.init("submit").rows = rows
    with R.ClientRequest.from_bytes(msg.to_bytes()) as req:
        with pytest.raises(RequestError, match=message):
            decode_submit(req.submit)


def test_core_builds_the_same_graph_from_columns_and_tuples(graph):
    session = graph[0]
    batch = round_trip(session, False)
    tuples_tasks = [
        (tid, ttype, config, list(zip(batch.input_ids[s:s + n],
                                      (batch.input_labels or [""] * 99)[s:s + n])),
         batch.output_ids[o:o + m], cpus, batch.resources.get(i), name, user)
        for i, (tid, ttype, config, n, m, cpus, name, user, s, o) in enumerate(zip(
            batch.task_ids, batch.task_types, batch.configs, batch.input_counts,
            batch.output_counts, batch.cpus, batch.names, batch.users, [0, 3, 5], [0, 1, 2]))]
    tuples_objects = [
        (oid, label, ctype, dtype, user, keep, batch.data.get(i))
        for i, (oid, label, ctype, dtype, user, keep) in enumerate(zip(
            batch.object_ids, batch.labels, batch.content_types, batch.data_types,
            batch.object_users, batch.keep))]

    def build(submit):
        core = ServerCore(_NullComm())
        core.add_governor("g", 4, {"gpu": 2}, object())
        client = core.add_client()
        sid = core.new_session(client, {"name": "x"})
        submit(core, client, sid)
        session = core.sessions[sid]
        return {tid: (t.task_type, t.config, [o.id for o in t.inputs], t.input_labels,
                      [o.id for o in t.outputs], t.cpus, t.resources, t.name, t.user, t.waiting)
                for tid, t in session.tasks.items()}, \
            {oid: (o.label, o.content_type, o.data_type, o.user, o.keep, o.data, o.state,
                   o.consumers, o.producer.id if o.producer else None)
             for oid, o in session.objects.items()}

    from_columns = build(lambda core, client, sid: core.submit_batch(client, sid, batch))
    from_tuples = build(lambda core, client, sid: core.submit(client, sid, tuples_tasks,
                                                              tuples_objects))
    assert from_columns == from_tuples
    tasks_, objects = from_columns
    t1 = tasks_[batch.task_ids[0]]
    assert t1[3] == ("first", "", "second") and t1[5] == 2 and t1[6] == {"gpu": 1.5}
    assert objects[batch.object_ids[0]][6] == OBJ_FINISHED
    assert objects[batch.object_ids[2]][6] == UNFINISHED


def test_task_views_match_the_declaration(graph):
    session, c1, d, out, t1, t2, plain = graph
    assert list(t1.inputs) == [c1, c1, d]
    assert t1.inputs.labels() == ["first", None, "second"]
    assert t1.inputs["second"] is d
    assert t1.outputs["out"] is out and t1.output is out
    spec = t1.spec
    assert spec.id == ID(3, t1.id.id) and spec.task_type == "test/a"
    assert [(i.id, i.label) for i in spec.inputs] == [(c1.id, "first"), (c1.id, None),
                                                      (d.id, "second")]
    assert spec.outputs == [out.id]
    assert spec.resources == {"cpus": 2, "gpu": 1.5}
    assert spec.user == {"u": 1} and spec.name == "alpha" and t1.cpus == 2
    assert d.spec.data_type.value == "dir" and c1.content_type == "text"
    assert plain.spec.resources == {"cpus": 1} and plain.spec.user == {}


def test_duplicate_output_labels_still_rejected():
    session = Session(None, 4)
    with session.bind_only():
        with pytest.raises(KeyError):
            Task([], ["x", "x"], task_type="test/a")


def test_cpus_must_be_a_non_negative_int():
    session = Session(None, 5)
    with session.bind_only():
        for cpus in (-1, 1.5, True):
            with pytest.raises(RainException):
                Task([], 1, task_type="test/a", cpus=cpus)


def test_graph_errors_name_the_offending_items():
    """The core's checks over columns: each message names the id at fault."""
    core = ServerCore(_NullComm())
    client = core.add_client()
    sid = core.new_session(client, {"name": "x"})

    def T(tid, inputs=(), outputs=(), task_type="t"):
        return (tid, task_type, b"", [(i, "") for i in inputs], list(outputs), 1, None, "",
                b"")

    def O(oid, data=None):
        return (oid, "", "", 0, b"", False, data)

    cases = [
        ([T(20, [11], [12]), T(21, [12], [13]), T(22, [13], [12])],
         [O(11, b"x"), O(12), O(13)], "two tasks (20 and 22)"),
        ([T(20, [11], [12]), T(21, [14], [13])], [O(11, b"x"), O(12), O(13)],
         "Task 21: unknown input object 14"),
        ([T(20, [], [12]), T(21, [], [13], task_type="")], [O(12), O(13)],
         "Task 21: empty task type"),
        ([T(20, [13], [12]), T(21, [12], [13])], [O(12), O(13)], "cycle: task 21 -> 20 -> 21"),
        ([T(20, [], [12])], [O(12), O(13)], "Object 13 has no data"),
        ([T(20, [], [12])], [O(12), O(20)], "Duplicate id 20"),
    ]
    for tasks_, objects, words in cases:
        with pytest.raises(RequestError) as info:
            core.submit(client, sid, tasks_, objects)
        assert words in str(info.value)
        assert not core.sessions[sid].tasks and not core.sessions[sid].objects


class _NullComm:
    def reply(self, *args):
        pass

    def governor_dirty(self, governor):
        pass

    def schedule_soon(self):
        pass

    def event(self, event):
        pass

    def flush_governors(self):
        pass


class _RecordingClient:
    """Stands in for ``Client``: fills each request into a real message and keeps it."""

    def __init__(self):
        self._submit_listeners = []
        self._connection = self
        self.frames = []

    def request(self, fill):
        msg = R.ClientRequest.new_message(requestId=1)
        fill(msg)
        self.frames.append(msg.to_bytes())


def test_submit_sends_once_and_freezes_specs():
    client = _RecordingClient()
    session = Session(client, 7)
    with session.bind_only():
        early = tasks.Concat((blob(b"a"),))
        early_spec = early.spec                 # built before the submit
        late = tasks.Concat((early, blob(b"b")))
    session.submit()
    assert len(client.frames) == 1 and session.task_count == 0
    assert early.state is not None and late.output.state is not None
    for spec, field in ((early_spec, "name"), (late.spec, "name"),
                        (late.output.spec, "label")):      # the last two built after
        with pytest.raises(RainException):
            setattr(spec, field, "changed")
    with R.ClientRequest.from_bytes(client.frames[0]) as req:
        batch = decode_submit(req.submit)
    assert batch.task_ids == [early.id.id, late.id.id]
    assert batch.input_ids == [early.inputs[0].id.id, early.output.id.id,
                               late.inputs[1].id.id]
    assert session.submitted_tasks == [early, late]


#: A submit of the earlier format (a list of task structs, a list of object structs).
LIST_OF_STRUCTS_SUBMIT = bytes.fromhex(
    "00000000170000000000000002000100050000000000000002000000000000000000000001000200"
    "01000000000000000500000047000000290000002f00000004000000010007000a00000000000000"
    "19000000120000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000780000000000000004000000010004000b00000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000")


def test_submit_of_another_schema_is_a_request_error():
    with R.ClientRequest.from_bytes(LIST_OF_STRUCTS_SUBMIT) as req:
        assert req.which() == "submit" and req.requestId == 5
        with pytest.raises(RequestError, match="Malformed submit"):
            decode_submit(req.submit)


def test_task_update_columns_carry_info_maps_nested():
    from rain.common import update_columns
    info = {"start_time": "2026-01-01T00:00:00+00:00", "duration": 0.5, "governor": "g"}
    columns = update_columns.encode_tasks([((1, 5), 2, info), ((1, 6), 1, None)])
    assert update_columns.decode_tasks(*columns) == [(1, 5, 2, info), (1, 6, 1, None)]
