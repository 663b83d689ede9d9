"""The governor's store: the delete list of a whole delete message."""
from rain.governor.store import Store


def _store(tmp_path, ready=(), pending=()):
    store = Store(str(tmp_path))
    for key in ready:
        store.set_bytes(store.add(key, "", "", 0, b"", -1), b"x")
    for key in pending:
        store.add(key, "", "", 0, b"", -1)
    return store


def test_schedule_deletes_gives_one_deadline_and_drops_pending_now(tmp_path):
    store = _store(tmp_path, ready=[(1, 1), (1, 2)], pending=[(1, 3)])
    store.schedule_deletes([(1, 1), (1, 3), (1, 2), (9, 9)], 10.0)
    assert list(store.to_delete) == [(1, 1), (1, 2)]
    assert store.objects[(1, 1)].delete_at == store.objects[(1, 2)].delete_at
    assert (1, 3) not in store.objects
    assert store.next_expiry() == store.objects[(1, 1)].delete_at
    assert store.expire(now=store.next_expiry()) == [(1, 1), (1, 2)]
    assert store.objects == {}


def test_schedule_deletes_without_delay_deletes_now(tmp_path):
    store = _store(tmp_path, ready=[(1, 1)])
    store.schedule_deletes([(1, 1)], 0)
    assert store.objects == {} and store.to_delete == {}


def test_a_reassigned_object_leaves_the_delete_list(tmp_path):
    store = _store(tmp_path, ready=[(1, 1)])
    store.schedule_deletes([(1, 1)], 10.0)
    store.add((1, 1), "", "", 0, b"", -1)
    assert store.to_delete == {} and store.objects[(1, 1)].delete_at is None


def test_add_assigned_takes_constants_locations_and_revives_deleted(tmp_path):
    store = _store(tmp_path, ready=[(1, 1)])
    store.schedule_deletes([(1, 1)], 10.0)
    rows = [((1, 1), "", "", 0, b"", 1, [], b"y"),            # held: kept as it is
            ((1, 2), "c", "text", 0, b"", 3, [], b"abc"),     # a constant
            ((1, 3), "", "", 1, b"\xa0", -1, ["h:1"], None),  # elsewhere
            ((1, 4), "", "", 0, b"", -1, [], None)]           # to be produced
    arrived = store.add_assigned(rows)
    assert [obj.key for obj in arrived] == [(1, 2)]
    assert store.to_delete == {} and store.objects[(1, 1)].data == b"x"
    constant = store.objects[(1, 2)]
    assert (constant.data, constant.size, constant.label, constant.content_type) == \
        (b"abc", 3, "c", "text")
    remote = store.objects[(1, 3)]
    assert (remote.locations, remote.data_type, remote.user, remote.state) == \
        (["h:1"], 1, b"\xa0", 0)
    assert store.objects[(1, 4)].locations == ()
