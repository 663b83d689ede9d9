"""The client side of big constants: before a submit names them, ``blob()``s and
``directory()``s too big to travel in the submit are streamed into governors' stores
(``rain.transfer.upload``), and the submit says where each one is."""
import itertools

from ..common.errors import RainException

#: Spreads the uploads of a client over the governors (one after another).
_turn = itertools.count()


def upload_constants(session, objects, tasks=()):
    """Upload the big constants among ``objects``; returns the submit's ``uploads`` rows
    ``[object id, governor id, size]``. On failure nothing uploaded stays behind.

    Each goes to a governor that can run all its consumers among ``tasks`` (their cpus and
    named resources), where there is one: the scheduler places tasks near their biggest
    inputs, but a task bound to other resources would fetch the whole constant again."""
    big = [obj for obj in objects if obj._upload is not None]
    if not big:
        return []
    client = session.client
    governors = sorted(((g["governor_id"], g.get("resources") or {})
                        for g in client.get_server_info()["governors"]),
                       key=lambda item: item[0])
    if not governors:
        raise RainException("No governor is connected to store the big constants of this "
                            "submit on")
    needs = _consumer_needs(big, tasks)
    connection = client._connection
    rows = []
    try:
        for obj in big:
            candidates = [address for address, resources in governors
                          if all(_fits(resources, need) for need in needs.get(obj, ()))]
            candidates = candidates or [address for address, _ in governors]
            address = candidates[next(_turn) % len(candidates)]
            spec = obj.spec
            size = connection.upload_to_governor(
                address, (session.session_id, obj._id), obj._upload, spec.label,
                spec.content_type)
            rows.append([obj._id, address, size])
    except BaseException:
        drop_uploads(session, rows)
        raise
    return rows


def _consumer_needs(big, tasks):
    """``{constant: [what each consumer asks for]}`` (cpus and named resources)."""
    wanted = set(big)
    needs = {}
    for task in tasks:
        inputs = task._in
        for obj in (inputs,) if inputs.__class__ is not tuple else inputs:
            if obj in wanted:
                need = dict(task._resources or {})
                need["cpus"] = task._cpus
                needs.setdefault(obj, []).append(need)
    return needs


def _fits(resources, need):
    return all(resources.get(name, 0) >= amount for name, amount in need.items())


def drop_uploads(session, rows):
    """Make the governors forget uploads whose submit did not go through."""
    connection = session.client._connection
    for oid, address, _size in rows:
        try:
            connection.drop_upload(address, (session.session_id, oid))
        except RainException:
            pass    # that governor is gone, and with it what it held
