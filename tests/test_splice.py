"""Bodies received with ``splice``: a client's data connection against a data port whose
every byte the test decides, so that each fault can be put where it hurts."""
import asyncio
import hashlib
import os

import pytest

from rain.capnp import PROTOCOL_VERSION, rain_capnp as R
from rain.common.framing import encode_frame
from rain.governor.store import Store
from rain.governor.transfer import DataServer
from rain.transfer.peer import DataConnection
from rain.transfer.sinks import CHUNK_SIZE, FileSink, TransferError
from rain.transfer.splice import FrameSizes
from rain.transfer.upload import file_source, upload

pytestmark = pytest.mark.timeout(60)

SIZE = 3 * CHUNK_SIZE + 12345
BODY = os.urandom(SIZE)


def frames_of(body):
    """The frames of a body as the senders cut it (see ``rain.transfer.stream``)."""
    out = []
    for start in range(0, len(body) + 1, CHUNK_SIZE):
        chunk = body[start:start + CHUNK_SIZE]
        out.append(encode_frame(chunk) + chunk)
    return out


class Port:
    """A data port on loopback answering each request with ``answer(reader, writer,
    request id, object id)``."""

    def __init__(self, answer):
        self.answer = answer
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        try:
            await _read_frame(reader)                   # the hello
            reply = R.HelloReply.new_message(ok=True, protocolVersion=PROTOCOL_VERSION)
            _send(writer, reply.to_bytes())
            while True:
                frame = await _read_frame(reader)
                with R.DataRequest.from_bytes(frame) as request:
                    number = request.id.id
                    request_id = request.requestId
                await self.answer(reader, writer, request_id, number)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _read_frame(reader):
    length = int.from_bytes(await reader.readexactly(4), "little")
    return await reader.readexactly(length)


def _send(writer, payload):
    writer.write(encode_frame(payload) + payload)


def reply(request_id, size, dense=True):
    message = R.DataReply.new_message(requestId=request_id, ok=True, dataType="blob",
                                      size=size, dense=dense).to_bytes()
    return encode_frame(message) + message


async def answer_with(writer, request_id, body, dense=True):
    """A whole reply and body, the body's frames in pieces of odd sizes."""
    writer.write(reply(request_id, len(body), dense))
    data = b"".join(frames_of(body))
    for start in range(0, len(data), 777777):
        writer.write(data[start:start + 777777])
        await writer.drain()


class Spy:
    """Counts how the sinks were fed: bytes written by the process, bytes spliced."""

    def __init__(self, monkeypatch):
        self.written = 0
        self.spliced = 0
        real_write, real_pipe = FileSink.write, FileSink.write_from_pipe

        def write(sink, chunk):
            self.written += len(chunk)
            return real_write(sink, chunk)

        def write_from_pipe(sink, pipe, count):
            self.spliced += count
            return real_pipe(sink, pipe, count)

        monkeypatch.setattr(FileSink, "write", write)
        monkeypatch.setattr(FileSink, "write_from_pipe", write_from_pipe)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def open_pipes():
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return sum(name.startswith("pipe:") for name in names)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_a_dense_body_goes_to_its_file_by_splice_and_the_connection_reads_on(
        tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    small = b"after the big one"

    async def answer(reader, writer, request_id, number):
        await answer_with(writer, request_id, BODY if number == 1 else small)

    async def main():
        async with Port(answer) as port:
            conn = DataConnection(port.address)
            await conn.connect()
            fds = open_fds()
            meta = await conn.fetch_into((1, 1), FileSink(str(tmp_path / "big")))
            assert open_fds() == fds                    # pipe and socket copy closed
            assert meta["size"] == SIZE
            assert await conn.fetch((1, 2)) == (meta | {"size": len(small)}, small)
            conn.close()

    asyncio.run(main())
    assert digest(tmp_path / "big") == hashlib.sha256(BODY).hexdigest()
    # What the connection had read before the hand-over is written, the rest spliced.
    assert spy.spliced >= SIZE - (1 << 16) and spy.written + spy.spliced == SIZE


def test_a_body_that_is_not_dense_is_read_and_keeps_its_holes(tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    body = bytes(2 * CHUNK_SIZE) + b"end"

    async def answer(reader, writer, request_id, number):
        await answer_with(writer, request_id, body, dense=False)

    async def main():
        async with Port(answer) as port:
            conn = DataConnection(port.address)
            await conn.connect()
            await conn.fetch_into((1, 1), FileSink(str(tmp_path / "sparse")))
            conn.close()

    asyncio.run(main())
    assert (tmp_path / "sparse").read_bytes() == body
    assert os.stat(tmp_path / "sparse").st_blocks * 512 < CHUNK_SIZE
    assert spy.spliced == 0


def test_a_sink_that_fails_mid_body_fails_its_transfer_only(tmp_path, monkeypatch):
    """A full disk in the middle: that fetch fails with the reason and leaves no file;
    the rest of the body is read and dropped, and the next fetch on the connection works."""
    real = FileSink.write_from_pipe
    calls = []

    def full_after_a_while(sink, pipe, count):
        calls.append(count)
        if sum(calls) > CHUNK_SIZE:
            raise OSError(28, "No space left on device")
        return real(sink, pipe, count)

    monkeypatch.setattr(FileSink, "write_from_pipe", full_after_a_while)

    async def answer(reader, writer, request_id, number):
        await answer_with(writer, request_id, BODY)

    async def main():
        async with Port(answer) as port:
            conn = DataConnection(port.address)
            await conn.connect()
            with pytest.raises(OSError, match="No space left"):
                await conn.fetch_into((1, 1), FileSink(str(tmp_path / "full")))
            assert not (tmp_path / "full").exists()
            monkeypatch.setattr(FileSink, "write_from_pipe", real)
            await conn.fetch_into((1, 2), FileSink(str(tmp_path / "fits")))
            conn.close()

    asyncio.run(main())
    assert digest(tmp_path / "fits") == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("fault", ["peer gone", "wrong frame length"])
def test_a_broken_body_fails_the_transfer_and_leaves_no_file(tmp_path, fault):
    """The peer goes away mid-body, or sends a frame the body cannot have (and then the
    rest, and waits): the receiver ends the connection and the transfer fails."""
    async def answer(reader, writer, request_id, number):
        writer.write(reply(request_id, SIZE))
        frames = frames_of(BODY)
        writer.write(frames[0])
        if fault == "peer gone":
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            return
        writer.write(encode_frame(b"x" * 100) + b"x" * 100 + b"".join(frames[1:]))
        await writer.drain()
        await reader.read()                             # until the receiver hangs up

    async def main():
        async with Port(answer) as port:
            conn = DataConnection(port.address)
            await conn.connect()
            pipes = open_pipes()
            with pytest.raises(TransferError, match="lost"):
                await asyncio.wait_for(
                    conn.fetch_into((1, 1), FileSink(str(tmp_path / "broken"))), 10)
            assert open_pipes() == pipes
            assert conn.closed

    asyncio.run(main())
    assert os.listdir(tmp_path) == []


def test_a_cancelled_fetch_drops_the_rest_of_its_body(tmp_path):
    """Nobody waits any more: the file goes at once, the body is read to its end and the
    connection carries the next request."""
    go_on = None

    async def answer(reader, writer, request_id, number):
        if number == 1:
            frames = frames_of(BODY)
            writer.write(reply(request_id, SIZE) + frames[0])
            await writer.drain()
            await go_on.wait()
            writer.write(b"".join(frames[1:]))
        else:
            await answer_with(writer, request_id, b"next")

    async def main():
        nonlocal go_on
        go_on = asyncio.Event()
        async with Port(answer) as port:
            conn = DataConnection(port.address)
            await conn.connect()
            fetch = asyncio.ensure_future(
                conn.fetch_into((1, 1), FileSink(str(tmp_path / "cancelled"))))
            while not (tmp_path / "cancelled").exists() or \
                    os.path.getsize(tmp_path / "cancelled") < CHUNK_SIZE:
                await asyncio.sleep(0.01)
            fetch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fetch
            assert not (tmp_path / "cancelled").exists()
            go_on.set()
            assert (await conn.fetch((1, 2)))[1] == b"next"
            conn.close()

    asyncio.run(main())


def test_the_receiver_splices_only_where_it_may(tmp_path, monkeypatch):
    """Bodies below a chunk and bodies into memory are read as before."""
    spy = Spy(monkeypatch)

    async def answer(reader, writer, request_id, number):
        await answer_with(writer, request_id, BODY[:CHUNK_SIZE - 1] if number == 1 else BODY)

    async def main():
        async with Port(answer) as port:
            conn = DataConnection(port.address)
            await conn.connect()
            await conn.fetch_into((1, 1), FileSink(str(tmp_path / "small")))
            assert (await conn.fetch((1, 2)))[1] == BODY
            conn.close()

    asyncio.run(main())
    assert spy.spliced == 0
    assert (tmp_path / "small").read_bytes() == BODY[:CHUNK_SIZE - 1]


def expected_frames(size):
    frames = FrameSizes(size)
    sizes = []
    while frames:
        sizes.append(frames.pop())
    return sizes, frames.wire_bytes


def test_the_frames_expected_are_those_the_senders_cut():
    cut = frames_of(BODY)
    assert expected_frames(SIZE) == ([len(f) - 4 for f in cut], sum(map(len, cut)))
    assert expected_frames(2 * CHUNK_SIZE)[0] == [CHUNK_SIZE, CHUNK_SIZE, 0]
    # A peer announcing an absurd size costs nothing until its bytes come.
    huge = FrameSizes(1 << 62)
    assert huge.pop() == CHUNK_SIZE and huge.left == (1 << 41)


def test_a_governor_takes_a_dense_upload_by_splice_and_serves_it_so(tmp_path, monkeypatch):
    """A governor's data port in this process: a client uploads a file without holes
    and fetches it back; both bodies go to their files by splice, and a file with holes
    uploaded beside it is stored with its holes."""
    spy = Spy(monkeypatch)
    dense, sparse = tmp_path / "dense", tmp_path / "sparse"
    dense.write_bytes(BODY)
    with open(sparse, "wb") as f:
        f.truncate(4 * CHUNK_SIZE)
        f.write(b"start")
    store = Store(str(tmp_path / "governor"))
    server = DataServer(store)

    async def main():
        store.loop = asyncio.get_running_loop()
        host, port = await server.listen("127.0.0.1", 0)
        address = f"{host}:{port}"
        for key, path in (((1, 1), dense), ((1, 2), sparse)):
            with open(path, "rb") as f:
                assert await upload(address, "", key, file_source(f)) == path.stat().st_size
        conn = DataConnection(address)
        await conn.connect()
        meta = await conn.fetch_into((1, 1), FileSink(str(tmp_path / "back")))
        assert meta["size"] == SIZE
        conn.close()
        server.close()

    try:
        asyncio.run(main())
        stored = [store.objects[key].path for key in ((1, 1), (1, 2))]
        assert digest(stored[0]) == digest(tmp_path / "back") == digest(dense)
        assert digest(stored[1]) == digest(sparse)
        assert os.stat(stored[1]).st_blocks * 512 <= CHUNK_SIZE   # of 4 chunks
        assert spy.spliced >= 2 * (SIZE - (1 << 16))
    finally:
        store.clear()
