"""The client side of big constants: before a submit names them, ``blob()``s and
``directory()``s too big to travel in the submit are streamed into governors' stores
(``rain.transfer.upload``), and the submit says where each one is."""
import itertools

from ..common.errors import RainException

#: Spreads the uploads of a client over the governors (one after another).
_turn = itertools.count()


def upload_constants(session, objects):
    """Upload the big constants among ``objects``; returns the submit's ``uploads`` rows
    ``[object id, governor id, size]``. On failure nothing uploaded stays behind."""
    big = [obj for obj in objects if obj._upload is not None]
    if not big:
        return []
    client = session.client
    governors = sorted(g["governor_id"] for g in client.get_server_info()["governors"])
    if not governors:
        raise RainException("No governor is connected to store the big constants of this "
                            "submit on")
    connection = client._connection
    rows = []
    try:
        for obj in big:
            address = governors[next(_turn) % len(governors)]
            spec = obj.spec
            size = connection.upload_to_governor(
                address, (session.session_id, obj._id), obj._upload, spec.label,
                spec.content_type)
            rows.append([obj._id, address, size])
    except BaseException:
        drop_uploads(session, rows)
        raise
    return rows


def drop_uploads(session, rows):
    """Make the governors forget uploads whose submit did not go through."""
    connection = session.client._connection
    for oid, address, _size in rows:
        try:
            connection.drop_upload(address, (session.session_id, oid))
        except RainException:
            pass    # that governor is gone, and with it what it held
