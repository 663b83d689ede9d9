"""Runtime guarantees of SPEC §6 on real clusters (generous time bounds: 2 noisy cores)."""
import os
import time

import pytest

from rain.client import RainException, TaskException, blob, tasks
from rain.client.rpc.common import DataObjectState, TaskState
from rain.common import ID
from rain.common.update_columns import INLINE_DATA_MAX


def test_sleep_chain_runs_in_sequence(client):
    with client.new_session() as s:
        obj = blob("x")
        chain = []
        for _ in range(4):
            obj = tasks.Sleep(obj, 0.2)
            chain.append(obj)
        obj.output.keep()
        start = time.monotonic()
        s.submit()
        assert obj.output.fetch().get_bytes() == b"x"
        elapsed = time.monotonic() - start
        assert elapsed > 0.75
        s.update(chain)
        assert all(t.state == TaskState.finished for t in chain)
        import datetime
        spans = [(datetime.datetime.fromisoformat(t.info.start_time).timestamp(),
                  t.info.duration) for t in chain]
        for (begin, duration), (next_begin, _) in zip(spans, spans[1:]):
            assert next_begin >= begin + duration - 0.01, spans


def test_independent_tasks_run_in_parallel_within_cpus(make_cluster, tmp_path):
    cluster = make_cluster([2, 1])
    client = cluster.client()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Each task waits (up to 60 s) until all three have started: 3 slots, one round.
    script = (f"touch {barrier}/$0; n=0; while [ $(ls {barrier} | wc -l) -lt 3 ]; do "
              "n=$((n+1)); [ $n -gt 1200 ] && exit 1; sleep 0.05; done")
    with client.new_session() as s:
        sleeps = [tasks.Execute(["sh", "-c", script, str(i)]) for i in range(3)]
        s.submit()
        s.wait(sleeps)
        s.update(sleeps)
        governors = {t.info.governor for t in sleeps}
        assert len(governors) == 2


def test_cpu_requests_are_never_overbooked(make_cluster):
    cluster = make_cluster([2])
    client = cluster.client()
    with client.new_session() as s:
        big = [tasks.Sleep(blob("x"), 0.4, cpus=2) for _ in range(2)]
        small = [tasks.Sleep(blob("x"), 0.4) for _ in range(2)]
        s.submit()
        s.wait(big + small)
        s.update(big + small)
        spans = [(t.info.start_time, t.info.duration, t.spec.resources["cpus"])
                 for t in big + small]
    import datetime
    events = []
    for start, duration, cpus in spans:
        begin = datetime.datetime.fromisoformat(start).timestamp()
        events.append((begin, cpus))
        events.append((begin + duration, -cpus))
    events.sort(key=lambda e: (e[0], e[1]))
    used = peak = 0
    for _, delta in events:
        used += delta
        peak = max(peak, used)
    assert peak <= 2


def test_large_objects_move_between_three_governors(make_cluster):
    cluster = make_cluster([1, 1, 1])
    client = cluster.client()
    payload = bytes(range(256)) * (12 * 4096)      # 12 MiB
    with client.new_session() as s:
        parts = [tasks.Concat((blob(payload), blob(bytes([i])))) for i in range(3)]
        joined = tasks.Concat(parts)
        joined.output.keep()
        s.submit()
        result = joined.output.fetch().get_bytes()
        assert len(result) == 3 * (len(payload) + 1)
        assert result[len(payload)] == 0 and result[-1] == 2
        s.update(parts + [joined])
        assert len({t.info.governor for t in parts}) >= 2
        info = client.get_server_info()
        assert len(info["governors"]) == 3


def test_failure_fails_only_its_session(client):
    bad = client.new_session()
    good = client.new_session()
    with bad.bind_only():
        tasks.Execute("sh -c 'exit 1'")
        slow = tasks.Sleep(blob("x"), 0.3)
        slow.output.keep()
    with good.bind_only():
        ok = tasks.Sleep(blob("fine"), 0.3)
        ok.output.keep()
    bad.submit()
    good.submit()
    with pytest.raises(TaskException, match="code 1"):
        bad.wait_all()
    for call in (bad.wait_all, lambda: bad.fetch(slow.output),
                 lambda: bad.update([slow]), lambda: bad.unkeep([slow.output])):
        with pytest.raises(TaskException, match="code 1"):
            call()
    assert good.fetch(ok.output).get_bytes() == b"fine"
    bad.close()
    good.close()


def test_server_info_empty_after_sessions_close(make_cluster):
    cluster = make_cluster([1, 1], env={"RAIN_DELETE_LIST_TIMEOUT": "5"})
    client = cluster.client()
    for _ in range(2):
        with client.new_session() as s:
            objs = [tasks.Concat((blob(b"a" * 1000), blob(str(i)))) for i in range(10)]
            for t in objs:
                t.output.keep()
            tasks.Sleep(blob("x"), 3)
            s.submit()
            s.wait(objs)
    time.sleep(0.5)
    info = client.get_server_info()
    assert len(info["governors"]) == 2
    for governor in info["governors"]:
        assert governor["tasks"] == []
        assert set(governor["objects"]) <= set(governor["objects_to_delete"])
        assert governor["resources"]["cpus"] == 1
        assert all(isinstance(i, ID) for i in governor["objects"])


def test_several_submits_reuse_kept_objects(client):
    with client.new_session() as s:
        first = tasks.Concat((blob("a"), blob("b")))
        first.output.keep()
        s.submit()
        s.wait([first])
        second = tasks.Concat((first, blob("c")))
        second.output.keep()
        s.submit()
        assert second.output.fetch().get_bytes() == b"abc"
        s.unkeep([first.output])
        third = tasks.Concat((first, blob("d")))
        with pytest.raises(RainException, match="removed"):
            s.submit()
        assert third.state is None


def test_wait_some_and_waiting_on_objects(client):
    with client.new_session() as s:
        fast = tasks.Sleep(blob("f"), 0.0)
        slow = tasks.Sleep(blob("s"), 1.5)
        slow.output.keep()
        s.submit()
        done_tasks, done_objects = s.wait_some([fast, slow])
        assert done_tasks == [fast]
        assert done_objects == []
        s.wait([slow.output])
        assert slow.output.state == DataObjectState.finished
        _, objs = s.wait_some([slow.output])
        assert objs == [slow.output]


def test_fetch_client_constant_and_states(client):
    with client.new_session() as s:
        const = blob("constant", label="c")
        const.keep()
        t = tasks.Concat((const, const))
        t.output.keep()
        assert t.state is None and const.state is None
        s.submit()
        assert t.state == TaskState.notAssigned
        assert const.fetch().get_str() == "constant"
        assert const.fetch().content_type == "text"
        assert t.output.fetch().get_bytes() == b"constantconstant"
        t.update()
        assert t.state == TaskState.finished
        assert t.info.governor and t.info.duration >= 0
        t.output.update()
        assert t.output.info.size == 16


def test_methods_in_the_wrong_order(client):
    with client.new_session() as s:
        t = tasks.Concat((blob("a"),))
        with pytest.raises(RainException, match="not submitted"):
            s.wait([t])
        with pytest.raises(RainException, match="not submitted"):
            t.output.fetch()
        s.submit()
        with pytest.raises(RainException, match="not kept"):
            t.output.fetch()
        with pytest.raises(RainException, match="before"):
            t.output.keep()
    with s:     # a closed session may be activated (as in Rain 0.4), not used
        with pytest.raises(RainException, match="closed"):
            blob("late")
    with pytest.raises(RainException, match="No active session"):
        blob("orphan")


def test_default_session(client):
    s = client.new_session(default=True)
    t = tasks.Concat((blob("d"), blob("efault")))
    t.output.keep()
    s.submit()
    assert t.output.fetch().get_bytes() == b"default"
    s.close()
    with pytest.raises(RainException, match="No active session"):
        blob("x")


def test_dropped_client_connection_closes_its_sessions(cluster):
    first = cluster.client()
    with first.new_session() as s:
        tasks.Sleep(blob("x"), 300)
        s.submit()
        first._connection.close()
    observer = cluster.client()
    deadline = time.monotonic() + 60      # generous, yet far before the task could end
    while True:
        info = observer.get_server_info()
        if all(not g["tasks"] for g in info["governors"]):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_lost_governor_reruns_tasks_elsewhere(make_cluster):
    import os
    import signal
    cluster = make_cluster([1, 1])
    client = cluster.client()
    with client.new_session() as s:
        sleeps = [tasks.Sleep(blob(str(i)), 3.0) for i in range(2)]
        for t in sleeps:
            t.output.keep()
        s.submit()
        deadline = time.monotonic() + 60      # both started before the governor dies
        s.update(sleeps)
        while any(t.state not in (TaskState.running, TaskState.finished) for t in sleeps):
            assert time.monotonic() < deadline, [t.state for t in sleeps]
            time.sleep(0.05)
            s.update(sleeps)
        victim = cluster.governor_processes[0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        assert sorted(t.output.fetch().get_bytes() for t in sleeps) == [b"0", b"1"]
    info = client.get_server_info()
    assert len(info["governors"]) == 1


def kill_the_only_governor(cluster, client):
    """SIGKILL the cluster's one governor and wait until the server has let it go."""
    import os
    import signal
    os.killpg(cluster.governor_processes[0].pid, signal.SIGKILL)
    cluster.governor_processes[0].wait()
    deadline = time.monotonic() + 30
    while client.get_server_info()["governors"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_killed_governor_with_the_only_copy_is_recomputed_on_a_new_one(make_cluster):
    cluster = make_cluster([1])
    client = cluster.client()
    with client.new_session() as s:
        # Bigger than what the server holds itself (INLINE_DATA_MAX): the governor has
        # the only copy, of the kept result and of the intermediate it was made from.
        big = "a" * (INLINE_DATA_MAX + 1)
        first = tasks.Concat((blob(big), blob("b")))
        second = tasks.Concat((first, blob("c")))
        second.output.keep()
        s.submit()
        s.wait([second])
        kill_the_only_governor(cluster, client)
        cluster.add_governor(1)
        assert second.output.fetch().get_bytes() == (big + "bc").encode()
    assert recovery_events(cluster, "ObjectsRecomputed")


def recovery_events(cluster, kind):
    import requests
    reply = requests.post(f"http://127.0.0.1:{cluster.http_port}/events",
                          json={"event_types": [{"value": kind, "mode": "="}]},
                          headers=cluster.http_headers, timeout=30)
    reply.raise_for_status()
    return [item["event"] for item in reply.json()]


def data_between_governors(s, width=6):
    """Python-free pipeline whose stages pass big objects from governor to governor."""
    big = "x" * (INLINE_DATA_MAX + 10)
    layer = [tasks.Concat((blob(big), blob(str(i)))) for i in range(width)]
    layer = [tasks.Concat((a, b)) for a, b in zip(layer, layer[1:] + layer[:1])]
    slow = [tasks.Sleep(obj, 0.3) for obj in layer]
    final = tasks.Concat(slow)
    final.output.keep()
    expected = "".join(big + str(i) + big + str((i + 1) % width) for i in range(width))
    return final, expected.encode()


def test_sigkill_of_a_data_holding_governor_mid_run_ends_with_the_right_result(
        make_cluster):
    import os
    import signal
    cluster = make_cluster([1, 1, 1], server_args=["--heartbeat-timeout", "2"])
    client = cluster.client()
    with client.new_session() as s:
        final, expected = data_between_governors(s)
        s.submit()
        time.sleep(0.5)
        victim = cluster.governor_processes[1]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        assert final.output.fetch().get_bytes() == expected
    lost = recovery_events(cluster, "GovernorLost")
    assert len(lost) == 1


def test_frozen_governor_is_given_up_and_the_run_ends_with_the_right_result(
        make_cluster):
    import os
    import signal
    cluster = make_cluster([1, 1], server_args=["--heartbeat-timeout", "2"])
    client = cluster.client()
    victim = cluster.governor_processes[0]
    try:
        with client.new_session() as s:
            final, expected = data_between_governors(s)
            s.submit()
            time.sleep(0.5)
            os.kill(victim.pid, signal.SIGSTOP)
            assert final.output.fetch().get_bytes() == expected
        (lost,) = recovery_events(cluster, "GovernorLost")
        assert "silent" in lost["reason"] and "heartbeat timeout 2 s" in lost["reason"]
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    # Thawed, it finds its connection gone and exits by itself.
    assert victim.wait(timeout=30) == 1


def test_governor_exits_when_its_server_falls_silent(make_cluster):
    import os
    import signal
    cluster = make_cluster([1], server_args=["--heartbeat-timeout", "1"])
    governor = cluster.governor_processes[0]
    time.sleep(0.6)                  # it has heard a heartbeat and knows the timeout
    os.kill(cluster.server_process.pid, signal.SIGSTOP)
    try:
        assert governor.wait(timeout=30) == 1
    finally:
        os.kill(cluster.server_process.pid, signal.SIGCONT)
    assert "no word from the server" in open(
        os.path.join(cluster.tmp, "governor-0-logs", "governor.log")).read()


def test_small_kept_result_survives_the_loss_of_its_governor(make_cluster):
    """A small kept result comes to the server with its task's update: fetching it takes
    no trip to the governor, and losing the governor loses nothing."""
    cluster = make_cluster([1])
    client = cluster.client()
    with client.new_session() as s:
        small = tasks.Concat((blob("a" * (INLINE_DATA_MAX - 1)), blob("b")))
        small.output.keep()
        s.submit()
        s.wait([small])
        kill_the_only_governor(cluster, client)
        assert small.output.fetch().get_bytes() == b"a" * (INLINE_DATA_MAX - 1) + b"b"


def test_test_mode_places_consumer_with_pretended_data(make_cluster):
    cluster = make_cluster([1, 1, 1], env={"RAIN_TEST_MODE": "1"})
    client = cluster.client()
    governors = [g["governor_id"] for g in client.get_server_info()["governors"]]
    with client.new_session() as s:
        for target in (governors[2], governors[0]):
            const = blob("data")
            const.spec.user["_testing"] = {"governors": [target], "size": 10_000_000}
            consumer = tasks.Concat((const, blob("x")))
            s.submit()
            s.wait([consumer])
            consumer.update()
            assert consumer.info.governor == target


#: Put on the cluster processes' path: counts the invariant checks they run, one letter
#: per check (``s``: the server's, ``g``: a governor's) into ``$RAIN_TEST_CHECK_LOG``.
CHECK_COUNTER = """
import os
import rain.governor.core
import rain.server.core


def _counted(module, letter):
    check = module.check_consistency

    def counted(core):
        with open(os.environ["RAIN_TEST_CHECK_LOG"], "a") as log:
            log.write(letter)
        return check(core)
    module.check_consistency = counted


_counted(rain.server.core, "s")
_counted(rain.governor.core, "g")
"""


def test_debug_mode_checks_pass_on_a_real_graph(make_cluster, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CHECK_COUNTER)
    check_log = tmp_path / "checks.log"
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    cluster = make_cluster([1, 1], env={"RAIN_DEBUG_MODE": "1", "PYTHONPATH": path,
                                        "RAIN_TEST_CHECK_LOG": str(check_log)})
    client = cluster.client()
    with client.new_session() as s:
        layer = [blob(str(i)) for i in range(8)]
        while len(layer) > 1:
            layer = [tasks.Concat((layer[i], layer[i + 1])) for i in range(0, len(layer), 2)]
        layer[0].output.keep()
        s.submit()
        assert layer[0].output.fetch().get_bytes() == b"01234567"
    assert "debug mode: the graph invariants are checked" in cluster.log_tail("server")
    # The checks ran, step after step, in the server and in the governors.
    checks = check_log.read_text()
    assert checks.count("s") > 0 and checks.count("g") > 0, checks


def test_client_cannot_connect_to_nothing():
    from rain.client import Client
    from rain.local_cluster import free_port
    with pytest.raises(RainException, match="Cannot connect"):
        Client("127.0.0.1", free_port())


def test_wait_brings_state_and_update_brings_info(client):
    with client.new_session() as s:
        t = tasks.Concat((blob("a"), blob("b")))
        assert t.info is None
        s.submit()
        t.wait()
        assert t.state == TaskState.finished
        assert t.info is None               # as in Rain: info is fetched, not pushed
        t.update()
        assert t.info is not None and t.info.governor and t.info.duration >= 0


def test_requests_after_the_server_died_fail_clearly(make_cluster):
    """Requests are written straight from the caller's thread: once the server is gone,
    the next one must raise a clear error, never hang or write into a reused socket."""
    import os
    import signal
    cluster = make_cluster([1])
    client = cluster.client()
    session = client.new_session()
    os.killpg(cluster.server_process.pid, signal.SIGKILL)
    cluster.server_process.wait()
    deadline = time.monotonic() + 10
    with pytest.raises(RainException, match="lost|not connected"):
        while time.monotonic() < deadline:
            client.get_server_info()
            time.sleep(0.05)
    with pytest.raises(RainException, match="lost|not connected"):
        with session.bind_only():
            tasks.Concat((blob("a"), blob("b")))
        session.submit()


def test_task_whose_executor_died_runs_again(make_cluster, tmp_path):
    import sys

    import cloudpickle

    from rain.client import remote

    @remote
    def die_once(ctx, marker):
        import os
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)              # the executor dies under the task, once
        return b"second run"

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = make_cluster([1])
    client = cluster.client()
    with client.new_session() as s:
        task = die_once(str(tmp_path / "died"))
        task.output.keep()
        s.submit()
        assert task.output.fetch().get_bytes() == b"second run"
    (retried,) = recovery_events(cluster, "TaskRetried")
    assert retried["attempt"] == 2 and "executor" in retried["reason"]
