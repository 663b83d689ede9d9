"""The governor's side of direct object transfers: its data port, serving what it holds
(the fetch of a missing input is the governor's ``_fetch``, through ``rain.transfer``).

Each data connection answers its requests one after another, each reply followed by the
object's body in chunks (``rain.transfer.stream``), so data never passes through the server
and no object, whatever its size, is ever whole in memory on its way.
"""
import asyncio
import logging
import os

from ..auth import token_matches
from ..capnp import PROTOCOL_VERSION, rain_capnp
from ..common.cbor import dumps_or_empty
from ..common.framing import FrameProtocol
from ..common.keepalive import set_keepalive
from ..common.waiting_room import WaitingRoom
from ..transfer.peer import KEEPALIVE_TIMEOUT, PeerPool, TransferError
from ..transfer.stream import send_bytes, send_directory, send_file
from .store import DIRECTORY, READY

logger = logging.getLogger(__name__)
R = rain_capnp
#: Peers only send a Hello and small DataRequests to the data port.
REQUEST_MAX_SIZE = 2**16

__all__ = ["DataServer", "PeerPool", "TransferError"]


class _DataConnection(FrameProtocol):
    """A connection to the data port, which waits in the room until its hello."""

    room = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.room.enter(self)


class DataServer:
    """Serves stored objects to peers and clients."""

    def __init__(self, store, token="", tls=None):
        self.store = store
        self.token = token
        self.tls = tls            # rain.tls.Tls of the cluster (None: plain TCP)
        self.server = None
        self.waiting = WaitingRoom()     # connections before their hello

    async def listen(self, host, port):
        loop = asyncio.get_running_loop()
        def factory():
            conn = self._connection()
            return conn if self.tls is None else self.tls.listening_protocol(conn,
                                                                             "data port")

        self.server = await loop.create_server(factory, host, port)
        return self.server.sockets[0].getsockname()[:2]

    def _connection(self):
        conn = _DataConnection(self._on_frame, self._on_close,
                               max_frame_size=REQUEST_MAX_SIZE)
        conn.room = self.waiting
        return conn

    def _on_close(self, conn, exc):
        self.waiting.leave(conn)

    def _on_frame(self, conn, frame):
        if conn.state is None:
            self.waiting.leave(conn)
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
            conn.state = asyncio.Lock()      # one body at a time on a connection
            set_keepalive(conn.transport.get_extra_info("socket"), KEEPALIVE_TIMEOUT)
            return
        with R.DataRequest.from_bytes(frame, traversal_limit_in_words=2**20) as request:
            request_id = request.requestId
            key = (request.id.session, request.id.id)
        asyncio.get_running_loop().create_task(self._serve(conn, request_id, key))

    async def _serve(self, conn, request_id, key):
        async with conn.state:
            if conn.closed:
                return
            try:
                await self._send(conn, request_id, key)
            except Exception as exc:  # mid-body: only closing tells the peer
                logger.warning("sending object %s/%s to %s failed: %s", key[0], key[1],
                               conn.peer, exc)
                conn.close()

    async def _send(self, conn, request_id, key):
        obj = self.store.objects.get(key)
        reply = R.DataReply.new_message(requestId=request_id)
        if obj is None or obj.state != READY:
            reply.ok = False
            reply.error = f"Object {key[0]}/{key[1]} is not held by this governor"
            conn.send(reply.to_bytes())
            return
        data, path = obj.data, obj.path
        if data is None and (path is None or not os.path.exists(path)):
            reply.ok = False
            reply.error = f"Object {key[0]}/{key[1]} has no data on this governor"
            conn.send(reply.to_bytes())
            return
        reply.ok = True
        reply.dataType = "directory" if obj.data_type == DIRECTORY else "blob"
        reply.contentType = obj.content_type or ""
        reply.size = obj.size
        if obj.info:
            reply.info = dumps_or_empty(obj.info)
        conn.send(reply.to_bytes())
        if data is not None:
            await send_bytes(conn, data)
        elif obj.data_type == DIRECTORY:
            await send_directory(conn, path)
        else:
            await send_file(conn, path)

    def close(self):
        if self.server is not None:
            self.server.close()
