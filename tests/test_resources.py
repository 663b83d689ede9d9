"""Named resources: declared by governors in their config, requested by tasks."""
import datetime

import pytest

from rain.client import RainException, Task, blob


def sleep_task(resources, seconds=0.4):
    return Task([blob("x")], 1, config={"seconds": seconds}, task_type="buildin/sleep",
                resources=resources)


def test_tasks_go_where_their_resources_are(make_cluster, tmp_path):
    config = tmp_path / "gpu.toml"
    config.write_text("[resources]\ngpus = 1\n")
    cluster = make_cluster([1])
    cluster.governor_config = str(config)
    cluster.add_governor(2)         # CPUs to spare: only the one GPU can serialise the tasks
    client = cluster.client()
    governors = client.get_server_info()["governors"]
    gpu_governor = next(g["governor_id"] for g in governors
                        if g["resources"].get("gpus") == 1)
    with client.new_session() as s:
        gpu_tasks = [sleep_task({"gpus": 1}) for _ in range(2)]
        s.submit()
        s.wait(gpu_tasks)
        s.update(gpu_tasks)
    assert {t.info.governor for t in gpu_tasks} == {gpu_governor}
    spans = sorted((datetime.datetime.fromisoformat(t.info.start_time).timestamp(),
                    t.info.duration) for t in gpu_tasks)
    # One GPU: the second task starts only after the first ended.
    assert spans[1][0] >= spans[0][0] + spans[0][1] - 0.01


def test_invalid_resource_request_is_rejected(client):
    with client.new_session():
        with pytest.raises(RainException, match="resource"):
            sleep_task({"gpus": -1})
