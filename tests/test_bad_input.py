"""Bad input never takes the server or a governor down (SPEC §10): garbage on every port,
broken and half-sent frames, and malformed requests, each answered with a clear error to
the sender only. After each case a normal client still runs a graph on the same cluster.
"""
import contextlib
import os
import shutil
import socket
import struct
import time

import cbor2
import pytest

from rain_cluster import TestCluster
from rain.capnp import PROTOCOL_VERSION, rain_capnp as R
from rain.client import (Client, DataObject, RainException, Task, TaskException, blob,
                         tasks)
from rain.client.session import Session

TIMEOUT = 30


# ------------------------------------------------------------------------------------------
# Helpers

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module: two governors (1 and 2 CPUs)."""
    tmp = str(tmp_path_factory.mktemp("bad-input"))
    cluster = TestCluster(tmp, [1, 2])
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left behind: {left}"


@pytest.fixture
def client(cluster):
    client = Client("127.0.0.1", cluster.port)
    yield client
    client.close()


def processes_alive(cluster):
    for process in [cluster.server_process] + cluster.governor_processes:
        assert process.poll() is None, \
            f"a process of the cluster died (exit {process.returncode}):\n" \
            f"{cluster.log_tail('server')}"


def assert_cluster_works(cluster):
    """The server and all governors are up; a fresh client runs a Concat in a new session
    on every governor."""
    processes_alive(cluster)
    client = Client("127.0.0.1", cluster.port)
    try:
        assert len(client.get_server_info()["governors"]) == len(cluster.governor_processes)
        with client.new_session("still-works") as session:
            outputs = []
            for i in range(4):
                task = tasks.Concat((blob(b"hello "), blob(f"world {i}".encode())))
                task.output.keep()
                outputs.append(task.output)
            # Chain one through another task so data moves between governors.
            joined = tasks.Concat(outputs)
            joined.output.keep()
            session.submit()
            for i, output in enumerate(outputs):
                assert output.fetch().get_bytes() == f"hello world {i}".encode()
            assert joined.output.fetch().get_bytes() == \
                b"".join(f"hello world {i}".encode() for i in range(4))
    finally:
        client.close()
    processes_alive(cluster)


def frame(payload):
    return len(payload).to_bytes(4, "little") + payload


def hello(cluster, role="client", version=PROTOCOL_VERSION, **fields):
    """A hello with the cluster's token: what comes after it is what is tested."""
    return R.Hello.new_message(protocolVersion=version, role=role, token=cluster.token,
                               **fields).to_bytes()


class Raw:
    """A raw socket speaking (or not) the framed protocol."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1) if isinstance(address, str) else address
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self._buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _read(self, size):
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def recv_frame(self):
        length = int.from_bytes(self._read(4), "little")
        return self._read(length)

    def hello_reply(self):
        with R.HelloReply.from_bytes(self.recv_frame()) as reply:
            return reply.ok, reply.error, reply.governorId

    def closed_by_peer(self):
        """True when the peer closes the connection (anything it sends first is dropped)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


@contextlib.contextmanager
def server_connection(cluster):
    """A raw connection to the server's RPC port; once the test's block is done, the
    cluster must still serve a normal client."""
    raw = Raw(server_address(cluster))
    try:
        yield raw
    finally:
        raw.close()
    assert_cluster_works(cluster)


def server_address(cluster):
    return ("127.0.0.1", cluster.port)


def data_addresses(cluster):
    client = Client("127.0.0.1", cluster.port)
    try:
        return [g["governor_id"] for g in client.get_server_info()["governors"]]
    finally:
        client.close()


def raw_request(client, fill):
    """Send a hand-built ClientRequest through a real client connection."""
    return client._connection.request(fill, timeout=TIMEOUT)


def packed(values):
    """A little-endian Int32 column."""
    return struct.pack(f"<{len(values)}i", *values)


def submit_columns(submit, session_id, objects=(), tasks_=()):
    """Fill a columnar ``Submit`` by hand. objects: dicts(id, data=None, keep=False,
    user=None); tasks_: dicts(id, type, inputs=[], outputs=[], cpus=1, config=None,
    resources=None, user=None)."""
    submit.session = session_id
    ob = submit.objects
    ob.ids = packed([spec["id"] for spec in objects])
    constants = [(i, spec["data"]) for i, spec in enumerate(objects)
                 if spec.get("data") is not None]
    if constants:
        ob.data.indexes = packed([i for i, _ in constants])
        ob.data.values = [data for _, data in constants]
    ob.keep = packed([i for i, spec in enumerate(objects) if spec.get("keep")])
    users = [(i, spec["user"]) for i, spec in enumerate(objects) if spec.get("user")]
    if users:
        ob.user.indexes = packed([i for i, _ in users])
        ob.user.values = [user for _, user in users]
    tb = submit.tasks
    tb.ids = packed([spec["id"] for spec in tasks_])
    types = sorted({spec.get("type", "buildin/concat") for spec in tasks_})
    tb.types.table = types
    tb.types.index = packed([types.index(spec.get("type", "buildin/concat"))
                             for spec in tasks_])
    tb.cpus = packed([spec.get("cpus", 1) for spec in tasks_])
    configs = [spec.get("config") or b"" for spec in tasks_]
    if any(configs):
        tb.configs = b"".join(configs)
        ends, total = [], 0
        for config in configs:
            total += len(config)
            ends.append(total)
        tb.configEnds = packed(ends)
    tb.inputCounts = packed([len(spec.get("inputs", ())) for spec in tasks_])
    tb.inputIds = packed([i for spec in tasks_ for i in spec.get("inputs", ())])
    tb.outputCounts = packed([len(spec.get("outputs", ())) for spec in tasks_])
    tb.outputIds = packed([i for spec in tasks_ for i in spec.get("outputs", ())])
    for key in ("resources", "user"):
        items = [(i, spec[key]) for i, spec in enumerate(tasks_)
                 if spec.get(key) is not None]
        if items:
            column = getattr(tb, key)
            column.indexes = packed([i for i, _ in items])
            column.values = [value for _, value in items]


def raw_submit(client, session_id, objects=(), tasks_=(), tamper=None):
    """Submit raw specs (see ``submit_columns``); ``tamper(submit)`` may then break
    columns of the message."""

    def fill(msg):
        submit = msg.init("submit")
        submit_columns(submit, session_id, objects, tasks_)
        if tamper is not None:
            tamper(submit)

    return raw_request(client, fill)


def expect_error(call, *words, exc_type=RainException):
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------------------
# Garbage on the server's RPC port

@pytest.mark.parametrize("payload", [
    b"\x00" * 3,
    os.urandom(4096),
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    frame(b"this is not a capnp message at all"),
    frame(os.urandom(200)),
    frame(b"") + frame(b"\x00" * 64),
], ids=["short", "random", "http", "text-frame", "random-frame", "empty-frames"])
def test_server_garbage(cluster, payload):
    with server_connection(cluster) as raw:
        raw.send(payload)
        raw.sock.settimeout(2)
        raw.closed_by_peer()    # closed, or waiting for more bytes: both are fine


def test_server_invalid_hello_gets_reply(cluster):
    with server_connection(cluster) as raw:
        raw.send(frame(b"\x01\x02\x03\x04" * 8))
        ok, error, _ = raw.hello_reply()
        assert not ok and error
        assert raw.closed_by_peer()


@pytest.mark.parametrize("prefix", [b"\xff\xff\xff\xff", b"\x00\x00\x00\x80",
                                    b"\xf0\xff\xff\x7f", (2**20 + 1).to_bytes(4, "little")],
                         ids=["4G", "2G", "2G-minus", "1M-plus"])
def test_server_huge_length_prefix(cluster, prefix):
    """Before a Hello only small frames are accepted: a huge announced length closes the
    connection at once instead of making the server buffer it."""
    with server_connection(cluster) as raw:
        raw.send(prefix + b"garbage")
        assert raw.closed_by_peer()


def test_large_frame_after_hello_kept_pending(cluster):
    """An accepted client announcing a big frame that never arrives only holds its own
    connection."""
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster)))
        assert raw.hello_reply()[0]
        raw.send((100 * 2**20).to_bytes(4, "little") + b"x" * 1000)
        assert_cluster_works(cluster)


@pytest.mark.parametrize("garbage", [b"nonsense" * 10, os.urandom(512), b""],
                         ids=["text", "random", "empty"])
def test_server_hello_then_garbage_frames(cluster, garbage):
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster)))
        ok, error, _ = raw.hello_reply()
        assert ok, error
        raw.send(frame(garbage))
        # The server answers "malformed request" (request id 0) and/or closes.
        try:
            with R.ServerToClient.from_bytes(raw.recv_frame()) as msg:
                assert msg.which() == "response"
                assert msg.response.which() == "error"
                assert msg.response.error.message
        except EOFError:
            pass
        assert raw.closed_by_peer()


def test_server_hello_then_valid_request_of_wrong_kind(cluster):
    """A frame that decodes but is not a ClientRequest (a Hello again)."""
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster)))
        assert raw.hello_reply()[0]
        raw.send(frame(hello(cluster, role="governor", dataAddress="1.2.3.4:5", cpus=100)))
        raw.sock.settimeout(3)
        raw.closed_by_peer()


def test_server_wrong_protocol_version(cluster):
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster, version=PROTOCOL_VERSION + 41)))
        ok, error, _ = raw.hello_reply()
        assert not ok
        assert "version" in error.lower() and str(PROTOCOL_VERSION + 41) in error
        assert raw.closed_by_peer()


def test_server_data_role_refused(cluster):
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster, role="data")))
        ok, error, _ = raw.hello_reply()
        assert not ok and "data" in error


@pytest.mark.parametrize("kwargs, message", [
    ({"cpus": -3, "dataAddress": "127.0.0.1:1"}, "negative cpus"),
    ({"cpus": 1, "dataAddress": ""}, "no data address"),
    ({"cpus": 1, "dataAddress": "127.0.0.1:2", "resources": b"\xff\xfe"}, "not valid CBOR"),
    ({"cpus": 1, "dataAddress": "127.0.0.1:3", "resources": b"\x83\x01\x02\x03"},
     "resources"),
    ({"cpus": 1, "dataAddress": "127.0.0.1:4", "resources": cbor2.dumps({"gpus": "lots"})},
     "resources"),
    ({"cpus": 1, "dataAddress": "127.0.0.1:5", "resources": cbor2.dumps({"gpus": -1})},
     "resources"),
], ids=["negative-cpus", "no-address", "bad-cbor", "not-a-map", "text-amount",
        "negative-amount"])
def test_server_bad_governor_hello(cluster, kwargs, message):
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster, role="governor", **kwargs)))
        ok, error, _ = raw.hello_reply()
        assert not ok
        assert message in error


def test_server_duplicate_governor_id_refused(cluster):
    [address, *_] = data_addresses(cluster)
    with server_connection(cluster) as raw:
        raw.send(frame(hello(cluster, role="governor", cpus=1, dataAddress=address)))
        ok, error, _ = raw.hello_reply()
        assert not ok and "already registered" in error


def test_half_open_connections(cluster):
    silent = Raw(server_address(cluster))
    half_hello = Raw(server_address(cluster))
    half_request = Raw(server_address(cluster))
    try:
        payload = frame(hello(cluster))
        half_hello.send(payload[:len(payload) // 2])
        half_request.send(payload)
        assert half_request.hello_reply()[0]
        request = R.ClientRequest.new_message(requestId=1)
        request.serverInfo = None
        request_frame = frame(request.to_bytes())
        half_request.send(request_frame[:3])
        # While these hang, other clients are served.
        assert_cluster_works(cluster)
        assert_cluster_works(cluster)
        # The half request completes later and is answered.
        half_request.send(request_frame[3:])
        with R.ServerToClient.from_bytes(half_request.recv_frame()) as msg:
            assert msg.response.requestId == 1
            assert msg.response.which() == "serverInfo"
    finally:
        silent.close()
        half_hello.close()
        half_request.close()
    assert_cluster_works(cluster)


def test_client_vanishing_mid_session(cluster):
    """A client that disconnects abruptly with running work: its sessions are closed."""
    client = Client("127.0.0.1", cluster.port)
    session = client.new_session("abandoned")
    with session.bind_only():
        tasks.Sleep(blob(b"x"), 300)
        session.submit()
    import json
    import urllib.request

    def rest(path):
        request = urllib.request.Request(f"http://127.0.0.1:{cluster.http_port}/api{path}",
                                         headers=cluster.http_headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def running():
        return sum(g.get("assigned_tasks", 0) for g in rest("/governors"))

    deadline = time.monotonic() + 30
    while running() == 0:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    connection = client._connection
    connection.loop.call_soon_threadsafe(connection.conn.transport.abort)
    # The abandoned session is closed and its 300 s task stopped: nothing waits for it.
    deadline = time.monotonic() + 60
    while rest(f"/sessions/{session.session_id}")["status"] != "closed" or running():
        assert time.monotonic() < deadline, rest(f"/sessions/{session.session_id}")
        time.sleep(0.05)
    assert all(g["free_cpus"] == g["cpus"] for g in rest("/governors") if g["alive"])
    assert_cluster_works(cluster)
    client.close()


# ------------------------------------------------------------------------------------------
# Garbage on a governor's data port

@pytest.mark.parametrize("payload", [
    os.urandom(2048),
    frame(b"garbage garbage garbage"),
    b"\xff\xff\xff\xff....",
    (2**20 + 1).to_bytes(4, "little") + b"x" * 100,
    frame(os.urandom(64))[:30],
], ids=["random", "text-frame", "huge-prefix", "1M-prefix", "half-frame"])
def test_governor_data_port_garbage(cluster, payload):
    for address in data_addresses(cluster):
        raw = Raw(address)
        try:
            raw.send(payload)
            raw.sock.settimeout(2)
            raw.closed_by_peer()
        finally:
            raw.close()
    assert_cluster_works(cluster)


def test_governor_data_port_half_open_while_working(cluster):
    conns = []
    try:
        for address in data_addresses(cluster):
            silent = Raw(address)
            half = Raw(address)
            payload = frame(hello(cluster, role="data"))
            half.send(payload[:5])
            conns += [silent, half]
        assert_cluster_works(cluster)
    finally:
        for conn in conns:
            conn.close()
    assert_cluster_works(cluster)


def test_governor_data_port_wrong_hellos(cluster):
    no_token = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, role="data").to_bytes()
    for address in data_addresses(cluster):
        for message in (hello(cluster, role="client"), hello(cluster, role="data", version=999),
                        no_token):
            raw = Raw(address)
            try:
                raw.send(frame(message))
                ok, error, _ = raw.hello_reply()
                assert not ok and error
                if message is no_token:
                    assert "token" in error
                assert raw.closed_by_peer()
            finally:
                raw.close()
    assert_cluster_works(cluster)


def test_governor_data_port_bad_requests(cluster):
    for address in data_addresses(cluster):
        raw = Raw(address)
        try:
            raw.send(frame(hello(cluster, role="data")))
            assert raw.hello_reply()[0]
            # A request for an object the governor does not hold: a clear refusal.
            request = R.DataRequest.new_message(requestId=7)
            request.id.session = 999
            request.id.id = 12345
            raw.send(frame(request.to_bytes()))
            with R.DataReply.from_bytes(raw.recv_frame()) as reply:
                assert reply.requestId == 7
                assert not reply.ok
                assert "999/12345" in reply.error
            # Then garbage: the connection is dropped, nothing else.
            raw.send(frame(b"\x00\x01garbage" * 5))
            raw.sock.settimeout(5)
            raw.closed_by_peer()
        finally:
            raw.close()
    assert_cluster_works(cluster)


# ------------------------------------------------------------------------------------------
# Garbage on the HTTP port

@pytest.mark.parametrize("payload", [
    os.urandom(4096),
    b"\r\n\r\n\r\n",
    b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{",
    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
    b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"i",
], ids=["random", "newlines", "huge-length", "long-line", "short-body"])
def test_http_garbage(cluster, payload):
    raw = Raw(("127.0.0.1", cluster.http_port))
    try:
        raw.send(payload)
        raw.sock.settimeout(2)
        raw.closed_by_peer()
    finally:
        raw.close()
    import urllib.request
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.http_port}/events",
                                     data=b'{"id": {"value": 1, "mode": "="}}', method="POST",
                                     headers=cluster.http_headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert response.status == 200
    assert_cluster_works(cluster)


# ------------------------------------------------------------------------------------------
# Malformed requests through a real client

def test_unknown_session(cluster, client):
    ghost = Session(client, 987654)
    with ghost.bind_only():
        blob(b"data").keep()
    expect_error(ghost.submit, "987654", "not open")
    expect_error(ghost.wait_all, "987654", "not open")

    def close_unknown(msg):
        msg.closeSession = 987654

    expect_error(lambda: raw_request(client, close_unknown), "987654")
    assert_cluster_works(cluster)


def test_session_of_another_client(cluster, client):
    other = Client("127.0.0.1", cluster.port)
    try:
        session = other.new_session("someone else's")
        with session.bind_only():
            obj = blob(b"secret").keep()
            session.submit()
        intruder = Session(client, session.session_id)

        def fetch(msg):
            f = msg.init("fetch")
            f.session = session.session_id
            f.id = obj.id[1]

        expect_error(lambda: raw_request(client, fetch), "not open")
        with intruder.bind_only():
            tasks.Concat((blob(b"a"),))
        expect_error(intruder.submit, "not open")
        # The owner is unaffected.
        assert obj.fetch().get_bytes() == b"secret"
    finally:
        other.close()
    assert_cluster_works(cluster)


@pytest.mark.parametrize("request_kind, what", [
    ("wait", "tasks"), ("wait", "objects"), ("waitSome", "tasks"), ("waitSome", "objects"),
    ("getState", "tasks"), ("getState", "objects"), ("unkeep", "objects"),
    ("fetch", "objects")])
def test_unknown_ids(cluster, client, request_kind, what):
    session = client.new_session("unknown ids")
    with session.bind_only():
        task = tasks.Concat((blob(b"a"), blob(b"b")))
        task.output.keep()
        session.submit()
    sid = session.session_id

    def fill(msg):
        if request_kind == "fetch":
            f = msg.init("fetch")
            f.session = sid
            f.id = 4242
            return
        ids = msg.init(request_kind)
        ids.session = sid
        if what == "tasks":
            ids.tasks = [task.id[1], 4242]
        else:
            ids.objects = [task.output.id[1], 4242]

    expect_error(lambda: raw_request(client, fill), "4242")
    # The session itself is fine.
    assert task.output.fetch().get_bytes() == b"ab"
    session.close()
    assert_cluster_works(cluster)


def test_unknown_ids_in_other_session_kinds(cluster, client):
    """Ids below the first id, negative ids and ids of other sessions."""
    session = client.new_session("odd ids")
    sid = session.session_id
    for ids in ([0], [-5], [2**31 - 1]):
        def fill(msg, ids=ids):
            w = msg.init("wait")
            w.session = sid
            w.objects = ids

        expect_error(lambda: raw_request(client, fill), str(ids[0]))
    session.close()
    assert_cluster_works(cluster)


def test_client_side_errors_for_unsubmitted_items(cluster, client):
    with client.new_session("client-side") as session:
        task = tasks.Concat((blob(b"a"), blob(b"b")))
        task.output.keep()
        expect_error(lambda: session.wait([task.output]), "not submitted")
        expect_error(lambda: task.output.fetch(), "not submitted")
        expect_error(task.wait, "not submitted")
        expect_error(task.update, "not submitted")
        session.submit()
        late = tasks.Concat((task.output, blob(b"c")))
        expect_error(late.wait, "not submitted")
        expect_error(lambda: late.output.wait(), "not submitted")
        assert task.output.fetch().get_bytes() == b"ab"
        session.submit()
        expect_error(lambda: late.output.fetch(), "not kept")
    assert_cluster_works(cluster)


def test_fetch_of_non_kept_object(cluster, client):
    with client.new_session("not kept") as session:
        task = tasks.Concat((blob(b"a"), blob(b"b")))
        session.submit()
        expect_error(lambda: task.output.fetch(), "not kept")
        task.wait()
        sid, oid = session.session_id, task.output.id[1]

        def fill(msg):
            f = msg.init("fetch")
            f.session = sid
            f.id = oid

        expect_error(lambda: raw_request(client, fill), "not kept")
    assert_cluster_works(cluster)


def test_cycle_rejected(cluster, client):
    session = client.new_session("cycle")
    with session.bind_only():
        x = DataObject(label="x")
        y = DataObject(label="y")
        Task([y], [x], task_type="buildin/concat", name="A")
        Task([x], [y], task_type="buildin/concat", name="B")
        expect_error(session.submit, "cycle")
    session.close()
    assert_cluster_works(cluster)


def test_self_cycle_rejected(cluster, client):
    session = client.new_session("self-cycle")
    sid = session.session_id
    expect_error(lambda: raw_submit(client, sid, objects=[{"id": 11}],
                                    tasks_=[{"id": 10, "inputs": [11], "outputs": [11]}]),
                 "cycle")
    # The rejected submit left nothing behind: the same ids can be used now.
    raw_submit(client, sid, objects=[{"id": 11, "data": b"q", "keep": True}])
    session.close()
    assert_cluster_works(cluster)


@pytest.mark.parametrize("objects, tasks_, words", [
    ([{"id": 10, "data": b"a"}, {"id": 10, "data": b"b"}], [], ["duplicate", "10"]),
    ([{"id": 10, "data": b"a"}, {"id": 11}], [{"id": 10, "outputs": [11]}],
     ["duplicate", "10"]),
    ([{"id": 11}], [{"id": 10, "outputs": [11]}, {"id": 10, "outputs": []}],
     ["duplicate", "10"]),
    ([{"id": 10}], [], ["no data", "10"]),
    ([{"id": 11}], [{"id": 10, "inputs": [99], "outputs": [11]}], ["unknown input", "99"]),
    ([{"id": 11}], [{"id": 10, "outputs": [11, 12]}], ["12"]),
    ([{"id": 11}, {"id": 13}], [{"id": 10, "outputs": [11]}, {"id": 12, "outputs": [11]}],
     ["two tasks"]),
    ([{"id": 11, "data": b"x"}], [{"id": 10, "outputs": [11]}], ["has data"]),
    ([{"id": 3, "data": b"x"}], [], ["invalid object id"]),
    ([{"id": 11}], [{"id": 1, "outputs": [11]}], ["invalid task id"]),
    ([{"id": 11}], [{"id": 10, "type": "", "outputs": [11]}], ["empty task type"]),
    ([{"id": 11}], [{"id": 10, "cpus": -2, "outputs": [11]}], ["negative cpus"]),
    ([{"id": 11}], [{"id": 10, "cpus": 3, "outputs": [11]}], ["3 cpus"]),
    ([{"id": 11}], [{"id": 10, "outputs": [11], "resources": b"\xff\x00"}], ["resources"]),
    ([{"id": 11}], [{"id": 10, "outputs": [11], "resources": b"\x82\x01\x02"}],
     ["resources"]),
], ids=["dup-objects", "dup-task-object", "dup-tasks", "no-producer", "unknown-input",
        "output-not-in-submit", "two-producers", "output-with-data", "low-object-id",
        "low-task-id", "empty-type", "negative-cpus", "too-many-cpus", "resources-bad-cbor",
        "resources-not-map"])
def test_malformed_submit(cluster, client, objects, tasks_, words):
    session = client.new_session("malformed")
    expect_error(lambda: raw_submit(client, session.session_id, objects, tasks_), *words)
    # A rejected submit changes nothing: the session still works.
    with session.bind_only():
        task = tasks.Concat((blob(b"o"), blob(b"k")))
        task.output.keep()
        session.submit()
        assert task.output.fetch().get_bytes() == b"ok"
    session.close()
    assert_cluster_works(cluster)


def _set(path, value):
    """A tamper function: set the field at dotted ``path`` of the Submit to ``value``."""
    def tamper(submit):
        *parents, name = path.split(".")
        node = submit
        for parent in parents:
            node = getattr(node, parent)
        setattr(node, name, value)
    return tamper


TWO_TASKS = dict(
    objects=[{"id": 11, "data": b"a"}, {"id": 12}, {"id": 13, "keep": True}],
    tasks_=[{"id": 20, "inputs": [11], "outputs": [12], "config": b"\xa0"},
            {"id": 21, "inputs": [12], "outputs": [13], "config": b"\xa0"}])


@pytest.mark.parametrize("path, value, words", [
    ("tasks.ids", b"\x14\x00\x00\x00\x15\x00", ["tasks.ids", "whole number"]),
    ("objects.ids", b"\x0b\x00", ["objects.ids", "whole number"]),
    ("tasks.cpus", packed([1, 1, 1]), ["tasks.cpus", "3 values for 2"]),
    ("tasks.types.index", packed([0, 5]), ["tasks.types", "outside its table"]),
    ("tasks.names.index", packed([0]), ["tasks.names", "1 values for 2"]),
    ("tasks.configs", b"\xa0\xa0\xa0", ["config offsets", "do not cover"]),
    ("tasks.configEnds", packed([2, 1]), ["offsets"]),
    ("tasks.configEnds", b"", ["without their end offsets"]),
    ("tasks.inputCounts", packed([2, 1]), ["input counts add up to 3", "2"]),
    ("tasks.inputCounts", packed([-1, 3]), ["negative input count"]),
    ("tasks.outputIds", packed([12]), ["output counts add up to 2", "1"]),
    ("tasks.outputCounts", packed([1]), ["tasks.outputCounts", "1 values for 2"]),
    ("tasks.inputLabels.index", packed([0, 0]), ["tasks.inputLabels", "outside its table"]),
    ("objects.keep", packed([7]), ["objects.keep", "outside"]),
    ("objects.keep", packed([2, 1]), ["objects.keep", "ascending"]),
    ("objects.directories", packed([-1]), ["objects.directories", "outside"]),
    ("objects.data.indexes", packed([0, 1]), ["objects.data", "2 indexes and 1 values"]),
    ("objects.labels.index", packed([0, 0, 3]), ["objects.labels", "outside"]),
    ("tasks.user.indexes", packed([4]), ["tasks.user", "outside"]),
], ids=["task-ids-bytes", "object-ids-bytes", "cpus-length", "type-index", "names-length",
        "config-blob-longer", "config-ends-backwards", "config-ends-missing",
        "input-counts-sum", "input-count-negative", "output-ids-short", "output-counts-length",
        "label-index", "keep-range", "keep-order", "directory-negative",
        "data-values-count", "object-label-index", "user-index"])
def test_malformed_submit_columns(cluster, client, path, value, words):
    """Columns of inconsistent shape are refused with a message naming the column; the
    session is untouched and still works."""
    session = client.new_session("bad columns")
    sid = session.session_id
    expect_error(lambda: raw_submit(client, sid, tamper=_set(path, value), **TWO_TASKS),
                 *words)
    raw_submit(client, sid, **TWO_TASKS)      # the same ids: nothing was left behind

    def wait(msg):
        w = msg.init("wait")
        w.session = sid
        w.objects = [13]

    raw_request(client, wait)
    session.close()
    assert_cluster_works(cluster)


def test_duplicate_id_across_submits(cluster, client):
    session = client.new_session("dup across submits")
    sid = session.session_id
    raw_submit(client, sid, objects=[{"id": 10, "data": b"a", "keep": True}])
    expect_error(lambda: raw_submit(client, sid, objects=[{"id": 10, "data": b"b"}]),
                 "duplicate", "10")
    expect_error(lambda: raw_submit(client, sid, objects=[{"id": 12}],
                                    tasks_=[{"id": 10, "outputs": [12]}]), "duplicate", "10")
    session.close()
    assert_cluster_works(cluster)


def test_no_producer_through_client_api(cluster, client):
    session = client.new_session("orphan")
    with session.bind_only():
        DataObject(label="orphan")
        expect_error(session.submit, "no data and no task")
    session.close()
    assert_cluster_works(cluster)


def test_unknown_builtin_task_type_is_rejected_at_submit(cluster, client):
    session = client.new_session("unknown built-in")
    with session.bind_only():
        Task([blob(b"in")], 1, task_type="buildin/no_such_task", name="mystery")
        expect_error(session.submit, "buildin/no_such_task", "unknown built-in")
    session.close()
    assert_cluster_works(cluster)


@pytest.mark.parametrize("task_type", ["nosuchexecutor/func", "plainname"])
def test_unknown_task_type(cluster, client, task_type):
    session = client.new_session("unknown type")
    with session.bind_only():
        task = Task([blob(b"in")], 1, task_type=task_type, name="mystery")
        task.output.keep()
        session.submit()
        # The reason, not only the failure (whose header names any failed task's type):
        message = expect_error(task.wait, task_type, "unknown task type", "no executor",
                               exc_type=TaskException)
        assert "mystery" in message, message
        expect_error(lambda: task.output.fetch(), task_type, exc_type=TaskException)
    session.close()
    assert_cluster_works(cluster)


@pytest.mark.parametrize("field, value", [
    ("config", b"\xff\xfe\xfd"),
    ("config", b"\xa1\x63abc"),
    ("user", b"\xff"),
], ids=["config-bad-cbor", "config-truncated", "user-bad-cbor"])
def test_bad_cbor_in_task_specs(cluster, client, field, value):
    """An undecodable config fails the task with a message; nothing crashes."""
    session = client.new_session("bad cbor")
    sid = session.session_id
    raw_submit(client, sid, objects=[{"id": 11, "data": b"a"}, {"id": 12, "keep": True}],
               tasks_=[{"id": 10, "type": "buildin/concat", "inputs": [11], "outputs": [12],
                        field: value}])

    def wait(msg):
        w = msg.init("wait")
        w.session = sid
        w.tasks = [10]

    if field == "config":
        expect_error(lambda: raw_request(client, wait), "buildin/concat", "invalid config")
    else:
        raw_request(client, wait)   # user attributes are not needed by a built-in task
    session.close()
    assert_cluster_works(cluster)


def test_bad_cbor_session_spec(cluster, client):
    def fill(msg):
        msg.newSession = b"\xff\x00\x01"

    expect_error(lambda: raw_request(client, fill), "session spec", "not valid CBOR")

    def fill_list(msg):
        msg.newSession = cbor2.dumps([1, 2])

    expect_error(lambda: raw_request(client, fill_list), "session spec must be a map")
    assert_cluster_works(cluster)


def test_cpus_larger_than_any_governor(cluster, client):
    session = client.new_session("too big")
    with session.bind_only():
        tasks.Concat((blob(b"a"),))
        big = Task([blob(b"b")], 1, task_type="buildin/concat", cpus=64, name="big")
        expect_error(session.submit, "64 cpus", "largest governor has 2")
    assert big.state is None
    session.close()
    assert_cluster_works(cluster)


def test_operations_on_closed_session(cluster, client):
    session = client.new_session("closed")
    sid = session.session_id
    with session.bind_only():
        task = tasks.Concat((blob(b"a"), blob(b"b")))
        task.output.keep()
        session.submit()
    session.close()
    expect_error(lambda: task.output.fetch(), "closed")

    def fill(msg):
        w = msg.init("wait")
        w.session = sid
        w.tasks = [task.id[1]]

    expect_error(lambda: raw_request(client, fill), "not open")

    def close_again(msg):
        msg.closeSession = sid

    expect_error(lambda: raw_request(client, close_again), "not open")
    assert_cluster_works(cluster)
