"""The governor's update (governor -> server), as columns and as rows: the server reads
the same entries from both, and a malformed update is a protocol error, not a crash."""
import cbor2
import pytest

from rain.capnp import rain_capnp as R
from rain.common import update_columns
from rain.server.connections import ProtocolError, decode_governor_update

INFO = {"start_time": "2026-01-01T00:00:00+00:00", "duration": 0.5, "governor": "g"}
OBJECTS = [((1, 5), 1, 3, "text", b"", b"abc"), ((2, 6), 1, 2**40, "", cbor2.dumps({"a": 1})),
           ((1, 7), 2, -1, "", b"")]
TASKS = [((1, 4), 2, INFO), ((2, 8), 1, None)]


def _decode(fill):
    msg = R.GovernorToServer.new_message()
    fill(msg.init("update"))
    with R.GovernorToServer.from_bytes(msg.to_bytes()) as reader:
        return decode_governor_update(reader.update)


def _columns(update):
    (update.objectIds, update.objectStates, update.objectSizes,
     update.objectDetails) = update_columns.encode_objects(OBJECTS)
    update.taskIds, update.taskStates, update.taskInfos = update_columns.encode_tasks(TASKS)


def test_rows_and_columns_give_the_same_entries():
    from_columns = _decode(_columns)
    from_rows = _decode(lambda update: setattr(update, "rows",
                                               update_columns.pack_rows(OBJECTS, TASKS)))
    assert [tuple(entry) for entry in from_columns[0]] == from_rows[0] == [
        (1, 5, 1, 3, "text", b"", b"abc"), (2, 6, 1, 2**40, "", cbor2.dumps({"a": 1}), None),
        (1, 7, 2, -1, "", b"", None)]
    assert [tuple(entry) for entry in from_columns[1]] == from_rows[1] == [
        (1, 4, 2, INFO), (2, 8, 1, None)]


@pytest.mark.parametrize("rows, message", [
    (b"\xff", "invalid CBOR"),
    (cbor2.dumps([[]]), "must be \\[object entries, task entries\\]"),
    (cbor2.dumps([[[[1, 2], 1, 3]], []]), "5 or 6 fields"),
    (cbor2.dumps([[[[1], 1, 3, "", b""]], []]), "not a \\(session, id\\) pair"),
    (cbor2.dumps([[[[1, 2], 300, 3, "", b""]], []]), "\\(1, 2\\): a field of the wrong kind"),
    (cbor2.dumps([[[[1, 2], 1, "3", "", b""]], []]), "\\(1, 2\\): a field of the wrong kind"),
    (cbor2.dumps([[[[1, 2], 1, 3, "", b"", "data"]], []]), "wrong kind"),
    (cbor2.dumps([[], [[[1, 2], 1]]]), "3 fields"),
    (cbor2.dumps([[], [[[1, 2], "finished", None]]]), "invalid state"),
])
def test_malformed_rows_are_a_protocol_error(rows, message):
    with pytest.raises(ProtocolError, match=message):
        _decode(lambda update: setattr(update, "rows", rows))
