"""Every server announces itself in the per-user runtime directory while it runs."""
import json
import os

from rain.statefile import list_servers, servers_dir


def test_server_state_file_lifecycle(make_cluster, tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(runtime))
    cluster = make_cluster([1], env={"RAIN_RUNTIME_DIR": str(runtime)})
    servers = list_servers()
    assert len(servers) == 1
    state = servers[0]
    assert state["port"] == cluster.port and state["http_port"] == cluster.http_port
    assert state["pid"] == cluster.server_process.pid
    assert state["address"] == f"127.0.0.1:{cluster.port}"
    assert state["owner"] and state["started"] > 0
    assert oct(os.stat(runtime).st_mode & 0o777) == "0o700"
    cluster.stop()
    assert list_servers() == []
    assert os.listdir(servers_dir()) == []


def test_stale_state_files_are_ignored_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(tmp_path))
    os.makedirs(servers_dir())
    stale = os.path.join(servers_dir(), "999999999.json")
    with open(stale, "w") as f:
        json.dump({"pid": 999999999, "address": "127.0.0.1:1"}, f)
    with open(os.path.join(servers_dir(), "broken.json"), "w") as f:
        f.write("{not json")
    assert list_servers() == []
    assert not os.path.exists(stale)
