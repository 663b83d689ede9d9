"""The server's event log: what is recorded in ``<logdir>/events.db`` and ``POST /events``
(SPEC §7)."""
import datetime
import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from rain_cluster import TestCluster, wait_for
from rain.client import Client, TaskException, blob, tasks

REQUIRED_TYPES = {"GovernorNew", "ClientNew", "SessionNew", "ClientSubmit", "TaskStarted",
                  "TaskFinished", "SessionClosed", "Monitoring"}
TIMEOUT = 30


# ------------------------------------------------------------------------------------------
# Helpers

def db_events(cluster):
    """Every event already written to the cluster's events.db, ordered by id."""
    path = os.path.join(cluster.tmp, "server", "events.db")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT id, type, session, event FROM events ORDER BY id").fetchall()
    finally:
        db.close()
    return [{"id": r[0], "type": r[1], "session": r[2], "event": json.loads(r[3])}
            for r in rows]


def http(cluster, path, body=None, method="POST"):
    """Return (status, decoded JSON body, content type)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.http_port}{path}",
                                     data=body, method=method, headers=cluster.http_headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return (response.status, json.loads(response.read()),
                    response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.decode(errors="replace")
        return exc.code, value, exc.headers.get("Content-Type", "")


def query(cluster, body=None):
    status, value, _ = http(cluster, "/events", body)
    assert status == 200, value
    return value


def ids_of(items):
    return [item["id"] for item in items]


def run_graph(client):
    """A good session (Concat of two blobs) and a failing one; both closed.
    Returns (good session id, failed session id)."""
    good = client.new_session("good")
    with good.bind_only():
        task = tasks.Concat((blob(b"ab"), blob(b"cd")), name="join")
        task.output.keep()
        good.submit()
        assert task.output.fetch().get_bytes() == b"abcd"
    bad = client.new_session("bad")
    with bad.bind_only():
        failing = tasks.Execute(["sh", "-c", "echo broken >&2; exit 3"], stdout=True,
                                name="fails")
        bad.submit()
    with pytest.raises(TaskException):
        bad.wait([failing])
    good_id, bad_id = good.session_id, bad.session_id
    good.close()
    bad.close()
    return good_id, bad_id


# ------------------------------------------------------------------------------------------
# One cluster for the module (read-only tests after one run of the graph)

@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("events"))
    cluster = TestCluster(tmp, [1, 1])
    try:
        cluster.start()
        client = cluster.client()
        good, bad = run_graph(client)
        # Governors report monitoring every 2 s; the writer flushes at least every second.
        # Both closings are awaited: they may reach the file in different flushes.
        def recorded():
            events = db_events(cluster)
            closed = {e["session"] for e in events if e["type"] == "SessionClosed"}
            return REQUIRED_TYPES <= {e["type"] for e in events} and {good, bad} <= closed
        wait_for(f"events {sorted(REQUIRED_TYPES)} and both closings in events.db",
                 recorded, TIMEOUT)
        yield cluster, client, good, bad
    finally:
        left = cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left behind: {left}"


def test_events_db_has_the_run(observed):
    cluster, _client, good, bad = observed
    events = db_events(cluster)
    assert ids_of(events) == sorted(ids_of(events))
    for e in events:
        assert isinstance(e["event"], dict)
        assert e["event"]["type"] == e["type"]
    by_type = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e["event"])
    assert REQUIRED_TYPES <= set(by_type)
    assert len(by_type["GovernorNew"]) == 2
    assert {g["cpus"] for g in by_type["GovernorNew"]} == {1}
    sessions = {e["session"]: e for e in by_type["SessionNew"]}
    assert {good, bad} <= set(sessions)
    assert sessions[good]["spec"]["name"] == "good"
    assert isinstance(sessions[good]["client"], int)
    closed = {e["session"]: e for e in by_type["SessionClosed"]}
    assert closed[good]["reason"] == "ClientClose"
    assert {good, bad} <= set(closed)
    submits = [e for e in by_type["ClientSubmit"] if e["session"] == good]
    assert len(submits) == 1
    assert len(submits[0]["tasks"]) == 1 and len(submits[0]["dataobjs"]) == 3
    finished = [e for e in by_type["TaskFinished"] if e["session"] == good]
    assert [e["task"] for e in finished] == submits[0]["tasks"]
    started = [e for e in by_type["TaskStarted"] if e["session"] == good]
    assert [e["task"] for e in started] == submits[0]["tasks"]
    assert not [e for e in by_type["TaskFinished"] if e["session"] == bad]
    monitoring = by_type["Monitoring"][0]
    assert monitoring["governor"] and "cpu_usage" in monitoring and "mem_usage" in monitoring


def test_failed_session_recorded(observed):
    cluster, _client, _good, bad = observed
    events = [e["event"] for e in db_events(cluster) if e["session"] == bad]
    types = [e["type"] for e in events]
    assert types[0] == "SessionNew"
    assert "ClientSubmit" in types
    assert "SessionClosed" in types
    failures = [e for e in events if e["type"] in ("TaskFailed", "SessionFailed")]
    assert failures, types
    assert "exited with code 3" in json.dumps(failures), failures
    assert "broken" in json.dumps(failures), failures


def test_events_flushed_within_a_second(observed):
    cluster, client, _good, _bad = observed
    session = client.new_session("flush-check")
    # Written every half second with nothing else happening (how fast: benchmarks' business).
    wait_for("SessionNew", lambda: any(e["type"] == "SessionNew" and
                                       e["session"] == session.session_id
                                       for e in db_events(cluster)), TIMEOUT)
    session.close()


def test_post_events_all(observed):
    cluster, _client, _good, _bad = observed
    written = db_events(cluster)
    for body in (None, {}, "{}"):
        items = query(cluster, body)
        assert ids_of(items) == sorted(set(ids_of(items)))
        assert ids_of(items)[:len(written)] == ids_of(written)
        for item in items:
            assert set(item) == {"id", "time", "event"}
            assert isinstance(item["time"], str) and item["time"]
            assert "type" in item["event"]
        assert [i["event"] for i in items[:len(written)]] == [e["event"] for e in written]


def test_post_events_response_is_json(observed):
    cluster, _client, _good, _bad = observed
    status, value, content_type = http(cluster, "/events", {})
    assert status == 200
    assert content_type.startswith("application/json")
    assert isinstance(value, list)


@pytest.mark.parametrize("mode", ["<", ">", "=", "<=", ">="])
def test_post_events_by_id(observed, mode):
    cluster, _client, _good, _bad = observed
    written = ids_of(db_events(cluster))
    pivot = written[len(written) // 2]
    items = ids_of(query(cluster, {"id": {"value": pivot, "mode": mode}}))
    check = {"<": lambda i: i < pivot, ">": lambda i: i > pivot, "=": lambda i: i == pivot,
             "<=": lambda i: i <= pivot, ">=": lambda i: i >= pivot}[mode]
    assert items == sorted(items)
    assert all(check(i) for i in items)
    # Events keep arriving (monitoring): the ones known before are all there.
    assert [i for i in written if check(i)] == [i for i in items if i <= written[-1]]
    assert items


def test_post_events_by_types_are_ored(observed):
    cluster, _client, _good, _bad = observed
    items = query(cluster, {"event_types": [{"value": "SessionNew", "mode": "="},
                                            {"value": "TaskFinished", "mode": "="}]})
    types = [i["event"]["type"] for i in items]
    assert set(types) == {"SessionNew", "TaskFinished"}
    assert ids_of(items) == sorted(ids_of(items))
    only_new = query(cluster, {"event_types": [{"value": "SessionNew", "mode": "="}]})
    assert only_new and all(i["event"]["type"] == "SessionNew" for i in only_new)
    assert len(only_new) == types.count("SessionNew")
    assert query(cluster, {"event_types": [{"value": "NoSuchEvent", "mode": "="}]}) == []
    # An empty list of types does not restrict.
    assert len(query(cluster, {"event_types": []})) >= len(items)


def test_post_events_by_session(observed):
    cluster, _client, good, _bad = observed
    items = query(cluster, {"session": {"value": good, "mode": "="}})
    assert items
    assert all(i["event"]["session"] == good for i in items)
    types = [i["event"]["type"] for i in items]
    assert types[0] == "SessionNew"
    assert {"ClientSubmit", "TaskStarted", "TaskFinished", "SessionClosed"} <= set(types)
    expected = [e["id"] for e in db_events(cluster) if e["event"].get("session") == good]
    assert ids_of(items) == expected


def test_post_events_combined_are_anded(observed):
    cluster, _client, good, bad = observed
    session_new = query(cluster, {"event_types": [{"value": "SessionNew", "mode": "="}]})
    first_bad = [i["id"] for i in session_new if i["event"]["session"] == bad][0]
    items = query(cluster, {
        "session": {"value": bad, "mode": "="},
        "event_types": [{"value": "SessionNew", "mode": "="},
                        {"value": "SessionClosed", "mode": "="}],
        "id": {"value": first_bad, "mode": ">="}})
    assert [i["event"]["type"] for i in items] == ["SessionNew", "SessionClosed"]
    assert all(i["event"]["session"] == bad for i in items)
    assert query(cluster, {
        "session": {"value": good, "mode": "="},
        "id": {"value": first_bad, "mode": ">="},
        "event_types": [{"value": "SessionNew", "mode": "="}]}) == []


@pytest.mark.parametrize("body", [
    "not json",
    b"\xff\xfe\x00",
    "[1, 2]",
    '"SessionNew"',
    "42",
    '{"id": 5}',
    '{"id": {"mode": "<"}}',
    '{"id": {"value": "x", "mode": "<"}}',
    '{"id": {"value": true, "mode": "<"}}',
    '{"id": {"value": 1, "mode": "~"}}',
    '{"id": {"value": 1, "mode": ["<"]}}',
    '{"id": {"value": 1, "mode": null}}',
    '{"id": {"value": 1e999, "mode": "<"}}',
    '{"id": {"value": 100000000000000000000000000000, "mode": "<"}}',
    '{"session": {"value": [1], "mode": "="}}',
    '{"event_types": {"value": "SessionNew", "mode": "="}}',
    '{"event_types": ["SessionNew"]}',
    '{"event_types": [{"value": "SessionNew", "mode": "<>"}]}',
    '{"event_types": [{"value": {"a": 1}, "mode": "="}]}',
    '{"unknown": 1}',
    '{"id": {"value": 1, "mode": "<"}, "sesion": {"value": 1}}',
    '{"limit": "many"}',
    '{"limit": 1e999}',
], ids=lambda b: b if isinstance(b, str) else repr(b))
def test_post_events_bad_filter_is_400(observed, body):
    cluster, _client, _good, _bad = observed
    status, value, content_type = http(cluster, "/events", body)
    assert status == 400, value
    assert content_type.startswith("application/json")
    assert isinstance(value, dict) and isinstance(value.get("error"), str) and value["error"]
    # The server is fine afterwards.
    assert query(cluster, {"id": {"value": 1, "mode": "="}})[0]["id"] == 1


def test_get_events_is_405(observed):
    cluster, _client, _good, _bad = observed
    status, value, content_type = http(cluster, "/events", method="GET")
    assert status == 405
    assert content_type.startswith("application/json")
    assert "error" in value


@pytest.mark.parametrize("path, method", [("/no/such/page", "GET"),
                                          ("/no/such/page", "POST"),
                                          ("/eventsx", "POST")])
def test_unknown_path_is_404_json(observed, path, method):
    cluster, _client, _good, _bad = observed
    status, value, content_type = http(cluster, path, body=b"{}" if method == "POST" else None,
                                       method=method)
    assert status == 404
    assert content_type.startswith("application/json")
    assert isinstance(value, dict) and "error" in value


def test_server_still_serves_after_bad_http(observed):
    """Bad HTTP requests (sent here, whatever ran before on this worker) leave both the
    HTTP and the client port serving."""
    cluster, _client, _good, _bad = observed
    for body in ("{", '{"limit": "many"}', b"\xff\xfe"):
        assert http(cluster, "/events", body)[0] == 400
    assert http(cluster, "/events", method="GET")[0] == 405
    assert http(cluster, "/no/such/page", b"{}")[0] == 404
    assert query(cluster, {"id": {"value": 1, "mode": "="}})[0]["id"] == 1
    client = Client("127.0.0.1", cluster.port)
    try:
        with client.new_session("after") as session:
            task = tasks.Concat((blob(b"x"), blob(b"y")))
            task.output.keep()
            session.submit()
            assert task.output.fetch().get_bytes() == b"xy"
    finally:
        client.close()


# ------------------------------------------------------------------------------------------
# Encoding (no cluster)

@pytest.mark.parametrize("event", [
    {"type": "TaskStarted", "session": 3, "task": 7, "governor": 2, "name": None},
    {"type": "TaskStarted", "session": 3, "task": 7, "governor": 2, "name": 'a "b"\n\u00e9'},
    {"type": "TaskStarted", "session": 3, "task": 7, "governor": 2, "name": "x",
     "extra": [1, 2]},
    {"type": "TaskFinished", "session": 1, "task": 2, "governor": 1, "name": "n/m",
     "info": {"start_time": "2026-11-22T08:00:00.5+00:00", "duration": 0.25, "governor": 1}},
    {"type": "TaskFinished", "session": 1, "task": 2, "governor": 1, "name": None,
     "info": {"start_time": "t", "duration": float("inf"), "governor": 1}},
    {"type": "TaskFinished", "session": 1, "task": 2, "governor": 1, "name": None,
     "info": {"start_time": "t", "duration": 1, "governor": 1, "user": {"k": [1, "v"]}}},
    {"type": "TaskFinished", "session": 1, "task": 2, "governor": 1, "name": None,
     "info": {"start_time": "t", "duration": True, "governor": None}},
    {"type": "SessionNew", "session": 1, "client": 4, "spec": {"name": "s"}},
])
def test_encode_event_matches_the_generic_encoder(event):
    from rain.server.events import encode_event
    assert json.loads(encode_event(event)) == json.loads(json.dumps(event))


def test_times_are_stored_as_numbers_and_read_as_iso_text(tmp_path):
    from rain.server.events import EventLog, query_file
    path = str(tmp_path / "events.db")
    log = EventLog(path)
    before = time.time()
    log.add({"type": "ClientNew", "client": 1})
    log.close()
    db = sqlite3.connect(path)
    stored = db.execute("SELECT time FROM events").fetchone()[0]
    # A row from a log whose times were written as text still reads back unchanged.
    db.execute("INSERT INTO events (time, type, session, event) VALUES (?, ?, ?, ?)",
               ("2026-01-01T00:00:00+00:00", "ClientRemoved", None, '{"type": "ClientRemoved"}'))
    db.commit()
    db.close()
    assert isinstance(stored, float) and abs(stored - before) < 60
    rows = query_file(path)
    assert [r["event"]["type"] for r in rows] == ["ClientNew", "ClientRemoved"]
    first = datetime.datetime.fromisoformat(rows[0]["time"])
    assert abs(first.timestamp() - before) < 60 and first.tzinfo is not None
    assert rows[1]["time"] == "2026-01-01T00:00:00+00:00"


def _index_names(path):
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()


def test_indexes_are_built_when_a_query_needs_them(tmp_path):
    import asyncio
    from rain.server.events import EventLog, query_file
    path = str(tmp_path / "events.db")
    log = EventLog(path)
    for session in (1, 2, 1):
        log.add({"type": "TaskStarted", "session": session, "task": 7, "governor": 1,
                 "name": None})
    log.add({"type": "ClientNew", "client": 1})

    async def run():
        by_id = await log.query({"id": {"value": 1, "mode": ">"}})
        indexes_after_id = _index_names(path)
        by_session = await log.query({"session": {"value": 1}})
        by_type = await log.query({"event_types": [{"value": "ClientNew"}]})
        return by_id, indexes_after_id, by_session, by_type

    by_id, indexes_after_id, by_session, by_type = asyncio.run(run())
    log.close()
    assert indexes_after_id == set()        # the primary key serves id filters
    assert _index_names(path) == {"events_type", "events_session"}
    assert [r["id"] for r in by_id] == [2, 3, 4]
    assert [r["id"] for r in by_session] == [1, 3]
    assert [r["event"]["type"] for r in by_type] == ["ClientNew"]
    # Post mortem reads agree with the live queries.
    assert [r["id"] for r in query_file(path, {"event_types": [{"value": "TaskStarted"}]})] \
        == [1, 2, 3]


def test_subscribed_client_gets_events_until_it_leaves(tmp_path):
    import threading
    cluster = TestCluster(str(tmp_path), [1])
    try:
        cluster.start()
        watcher = cluster.client()
        received, lock = [], threading.Lock()

        def on_events(batch):
            with lock:
                received.extend(batch)

        watcher.subscribe_events(on_events)
        worker = cluster.client()
        with worker.new_session("watched") as session:
            task = tasks.Concat((blob(b"ab"), blob(b"cd")), name="watched-join")
            task.output.keep()
            session.submit()
            assert task.output.fetch().get_bytes() == b"abcd"

        def seen(kind):
            with lock:
                return any(e.get("type") == kind and e.get("name") == "watched-join"
                           for e in received)

        wait_for("TaskFinished pushed to the subscriber", lambda: seen("TaskFinished"), TIMEOUT)
        watcher.close()
        with lock:
            left_with = len(received)
        still = []
        worker.subscribe_events(still.extend)
        # With the subscriber gone the server goes on serving (and pushes to nobody).
        with worker.new_session("after") as session:
            task = tasks.Concat((blob(b"x"), blob(b"y")), name="after-join")
            task.output.keep()
            session.submit()
            assert task.output.fetch().get_bytes() == b"xy"
        # Pushed to the subscriber that stayed, none of it to the one that left.
        wait_for("TaskFinished after leaving",
                 lambda: any(e.get("type") == "TaskFinished" and e.get("name") == "after-join"
                             for e in list(still)), TIMEOUT)
        with lock:
            assert len(received) == left_with, received[left_with:]
    finally:
        left = cluster.stop()
    assert not left, f"processes left behind: {left}"


def test_failing_batch_reader_costs_the_log_no_event(tmp_path):
    """A reader that follows the log in batches (the live run model) and fails leaves the
    log whole: its batch is written all the same, and so are the next ones."""
    from rain.server.events import EventLog, read_rows_file
    log = EventLog(str(tmp_path / "events.db"))
    seen = []

    def reader(batch):
        seen.append(len(batch))
        raise RuntimeError("reader broke")

    log.batch_listeners.append(reader)
    try:
        for round_ in range(2):
            for tid in range(3):
                log.add({"type": "TaskFinished", "session": 1, "task": 3 * round_ + tid})
            assert len(log.pending) == 3
            log.flush_async().result()
            assert log.pending == []
    finally:
        log.close()
    assert seen == [3, 3]
    rows = read_rows_file(str(tmp_path / "events.db"))
    assert [json.loads(text)["task"] for _id, _time, text in rows] == list(range(6))
