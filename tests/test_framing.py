"""Frames over a real socket pair: split, batched, big and garbage input."""
import asyncio
import os
import socket

import pytest

from rain.common import framing
from rain.common.framing import FrameProtocol, encode_frame


def frame_bytes(payload):
    return encode_frame(payload) + payload


async def receive(chunks, *, max_frame_size=framing.MAX_FRAME_SIZE, pause=0.0):
    """Write ``chunks`` one by one into a socket read by a ``FrameProtocol``; return the
    frames it delivered, whether it closed the connection, and the protocol."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    frames, closed = [], loop.create_future()

    def on_close(_proto, exc):
        if not closed.done():
            closed.set_result(exc)

    _transport, proto = await loop.connect_accepted_socket(
        lambda: FrameProtocol(lambda _p, frame: frames.append(frame), on_close,
                              max_frame_size=max_frame_size), theirs)
    ours.setblocking(False)
    try:
        for chunk in chunks:
            await loop.sock_sendall(ours, chunk)
            await asyncio.sleep(pause)
        await asyncio.sleep(0.05)
        ours.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(asyncio.shield(closed), 5)
    finally:
        ours.close()
    return frames, proto


def test_many_frames_in_one_write():
    payloads = [os.urandom(n) for n in (0, 1, 3, 4, 5, 100, 4096)] * 50
    frames, _ = asyncio.run(receive([b"".join(frame_bytes(p) for p in payloads)]))
    assert frames == payloads


def test_frames_split_at_every_byte():
    payloads = [b"", b"abc", os.urandom(300), b"z" * 5]
    data = b"".join(frame_bytes(p) for p in payloads)
    frames, _ = asyncio.run(receive([data[i:i + 1] for i in range(len(data))], pause=0.001))
    assert frames == payloads


def test_big_frame_then_small_buffer_again():
    big = os.urandom(5 * 2**20 + 7)
    data = frame_bytes(big) + frame_bytes(b"after")
    chunks = [data[i:i + 777_777] for i in range(0, len(data), 777_777)]
    frames, proto = asyncio.run(receive(chunks))
    assert frames == [big, b"after"]
    # The buffer grown for the big frame is not kept once it is read.
    assert len(proto._buf) <= framing.KEEP_SIZE


def test_frame_over_the_limit_closes_only_that_connection():
    data = frame_bytes(b"ok") + (1000).to_bytes(4, "little") + b"x" * 1000
    frames, proto = asyncio.run(receive([data], max_frame_size=999))
    assert frames == [b"ok"]
    assert proto.closed


def test_handler_error_closes_connection_after_earlier_frames():
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        seen = []
        closed = loop.create_future()

        def on_frame(_p, frame):
            seen.append(frame)
            if frame == b"bad":
                raise ValueError("handler refuses")

        await loop.connect_accepted_socket(
            lambda: FrameProtocol(on_frame, lambda _p, exc: closed.set_result(exc)), theirs)
        ours.sendall(b"".join(frame_bytes(p) for p in (b"one", b"bad", b"never")))
        await asyncio.wait_for(closed, 5)
        ours.close()
        return seen

    assert asyncio.run(run()) == [b"one", b"bad"]


@pytest.mark.parametrize("split", [0, 2, 4, 9])
def test_bytes_fed_by_hand_join_what_the_socket_brings(split):
    """``data_received`` takes bytes read elsewhere (the client's reading thread hands
    over), including a partial frame completed by the socket afterwards."""
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        seen = []
        closed = loop.create_future()
        _t, proto = await loop.connect_accepted_socket(
            lambda: FrameProtocol(lambda _p, f: seen.append(f),
                                  lambda _p, exc: closed.set_result(exc)), theirs)
        data = frame_bytes(b"first") + frame_bytes(b"second")
        proto.data_received(data[:split])
        ours.sendall(data[split:])
        ours.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(closed, 5)
        ours.close()
        return seen

    assert asyncio.run(run()) == [b"first", b"second"]


def test_peer_that_stops_reading_is_disconnected_not_buffered_for():
    """Frames for a peer that never reads pile up only to ``max_write_buffer``."""
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        closed = loop.create_future()
        _transport, proto = await loop.connect_accepted_socket(
            lambda: FrameProtocol(lambda _p, _f: None,
                                  lambda _p, exc: closed.done() or closed.set_result(exc),
                                  max_write_buffer=1 << 20), theirs)
        try:
            payload = b"x" * (1 << 16)
            for _ in range(256):                  # 16 MiB, never read by ``ours``
                proto.send(payload)
                await asyncio.sleep(0)
                if proto.closed:
                    break
            assert proto.closed
            await asyncio.wait_for(closed, 5)
            assert proto.transport.get_write_buffer_size() <= (1 << 20) + len(payload) + 4
        finally:
            ours.close()

    asyncio.run(run())


def test_frames_as_views_are_released_after_the_handler():
    async def run():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        kept, done = [], loop.create_future()

        def on_frame(_p, frame):
            assert isinstance(frame, memoryview)
            kept.append((bytes(frame), frame))
            if len(kept) == 2:
                done.set_result(None)

        await loop.connect_accepted_socket(
            lambda: FrameProtocol(on_frame, views=True), theirs)
        ours.sendall(frame_bytes(b"one") + frame_bytes(b"two"))
        await asyncio.wait_for(done, 5)
        ours.close()
        assert [data for data, _ in kept] == [b"one", b"two"]
        with pytest.raises(ValueError):
            bytes(kept[0][1])                      # released: cannot be misused later

    asyncio.run(run())


class _Recording(FrameProtocol):
    """Records, at every read, the room offered and what the pending frame still needs,
    and the socket's receive low-water mark at that moment."""

    def __init__(self, on_frame):
        super().__init__(on_frame, views=True, keep_size=1 << 24)
        self.reads = []

    def get_buffer(self, sizehint):
        rest = self._needed - (self._end - self._start)
        view = super().get_buffer(sizehint)
        sock = self.transport.get_extra_info("socket")
        low_water = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        self.reads.append((len(view), rest, low_water))
        return view


def test_bulk_reads_stop_at_frame_ends_and_wait_for_big_pieces():
    """A bulk receiver never reads past the end of a big frame (so the start of the next
    one never has to be moved to the front of the buffer), and while most of a big frame
    is still to come the socket wakes it only for big pieces, never for more bytes than
    the frame still needs: the last frame arrives although nothing follows it."""
    big = [os.urandom(2**21) for _ in range(6)]
    payloads = [b"head"] + big + [os.urandom(3 * 2**20 + 5)]

    async def run():
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        frames, done, protocols = [], loop.create_future(), []

        def on_frame(_p, frame):
            frames.append(bytes(frame))
            if len(frames) == len(payloads):
                done.set_result(None)

        def factory():
            protocols.append(_Recording(on_frame))
            return protocols[-1]

        server = await loop.create_server(factory, sock=listener)
        sender = socket.create_connection(listener.getsockname())
        try:
            data = b"".join(frame_bytes(p) for p in payloads)
            # Sent in uneven pieces with pauses, and the connection stays open after the
            # last frame: the receiver must not wait for bytes that never come.
            for start in range(0, len(data), 700_001):
                await loop.sock_sendall(sender, data[start:start + 700_001])
                await asyncio.sleep(0.002)
            await asyncio.wait_for(done, 20)
        finally:
            sender.close()
            server.close()
        return protocols[0].reads, frames

    reads, frames = asyncio.run(run())
    assert frames == payloads
    assert all(offered <= max(framing.READ_SIZE, rest) for offered, rest, _ in reads), reads
    assert all(low_water <= max(1, rest) for _, rest, low_water in reads), reads
    assert any(low_water > framing.READ_SIZE for _, _, low_water in reads), reads
