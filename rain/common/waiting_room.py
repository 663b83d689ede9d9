"""Connections that have not yet said a valid hello: few, and not for long.

A stranger opening connections by the thousand must not make a listener hold their
buffers, nor keep out a real peer, whose hello comes at once: a connection that has not
been accepted after ``timeout`` seconds is closed, and when ``limit`` wait at once the
one that waited longest goes.
"""
import asyncio
import logging

logger = logging.getLogger(__name__)

#: Seconds a peer has to say a valid hello.
HELLO_TIMEOUT = 10.0
#: Peers that may wait to be accepted at once.
MAX_WAITING = 64


class WaitingRoom:
    def __init__(self, timeout=HELLO_TIMEOUT, limit=MAX_WAITING):
        self.timeout = timeout
        self.limit = limit
        self.waiting = {}        # connection -> None, oldest first

    def enter(self, conn):
        """A new connection (a ``FrameProtocol``), to be accepted or closed."""
        if len(self.waiting) >= self.limit:
            oldest = next(iter(self.waiting))
            logger.warning("closing the connection from %s: %d peers wait to say hello",
                           oldest.peer, len(self.waiting))
            del self.waiting[oldest]
            oldest.close()
        self.waiting[conn] = None
        asyncio.get_running_loop().call_later(self.timeout, self._expired, conn)

    def leave(self, conn):
        """The connection said its hello (good or bad) or is gone."""
        self.waiting.pop(conn, None)

    def _expired(self, conn):
        if self.waiting.pop(conn, False) is None:
            logger.info("closing the connection from %s: no hello within %.0f s",
                        conn.peer, self.timeout)
            conn.close()
