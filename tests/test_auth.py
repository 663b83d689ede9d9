"""The cluster token: the server accepts only clients, governors and HTTP requests that
present it; local peers of the same user find it by themselves; ``RAIN_AUTH=none``
switches it off. Real servers and governors on loopback."""
import json
import os
import stat
import subprocess
import sys

import pytest
import requests

from rain.auth import (TokenFileError, local_server_state, read_token_file, token_for_server,
                       with_token)
from rain.client import Client, blob, tasks
from rain.common.errors import RainException
from rain.local_cluster import LocalCluster
from rain.statefile import list_servers
from rain.starter import Cluster


def server_state(cluster):
    return next(s for s in list_servers() if s["port"] == cluster.port)


def run_concat(client):
    with client.new_session("auth") as session:
        task = tasks.Concat((blob(b"to"), blob(b"ken")))
        task.output.keep()
        session.submit()
        return task.output.fetch().get_bytes()


def test_token_lives_in_a_user_only_file_named_by_the_state_file(cluster):
    state = server_state(cluster)
    path = state["token_path"]
    assert path and os.path.basename(os.path.dirname(path)) == "tokens"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    token = read_token_file(path)
    assert len(token) >= 32 and token == cluster.token
    # Found from any name of this machine, never for a server elsewhere on the same port.
    assert token_for_server("localhost", cluster.port) == token
    assert local_server_state("192.0.2.1", cluster.port) is None     # TEST-NET-1


def test_clients_without_the_token_are_refused(cluster):
    for token in ("", "not-the-token"):
        with pytest.raises(RainException) as info:
            Client("127.0.0.1", cluster.port, token=token)
        message = str(info.value)
        assert "Authentication failed" in message and "RAIN_TOKEN" in message, message
    # The refused connections left the server serving the others.
    assert run_concat(cluster.client()) == b"token"


def test_a_governor_needs_the_token(make_cluster, tmp_path):
    cluster = make_cluster([1])
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)
    with pytest.raises(RuntimeError) as refused:
        cluster.add_governor(extra_args=["--token-file", str(wrong)])
    assert "Authentication failed" in str(refused.value)
    cluster.governor_processes.pop()
    # A token file others may read is refused before connecting.
    shared = tmp_path / "shared.token"
    shared.write_text(cluster.token + "\n")
    shared.chmod(0o644)
    with pytest.raises(RuntimeError) as refused:
        cluster.add_governor(extra_args=["--token-file", str(shared)])
    assert "readable by other users" in str(refused.value)
    cluster.governor_processes.pop()
    assert run_concat(cluster.client()) == b"token"


def test_a_governor_reads_the_token_from_standard_input(make_cluster, tmp_path):
    """As ``rain start`` hands it to governors over ssh: elsewhere there is no token file
    to find (another runtime directory here), only what arrives on standard input."""
    cluster = make_cluster([])
    env = dict(cluster.env, RAIN_RUNTIME_DIR=str(tmp_path / "elsewhere"))
    env.pop("RAIN_TOKEN", None)
    starter = Cluster(str(tmp_path), str(tmp_path), env=env)
    ready = str(tmp_path / "remote.ready")
    starter.spawn("governor", [sys.executable, "-m", "rain", "governor", cluster.server_address,
                               "--cpus", "1", "--workdir", str(tmp_path / "gw"),
                               "--logdir", str(tmp_path / "gl"), "--ready-file", ready,
                               "--token-file", "-"],
                  ready, str(tmp_path / "remote.out"), stdin_text=cluster.token + "\n")
    try:
        starter.wait_ready(60)
        assert run_concat(cluster.client()) == b"token"
    finally:
        starter.kill_all()


def test_http_needs_the_token(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}"
    token = cluster.token
    refused = requests.get(f"{base}/api/sessions", timeout=10)
    assert refused.status_code == 403 and "token" in refused.json()["error"]
    assert requests.post(f"{base}/events", json={}, timeout=10).status_code == 403
    assert requests.get(f"{base}/dashboard/", timeout=10,
                        headers={"Authorization": "token wrong"}).status_code == 403
    for scheme in ("token", "Bearer"):
        r = requests.get(f"{base}/api/sessions", timeout=10,
                         headers={"Authorization": f"{scheme} {token}"})
        assert r.status_code == 200 and r.json() == []
    # A browser's first visit with the link: a cookie for this port, the page without it.
    link = requests.get(with_token(f"{base}/dashboard/governors?x=1", token), timeout=10,
                        allow_redirects=False)
    assert link.status_code == 302
    assert link.headers["Location"] == "/dashboard/governors?x=1"
    elsewhere = requests.get(with_token(f"{base}//other.example/x", token), timeout=10,
                             allow_redirects=False)
    assert elsewhere.headers["Location"] == "/other.example/x"      # not another site
    cookie = link.cookies.get(f"rain-token-{cluster.http_port}")
    assert cookie == token and "httponly" in link.headers["Set-Cookie"].lower()
    page = requests.get(f"{base}/dashboard/governors", timeout=10,
                        cookies={f"rain-token-{cluster.http_port}": token})
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert requests.get(f"{base}/dashboard/governors", timeout=10,
                        cookies={f"rain-token-{cluster.http_port}": "wrong"}).status_code == 403


def test_rain_auth_none_switches_it_off(make_cluster):
    cluster = make_cluster([1], env={"RAIN_AUTH": "none"})
    assert server_state(cluster)["token_path"] is None
    assert run_concat(Client("127.0.0.1", cluster.port, token="")) == b"token"
    r = requests.get(f"http://127.0.0.1:{cluster.http_port}/api/governors", timeout=10)
    assert r.status_code == 200 and len(r.json()) == 1


def test_local_cluster_hands_its_token_to_its_processes(tmp_path):
    with LocalCluster([1], workdir=str(tmp_path / "lc")) as cluster:
        assert cluster.token and cluster.dashboard_link.endswith(f"?token={cluster.token}")
        assert run_concat(cluster.client()) == b"token"
        r = requests.get(cluster.dashboard_url + "api/governors", timeout=10,
                         headers=cluster.http_headers)
        assert r.status_code == 200 and len(r.json()) == 1
        assert requests.get(cluster.dashboard_url + "api/governors",
                            timeout=10).status_code == 403


def test_stale_token_files_go_with_their_state_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(tmp_path / "runtime"))
    from rain.auth import write_token_file
    token_path = write_token_file("old-token", "999999")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    servers = tmp_path / "runtime" / "servers"
    servers.mkdir(parents=True)
    (servers / f"{dead.pid}.json").write_text(json.dumps(
        {"pid": dead.pid, "port": 1, "host": "127.0.0.1", "token_path": token_path}))
    assert list_servers() == []
    assert not os.path.exists(token_path)


def test_token_file_errors_are_clear(tmp_path):
    with pytest.raises(TokenFileError, match="cannot read token file"):
        read_token_file(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(TokenFileError, match="is empty"):
        read_token_file(str(empty))


def test_rain_token_prints_the_token_of_a_local_server(cluster):
    rain = [sys.executable, "-m", "rain", "token"]
    shown = subprocess.run(rain + [cluster.server_address], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0 and shown.stdout.strip() == cluster.token, shown.stderr
    missing = subprocess.run(rain + ["127.0.0.1:1"], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "no Rain server of this user" in missing.stderr
