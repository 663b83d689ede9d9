"""The hops and messages of a Rain round trip with no runtime behind them: the (d) baselines.

A client, a server, a governor and an executor, as in Rain: the server and the governor
are asyncio programs, the client and the executor block on their sockets; client-server
and server-governor talk over TCP on loopback, governor-executor over a Unix socket pair
(CBOR ``[kind, body]`` frames, as Rain's executor protocol). A round trip is what scenario
(d) times, with Rain's messages: the client submits one task (its row carries a
cloudpickled function), waits for the acknowledgement, asks for the output and waits
for it; the server forwards the task to the governor, the governor to the executor, and
the result comes back as an update that answers the fetch. No graph, no scheduling, no
state, no events: what is left is the price of these processes, wake-ups and messages.

The messages between client, server and governor can be written three ways (``wire``):

- ``pickle``: pickled tuples, nothing else (the least code per hop);
- ``cbor``: CBOR arrays with Rain's CBOR rows inside (submit, assignment, update);
- ``capnp``: Rain's own wire format, the Cap'n Proto messages of ``rain/capnp/rain.capnp``
  around the same CBOR rows (what the runtime itself sends for a one-task round trip).

    python bare_pipeline.py [count] [pause] [wire]     # prints the median round trip
"""
import asyncio
import os
import pickle
import socket
import statistics
import subprocess
import sys
import time

import cbor2

from rain.capnp import rain_capnp as R
from rain.common.frame_reader import FrameReader
from rain.common.framing import FrameProtocol, encode_frame
from rain.common.readyfile import write_ready_file
from rain.local_cluster import die_with_parent, free_port
from rain.starter import Cluster

SESSION = 1
INFO = cbor2.dumps({})


class PickleWire:
    """Pickled tuples; rows travel as Python lists inside them."""

    @staticmethod
    def submit(request_id, rows):
        return pickle.dumps((request_id, "submit", SESSION, rows))

    @staticmethod
    def fetch(request_id, object_id):
        return pickle.dumps((request_id, "fetch", SESSION, object_id))

    @staticmethod
    def read_request(data):
        request_id, kind, _session, body = pickle.loads(data)
        return request_id, kind, body

    @staticmethod
    def ok(request_id):
        return pickle.dumps((request_id, "ok"))

    @staticmethod
    def fetch_reply(request_id, data):
        return pickle.dumps((request_id, "fetch", {}, data))

    @staticmethod
    def read_reply(data):
        reply = pickle.loads(data)
        return reply[1], reply[-1]

    @staticmethod
    def assign(rows):
        return pickle.dumps(("assign", rows))

    @staticmethod
    def read_assign(data):
        return pickle.loads(data)[1]

    @staticmethod
    def update(rows):
        return pickle.dumps(("update", rows))

    @staticmethod
    def read_update(data):
        return pickle.loads(data)[1]


class CborWire:
    """CBOR arrays around CBOR rows: Rain's messages without Cap'n Proto."""

    @staticmethod
    def submit(request_id, rows):
        return cbor2.dumps([request_id, "submit", SESSION, cbor2.dumps(rows)])

    @staticmethod
    def fetch(request_id, object_id):
        return cbor2.dumps([request_id, "fetch", SESSION, object_id])

    @staticmethod
    def read_request(data):
        request_id, kind, _session, body = cbor2.loads(data)
        return request_id, kind, cbor2.loads(body) if kind == "submit" else body

    @staticmethod
    def ok(request_id):
        return cbor2.dumps([request_id, "ok"])

    @staticmethod
    def fetch_reply(request_id, data):
        return cbor2.dumps([request_id, "fetch", INFO, "blob", "", len(data), data])

    @staticmethod
    def read_reply(data):
        reply = cbor2.loads(data)
        if reply[1] == "ok":
            return "ok", None
        cbor2.loads(reply[2])
        return "fetch", reply[-1]

    @staticmethod
    def assign(rows):
        return cbor2.dumps(["assign", cbor2.dumps(rows)])

    @staticmethod
    def read_assign(data):
        return cbor2.loads(cbor2.loads(data)[1])

    @staticmethod
    def update(rows):
        return cbor2.dumps(["update", cbor2.dumps(rows)])

    @staticmethod
    def read_update(data):
        return cbor2.loads(cbor2.loads(data)[1])


class CapnpWire:
    """Rain's Cap'n Proto messages around the same CBOR rows."""

    @staticmethod
    def submit(request_id, rows):
        msg = R.ClientRequest.new_message(requestId=request_id)
        submit = msg.init("submit")
        submit.session = SESSION
        submit.rows = cbor2.dumps(rows)
        return msg.to_bytes()

    @staticmethod
    def fetch(request_id, object_id):
        msg = R.ClientRequest.new_message(requestId=request_id)
        fetch = msg.init("fetch")
        fetch.session = SESSION
        fetch.id = object_id
        return msg.to_bytes()

    @staticmethod
    def read_request(data):
        with R.ClientRequest.from_bytes(data) as request:
            kind = request.which()
            if kind == "submit":
                body = cbor2.loads(request.submit.rows)
            else:
                body = request.fetch.id
            return request.requestId, kind, body

    @staticmethod
    def ok(request_id):
        msg = R.ServerToClient.new_message()
        response = msg.init("response")
        response.requestId = request_id
        response.ok = None
        return msg.to_bytes()

    @staticmethod
    def fetch_reply(request_id, data):
        msg = R.ServerToClient.new_message()
        response = msg.init("response")
        response.requestId = request_id
        fetch = response.init("fetch")
        fetch.info = INFO
        fetch.dataType = "blob"
        fetch.size = len(data)
        fetch.data = data
        return msg.to_bytes()

    @staticmethod
    def read_reply(data):
        with R.ServerToClient.from_bytes(data) as msg:
            response = msg.response
            if response.which() == "ok":
                return "ok", None
            fetch = response.fetch
            cbor2.loads(fetch.info)
            return "fetch", fetch.data

    @staticmethod
    def _rows_message(struct, kind, rows):
        msg = struct.new_message()
        msg.init(kind).rows = cbor2.dumps(rows)
        return msg.to_bytes()

    @staticmethod
    def _read_rows(struct, kind, data):
        with struct.from_bytes(data) as msg:
            return cbor2.loads(getattr(msg, kind).rows)

    @classmethod
    def assign(cls, rows):
        return cls._rows_message(R.ServerToGovernor, "assign", rows)

    @classmethod
    def read_assign(cls, data):
        return cls._read_rows(R.ServerToGovernor, "assign", data)

    @classmethod
    def update(cls, rows):
        return cls._rows_message(R.GovernorToServer, "update", rows)

    @classmethod
    def read_update(cls, data):
        return cls._read_rows(R.GovernorToServer, "update", data)


WIRES = {"pickle": PickleWire, "cbor": CborWire, "capnp": CapnpWire}
GOVERNOR = b"governor"      # the governor's first frame: it is the one tasks go to
WELCOME = b"welcome"


def frame(payload):
    return encode_frame(payload) + payload


def serve_server(port, ready_file, wire):
    async def run():
        peers = {}
        results = {}        # object id -> its bytes, once the governor reported it
        fetches = {}        # object id -> request id of the fetch waiting for it

        def on_frame(conn, data):
            if conn is peers.get("governor"):
                for object_id, data in wire.read_update(data)[0]:
                    if object_id in fetches:
                        peers["client"].send_now([wire.fetch_reply(fetches.pop(object_id),
                                                                   data)])
                    else:
                        results[object_id] = data
            elif data == GOVERNOR:
                peers["governor"] = conn
                conn.send_now([WELCOME])
            else:
                peers["client"] = conn
                request_id, kind, body = wire.read_request(data)
                if kind == "submit":
                    task_rows, object_rows = body
                    peers["governor"].send_now([wire.assign([object_rows, task_rows])])
                    conn.send_now([wire.ok(request_id)])
                elif body in results:
                    conn.send_now([wire.fetch_reply(request_id, results.pop(body))])
                else:
                    fetches[body] = request_id

        await asyncio.get_running_loop().create_server(lambda: FrameProtocol(on_frame),
                                                       "127.0.0.1", port)
        write_ready_file(ready_file)
        await asyncio.Event().wait()

    asyncio.run(run())


def serve_governor(port, ready_file, wire):
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        subprocess.Popen([sys.executable, __file__, "executor", str(theirs.fileno())],
                         pass_fds=[theirs.fileno()], preexec_fn=die_with_parent)
        theirs.close()
        links = {}
        welcome = loop.create_future()

        def from_server(_conn, data):
            if data == WELCOME:
                welcome.set_result(None)
                return
            for task_row in wire.read_assign(data)[1]:
                task_id, _type, config, _inputs, output_ids = task_row[:5]
                links["executor"].send_now([cbor2.dumps(["call", [output_ids[0], config]])])

        def from_executor(_conn, data):
            object_id, result = cbor2.loads(data)[1]
            links["server"].send_now([wire.update([[[object_id, result]], []])])

        _, links["executor"] = await loop.connect_accepted_socket(
            lambda: FrameProtocol(from_executor), ours)
        _, links["server"] = await loop.create_connection(lambda: FrameProtocol(from_server),
                                                          "127.0.0.1", port)
        links["server"].send_now([GOVERNOR])
        await welcome           # registered: the client may submit
        write_ready_file(ready_file)
        await asyncio.Event().wait()

    asyncio.run(run())


def serve_executor(fd):
    sock = socket.socket(fileno=fd)
    frames = FrameReader(sock.recv)
    while (data := frames.next()) is not None:
        object_id, config = cbor2.loads(data)[1]
        function = pickle.loads(cbor2.loads(config)["fn"])
        sock.sendall(frame(cbor2.dumps(["result", [object_id, function()]])))


def trivial():
    return b"x"


class BarePipeline:
    """The three processes behind a connected client socket; a context manager."""

    def __init__(self, workdir, wire="pickle"):
        self.workdir = workdir
        self.wire_name = wire
        self.wire = WIRES[wire]
        self.processes = Cluster(workdir, workdir, preexec_fn=die_with_parent)
        self.sock = None
        self.frames = None

    def __enter__(self):
        port = free_port()
        try:
            for role in ("server", "governor"):
                ready = os.path.join(self.workdir, f"{role}.ready")
                self.processes.spawn(role, [sys.executable, __file__, role, str(port), ready,
                                            self.wire_name],
                                     ready, os.path.join(self.workdir, f"{role}.log"))
                self.processes.wait_ready(30)
            self.sock = socket.create_connection(("127.0.0.1", port))
        except BaseException:
            self.__exit__()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(30)     # a broken pipeline fails the scenario, not hangs it
        self.frames = FrameReader(self.sock.recv)
        return self

    def __exit__(self, *exc):
        if self.sock is not None:
            self.sock.close()
        self.processes.kill_all()

    def _request(self, payload):
        self.sock.sendall(frame(payload))
        data = self.frames.next()
        if data is None:
            raise RuntimeError("the bare pipeline closed the connection")
        return self.wire.read_reply(data)

    def round_trips(self, count, pause):
        import cloudpickle
        wire = self.wire
        times = []
        for k in range(count):
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            task_id, object_id = 2 * k, 2 * k + 1
            config = cbor2.dumps({"fn": cloudpickle.dumps(trivial)})
            rows = [[[task_id, "py", config, [], [object_id], 1, None, "trivial", None]],
                    [[object_id, None, None, 0, None, True, None]]]
            assert self._request(wire.submit(2 * k + 1, rows))[0] == "ok"
            kind, data = self._request(wire.fetch(2 * k + 2, object_id))
            assert (kind, data) == ("fetch", b"x"), (kind, data)
            times.append(time.perf_counter() - start)
        return times


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "server":
        serve_server(int(sys.argv[2]), sys.argv[3], WIRES[sys.argv[4]])
    elif role == "governor":
        serve_governor(int(sys.argv[2]), sys.argv[3], WIRES[sys.argv[4]])
    elif role == "executor":
        serve_executor(int(sys.argv[2]))
    else:
        import tempfile
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
        pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
        wire_name = sys.argv[3] if len(sys.argv) > 3 else "pickle"
        with tempfile.TemporaryDirectory() as tmp, BarePipeline(tmp, wire_name) as bare:
            bare.round_trips(20, 0)
            print(f"median {statistics.median(bare.round_trips(count, pause)) * 1e3:.3f} ms")
