"""Random and mutated input on every port a stranger or a careless client can reach: the
server's RPC port (before and after a Hello), the governors' data ports and the REST API;
and on a governor's executor socket, from an executor that registers and then misbehaves.
After each batch the cluster still runs a normal pipeline and holds no more connections
than before.

Examples are few by default, so that this runs in seconds; ``HYPOTHESIS_PROFILE=nightly``
runs many more."""
import json
import os
import shutil
import sys

import cbor2

import psutil
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rain.capnp import rain_capnp as R
from rain.client import RainException, Task
from rain_cluster import TestCluster
from test_bad_input import (Raw, assert_cluster_works, data_addresses, frame, hello,
                            processes_alive)

settings.register_profile(
    "default", max_examples=int(os.environ.get("RAIN_FUZZ_EXAMPLES", "25")), deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True)
settings.register_profile(
    "nightly", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The module's cluster comes from test_bad_input's fixture of the same name.
from test_bad_input import cluster  # noqa: E402,F401

pytestmark = pytest.mark.timeout(600)

frames = st.binary(max_size=4096)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=6),
    max_leaves=40)
graph_keys = st.sampled_from(["objects", "tasks", "id", "type", "inputs", "outputs",
                              "data", "config", "keep", "content_type", "name", "cpus"])
graphs = st.recursive(
    st.integers(-5, 2**33) | st.text(max_size=10) | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(graph_keys, inner,
                                                                max_size=6),
    max_leaves=30)


def mutate(data, flips):
    data = bytearray(data)
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    return bytes(data)


def connection_count(cluster):
    return len(psutil.Process(cluster.server_process.pid).net_connections(kind="inet"))


@pytest.fixture
def unchanged(cluster):
    """The cluster works after the test and holds no more connections than before."""
    before = connection_count(cluster)
    yield
    assert_cluster_works(cluster)
    assert connection_count(cluster) <= before + 2


def _send_and_close(address, payload, after_hello=None):
    raw = Raw(address)
    try:
        if after_hello is not None:
            raw.send(frame(after_hello))
            raw.hello_reply()
        raw.send(payload)
        raw.sock.settimeout(0.2)
        raw.closed_by_peer()
    except (OSError, EOFError):
        pass                          # the peer may close as soon as it sees garbage
    finally:
        raw.close()


@given(payload=frames, framed=st.booleans())
def test_rpc_port_before_hello(cluster, unchanged, payload, framed):
    _send_and_close(("127.0.0.1", cluster.port), frame(payload) if framed else payload)


@given(payload=frames)
def test_rpc_port_after_hello(cluster, unchanged, payload):
    _send_and_close(("127.0.0.1", cluster.port), frame(payload), after_hello=hello(cluster))


def _valid_request(kind):
    request = R.ClientRequest.new_message(requestId=1)
    if kind == "newSession":
        request.newSession = cbor2.dumps({"name": "fuzzed"})
    elif kind == "fetch":
        fetch = request.init("fetch")
        fetch.session = 1
        fetch.id = 10
    elif kind == "waitAll":
        request.waitAll = 1
    else:
        request.serverInfo = None
    return request.to_bytes()


@given(kind=st.sampled_from(["newSession", "fetch", "waitAll", "serverInfo"]),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=8))
def test_rpc_port_mutated_requests(cluster, unchanged, kind, flips):
    _send_and_close(("127.0.0.1", cluster.port), frame(mutate(_valid_request(kind), flips)),
                    after_hello=hello(cluster))


@given(payload=frames, with_hello=st.booleans())
def test_governor_data_ports(cluster, unchanged, payload, with_hello):
    for address in data_addresses(cluster):
        _send_and_close(address, frame(payload),
                        after_hello=hello(cluster, role="data") if with_hello else None)


@pytest.fixture
def rest(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}"
    session = requests.Session()
    session.headers.update(cluster.http_headers)
    sid = session.post(f"{base}/api/sessions", json={"name": "fuzz"}, timeout=60).json()
    yield base, session, sid["session"]
    session.close()


@given(body=json_values, path=st.sampled_from(["/api/sessions", "/events",
                                               "/api/sessions/{sid}/wait",
                                               "/api/sessions/{sid}/unkeep",
                                               "/dashboard/api/update"]))
def test_rest_random_json(cluster, unchanged, rest, body, path):
    base, session, sid = rest
    response = session.post(base + path.format(sid=sid), data=json.dumps(body), timeout=60)
    assert response.status_code < 500, response.text


@given(graph=graphs)
def test_rest_random_graphs(cluster, unchanged, rest, graph):
    base, session, sid = rest
    response = session.post(f"{base}/api/sessions/{sid}/submit", data=json.dumps(graph),
                            timeout=60)
    assert response.status_code < 500, response.text


@given(raw=st.binary(max_size=2000))
def test_rest_random_bytes(cluster, unchanged, rest, raw):
    base, session, sid = rest
    response = session.post(f"{base}/api/sessions/{sid}/submit", data=raw, timeout=60)
    assert response.status_code < 500, response.text


@given(sid=st.integers(-2**64, 2**64), oid=st.integers(-2**64, 2**64),
       what=st.sampled_from(["", "/objects/{oid}", "/objects/{oid}/data?timeout=0.01",
                             "/tasks/{oid}", "/graph?limit={oid}", "/tasks?samples={oid}"]))
def test_rest_random_ids(cluster, unchanged, rest, sid, oid, what):
    base, session, _ = rest
    response = session.get(f"{base}/api/sessions/{sid}{what.format(oid=oid)}", timeout=60)
    assert response.status_code < 500, response.text


# -- the executor socket ---------------------------------------------------------------------
#: An executor that registers properly, then answers its call with the bytes the task's
#: config names (anything at all), and exits once the governor closes or after a while.
MISBEHAVING_EXECUTOR = r"""
import os, socket, sys, cbor2
sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["RAIN_EXECUTOR_SOCKET"])
def send(payload):
    sock.sendall(len(payload).to_bytes(4, "little") + payload)
def recv(size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
send(cbor2.dumps(["register", {"protocol": "rain-executor/1",
                               "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
                               "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]}]))
kind, body = cbor2.loads(recv(int.from_bytes(recv(4), "little")))
sock.sendall(cbor2.loads(body["task"]["config"])["raw"])
sock.settimeout(2)
try:
    while sock.recv(65536):
        pass
except OSError:
    pass
"""


@pytest.fixture(scope="module")
def executor_cluster(tmp_path_factory):
    """A cluster whose governor runs tasks ``fuzz/...`` on ``MISBEHAVING_EXECUTOR``."""
    tmp = str(tmp_path_factory.mktemp("fuzz-executor"))
    script = os.path.join(tmp, "misbehaving.py")
    with open(script, "w") as f:
        f.write(MISBEHAVING_EXECUTOR)
    config = os.path.join(tmp, "governor.toml")
    with open(config, "w") as f:
        f.write(f'[executors.fuzz]\ncommand = "{sys.executable} {script}"\n')
    cluster = TestCluster(tmp, [1], governor_config=config)
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left behind: {left}"


def _valid_result(kind):
    if kind == "success":
        return cbor2.dumps(["result", {"success": True, "outputs": [{"data": b"ok"}]}])
    if kind == "failure":
        return cbor2.dumps(["result", {"success": False, "info": {"error": "no"}}])
    return cbor2.dumps(["register", {"protocol": "rain-executor/1", "executor_id": 1}])


def _run_misbehaving(cluster, raw):
    """Run one ``fuzz/run`` task whose executor answers ``raw``: it finishes or fails
    with a message about it, and the governor stays up."""
    client = cluster.client()
    try:
        with client.new_session() as session:
            task = Task([], 1, task_type="fuzz/run", config={"raw": raw})
            task.output.keep()
            session.submit()
            try:
                session.wait_all()
            except RainException as exc:
                message = str(exc)
                assert message and "Internal server error" not in message, message
    finally:
        client.close()
        cluster.clients.remove(client)
    processes_alive(cluster)


executor_examples = settings(max_examples=max(1, settings.default.max_examples // 4))


@executor_examples
@given(payload=frames, framed=st.booleans())
def test_executor_socket_random_frames(executor_cluster, payload, framed):
    _run_misbehaving(executor_cluster, frame(payload) if framed else payload)


@executor_examples
@given(kind=st.sampled_from(["success", "failure", "register"]),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=8))
def test_executor_socket_mutated_messages(executor_cluster, kind, flips):
    _run_misbehaving(executor_cluster, frame(mutate(_valid_result(kind), flips)))


def test_executor_socket_huge_frame_header(executor_cluster):
    """A registered executor announcing 2 GiB and sending a little: its task fails, the
    governor neither waits for the rest forever nor allocates it."""
    _run_misbehaving(executor_cluster, (2**31 - 1).to_bytes(4, "little") + b"x" * 1000)
    assert_cluster_works(executor_cluster)
