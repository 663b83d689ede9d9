"""Objects moved in chunks: between governors, to clients and REST, of any size, with
bounded memory, and faults that end as task failures with their reasons."""
import asyncio
import os
import signal
import socket
import threading
import time
import urllib.request

import psutil
import pytest

from rain.capnp import PROTOCOL_VERSION, rain_capnp as R
from rain.client import RainException, Task
from rain.client.program import Input, InputDir, Output, OutputDir, _build_execute
from rain.common.frame_reader import FrameReader
from rain.common.framing import encode_frame
from rain.transfer.sinks import (CHUNK_SIZE, WRITE_SIZE, FileSink, TransferError,
                                finish_directory)

GiB = 1 << 30
MiB = 1 << 20


def on(where, args, inputs=(), outputs=(), stdout=None):
    """A shell command as a task on the governor that has resource ``where``."""
    ins, outs, config, name = _build_execute(args, stdout, None, inputs, outputs, True, None)
    return Task(ins, outs, config=config, task_type="buildin/run", resources={where: 1},
                name=name)


@pytest.fixture
def two_governors(make_cluster, tmp_path):
    """A cluster of governors "a" and "b" (resources named after them)."""
    return governors_a_and_b(make_cluster, tmp_path)


def governors_a_and_b(make_cluster, tmp_path, **options):
    cluster = make_cluster([], **options)
    for name in ("a", "b"):
        config = tmp_path / f"{name}.toml"
        config.write_text(f"[resources]\n{name} = 1\n")
        cluster.add_governor(1, ["--config", str(config)])
    return cluster


class PeakRss:
    """The largest RSS growth of some processes, sampled in a thread."""

    def __init__(self, pids):
        self.procs = [psutil.Process(pid) for pid in pids]
        self.base = [p.memory_info().rss for p in self.procs]
        self.peak = list(self.base)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.wait(0.05):
            for i, proc in enumerate(self.procs):
                try:
                    self.peak[i] = max(self.peak[i], proc.memory_info().rss)
                except psutil.Error:
                    pass

    def growth(self):
        self.stop_event.set()
        self.thread.join()
        return [(peak - base) // MiB for peak, base in zip(self.peak, self.base)]


def spliced_into(cluster, index):
    """Whether governor ``index`` received a body by splice (its log, at debug level)."""
    with open(os.path.join(cluster.logdir, f"governor-{index}.out"), "rb") as log:
        return b"by splice" in log.read()


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- end to end ------------------------------------------------------------------------------

def test_small_and_chunked_objects_between_governors_and_to_the_client(two_governors,
                                                                      tmp_path):
    client = two_governors.client()
    size = 3 * CHUNK_SIZE + 12345          # several chunks and a short last one
    with client.new_session() as s:
        make = on("a", f"head -c {size} /dev/urandom > big; echo small > small; "
                       "mkdir d && head -c 3000000 /dev/urandom > d/x && echo hi > d/y",
                  outputs=[Output("big"), Output("small"), OutputDir("d")])
        big, small, d = make.outputs
        check = on("b", "md5sum < big; cat small; cat d/y; md5sum < d/x",
                   inputs=[Input("big", dataobj=big), Input("small", dataobj=small),
                           InputDir("d", dataobj=d)], stdout=True)
        for obj in (big, small, d, check.output):
            obj.keep()
        s.submit()
        out = check.output.fetch().get_bytes().decode().split("\n")
        data = big.fetch().get_bytes()
        assert len(data) == size
        import hashlib
        assert out[0].split()[0] == hashlib.md5(data).hexdigest()
        assert out[1:3] == ["small", "hi"]
        big.fetch_to(tmp_path / "big")
        with open(tmp_path / "big", "rb") as f:
            assert f.read() == data
        instance = d.fetch_to(tmp_path / "d")
        assert instance.path == str(tmp_path / "d")
        with open(tmp_path / "d" / "x", "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == out[3].split()[0]
        assert (tmp_path / "d" / "y").read_text() == "hi\n"
        assert small.fetch_to(tmp_path / "small").get_bytes() == b"small\n"
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".tar")]
        with pytest.raises(RainException, match="already exists"):
            small.fetch_to(tmp_path / "small")


def test_rest_data_endpoint_streams_to_a_slow_http_client(cluster):
    """The server relays the governor's chunks as a chunked response, no faster than the
    HTTP client reads them: its memory stays a few chunks above idle."""
    import requests
    base = f"http://127.0.0.1:{cluster.http_port}/api"
    headers = cluster.http_headers
    size = 300 * MiB + 7
    r = requests.post(f"{base}/sessions", json={"name": "big"}, headers=headers, timeout=30)
    sid = r.json()["session"]
    graph = {"tasks": [{"id": 10, "type": "buildin/run", "outputs": [{"id": 11, "keep": True}],
                        "config": {"args": ["/bin/sh", "-c",
                                            f"head -c {size} /dev/zero | tr '\\0' y > big"],
                                   "in_paths": [], "out_paths": ["big"]}}]}
    r = requests.post(f"{base}/sessions/{sid}/submit", json=graph, headers=headers,
                      timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(f"{base}/sessions/{sid}/wait", json={}, headers=headers, timeout=120)
    assert r.json()["finished"] is True, r.text
    rss = PeakRss([cluster.server_process.pid])
    received = 0
    with requests.get(f"{base}/sessions/{sid}/objects/11/data", headers=headers,
                      stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers.get("Transfer-Encoding") == "chunked"
        first = True
        for piece in response.iter_content(1 << 20):
            if first:                       # a client that stalls for a while
                time.sleep(2)
                first = False
            assert piece.strip(b"y") == b""
            received += len(piece)
    assert received == size
    growth = rss.growth()[0]
    assert growth < 100, f"the server grew by {growth} MiB"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_5_gib_object_through_a_3_task_pipeline_on_two_governors(two_governors, tmp_path):
    """Sparse files keep it quick (holes are sent as zeros and received as holes), but
    every byte crosses the sockets: an object above 2^32 bytes, memory bounded."""
    client = two_governors.client()
    size = 5 * GiB + 3
    pids = [p.pid for p in two_governors.governor_processes] + \
        [two_governors.server_process.pid]
    rss = PeakRss(pids + [os.getpid()])
    with client.new_session() as s:
        first = on("a", "truncate -s 5G big && printf abc >> big", outputs=[Output("big")])
        # cp gives its copy the input's read-only mode (root may write it anyway).
        second = on("b", "cp --sparse=always big out && chmod u+w out && printf xyz >> out",
                    inputs=[Input("big", dataobj=first.output)], outputs=[Output("out")])
        third = on("a", "stat -L -c %s out; tail -c 6 out",
                   inputs=[Input("out", dataobj=second.output)], stdout=True)
        second.output.keep()
        third.output.keep()
        s.submit()
        s.wait([third])
        assert third.output.fetch().get_bytes() == f"{size + 3}\nabcxyz".encode()
        target = tmp_path / "fetched"
        second.output.fetch_to(target)
        assert os.path.getsize(target) == size + 3
        with open(target, "rb") as f:
            f.seek(size - 3)
            assert f.read() == b"abcxyz"
    growth = rss.growth()
    # Each transfer holds a few 2 MiB chunks; the whole object would be 5 GiB.
    assert max(growth) < 300, f"RSS growth (MiB) of governors, server, client: {growth}"


def test_bad_directory_archive_fails_the_task_with_the_reason(two_governors):
    """A directory the receiver refuses to extract (a FIFO in it) fails the consumer."""
    client = two_governors.client()
    with client.new_session() as s:
        make = on("a", "mkdir d && mkfifo d/pipe && echo x > d/x", outputs=[OutputDir("d")])
        use = on("b", "ls d", inputs=[InputDir("d", dataobj=make.output)], stdout=True)
        s.submit()
        with pytest.raises(RainException, match="Cannot obtain input.*bad directory archive"):
            s.wait([use])
    governor_b = os.path.join(two_governors.tmp, "governor-1")
    leftovers = [n for root, _d, files in os.walk(governor_b) for n in files
                 if n.startswith("fetch-")]
    assert leftovers == []


@pytest.mark.parametrize("body", ["sparse", "dense"])
def test_peer_killed_mid_transfer_leaves_no_partial_file_and_recovers(make_cluster,
                                                                       tmp_path, body):
    """The sender dies mid-transfer: the receiver removes the partial file, and the input
    is made again by a governor that can (here: a replacement with the same resource).
    The receiver is frozen while the sender is killed, so that the body is cut whatever
    its speed; a sparse body is read by the receiver, a dense one spliced (its log says
    which)."""
    two_governors = governors_a_and_b(make_cluster, tmp_path, env={"RAIN_LOG_DEBUG": "1"})
    client = two_governors.client()
    receiver = two_governors.governor_processes[1]
    receiver_dir = os.path.join(two_governors.tmp, "governor-1")
    if body == "sparse":
        make_big = "truncate -s 40G big"
    else:
        make_big = "head -c 2G /dev/zero | tr '\\0' x > big"
    with client.new_session() as s:
        # The first run makes a big file (a transfer long enough to be cut); the re-run
        # after the loss makes a small one, so recovery moves little data.
        again = tmp_path / "made-once"
        make = on("a", f"if [ -e {again} ]; then truncate -s 1M big; else {make_big}; "
                       f"touch {again}; fi; printf abc >> big", outputs=[Output("big")])
        use = on("b", "tail -c 3 big", inputs=[Input("big", dataobj=make.output)],
                 stdout=True)
        use.output.keep()
        s.submit()

        def received():
            """Sizes of the files being fetched (one may go while we look)."""
            sizes = []
            for root, _dirs, files in os.walk(receiver_dir):
                for name in files:
                    if name.startswith("fetch-"):
                        try:
                            sizes.append(os.path.getsize(os.path.join(root, name)))
                        except FileNotFoundError:
                            pass
            return sizes

        deadline = time.monotonic() + 120
        while not received():
            assert time.monotonic() < deadline, "timed out waiting for the transfer"
            time.sleep(0.001)
        os.kill(receiver.pid, signal.SIGSTOP)
        try:
            assert received() and max(received()) < 2 * GiB, "the transfer was not cut"
            os.kill(two_governors.governor_processes[0].pid, signal.SIGKILL)
            two_governors.governor_processes[0].wait()
        finally:
            os.kill(receiver.pid, signal.SIGCONT)
        wait_for(lambda: not received(), 60, "the partial file to be removed")
        assert spliced_into(two_governors, 1) == (body == "dense")
        config = tmp_path / "a-again.toml"
        config.write_text("[resources]\na = 1\n")
        two_governors.add_governor(1, ["--config", str(config)])
        assert use.output.fetch().get_bytes() == b"abc"


# -- the data port seen from a client that does not read --------------------------------------

def test_slow_client_does_not_grow_the_senders_buffers(two_governors):
    """A reader that stops reading holds the governor to a few chunks, not the object."""
    client = two_governors.client()
    size = 400 * MiB
    with client.new_session() as s:
        make = on("a", f"head -c {size} /dev/zero | tr '\\0' x > big", outputs=[Output("big")])
        make.output.keep()
        s.submit()
        s.wait([make])
        info = client.get_server_info()["governors"]
        address = next(g["governor_id"] for g in info if g["resources"].get("a") == 1)
        key = (s.session_id, make.output.id[1])
        sender = psutil.Process(two_governors.governor_processes[0].pid)
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION,
                                        token=two_governors.token, role="data").to_bytes()
            request = R.DataRequest.new_message(requestId=1)
            request.id.session, request.id.id = key
            request = request.to_bytes()
            before = sender.memory_info().rss
            sock.sendall(encode_frame(hello) + hello + encode_frame(request) + request)
            peak = before
            for _ in range(40):                  # 2 s of not reading
                time.sleep(0.05)
                peak = max(peak, sender.memory_info().rss)
            reader = FrameReader(sock.recv)
            assert reader.next() is not None     # hello reply
            with R.DataReply.from_bytes(reader.next()) as reply:
                assert reply.ok and reply.size == size
            received = 0
            while True:
                frame = reader.next()
                received += len(frame)
                if len(frame) < CHUNK_SIZE:
                    break
            assert received == size
    assert (peak - before) // MiB < 64, f"sender grew by {(peak - before) // MiB} MiB"


# -- sinks ------------------------------------------------------------------------------------

def test_a_corrupt_archive_leaves_nothing_behind(tmp_path):
    async def run():
        sink = FileSink(str(tmp_path / "d"))
        sink.begin({"data_type": 1, "size": -1, "content_type": None, "info": {}})
        sink.write(b"this is not a tar archive" * 100)
        sink.end()
        with pytest.raises(TransferError, match="bad directory archive"):
            await finish_directory(sink)

    asyncio.run(run())
    assert os.listdir(tmp_path) == []


def test_file_sink_keeps_holes_and_checks_the_size(tmp_path):
    sink = FileSink(str(tmp_path / "f"))
    sink.begin({"data_type": 0, "size": 2 * CHUNK_SIZE, "content_type": None, "info": {}})
    sink.write(memoryview(b"\0" * CHUNK_SIZE))
    sink.write(memoryview(b"\0" * CHUNK_SIZE))
    sink.end()
    assert os.path.getsize(tmp_path / "f") == 2 * CHUNK_SIZE
    assert os.stat(tmp_path / "f").st_blocks * 512 < CHUNK_SIZE
    short = FileSink(str(tmp_path / "g"))
    short.begin({"data_type": 0, "size": 10, "content_type": None, "info": {}})
    short.write(b"12345")
    with pytest.raises(TransferError, match="received 5 bytes of a 10-byte"):
        short.end()
    short.abort()
    assert not os.path.exists(tmp_path / "g")


def test_file_sink_starts_write_back_of_each_written_chunk(tmp_path, monkeypatch):
    """A sink for a file that will be made immutable (which writes it to disk whole)
    asks the kernel to start writing every chunk at once; others leave it to the kernel.
    (Dirty pages of one file cannot be observed from here: the advice itself is.)"""
    advised = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        advised.append((offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    data = [os.urandom(CHUNK_SIZE), b"\0" * CHUNK_SIZE, os.urandom(CHUNK_SIZE), b"tail"]
    for write_back, path in ((True, tmp_path / "wb"), (False, tmp_path / "plain")):
        sink = FileSink(str(path), write_back=write_back)
        sink.begin({"data_type": 0, "size": sum(map(len, data)), "content_type": None,
                    "info": {}})
        for chunk in data:
            sink.write(memoryview(chunk))
        sink.end()
        assert path.read_bytes() == b"".join(data)
    # The hole is not written, so not advised; the tail chunk is.
    assert advised == [(0, CHUNK_SIZE, os.POSIX_FADV_DONTNEED),
                       (2 * CHUNK_SIZE, CHUNK_SIZE, os.POSIX_FADV_DONTNEED),
                       (3 * CHUNK_SIZE, 4, os.POSIX_FADV_DONTNEED)]


def test_file_sink_writes_a_chunk_in_small_writes(tmp_path, monkeypatch):
    """A 2 MiB chunk goes to the file in writes of at most ``WRITE_SIZE`` bytes (one
    write of the whole chunk cost the kernel several times as much per GiB on a virtual
    machine: ``benchmarks/write_size.py``), and the file still holds every byte."""
    sizes = []
    real = os.write

    def spy(fd, data):
        sizes.append(len(data))
        return real(fd, data)

    monkeypatch.setattr(os, "write", spy)
    data = [os.urandom(CHUNK_SIZE), os.urandom(CHUNK_SIZE), os.urandom(12345)]
    sink = FileSink(str(tmp_path / "f"))
    sink.begin({"data_type": 0, "size": sum(map(len, data)), "content_type": None,
                "info": {}})
    for chunk in data:
        sink.write(memoryview(chunk))
    sink.end()
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == b"".join(data)
    assert sizes and max(sizes) <= WRITE_SIZE
    assert sum(sizes) == sum(map(len, data))


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MiB tmpfs (root only), unmounted after the test."""
    import shutil
    import subprocess
    path = tmp_path / "small-disk"
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_during_a_fetch_fails_the_task_and_keeps_the_governor_usable(
        make_cluster, tmp_path, small_disk):
    """A dense object (taken by splice, the governor's log says) into a 32 MiB disk."""
    cluster = make_cluster([], env={"RAIN_LOG_DEBUG": "1"})
    for name in ("a", "b"):
        config = tmp_path / f"{name}.toml"
        config.write_text(f"[resources]\n{name} = 1\n")
        extra = ["--workdir", str(small_disk / "gov")] if name == "b" else []
        cluster.add_governor(1, ["--config", str(config), *extra])
    client = cluster.client()
    with client.new_session() as s:
        make = on("a", f"head -c {64 * MiB} /dev/zero | tr '\\0' z > big",
                  outputs=[Output("big")])
        use = on("b", "true", inputs=[Input("big", dataobj=make.output)])
        s.submit()
        with pytest.raises(RainException, match="(?i)Cannot obtain input.*No space left"):
            s.wait([use])
    assert spliced_into(cluster, 1)
    leftovers = [n for _r, _d, files in os.walk(small_disk) for n in files
                 if n.startswith("fetch-")]
    assert leftovers == []
    with client.new_session() as s:
        small = on("a", "echo fits > f", outputs=[Output("f")])
        fine = on("b", "cat f", inputs=[Input("f", dataobj=small.output)], stdout=True)
        fine.output.keep()
        s.submit()
        assert fine.output.fetch().get_bytes() == b"fits\n"
