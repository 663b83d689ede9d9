"""The client's connection: callers reading their own replies (direct reading), several
threads sharing one client, the hand-over to the I/O thread when events are subscribed,
timeouts, and a server that dies while a caller waits."""
import os
import signal
import threading
import time

import pytest

from rain.client import RainException, blob, tasks


#: Tasks attach to the active session, which is one for the whole client: threads that
#: each use their own session build and submit under this lock (the waiting is concurrent).
BUILD = threading.Lock()


def round_trip(session, text):
    with BUILD, session.bind_only():
        task = tasks.Concat((blob(text), blob("!")))
        task.output.keep()
        session.submit()
    data = task.output.fetch().get_bytes()
    task.output.unkeep()
    return data


def wait_request(session, task):
    def fill(msg):
        ids = msg.init("wait")
        ids.session = session.session_id
        ids.tasks = [task.id[1]]
        ids.objects = []
    return fill


def test_threads_share_one_client_while_one_waits_long(client, tmp_path):
    """One thread waits for a slow task; another's quick requests are answered meanwhile
    (the waiting thread reads their replies and wakes it)."""
    slow_session = client.new_session("slow")
    quick_session = client.new_session("quick")
    gate = tmp_path / "gate"        # the slow task ends only once the gate exists (<= 60 s)
    with slow_session.bind_only():
        slow = tasks.Execute(["sh", "-c", f"n=0; while [ ! -e {gate} ]; do n=$((n+1)); "
                              "[ $n -gt 1200 ] && exit 1; sleep 0.05; done"])
    slow_session.submit()
    slow_done = threading.Event()
    errors = []

    def wait_slow():
        try:
            slow_session.wait([slow])
        except Exception as exc:    # reported below
            errors.append(exc)
        slow_done.set()

    waiter = threading.Thread(target=wait_slow)
    waiter.start()
    time.sleep(0.3)                 # the waiter is reading the socket by now
    results = [round_trip(quick_session, str(k)) for k in range(20)]
    assert results == [f"{k}!".encode() for k in range(20)]
    assert not slow_done.is_set(), "the quick requests waited for the slow one"
    gate.touch()
    waiter.join(30)
    assert slow_done.is_set() and errors == []
    assert slow.state.name == "finished"


def test_many_threads_each_with_a_session(client):
    results, errors = {}, []

    def work(k):
        try:
            with BUILD:
                session = client.new_session(f"t{k}")
            results[k] = [round_trip(session, f"{k}-{i}") for i in range(15)]
            session.close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == {k: [f"{k}-{i}!".encode() for i in range(15)] for k in range(4)}


def test_subscribing_to_events_takes_over_from_a_reading_caller(cluster, tmp_path):
    """The I/O thread takes over the socket while a caller is in the middle of waiting;
    that caller still gets its reply, and events arrive."""
    client = cluster.client()
    session = client.new_session("taken over")
    gate = tmp_path / "gate"        # the slow task ends only once the gate exists (<= 60 s)
    with session.bind_only():
        slow = tasks.Execute(["sh", "-c", f"n=0; while [ ! -e {gate} ]; do n=$((n+1)); "
                              "[ $n -gt 1200 ] && exit 1; sleep 0.05; done; printf abc"],
                             stdout=True, name="slow-one")
        slow.output.keep()
    session.submit()
    got = {}

    def wait_slow():
        got["data"] = slow.output.fetch().get_bytes()

    waiter = threading.Thread(target=wait_slow)
    waiter.start()
    time.sleep(0.3)
    received = []
    client.subscribe_events(received.extend, session.session_id)
    assert waiter.is_alive(), "subscribing waited for the slow task"
    gate.touch()
    waiter.join(30)
    assert got == {"data": b"abc"}
    deadline = time.monotonic() + 10
    while not any(e.get("name") == "slow-one" and e.get("type") == "TaskFinished"
                  for e in list(received)):
        assert time.monotonic() < deadline, received
        time.sleep(0.05)
    assert round_trip(session, "after") == b"after!"    # futures resolved by the I/O thread


def test_timeout_of_a_direct_read_leaves_the_connection_usable(client, tmp_path):
    session = client.new_session("timeout")
    gate = tmp_path / "gate"        # the slow task ends only once the gate exists (<= 60 s)
    with session.bind_only():
        slow = tasks.Execute(["sh", "-c", f"n=0; while [ ! -e {gate} ]; do n=$((n+1)); "
                              "[ $n -gt 1200 ] && exit 1; sleep 0.05; done"])
    session.submit()
    with pytest.raises(TimeoutError):
        client._connection.request(wait_request(session, slow), timeout=0.3)
    assert round_trip(session, "quick") == b"quick!"
    gate.touch()
    session.wait([slow])        # the late reply of the abandoned wait is read and dropped
    assert round_trip(session, "later") == b"later!"


def test_server_dying_while_a_caller_reads_fails_that_call_clearly(make_cluster):
    cluster = make_cluster([1])
    client = cluster.client()
    session = client.new_session()
    with session.bind_only():
        slow = tasks.Sleep(blob("x"), 300)
    session.submit()
    killer = threading.Timer(0.5, os.killpg, (cluster.server_process.pid, signal.SIGKILL))
    killer.start()
    started = time.monotonic()
    with pytest.raises(RainException, match="lost"):
        session.wait([slow])
    assert time.monotonic() - started < 60       # far before the task could end
    killer.join()
    assert not client.connected
    with pytest.raises(RainException, match="lost|not connected"):
        client.get_server_info()
