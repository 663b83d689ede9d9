"""Tasks no connected governor can run, on real clusters: a warning event at once, and a
failure after ``rain server --unschedulable-timeout`` unless a governor that can joins."""
import pytest
import requests

from rain.client import Task, TaskException, blob, tasks


def events_of(cluster, kind):
    reply = requests.post(f"http://127.0.0.1:{cluster.http_port}/events",
                          json={"event_types": [{"value": kind, "mode": "="}]},
                          headers=cluster.http_headers, timeout=30)
    reply.raise_for_status()
    return [item["event"] for item in reply.json()]


def test_tasks_with_no_governor_warn_then_fail_after_the_timeout(make_cluster):
    cluster = make_cluster([], server_args=["--unschedulable-timeout", "2"])
    with cluster.client().new_session() as s:
        task = tasks.Concat((blob(b"a"), blob(b"b")), name="lonely")
        s.submit()
        with pytest.raises(TaskException, match="no governor is connected.*within 2 s"):
            s.wait([task])
    (warning,) = events_of(cluster, "TasksUnschedulable")
    assert warning["reason"] == "no governor is connected" and warning["timeout"] == 2
    assert warning["tasks"] == [task.id.id]


def test_a_governor_joining_in_time_runs_the_tasks(make_cluster):
    cluster = make_cluster([], server_args=["--unschedulable-timeout", "120"])
    with cluster.client().new_session() as s:
        task = tasks.Concat((blob(b"a"), blob(b"b")))
        task.output.keep()
        s.submit()
        cluster.add_governor(1)
        assert task.output.fetch().get_bytes() == b"ab"
    assert len(events_of(cluster, "TasksUnschedulable")) == 1
    assert len(events_of(cluster, "TasksSchedulable")) == 1


def test_tasks_whose_only_suitable_governor_left_fail_after_the_timeout(make_cluster,
                                                                          tmp_path):
    import os
    import signal
    config = tmp_path / "gpu.toml"
    config.write_text("[resources]\ngpus = 1\n")
    cluster = make_cluster([1], server_args=["--unschedulable-timeout", "2",
                                             "--heartbeat-timeout", "5"])
    gpu = cluster.add_governor(1, ["--config", str(config)])
    with cluster.client().new_session() as s:
        first = tasks.Sleep(blob(b"x"), 3)
        needs_gpu = Task([first.output], 1, task_type="buildin/concat",
                         resources={"gpus": 1})
        s.submit()
        os.killpg(gpu.pid, signal.SIGKILL)
        gpu.wait()
        with pytest.raises(TaskException, match="gpus=1"):
            s.wait([needs_gpu])
    (warning,) = events_of(cluster, "TasksUnschedulable")
    assert warning["tasks"] == [needs_gpu.id.id]
    assert "was lost, and no connected governor has what they ask for" in \
        warning["reason"]
