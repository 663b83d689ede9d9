"""TCP keepalive and ``TCP_USER_TIMEOUT`` for long-lived connections.

A peer whose host vanished (powered off, cut off the network) never closes its TCP
connection; without these options the kernel waits for hours before giving up on it.
A frozen process on a live host still has its kernel answer, which only heartbeats catch
(see ``rain.server.connections``).
"""
import logging
import socket

logger = logging.getLogger(__name__)


def set_keepalive(sock, timeout):
    """Probe an idle connection after ``timeout``/3 s, and let the kernel drop it when
    unacknowledged data or probes stay unanswered for about ``timeout`` s."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle = max(1, int(timeout / 3))
    interval = max(1, int(timeout / 9))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                            ("TCP_KEEPCNT", 3),
                            ("TCP_USER_TIMEOUT", max(1000, int(timeout * 1000)))):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError as exc:
        logger.debug("cannot set keepalive options: %s", exc)
