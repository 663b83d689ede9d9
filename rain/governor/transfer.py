"""Direct object transfers: the governor's data port (serving) and its peer connections.

A data connection starts with a ``Hello`` of role ``data``; then each ``DataRequest`` is
answered by a ``DataReply`` and, when ok, one raw frame with the object's bytes (a
directory as a tar archive). Clients use the same port to fetch results, so data never
passes through the server.
"""
import asyncio
import logging

from ..auth import token_matches
from ..capnp import PROTOCOL_VERSION, rain_capnp
from ..common.cbor import dumps_or_empty, loads_or
from ..common.framing import FrameProtocol
from .store import READY

logger = logging.getLogger(__name__)
R = rain_capnp
#: Peers only send a Hello and small DataRequests to the data port.
REQUEST_MAX_SIZE = 2**20


class DataServer:
    """Serves stored objects to peers and clients."""

    def __init__(self, store, token=""):
        self.store = store
        self.token = token
        self.server = None

    async def listen(self, host, port):
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: FrameProtocol(self._on_frame, max_frame_size=REQUEST_MAX_SIZE),
            host, port)
        return self.server.sockets[0].getsockname()[:2]

    def _on_frame(self, conn, frame):
        if conn.state is None:
            with R.Hello.from_bytes(frame, traversal_limit_in_words=2**20) as hello:
                ok = hello.protocolVersion == PROTOCOL_VERSION and str(hello.role) == "data"
                token_ok = token_matches(self.token, hello.token)
            if not ok:
                error = f"Expected a data hello of protocol version {PROTOCOL_VERSION}"
            else:
                error = "" if token_ok else "Authentication failed: wrong or missing token"
            conn.send(R.HelloReply.new_message(ok=ok and token_ok, error=error,
                                               protocolVersion=PROTOCOL_VERSION).to_bytes())
            if not (ok and token_ok):
                conn.close()
                return
            conn.state = "ready"
            return
        with R.DataRequest.from_bytes(frame, traversal_limit_in_words=2**20) as request:
            request_id = request.requestId
            key = (request.id.session, request.id.id)
        asyncio.get_running_loop().create_task(self._serve(conn, request_id, key))

    async def _serve(self, conn, request_id, key):
        obj = self.store.objects.get(key)
        reply = R.DataReply.new_message(requestId=request_id)
        if obj is None or obj.state != READY:
            reply.ok = False
            reply.error = f"Object {key[0]}/{key[1]} is not held by this governor"
            conn.send(reply.to_bytes())
            return
        try:
            if obj.data is not None:
                data = obj.data
            else:
                data = await asyncio.get_running_loop().run_in_executor(
                    None, self.store.read_bytes, obj)
        except OSError as exc:
            reply.ok = False
            reply.error = f"Reading object {key} failed: {exc}"
            conn.send(reply.to_bytes())
            return
        reply.ok = True
        reply.dataType = "directory" if obj.data_type == 1 else "blob"
        reply.contentType = obj.content_type or ""
        reply.size = obj.size
        if obj.info:
            reply.info = dumps_or_empty(obj.info)
        conn.send(reply.to_bytes())
        conn.send(data)
        await conn.drain()

    def close(self):
        if self.server is not None:
            self.server.close()


class TransferError(Exception):
    pass


class DataConnection:
    """One connection to a peer's data port, multiplexing requests."""

    def __init__(self, address, token=""):
        self.address = address
        self.token = token
        self.conn = None
        self._pending = {}
        self._next_id = 1
        self._hello = None
        self._expect_data_for = None

    async def connect(self):
        host, port = self.address.rsplit(":", 1)
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        _transport, self.conn = await loop.create_connection(
            lambda: FrameProtocol(self._on_frame, self._on_close), host, int(port))
        hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, token=self.token,
                                    role="data")
        self.conn.send(hello.to_bytes())
        ok, error = await self._hello
        if not ok:
            self.conn.close()
            raise TransferError(f"{self.address} refused the connection: {error}")

    def _on_frame(self, conn, frame):
        if self._hello is not None and not self._hello.done():
            with R.HelloReply.from_bytes(frame) as reply:
                self._hello.set_result((reply.ok, reply.error))
            return
        if self._expect_data_for is not None:
            future, meta = self._expect_data_for
            self._expect_data_for = None
            if not future.done():
                future.set_result((meta, frame))
            return
        with R.DataReply.from_bytes(frame, traversal_limit_in_words=2**24) as reply:
            future = self._pending.pop(reply.requestId, None)
            if future is None:
                return
            if not reply.ok:
                if not future.done():
                    future.set_exception(TransferError(reply.error))
                return
            meta = {"data_type": 1 if str(reply.dataType) == "directory" else 0,
                    "content_type": reply.contentType or None, "size": reply.size,
                    "info": loads_or(reply.info, {})}
        self._expect_data_for = (future, meta)

    def _on_close(self, conn, exc):
        error = TransferError(f"connection to {self.address} lost")
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(error)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if self._expect_data_for is not None:
            future = self._expect_data_for[0]
            if not future.done():
                future.set_exception(error)
            self._expect_data_for = None

    async def fetch(self, key):
        """Return ``(meta, bytes)`` of object ``key``."""
        if self.conn is None or self.conn.closed:
            raise TransferError(f"connection to {self.address} is closed")
        request_id = self._next_id
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request = R.DataRequest.new_message(requestId=request_id)
        request.id.session = key[0]
        request.id.id = key[1]
        self.conn.send(request.to_bytes())
        return await future

    @property
    def closed(self):
        return self.conn is None or self.conn.closed

    def close(self):
        if self.conn is not None:
            self.conn.close()


class PeerPool:
    """Keeps one data connection per peer address."""

    def __init__(self, token=""):
        self.token = token
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
        conn = DataConnection(address, self.token)
        await conn.connect()
        self.connections[address] = conn
        return conn

    async def fetch(self, address, key):
        conn = await self.get(address)
        return await conn.fetch(key)

    def close(self):
        for conn in self.connections.values():
            conn.close()
        self.connections.clear()
