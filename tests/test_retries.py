"""Per-task retry policies (``retries=``, ``retry_on_error=``) on real clusters, through
the Python client and the REST API, and how every task constructor takes them."""
import sys

import cloudpickle
import pytest
import requests

from rain.client import Program, RainException, Task, TaskException, blob, remote, tasks
from rain.client.program import STDOUT_PATH as STDOUT
from rain.client.session import Session


@remote
def flaky(ctx, counter, failures):
    """Raises ``failures`` times (counted in a file), then succeeds."""
    import os
    runs = os.path.getsize(counter) if os.path.exists(counter) else 0
    with open(counter, "ab") as f:
        f.write(b"x")
    if runs < failures:
        raise ValueError(f"flaky run {runs + 1}")
    return f"ok after {runs + 1} runs".encode()


@remote
def kill_executor(ctx, counter):
    import os
    with open(counter, "ab") as f:
        f.write(b"x")
    os._exit(1)


def events_of(cluster, kind):
    reply = requests.post(f"http://127.0.0.1:{cluster.http_port}/events",
                          json={"event_types": [{"value": kind, "mode": "="}]},
                          headers=cluster.http_headers, timeout=30)
    reply.raise_for_status()
    return [item["event"] for item in reply.json()]


@pytest.fixture(autouse=True)
def by_value():
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_a_task_raising_twice_succeeds_with_retry_on_error(cluster, tmp_path):
    counter = str(tmp_path / "runs")
    with cluster.client().new_session() as s:
        task = flaky(counter, 2, retries=3, retry_on_error=True)
        task.output.keep()
        s.submit()
        assert task.output.fetch().get_bytes() == b"ok after 3 runs"
    retried = events_of(cluster, "TaskRetried")
    assert [e["attempt"] for e in retried] == [2, 3]
    assert all("flaky run" in e["reason"] for e in retried)


def test_without_retry_on_error_the_tasks_error_fails_at_once(cluster, tmp_path):
    counter = tmp_path / "runs"
    with cluster.client().new_session() as s:
        task = flaky(str(counter), 1, retries=3)
        s.submit()
        with pytest.raises(TaskException, match="flaky run 1"):
            s.wait([task])
    assert counter.read_bytes() == b"x"
    assert not events_of(cluster, "TaskRetried")


def test_retry_on_error_gives_up_after_its_retries(cluster, tmp_path):
    counter = tmp_path / "runs"

    @remote(retries=1, retry_on_error=True)
    def always(ctx, counter):
        with open(counter, "ab") as f:
            f.write(b"x")
        raise ValueError("always fails")

    with cluster.client().new_session() as s:
        task = always(str(counter))
        s.submit()
        with pytest.raises(TaskException,
                           match="always fails\n\\(it failed in each of its 2 runs\\)"):
            s.wait([task])
    assert counter.read_bytes() == b"xx"


def test_a_task_killing_its_executor_with_retries_0_fails_at_once(cluster, tmp_path):
    counter = tmp_path / "runs"
    with cluster.client().new_session() as s:
        task = kill_executor(str(counter), retries=0)
        s.submit()
        with pytest.raises(TaskException, match="crashed its executor 1 time "):
            s.wait([task])
    assert counter.read_bytes() == b"x"
    assert not events_of(cluster, "TaskRetried")


def test_rest_submit_with_retry_on_error(cluster, tmp_path):
    counter = tmp_path / "runs"
    # A program that fails twice, then prints "done".
    script = (f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ] || exit 3; "
              "printf done")
    base = f"http://127.0.0.1:{cluster.http_port}/api"
    headers = cluster.http_headers
    sid = requests.post(f"{base}/sessions", json={"name": "retries"}, headers=headers,
                        timeout=30).json()["session"]
    graph = {"tasks": [{"id": 12, "type": "buildin/run", "retries": 2,
                        "retry_on_error": True,
                        "config": {"args": ["sh", "-c", script], "in_paths": [],
                                   "out_paths": [STDOUT]},
                        "outputs": [{"id": 13, "keep": True}]}]}
    reply = requests.post(f"{base}/sessions/{sid}/submit", json=graph, headers=headers,
                          timeout=30)
    assert reply.status_code == 200, reply.text
    reply = requests.post(f"{base}/sessions/{sid}/wait", json={}, headers=headers,
                          timeout=120)
    assert reply.status_code == 200, reply.text
    data = requests.get(f"{base}/sessions/{sid}/objects/13/data", headers=headers,
                        timeout=30)
    assert data.content == b"done"
    assert len(counter.read_text().split()) == 3
    bad = dict(graph["tasks"][0], id=20, retries=-1, outputs=[{"id": 21}])
    reply = requests.post(f"{base}/sessions/{sid}/submit", json={"tasks": [bad]},
                          headers=headers, timeout=30)
    assert reply.status_code == 400 and "tasks[0].retries" in reply.json()["error"]


def test_every_task_constructor_takes_a_retry_policy():
    session = Session(None, 3)
    with session.bind_only():
        x = blob(b"x")
        made = [
            tasks.Concat((x,), retries=1),
            tasks.Sleep(x, 0, retries=1),
            tasks.Load("/etc/hostname", retries=1),
            tasks.LoadDir("/etc", retries=1),
            tasks.Store(x, "/tmp/never", retries=1),
            tasks.MakeDirectory({"a": x}, retries=1),
            tasks.Execute(["true"], retries=1),
            Task([x], 1, task_type="ex/own", retries=1),
            Program(["cat", "a"], retries=1)(),
            flaky("c", 0, retries=1),
        ]
        assert [t.retries for t in made] == [(1, False)] * len(made)
        assert tasks.SliceDirectory(tasks.MakeDirectory({"a": x}).output, "a",
                                    retry_on_error=True).retries == (None, True)
        assert Program(["true"], retries=2)(retries=0).retries == (0, False)
        assert Program(["true"], retries=2, retry_on_error=True)().retries == (2, True)
        assert tasks.Concat((x,)).retries == (None, False)

        decorated = remote(retries=4)(flaky.fn)
        assert decorated("c", 0).retries == (4, False)
        assert decorated("c", 0, retry_on_error=True).retries == (4, True)
        for bad in (-1, "2", True, 1.5):
            with pytest.raises(RainException, match="retries"):
                tasks.Concat((x,), retries=bad)
        with pytest.raises(RainException, match="retry_on_error"):
            tasks.Concat((x,), retry_on_error=1)
