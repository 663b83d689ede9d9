"""The hops of a Rain round trip with no runtime behind them: the (d) machine baseline.

A client, a server, a governor and an executor, as in Rain: the server and the governor
are asyncio programs, the client and the executor block on their sockets; client-server
and server-governor talk over TCP on loopback, governor-executor over a Unix socket pair.
A round trip is what scenario (d) times: the client submits a cloudpickled function and
waits for the acknowledgement, asks for the result, and the server answers once the
executor has run the function and the governor has reported. Messages are pickled tuples
behind a 4-byte length. No graph, no scheduling, no state, no events: what is left is the
machine's price for these processes and wake-ups, and Python's for the least code per hop.

    python bare_pipeline.py [count] [pause]      # prints the median round trip
"""
import asyncio
import collections
import os
import pickle
import socket
import statistics
import subprocess
import sys
import time

HEADER = 4


def frame(message):
    payload = pickle.dumps(message)
    return len(payload).to_bytes(HEADER, "little") + payload


def take_frames(buffer):
    """Complete messages at the front of ``buffer`` (removed from it)."""
    messages = []
    while len(buffer) >= HEADER:
        size = int.from_bytes(buffer[:HEADER], "little")
        if len(buffer) < HEADER + size:
            break
        messages.append(pickle.loads(bytes(buffer[HEADER:HEADER + size])))
        del buffer[:HEADER + size]
    return messages


class Messages(asyncio.Protocol):
    def __init__(self, on_message):
        self.on_message = on_message
        self.buffer = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        for message in take_frames(self.buffer):
            self.on_message(self, message)


def serve_server(port_file):
    async def run():
        peers = {}

        def on_message(conn, message):
            kind = message[0]
            if kind == "governor":
                peers["governor"] = conn
                conn.transport.write(frame(("welcome",)))
            elif kind == "submit":
                peers["client"] = conn
                peers["governor"].transport.write(frame(("assign",) + message[1:]))
                conn.transport.write(frame(("ok",)))
            elif kind == "done":
                peers["client"].transport.write(frame(("data", message[2])))

        server = await asyncio.get_running_loop().create_server(
            lambda: Messages(on_message), "127.0.0.1", 0)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.sockets[0].getsockname()[1]))
        os.replace(port_file + ".tmp", port_file)
        await asyncio.Event().wait()

    asyncio.run(run())


def serve_governor(port, ready_file):
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        subprocess.Popen([sys.executable, __file__, "executor", str(theirs.fileno())],
                         pass_fds=[theirs.fileno()], preexec_fn=_die_with_parent)
        theirs.close()
        peers = {}
        welcome = loop.create_future()

        def from_server(_conn, message):
            if message[0] == "welcome":
                welcome.set_result(None)
            else:
                executor.transport.write(frame(("call",) + message[1:]))

        _, executor = await loop.connect_accepted_socket(
            lambda: Messages(lambda _c, m: peers["server"].transport.write(
                frame(("done",) + m[1:]))), ours)
        _, server = await loop.create_connection(lambda: Messages(from_server),
                                                 "127.0.0.1", port)
        peers["server"] = server
        server.transport.write(frame(("governor",)))
        await welcome           # registered: the client may submit
        open(ready_file, "w").close()
        await asyncio.Event().wait()

    asyncio.run(run())


def serve_executor(fd):
    sock = socket.socket(fileno=fd)
    buffer = bytearray()
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buffer += data
        for _kind, task_id, function in take_frames(buffer):
            sock.sendall(frame(("result", task_id, pickle.loads(function)())))


def _die_with_parent():
    from rain.local_cluster import die_with_parent
    die_with_parent()


def trivial():
    return b"x"


class BarePipeline:
    """The three processes behind a connected client socket; a context manager."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.processes = []
        self.sock = None
        self.buffer = bytearray()
        self.received = collections.deque()     # messages read but not yet taken

    def __enter__(self):
        port_file = os.path.join(self.workdir, "bare.port")
        ready_file = os.path.join(self.workdir, "bare.ready")
        self.processes.append(subprocess.Popen([sys.executable, __file__, "server", port_file],
                                               preexec_fn=_die_with_parent))
        port = int(self._wait_for(port_file))
        self.processes.append(subprocess.Popen(
            [sys.executable, __file__, "governor", str(port), ready_file],
            preexec_fn=_die_with_parent))
        self._wait_for(ready_file)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(30)     # a broken pipeline fails the scenario, not hangs it
        return self

    def _wait_for(self, path, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline or any(p.poll() is not None
                                                  for p in self.processes):
                raise RuntimeError("the bare pipeline did not start")
            time.sleep(0.01)
        with open(path) as f:
            return f.read()

    def __exit__(self, *exc):
        if self.sock is not None:
            self.sock.close()
        for process in reversed(self.processes):
            process.kill()
            process.wait()

    def _receive(self):
        while True:
            self.received.extend(take_frames(self.buffer))
            if self.received:
                return self.received.popleft()
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the bare pipeline closed the connection")
            self.buffer += data

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
        serve_server(sys.argv[2])
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
