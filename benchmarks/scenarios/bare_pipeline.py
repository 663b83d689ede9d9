"""The hops of a Rain round trip with no runtime behind them: the (d) machine baseline.

A client, a server, a governor and an executor, as in Rain: the server and the governor
are asyncio programs, the client and the executor block on their sockets; client-server
and server-governor talk over TCP on loopback, governor-executor over a Unix socket pair.
A round trip is what scenario (d) times: the client submits a cloudpickled function,
waits for the acknowledgement, then for the result, which the server sends once the
executor has run the function and the governor has reported. Messages are pickled tuples
in Rain's own frames (``rain.common.framing``, ``frame_reader``). No graph, no
scheduling, no state, no events: what is left is the machine's price for these processes
and wake-ups, and Python's for the least code per hop.

    python bare_pipeline.py [count] [pause]      # prints the median round trip
"""
import asyncio
import os
import pickle
import socket
import statistics
import subprocess
import sys
import time

from rain.common.frame_reader import FrameReader
from rain.common.framing import FrameProtocol, encode_frame
from rain.common.readyfile import write_ready_file
from rain.local_cluster import die_with_parent, free_port
from rain.starter import Cluster


def frame(message):
    payload = pickle.dumps(message)
    return encode_frame(payload) + payload


def send(conn, message):
    """Write one message on a ``FrameProtocol`` connection now."""
    conn.send_now([pickle.dumps(message)])


def serve_server(port, ready_file):
    async def run():
        peers = {}

        def on_frame(conn, data):
            message = pickle.loads(data)
            kind = message[0]
            if kind == "governor":
                peers["governor"] = conn
                send(conn, ("welcome",))
            elif kind == "submit":
                peers["client"] = conn
                send(peers["governor"], ("assign",) + message[1:])
                send(conn, ("ok",))
            elif kind == "done":
                send(peers["client"], ("data", message[2]))

        await asyncio.get_running_loop().create_server(lambda: FrameProtocol(on_frame),
                                                       "127.0.0.1", port)
        write_ready_file(ready_file)
        await asyncio.Event().wait()

    asyncio.run(run())


def serve_governor(port, ready_file):
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        subprocess.Popen([sys.executable, __file__, "executor", str(theirs.fileno())],
                         pass_fds=[theirs.fileno()], preexec_fn=die_with_parent)
        theirs.close()
        links = {}
        welcome = loop.create_future()

        def from_server(_conn, data):
            message = pickle.loads(data)
            if message[0] == "welcome":
                welcome.set_result(None)
            else:
                send(links["executor"], ("call",) + message[1:])

        def from_executor(_conn, data):
            send(links["server"], ("done",) + pickle.loads(data)[1:])

        _, links["executor"] = await loop.connect_accepted_socket(
            lambda: FrameProtocol(from_executor), ours)
        _, links["server"] = await loop.create_connection(lambda: FrameProtocol(from_server),
                                                          "127.0.0.1", port)
        send(links["server"], ("governor",))
        await welcome           # registered: the client may submit
        write_ready_file(ready_file)
        await asyncio.Event().wait()

    asyncio.run(run())


def serve_executor(fd):
    sock = socket.socket(fileno=fd)
    frames = FrameReader(sock.recv)
    while (data := frames.next()) is not None:
        _kind, task_id, function = pickle.loads(data)
        sock.sendall(frame(("result", task_id, pickle.loads(function)())))


def trivial():
    return b"x"


class BarePipeline:
    """The three processes behind a connected client socket; a context manager."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.processes = Cluster(workdir, workdir, preexec_fn=die_with_parent)
        self.sock = None
        self.frames = None

    def __enter__(self):
        port = free_port()
        try:
            for role in ("server", "governor"):
                ready = os.path.join(self.workdir, f"{role}.ready")
                self.processes.spawn(role, [sys.executable, __file__, role, str(port), ready],
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

    def _receive(self):
        data = self.frames.next()
        if data is None:
            raise RuntimeError("the bare pipeline closed the connection")
        return pickle.loads(data)

    def round_trips(self, count, pause):
        import cloudpickle
        times = []
        for task_id in range(count):
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            self.sock.sendall(frame(("submit", task_id, cloudpickle.dumps(trivial))))
            assert self._receive() == ("ok",)
            reply = self._receive()
            assert reply == ("data", b"x"), reply
            times.append(time.perf_counter() - start)
        return times


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "server":
        serve_server(int(sys.argv[2]), sys.argv[3])
    elif role == "governor":
        serve_governor(int(sys.argv[2]), sys.argv[3])
    elif role == "executor":
        serve_executor(int(sys.argv[2]))
    else:
        import tempfile
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
        pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
        with tempfile.TemporaryDirectory() as tmp, BarePipeline(tmp) as bare:
            bare.round_trips(20, 0)
            print(f"median {statistics.median(bare.round_trips(count, pause)) * 1e3:.3f} ms")
