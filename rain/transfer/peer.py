"""The client side of a governor's data port: one connection per peer, many requests.

A data connection starts with a ``Hello`` of role ``data``; then each ``DataRequest`` is
answered by a ``DataReply`` and, when ok, the object's body (a directory as a tar archive)
as frames of ``CHUNK_SIZE`` bytes closed by one shorter frame (see ``stream``); a dense
blob's body goes from the socket to its file by splice where it can (see ``splice``). The
governor answers the requests of one connection one after another, so the body frames
after a reply are that reply's. Governors fetch their inputs through it, clients their
results and the REST server the objects it serves.
"""
import asyncio
import logging

from ..capnp import PROTOCOL_VERSION, rain_capnp
from ..common.cbor import loads_or
from ..common.errors import RainException
from ..common.framing import FrameProtocol, hello_future
from ..common.keepalive import set_keepalive
from .sinks import CHUNK_SIZE, MemorySink, TransferError
from .splice import splice_body

logger = logging.getLogger(__name__)
R = rain_capnp
#: Seconds after which a data connection whose peer's host vanished is dropped by the
#: kernel (TCP keepalive and ``TCP_USER_TIMEOUT``): the fetch fails, the input is fetched
#: again from elsewhere or recomputed, instead of hanging. The same as the server's
#: default heartbeat timeout, for the same reason.
KEEPALIVE_TIMEOUT = 30.0

__all__ = ["DataConnection", "PeerPool", "TransferError"]


class _Transfer:
    __slots__ = ("future", "sink", "failed")

    def __init__(self, future, sink):
        self.future = future
        self.sink = sink
        self.failed = None       # the error that ended it early (the body is skipped)


class DataConnection:
    """One connection to a peer's data port, multiplexing requests."""

    def __init__(self, address, token="", tls=None):
        self.address = address
        self.token = token
        self.tls = tls            # rain.tls.Tls of the cluster (None: plain TCP)
        self.conn = None
        self._pending = {}
        self._next_id = 1
        self._hello = None
        self._current = None      # the transfer whose body frames are arriving
        self._waits = 0           # sink writes not done yet (reading is paused meanwhile)

    async def connect(self):
        host, port = self.address.rsplit(":", 1)
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        self._hello = hello_future(loop)
        factory = lambda: FrameProtocol(self._on_frame, self._on_close,  # noqa: E731
                                        keep_size=8 * CHUNK_SIZE, views=True)
        if self.tls is None:
            transport, self.conn = await loop.create_connection(factory, host, int(port))
        else:
            try:
                transport, self.conn = await self.tls.connect(
                    loop, factory, host, int(port), what="the governor data port")
            except RainException as exc:
                raise TransferError(str(exc)) from None
        set_keepalive(transport.get_extra_info("socket"), KEEPALIVE_TIMEOUT)
        hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, token=self.token,
                                    role="data")
        self.conn.send(hello.to_bytes())
        ok, error = await self._hello
        if not ok:
            self.conn.close()
            raise TransferError(f"{self.address} refused the connection: {error}")

    def _on_frame(self, conn, frame):
        if self._hello is not None and not self._hello.done():
            with R.HelloReply.from_bytes(bytes(frame)) as reply:
                self._hello.set_result((reply.ok, reply.error))
            return
        if self._current is not None:
            self._body(frame)
            return
        with R.DataReply.from_bytes(bytes(frame), traversal_limit_in_words=2**24) as reply:
            transfer = self._pending.pop(reply.requestId, None)
            if transfer is None:
                raise TransferError(f"{self.address} answered an unknown request")
            if not reply.ok:
                self._end(transfer, transfer.failed or TransferError(reply.error))
                return
            if transfer.sink is None:          # an upload or a drop: no body follows
                if not transfer.future.done():
                    transfer.future.set_result({"size": reply.size})
                return
            meta = {"data_type": 1 if str(reply.dataType) == "directory" else 0,
                    "content_type": reply.contentType or None, "size": reply.size,
                    "info": loads_or(reply.info, {})}
            dense = reply.dense and meta["data_type"] == 0
        self._current = transfer
        if transfer.failed is None:
            try:
                transfer.sink.begin(meta)
            except Exception as exc:
                transfer.failed = exc
        if self._waits == 0:       # (an earlier body's sink may hold reading paused)
            splice_body(conn, dense, meta["size"], transfer.sink,
                        lambda error: self._body_spliced(transfer, error))

    def _body(self, frame):
        transfer = self._current
        last = len(frame) < CHUNK_SIZE
        if transfer.failed is None and not transfer.future.done():
            try:
                waiting = transfer.sink.write(frame) if frame else None
            except Exception as exc:
                transfer.failed = exc
            else:
                if waiting is not None:
                    self._pause_until(waiting)
        if last:
            self._body_done()

    def _body_done(self):
        """The last frame of the current body is in: end its transfer."""
        transfer, self._current = self._current, None
        if transfer.failed is None and not transfer.future.done():
            try:
                transfer.sink.end()
            except Exception as exc:
                transfer.failed = exc
        self._end(transfer, transfer.failed)

    def _body_spliced(self, transfer, error):
        if error is not None and transfer.failed is None:
            transfer.failed = error
        self._body_done()

    def _pause_until(self, waiting):
        """Stop reading from the peer until the sink has taken its chunk."""
        transport = self.conn.transport
        if self._waits == 0:
            transport.pause_reading()
        self._waits += 1

        def done(_future):
            self._waits -= 1
            if self._waits == 0 and not self.conn.closed:
                transport.resume_reading()

        asyncio.ensure_future(waiting).add_done_callback(done)

    def _end(self, transfer, error):
        if error is not None and transfer.sink is not None:
            try:
                transfer.sink.abort()
            except Exception:
                logger.exception("cleaning up a failed transfer from %s", self.address)
        if transfer.future.done():
            return
        if error is None:
            transfer.future.set_result(transfer.sink.meta)
        elif isinstance(error, (TransferError, OSError)):
            transfer.future.set_exception(error)
        else:
            transfer.future.set_exception(TransferError(str(error) or repr(error)))

    def _on_close(self, conn, exc):
        error = TransferError(f"connection to {self.address} lost")
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(error)
        transfers = list(self._pending.values())
        self._pending.clear()
        if self._current is not None:
            transfers.append(self._current)
            self._current = None
        for transfer in transfers:
            self._end(transfer, error)

    async def fetch_into(self, key, sink):
        """Receive object ``key`` into ``sink``; returns the reply's meta (data type,
        content type, size, info). On failure the sink is aborted and the error raised."""
        future = self._request(key, sink)
        request_id = self._next_id - 1
        try:
            return await future
        except asyncio.CancelledError:
            # Nobody waits any more: the body, if one comes, is read and dropped.
            transfer = self._pending.get(request_id) or self._current
            if transfer is not None and transfer.future is future and \
                    transfer.failed is None:
                transfer.failed = TransferError("cancelled")
                transfer.sink.abort()
            raise

    async def upload(self, key, source, label="", content_type=""):
        """Store constant ``key`` on the peer from ``source`` (see ``upload``); returns the
        size the peer stored. Nothing else may be sent on this connection meanwhile: the
        body frames follow the request."""
        future = self._request(key, None, upload=True, label=label or "",
                               contentType=content_type or "", size=source.size,
                               dataType="directory" if source.is_directory else "blob",
                               dense=source.dense)
        try:
            await source.send(self.conn)
        except BaseException:
            future.cancel()
            self.close()
            raise
        meta = await future
        return meta["size"]

    async def drop(self, key):
        """Make the peer forget constant ``key`` this client uploaded (its submit was
        refused)."""
        await self._request(key, None, drop=True)

    def _request(self, key, sink, **fields):
        if self.conn is None or self.conn.closed:
            raise TransferError(f"connection to {self.address} is closed")
        request_id = self._next_id
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Transfer(future, sink)
        request = R.DataRequest.new_message(requestId=request_id, **fields)
        request.id.session = key[0]
        request.id.id = key[1]
        self.conn.send(request.to_bytes())
        return future

    async def fetch(self, key):
        """Return ``(meta, bytes)`` of object ``key``."""
        sink = MemorySink()
        meta = await self.fetch_into(key, sink)
        return meta, sink.take()

    @property
    def closed(self):
        return self.conn is None or self.conn.closed

    def close(self):
        if self.conn is not None:
            self.conn.close()


class PeerPool:
    """Keeps one data connection per peer address."""

    def __init__(self, token="", tls=None):
        self.token = token
        self.tls = tls
        self.connections = {}
        self._connecting = {}

    async def get(self, address):
        conn = self.connections.get(address)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        task = asyncio.get_running_loop().create_task(self._connect(address))
        self._connecting[address] = task
        try:
            return await asyncio.shield(task)
        finally:
            self._connecting.pop(address, None)

    async def _connect(self, address):
        conn = DataConnection(address, self.token, self.tls)
        await conn.connect()
        self.connections[address] = conn
        return conn

    async def fetch(self, address, key):
        """``(meta, bytes)`` of object ``key`` held by the governor at ``address``."""
        conn = await self.get(address)
        return await conn.fetch(key)

    async def fetch_into(self, address, key, sink):
        """Stream object ``key`` from ``address`` into ``sink`` (see ``sinks``)."""
        conn = await self.get(address)
        return await conn.fetch_into(key, sink)

    def close(self):
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()
