"""``Client``: a connection to a Rain server, the factory of sessions."""
import os

from ..auth import token_for_server
from ..common.address import DEFAULT_SERVER_PORT
from ..common.cbor import dumps_or_empty
from ..common.errors import RainException
from ..common.ids import ID
from .connection import ServerConnection, ServerError
from .session import Session


def client_tls(tls, address, port):
    """The ``rain.tls.Tls`` that ``Client(tls=...)`` asks for (None: plain TCP)."""
    from .. import tls as rain_tls
    if tls is None:
        return rain_tls.tls_for_server(address, port)
    if tls is False:
        return None
    if isinstance(tls, rain_tls.Tls):
        return tls
    if isinstance(tls, str) and not os.path.exists(tls):
        return rain_tls.Tls(pin=tls)        # not a file: a fingerprint (or says why not)
    return rain_tls.Tls(cert=os.fspath(tls))


class Client:
    """Connect with ``Client("host", 7210)`` or ``Client("host:7210")``.

    ``token``: the cluster's token; by default ``RAIN_TOKEN``, else the token of a server
    of this user on this machine (``rain.auth``).

    ``tls``: how to verify a TLS server: its certificate file or SHA-256 fingerprint (both
    pinned), a ``rain.tls.Tls``, or False for plain TCP; by default ``RAIN_TLS_*``, else
    what a server of this user on this machine recorded (``rain.tls``)."""

    def __init__(self, address="localhost", port=None, *, token=None, tls=None):
        address = str(address)
        if port is None:
            if address.count(":") == 1:
                address, port = address.split(":")
            else:
                port = DEFAULT_SERVER_PORT
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise RainException(f"Invalid port {port!r}") from None
        self.address = address
        self.port = port
        if token is None:
            token = token_for_server(address, port)
        self._sessions = set()
        self._submit_listeners = []
        self._connection = None
        self._connection = ServerConnection(address, port, token, client_tls(tls, address, port))

    def __repr__(self):
        state = "closed" if self._connection is None or self._connection.closed else \
            "connected"
        return f"<Client {self.address}:{self.port} {state}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def connected(self):
        return self._connection is not None and not self._connection.closed

    def _request(self, fill):
        if self._connection is None:
            raise RainException("The client is closed")
        try:
            return self._connection.request(fill)
        except ServerError as exc:
            raise RainException(str(exc)) from None

    def new_session(self, name="Unnamed Session", default=False):
        spec = {"name": name}

        def fill(msg):
            msg.newSession = dumps_or_empty(spec)

        session_id = self._request(fill)
        session = Session(self, session_id, default=default)
        session.name = name
        self._sessions.add(session)
        return session

    def get_server_info(self):
        """Governors and what each holds right now (see SPEC §2.1)."""

        def fill(msg):
            msg.serverInfo = None

        info = self._request(fill)
        for governor in info.get("governors", ()):
            for key in ("tasks", "objects", "objects_to_delete"):
                governor[key] = [ID(*pair) for pair in governor.get(key, ())]
        return info

    def update(self, items):
        """Refresh state and info of tasks and data objects (of any of its sessions)."""
        by_session = {}
        for item in items:
            by_session.setdefault(item.session, []).append(item)
        for session, group in by_session.items():
            session.update(group)

    def subscribe_events(self, callback, session_id=-1):
        """Call ``callback(list_of_event_dicts)`` on the client's I/O thread for every
        batch of server events (of one session, or all with -1)."""
        self._connection.use_io_thread()
        self._connection.event_listeners.append(callback)

        def fill(msg):
            msg.subscribe = dumps_or_empty({"session": session_id})

        self._request(fill)

    def close(self):
        """Close every session of this client and the connection."""
        if self._connection is None:
            return
        for session in list(self._sessions):
            try:
                session.close()
            except RainException:
                pass
        self._connection.close()
        self._connection = None
