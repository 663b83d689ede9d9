"""One event subscription per client, shared by every view of that client's sessions.

The server keeps one event filter per client connection, so views must not each call
``client.subscribe_events`` with their own session filter. The hub subscribes once (all
sessions) and hands each listener only the events of the session it asked for. Listeners
run on the client's I/O thread and must return quickly.
"""
import logging
import threading
import weakref

logger = logging.getLogger(__name__)

ALL = -1

_hubs = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


class EventHub:
    def __init__(self, client):
        self._listeners = {}     # session id (or ALL) -> tuple of callables
        self._lock = threading.Lock()
        client.subscribe_events(self._dispatch, ALL)

    def add(self, session_id, callback):
        with self._lock:
            self._listeners[session_id] = self._listeners.get(session_id, ()) + (callback,)

    def remove(self, session_id, callback):
        with self._lock:
            listeners = tuple(c for c in self._listeners.get(session_id, ())
                              if c is not callback)
            if listeners:
                self._listeners[session_id] = listeners
            else:
                self._listeners.pop(session_id, None)

    def listener_count(self):
        return sum(len(v) for v in self._listeners.values())

    def _dispatch(self, events):
        listeners = self._listeners
        if not listeners:
            return
        by_session = {}
        for event in events:
            session_id = event.get("session")
            if session_id is not None and session_id in listeners:
                batch = by_session.get(session_id)
                if batch is None:
                    batch = by_session[session_id] = []
                batch.append(event)
        for session_id, batch in by_session.items():
            for callback in listeners.get(session_id, ()):
                try:
                    callback(batch)
                except Exception:
                    logger.exception("event listener failed")
        for callback in listeners.get(ALL, ()):
            try:
                callback(events)
            except Exception:
                logger.exception("event listener failed")


def hub_for(client):
    """The client's hub (subscribing on first use)."""
    with _hubs_lock:
        hub = _hubs.get(client)
        if hub is None:
            hub = _hubs[client] = EventHub(client)
        return hub
