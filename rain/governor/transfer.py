"""The governor's side of direct object transfers: its data port, serving what it holds
(the fetch of a missing input is the governor's ``_fetch``, through ``rain.transfer``) and
taking in the big constants clients upload (``DataRequest.upload``).

Each data connection answers its requests one after another, each reply followed by the
object's body in chunks (``rain.transfer.stream``), so data never passes through the server
and no object, whatever its size, is ever whole in memory on its way. An upload's body
goes the other way, from the client's file to a file of the store, chunk by chunk.
"""
import asyncio
import functools
import logging
import os

from ..auth import token_matches
from ..capnp import PROTOCOL_VERSION, rain_capnp
from ..common.cbor import dumps_or_empty
from ..common.framing import FrameProtocol
from ..common.keepalive import set_keepalive
from ..common.waiting_room import WaitingRoom
from ..transfer.peer import KEEPALIVE_TIMEOUT, PeerPool, TransferError
from ..transfer.sinks import CHUNK_SIZE, FileSink, finish_directory, remove_any
from ..transfer.splice import splice_body
from ..transfer.stream import send_bytes, send_directory, send_open_file, without_holes
from .protect import protect_flushes
from .store import BLOB, DIRECTORY, READY

logger = logging.getLogger(__name__)
R = rain_capnp
#: A peer's Hello and DataRequests are small: frames before the hello are refused
#: beyond this; after it, upload bodies come in frames of at most ``CHUNK_SIZE``.
REQUEST_MAX_SIZE = 2**16


class _Peer:
    """Per data connection: one reply body at a time, and the upload being received."""
    __slots__ = ("lock", "upload")

    def __init__(self):
        self.lock = asyncio.Lock()
        self.upload = None


class _Upload:
    __slots__ = ("request_id", "obj", "sink", "failed")

    def __init__(self, request_id, obj, sink):
        self.request_id = request_id
        self.obj = obj
        self.sink = sink
        self.failed = None


class _DataConnection(FrameProtocol):
    """A connection to the data port, which waits in the room until its hello."""

    room = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.room.enter(self)


__all__ = ["DataServer", "PeerPool", "TransferError"]


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
            return conn if self.tls is None else self.tls.listening_protocol(
                conn, "data port", self.waiting)

        self.server = await loop.create_server(factory, host, port)
        return self.server.sockets[0].getsockname()[:2]

    def _connection(self):
        conn = _DataConnection(self._on_frame, self._on_close,
                               max_frame_size=REQUEST_MAX_SIZE, views=True)
        conn.room = self.waiting
        return conn

    def _on_frame(self, conn, frame):
        peer = conn.state
        if peer is not None and peer.upload is not None:
            self._upload_body(conn, peer, frame)
            return
        frame = bytes(frame)
        if peer is None:
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
            conn.state = _Peer()
            conn.max_frame_size = max(REQUEST_MAX_SIZE, CHUNK_SIZE)
            conn.keep_size = 8 * CHUNK_SIZE
            set_keepalive(conn.transport.get_extra_info("socket"), KEEPALIVE_TIMEOUT)
            return
        with R.DataRequest.from_bytes(frame, traversal_limit_in_words=2**20) as request:
            request_id = request.requestId
            key = (request.id.session, request.id.id)
            if request.upload:
                self._upload_begin(conn, peer, request_id, key, request)
                return
            if request.drop:
                self._drop(conn, request_id, key)
                return
        asyncio.get_running_loop().create_task(self._serve(conn, request_id, key))

    # -- uploads --------------------------------------------------------------------------
    def _upload_begin(self, conn, peer, request_id, key, request):
        directory = str(request.dataType) == "directory"
        size = -1 if directory else request.size
        store = self.store
        sink = FileSink(store.path_for(key) + ".upload", write_back=protect_flushes())
        upload = peer.upload = _Upload(request_id, None, sink)
        if key in store.objects:
            upload.failed = f"Object {key[0]}/{key[1]} already exists on this governor"
            return
        obj = upload.obj = store.add(key, request.label, request.contentType,
                                     DIRECTORY if directory else BLOB, b"", size)
        obj.uploaded = True
        try:
            sink.begin({"data_type": 1 if directory else 0, "size": size,
                        "content_type": request.contentType or None, "info": {}})
        except OSError as exc:
            upload.failed = f"cannot store the object: {exc}"
            return
        splice_body(conn, request.dense and not directory, size, sink,
                    functools.partial(self._upload_received, conn, peer))

    def _upload_body(self, conn, peer, frame):
        upload = peer.upload
        if upload.failed is None and frame:
            try:
                upload.sink.write(frame)
            except Exception as exc:
                upload.failed = str(exc) or repr(exc)
        if len(frame) < CHUNK_SIZE:
            self._upload_received(conn, peer)

    def _upload_received(self, conn, peer, error=None):
        """The whole body is in (``error``: what its sink refused): store the object."""
        upload, peer.upload = peer.upload, None
        if error is not None and upload.failed is None:
            upload.failed = str(error) or repr(error)
        if upload.failed is None:
            try:
                upload.sink.end()
            except Exception as exc:
                upload.failed = str(exc) or repr(exc)
        asyncio.get_running_loop().create_task(self._upload_end(conn, upload))

    async def _upload_end(self, conn, upload):
        """Store the received file (a directory's tar extracted off the loop), then answer."""
        obj, sink = upload.obj, upload.sink
        error = upload.failed
        if error is None:
            try:
                path = sink.file_path
                if obj.data_type == DIRECTORY:
                    await finish_directory(sink)
                    path = sink.path
                loop = asyncio.get_running_loop()
                placed = await loop.run_in_executor(None, self.store.place_file, obj.key,
                                                    path, None)
                if self.store.objects.get(obj.key) is obj:
                    self.store.file_placed(obj, *placed)
                else:
                    remove_any(placed[0])
                    error = "the object was dropped during its upload"
            except Exception as exc:
                error = str(exc) or repr(exc)
        if error is not None:
            sink.abort()
            if obj is not None and self.store.objects.get(obj.key) is obj:
                self.store.delete_now(obj.key)
            logger.warning("upload of %s from %s failed: %s",
                           obj.key if obj else "an object", conn.peer, error)
        reply = R.DataReply.new_message(requestId=upload.request_id, ok=error is None,
                                        error=error or "")
        if obj is not None and error is None:
            reply.size = obj.size
        if not conn.closed:
            conn.send(reply.to_bytes())

    def _drop(self, conn, request_id, key):
        obj = self.store.objects.get(key)
        reply = R.DataReply.new_message(requestId=request_id, ok=True)
        if obj is not None:
            if obj.uploaded and obj.refs == 0:
                self.store.delete_now(key)
            else:
                reply.ok = False
                reply.error = f"Object {key[0]}/{key[1]} is in use"
        conn.send(reply.to_bytes())

    def _on_close(self, conn, exc):
        """A client went away in the middle of an upload: nothing of it is kept."""
        self.waiting.leave(conn)
        peer = conn.state
        if peer is None or peer.upload is None:
            return
        upload, peer.upload = peer.upload, None
        upload.sink.abort()
        if upload.obj is not None and self.store.objects.get(upload.obj.key) is upload.obj:
            self.store.delete_now(upload.obj.key)

    async def _serve(self, conn, request_id, key):
        async with conn.state.lock:
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
        try:
            file = _open_body(obj)
        except OSError:
            reply.ok = False
            reply.error = f"Object {key[0]}/{key[1]} has no data on this governor"
            conn.send(reply.to_bytes())
            return
        try:
            reply.ok = True
            reply.dataType = "directory" if obj.data_type == DIRECTORY else "blob"
            reply.contentType = obj.content_type or ""
            reply.size = obj.size
            if obj.info:
                reply.info = dumps_or_empty(obj.info)
            if file is not None:
                size = os.fstat(file.fileno()).st_size
                reply.dense = size == obj.size and without_holes(file.fileno(), 0, size)
            conn.send(reply.to_bytes())
            if obj.data is not None:
                await send_bytes(conn, obj.data)
            elif file is None:
                await send_directory(conn, obj.path)
            else:
                await send_open_file(conn, file, 0, size, obj.path)
        finally:
            if file is not None:
                file.close()

    def close(self):
        if self.server is not None:
            self.server.close()


def _open_body(obj):
    """The open file of a stored blob (None for bytes in memory and for a directory);
    ``OSError`` when the object's file or directory is gone."""
    if obj.data is not None:
        return None
    if obj.path is None:
        raise FileNotFoundError("no path")
    if obj.data_type != DIRECTORY:
        return open(obj.path, "rb")
    if not os.path.isdir(obj.path):
        raise FileNotFoundError(obj.path)
    return None
