"""What another local user, a stranger on the network and a careless client cannot do:
plant runtime records, read stored objects, make the server read a body before it checked
the token, break the server with odd JSON, or run stored HTML on the dashboard's origin."""
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import psutil
import pytest
import requests

from rain.client import blob, tasks
from rain.runtime_dir import runtime_dir
from rain.statefile import list_servers, servers_dir
from rain_cluster import TestCluster, free_port
from second_user import run_as_other, second_user

RAIN = [sys.executable, "-m", "rain"]


def rain(*args, env):
    return subprocess.run(RAIN + list(args), env=env, capture_output=True, text=True,
                          timeout=60)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAIN_RUNTIME_DIR", "XDG_RUNTIME_DIR", "RAIN_TOKEN")}
    env.update(extra)
    return env


def _joined(client, first, second):
    """The output of one Concat task of two constants: the cluster still serves."""
    with client.new_session() as session:
        task = tasks.Concat((blob(first), blob(second)))
        task.output.keep()
        session.submit()
        return task.output.fetch().get_bytes()


# -- the runtime directory -----------------------------------------------------------------
def test_default_runtime_dir_made_by_another_user_is_refused(tmp_path):
    uid, gid = second_user()
    planted = tmp_path / f"rain-{os.getuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, uid, gid)
    result = rain("status", env=clean_env(TMPDIR=str(tmp_path)))
    assert result.returncode == 1
    assert "belongs to another user" in result.stderr and str(planted) in result.stderr
    assert "Traceback" not in result.stderr
    assert list(planted.iterdir()) == []         # nothing written into their directory


def test_runtime_dir_open_to_others_is_refused(tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o755)
    os.chmod(runtime, 0o755)
    result = rain("status", env=clean_env(RAIN_RUNTIME_DIR=str(runtime)))
    assert result.returncode == 1
    assert f"chmod 700 {runtime}" in result.stderr and "Traceback" not in result.stderr
    os.chmod(runtime, 0o700)
    assert rain("status", env=clean_env(RAIN_RUNTIME_DIR=str(runtime))).returncode == 0


def test_runtime_dir_that_is_a_link_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(link))
    from rain.runtime_dir import RuntimeDirError
    with pytest.raises(RuntimeDirError, match="a link"):
        runtime_dir()


def test_planted_server_record_cannot_make_us_delete_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(tmp_path / "runtime"))
    victim = tmp_path / "precious.token"
    victim.write_text("keep me")
    os.makedirs(servers_dir())
    for name, pid in (("dead", 999999999), ("alive", os.getpid())):
        with open(os.path.join(servers_dir(), f"{name}.json"), "w") as f:
            json.dump({"pid": pid, "token_path": str(victim)}, f)
    assert list_servers() == []                   # the live one lacks every other field
    assert victim.read_text() == "keep me"
    assert not os.path.exists(os.path.join(servers_dir(), "dead.json"))


def _plant_cluster_record(runtime, **record):
    directory = runtime / "clusters"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    base = {"id": "planted", "server": "127.0.0.1:1", "http": "127.0.0.1:2",
            "logdir": "/nonexistent", "governors": []}
    base.update(record)
    (directory / "planted.json").write_text(json.dumps(base))


@pytest.fixture
def bystander():
    """A process of ours leading its own process group, as a planted record would name."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("times", [None, "wrong"])
def test_planted_cluster_record_cannot_make_rain_stop_signal_a_process(tmp_path, bystander,
                                                                      times):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    record = {"pids": [bystander.pid]}
    if times == "wrong":
        record["create_times"] = [psutil.Process(bystander.pid).create_time() - 100]
    _plant_cluster_record(runtime, **record)
    env = clean_env(RAIN_RUNTIME_DIR=str(runtime))
    result = rain("stop", "--all", env=env)
    assert "no running cluster" in result.stderr
    time.sleep(0.2)
    assert bystander.poll() is None


def test_rain_stop_never_signals_another_users_process(tmp_path):
    uid, gid = second_user()
    theirs = subprocess.Popen(["sleep", "120"], user=uid, group=gid, extra_groups=[],
                              start_new_session=True)
    try:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        _plant_cluster_record(runtime, pids=[theirs.pid],
                              create_times=[psutil.Process(theirs.pid).create_time()])
        result = rain("stop", "--all", env=clean_env(RAIN_RUNTIME_DIR=str(runtime)))
        assert "no running cluster" in result.stderr
        time.sleep(0.2)
        assert theirs.poll() is None
    finally:
        theirs.kill()
        theirs.wait()


def test_malformed_cluster_record_does_not_break_status(tmp_path):
    runtime = tmp_path / "runtime"
    (runtime / "clusters").mkdir(parents=True, mode=0o700)
    os.chmod(runtime, 0o700)
    (runtime / "clusters" / "bad.json").write_text(json.dumps({"id": 7, "pids": "x"}))
    (runtime / "clusters" / "worse.json").write_text(json.dumps(["not", "a", "record"]))
    result = rain("status", env=clean_env(RAIN_RUNTIME_DIR=str(runtime)))
    assert result.returncode == 0, result.stderr
    assert "no running Rain cluster" in result.stdout
    assert "Traceback" not in result.stderr


# -- stored objects and logs ---------------------------------------------------------------
@pytest.fixture
def open_parent():
    """A directory others may enter, so that only Rain's own modes protect what is inside
    (pytest's temporary directories are closed to others already)."""
    path = tempfile.mkdtemp(prefix="rain-security-")
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["chattr", "-R", "-i", path], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def test_work_and_log_directories_are_user_only(open_parent):
    cluster = TestCluster(open_parent, [1])
    try:
        cluster.start()
        client = cluster.client()
        with client.new_session() as session:
            task = tasks.Concat((blob(b"secret "), blob(b"data")))
            task.output.keep()
            session.submit()
            assert task.output.fetch().get_bytes() == b"secret data"
            for path in (os.path.join(open_parent, "governor-0"),
                         os.path.join(open_parent, "governor-0-logs"),
                         os.path.join(open_parent, "server")):
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
            events = os.path.join(open_parent, "server", "events.db")
            assert stat.S_IMODE(os.stat(events).st_mode) == 0o600
            stored = [os.path.join(root, name) for root, _dirs, names
                      in os.walk(os.path.join(open_parent, "governor-0")) for name in names]
            assert stored
            if os.getuid() == 0:
                for path in stored + [events]:
                    result = run_as_other(["cat", path])
                    assert result.returncode != 0 and "Permission denied" in result.stderr
    finally:
        assert cluster.stop() == []


def test_governor_refuses_a_work_directory_shared_by_everybody(tmp_path):
    result = rain("governor", f"127.0.0.1:{free_port()}", "--workdir", "/tmp",
                  "--logdir", str(tmp_path / "logs"), env=clean_env())
    assert result.returncode == 1
    assert "/tmp is shared with other users" in result.stderr
    assert stat.S_IMODE(os.stat("/tmp").st_mode) == 0o1777


# -- HTTP ----------------------------------------------------------------------------------
def test_a_strangers_body_is_refused_before_it_is_read(cluster):
    with socket.create_connection(("127.0.0.1", cluster.http_port), timeout=60) as sock:
        sock.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
        sock.sendall(b"[" * 1000)                # and nothing more of the 100 MB
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed without an answer: {reply!r}"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 403")
    response = requests.get(f"http://127.0.0.1:{cluster.http_port}/api",
                            headers=cluster.http_headers, timeout=30)
    assert response.status_code == 200


@pytest.mark.parametrize("body", [
    "[" * 100000 + "]" * 100000,
    '{"name": ' + "9" * 5000 + "}",
    '{"name": "x", "limit": NaN}',
])
def test_odd_json_is_a_400_not_a_500(cluster, body):
    url = f"http://127.0.0.1:{cluster.http_port}/api/sessions"
    response = requests.post(url, data=body, headers=cluster.http_headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("invalid JSON")
    response = requests.post(url, json={"name": "after"}, headers=cluster.http_headers,
                             timeout=30)
    assert response.status_code == 201


def test_stored_html_is_not_run_on_the_dashboards_origin(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}"
    headers = cluster.http_headers
    sid = requests.post(f"{base}/api/sessions", json={"name": "html"}, headers=headers,
                        timeout=30).json()["session"]
    graph = {"objects": [{"id": 10, "data": "<script>alert(document.cookie)</script>",
                          "content_type": "mime/text/html", "keep": True}], "tasks": []}
    response = requests.post(f"{base}/api/sessions/{sid}/submit", json=graph,
                             headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    response = requests.get(f"{base}/api/sessions/{sid}/objects/10/data", headers=headers,
                            timeout=30)
    assert response.status_code == 200 and b"<script>" in response.content
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy
    page = requests.get(f"{base}/dashboard/", headers=headers, timeout=30)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_ids_beyond_32_bits_are_refused_at_submit(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}/api"
    headers = cluster.http_headers
    sid = requests.post(f"{base}/sessions", json={"name": "big ids"}, headers=headers,
                        timeout=30).json()["session"]
    for graph in ({"objects": [{"id": 2**31, "data": "x"}], "tasks": []},
                  {"objects": [], "tasks": [{"id": 2**40, "type": "buildin/concat",
                                             "inputs": [], "outputs": [11]}]}):
        response = requests.post(f"{base}/sessions/{sid}/submit", json=graph,
                                 headers=headers, timeout=30)
        assert response.status_code == 400 and "out of range" in response.text
    # and every client goes on submitting
    client = cluster.client()
    assert _joined(client, b"still ", b"fine") == b"still fine"


def test_core_refuses_ids_beyond_32_bits():
    from rain.server.core import LAST_ID, RequestError, _check_new_ids

    class Session:
        objects = tasks = {}
    with pytest.raises(RequestError, match="ids end at"):
        _check_new_ids(Session(), [10, LAST_ID + 1], "object", {})
    assert _check_new_ids(Session(), [10, LAST_ID], "object", {}) == {10: 0, LAST_ID: 1}


# -- what a killed governor leaves ----------------------------------------------------------
def _wait(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _programs(marker, argv):
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if proc.info["cmdline"] == argv and \
                    (proc.info["environ"] or {}).get("RAIN_TEST_CLUSTER") == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_execute_programs_die_with_their_governor(make_cluster):
    cluster = make_cluster([1])
    client = cluster.client()
    argv = ["sleep", "537"]
    with client.new_session() as session:
        task = tasks.Execute(argv, stdout=True)
        task.output.keep()
        session.submit()
        _wait(lambda: _programs(cluster.marker, argv), what="the program to start")
        program = _programs(cluster.marker, argv)[0]
        os.kill(cluster.governor_processes[0].pid, signal.SIGKILL)
        cluster.governor_processes[0].wait()
        _wait(lambda: not program.is_running() or program.status() == psutil.STATUS_ZOMBIE,
              what="the program to die with its governor")


def _stored_files(workdir):
    return [os.path.join(root, name) for root, _dirs, names
            in os.walk(os.path.join(workdir, "data")) for name in names]


def test_next_governor_clears_what_a_killed_one_left(make_cluster, tmp_path):
    cluster = make_cluster([1])
    workdir = os.path.join(cluster.tmp, "governor-0")
    client = cluster.client()
    with client.new_session() as session:
        task = tasks.Execute(["head", "-c", "100000", "/dev/zero"], stdout=True)
        task.output.keep()
        session.submit()
        assert task.output.fetch().get_bytes() == bytes(100000)
        left = _stored_files(workdir)
        assert left
        os.kill(cluster.governor_processes[0].pid, signal.SIGKILL)
        cluster.governor_processes[0].wait()
    assert all(not os.stat(path).st_mode & 0o222 for path in left)     # read-only
    # a new governor in the same work directory clears it and works
    cluster.governor_processes.pop()
    ready = os.path.join(cluster.tmp, "again.ready")
    process = cluster._spawn(["governor", f"127.0.0.1:{cluster.port}", "--cpus", "1",
                              "--listen", "127.0.0.1:0", "--workdir", workdir,
                              "--logdir", str(tmp_path / "again-logs"),
                              "--ready-file", ready], "again.out")
    cluster.governor_processes.append(process)
    cluster._wait_file(ready, process, "again")
    assert not any(os.path.exists(path) for path in left)
    # ... while a second governor may not take a directory in use
    result = rain("governor", f"127.0.0.1:{cluster.port}", "--workdir", workdir,
                  "--logdir", str(tmp_path / "third-logs"), env=cluster.env)
    assert result.returncode == 1 and "in use by the governor" in result.stderr
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(workdir)                # a clean stop leaves nothing protected


@pytest.fixture
def short_tmp():
    """A temp dir short enough for the executors' Unix socket paths inside it."""
    path = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    yield path
    subprocess.run(["chattr", "-R", "-i", path], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def test_temporary_work_directory_of_a_killed_governor_is_removed(make_cluster, short_tmp):
    cluster = make_cluster([], env={"TMPDIR": short_tmp, "RAIN_RUNTIME_DIR": runtime_dir()})

    def governor_without_workdir(name):
        ready = os.path.join(short_tmp, f"{name}.ready")
        process = cluster._spawn(["governor", f"127.0.0.1:{cluster.port}", "--cpus", "1",
                                  "--listen", "127.0.0.1:0",
                                  "--logdir", os.path.join(short_tmp, f"{name}-logs"),
                                  "--ready-file", ready], f"{name}.out")
        cluster.governor_processes.append(process)
        cluster._wait_file(ready, process, name)
        return process

    first = governor_without_workdir("first")
    client = cluster.client()
    with client.new_session() as session:
        task = tasks.Execute(["head", "-c", "100000", "/dev/zero"], stdout=True)
        task.output.keep()
        session.submit()
        assert task.output.fetch().get_bytes() == bytes(100000)
    left = [name for name in os.listdir(short_tmp)
            if name.startswith(f"rain-governor-{first.pid}-")]
    assert len(left) == 1
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = governor_without_workdir("second")
    assert second.poll() is None
    assert not os.path.exists(os.path.join(short_tmp, left[0]))


@contextlib.contextmanager
def started(tmp_path, monkeypatch, governors, listen, http_listen):
    """``rain start --local-governors=GOVERNORS`` in a runtime directory of its own; yields
    the environment of its processes (marked), stops and reaps them afterwards."""
    from rain_cluster import reap_leftovers
    runtime = str(tmp_path / "runtime")
    monkeypatch.setenv("RAIN_RUNTIME_DIR", runtime)
    marker = os.urandom(8).hex()
    env = clean_env(RAIN_RUNTIME_DIR=runtime, RAIN_TEST_CLUSTER=marker)
    try:
        result = rain("start", f"--local-governors={governors}", "-l", listen,
                      "--http-listen", http_listen, "--workdir", str(tmp_path / "cluster"),
                      env=env)
        assert result.returncode == 0, result.stderr
        yield env
    finally:
        rain("stop", "--all", env=env)
        assert reap_leftovers(marker, 10) == []


def test_rain_stop_clears_what_its_killed_governors_left(tmp_path, monkeypatch):
    from rain.client import Client
    port = free_port()
    workdir = str(tmp_path / "cluster")
    with started(tmp_path, monkeypatch, "[1]", f"127.0.0.1:{port}",
                 f"127.0.0.1:{free_port()}") as env:
        with Client("127.0.0.1", port).new_session() as session:
            task = tasks.Execute(["head", "-c", "100000", "/dev/zero"], stdout=True)
            task.output.keep()
            session.submit()
            assert task.output.fetch().get_bytes() == bytes(100000)
        governor_dir = os.path.join(workdir, "governor-0")
        assert _stored_files(governor_dir)
        pid = int(open(os.path.join(governor_dir, "governor.pid")).read())
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not psutil.pid_exists(pid) or
              psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, what="the kill")
        result = rain("stop", "--all", env=env)
        assert result.returncode == 0, result.stderr
        assert not os.path.exists(os.path.join(governor_dir, "data"))
        shutil.rmtree(workdir)              # nothing protected is left


def test_a_cluster_of_this_machine_listens_on_loopback_only(tmp_path, monkeypatch):
    from rain_cluster import processes_of
    port, http_port = free_port(), free_port()
    with started(tmp_path, monkeypatch, "[1,1]", str(port), str(http_port)) as env:
        marker = env["RAIN_TEST_CLUSTER"]
        listening = [conn.laddr for proc in processes_of(marker)
                     for conn in proc.net_connections(kind="inet")
                     if conn.status == psutil.CONN_LISTEN]
        ports = {address.port for address in listening}
        assert {port, http_port} <= ports and len(ports) >= 4   # + two data listeners
        assert {address.ip for address in listening} == {"127.0.0.1"}


# -- the RPC port before authentication ------------------------------------------------------
def _closed_by_peer(sock, timeout):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("port", ["rpc", "data"])
def test_silent_strangers_cannot_hold_a_port(cluster, port):
    from rain.common.waiting_room import HELLO_TIMEOUT, MAX_WAITING
    address, _owner = _port_and_owner(cluster, port)
    strangers = [socket.create_connection(address, timeout=30)
                 for _ in range(MAX_WAITING + 20)]
    try:
        # the oldest are let go to make room ...
        assert all(_closed_by_peer(s, 30) for s in strangers[:20])
        # ... and a real peer still gets in at once (the result is too big to be held by
        # the server: it comes from the governor's data port)
        client = cluster.client()
        assert _joined(client, b"let " * 5000, b"in") == b"let " * 5000 + b"in"
        # the rest go when their time to say hello is over
        deadline = time.monotonic() + HELLO_TIMEOUT + 60
        for s in strangers[20:]:
            assert _closed_by_peer(s, max(1, deadline - time.monotonic()))
    finally:
        for s in strangers:
            s.close()


def _port_and_owner(cluster, port):
    from test_bad_input import data_addresses
    if port == "rpc":
        return ("127.0.0.1", cluster.port), cluster.server_process
    host, data_port = data_addresses(cluster)[0].rsplit(":", 1)
    return (host, int(data_port)), cluster.governor_processes[0]


@pytest.mark.parametrize("port", ["rpc", "data"])
def test_strangers_sent_away_leave_no_buffers_behind(cluster, port):
    """A thousand strangers, each sending a byte and sent away to make room, cost the
    listener no memory once gone (their receive buffers go with their connections)."""
    address, owner = _port_and_owner(cluster, port)
    before = _rss(owner)
    strangers = []
    with _open_files_allowed(1200):
        try:
            for _ in range(1000):
                stranger = socket.create_connection(address, timeout=30)
                stranger.sendall(b"\x00")
                strangers.append(stranger)
            time.sleep(2)
            assert _rss(owner) - before < 48 * 2**20
        finally:
            for stranger in strangers:
                stranger.close()


@contextlib.contextmanager
def _open_files_allowed(count):
    """Raise this process's soft limit of open files to ``count`` (an ordinary user's
    default, 1024, is below what the test opens; the hard limit is theirs to use)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.fail(f"this test opens {count} files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- frame sizes once authenticated -----------------------------------------------------------
def _rss(process):
    return psutil.Process(process.pid).memory_info().rss


def _accepted_client(cluster):
    from test_bad_input import Raw, frame, hello
    raw = Raw(("127.0.0.1", cluster.port))
    raw.send(frame(hello(cluster)))
    ok, error, _ = raw.hello_reply()
    assert ok, error
    return raw


def test_a_frame_beyond_the_limit_is_refused_with_a_reason(cluster):
    from rain.capnp import rain_capnp as R
    before = _rss(cluster.server_process)
    raw = _accepted_client(cluster)
    try:
        raw.send((2**31).to_bytes(4, "little") + b"x" * 65536)
        with R.ServerToClient.from_bytes(raw.recv_frame()) as msg:
            message = msg.response.error.message
            assert msg.response.requestId == 0
        assert "2147483648 bytes exceeds the server's limit of 1073741824 bytes" in message
        assert "--max-submit-size" in message
        raw.sock.settimeout(30)
        assert raw.closed_by_peer()
    finally:
        raw.close()
    assert _rss(cluster.server_process) - before < 64 * 2**20
    client = cluster.client()
    assert _joined(client, b"still ", b"here") == b"still here"


def test_an_announced_frame_costs_only_the_bytes_that_came(cluster):
    """A frame within the limit that never arrives in full holds no more memory than its
    bytes that did (the buffer is not sized by the header's word)."""
    before = _rss(cluster.server_process)
    raws = [_accepted_client(cluster) for _ in range(4)]
    try:
        for raw in raws:
            raw.send((2**30 - 1).to_bytes(4, "little") + b"x" * 2**20)
        client = cluster.client()            # served after all those frames were read
        assert _joined(client, b"a", b"b") == b"ab"
        assert _rss(cluster.server_process) - before < 256 * 2**20
    finally:
        for raw in raws:
            raw.close()


def test_a_submit_beyond_the_servers_limit_fails_clearly(make_cluster):
    from rain.client import RainException
    cluster = make_cluster([1], server_args=["--max-submit-size", "1M"])
    client = cluster.client()
    with pytest.raises(RainException, match=r"exceeds the server's limit of 1048576 bytes"):
        with client.new_session() as session:
            tasks.Concat((blob(b"x" * 2**21), blob(b"y")))
            session.submit()
            session.wait_all()
    other = cluster.client()
    assert len(_joined(other, b"x" * 2**19, b"y")) == 2**19 + 1


def test_byte_sizes_of_the_command_line():
    import argparse
    from rain.cli import byte_size
    assert byte_size("64M") == 64 * 2**20 and byte_size("2g") == 2**31
    assert byte_size("1000") == 1000
    for bad in ("", "0", "-1K", "1.5M", "64Mi", "M"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
            byte_size(bad)


# -- executor and program output ---------------------------------------------------------------
def _log_sizes(directory):
    return {name: os.path.getsize(os.path.join(directory, name))
            for name in os.listdir(directory) if name.startswith("executor-")}


def test_executor_logs_are_capped_and_keep_their_end(make_cluster):
    from rain.client import RainException, remote
    cluster = make_cluster([])
    cluster.add_governor(1, ["--executor-log-max", "64K"])

    @remote()
    def chatty(ctx):
        import os
        import sys
        line = "x" * 1023 + "\n"
        for _ in range(5000):                # 5 MB on each stream
            sys.stdout.write(line)
            sys.stderr.write(line)
        sys.stdout.flush()
        sys.stderr.write("THE END\n")
        sys.stderr.flush()
        os._exit(3)

    client = cluster.client()
    with pytest.raises(RainException, match="THE END"):
        with client.new_session() as session:
            chatty()
            session.submit()
            session.wait_all()
    sizes = _log_sizes(os.path.join(cluster.tmp, "governor-0-logs"))
    assert any(name.endswith(".err.1") for name in sizes), sizes     # it did rotate
    assert sizes and all(size <= 64 * 1024 for size in sizes.values()), sizes
    # a healthy executor is still spawned and works
    assert _joined(client, b"after ", b"that") == b"after that"


def test_program_output_is_capped_and_keeps_its_end(make_cluster):
    from rain.client import RainException
    cluster = make_cluster([])
    cluster.add_governor(1, ["--executor-log-max", "64K"])
    # 5 MB to stderr and to stdout (not an output), then what is on disk of them
    script = ("head -c 5000000 /dev/zero | tr '\\0' x >&2; "
              "head -c 5000000 /dev/zero | tr '\\0' y; sleep 1; "
              "echo >&2; wc -c ../stderr* ../stdout* | sed 's/^/SIZE /' >&2; exit 1")
    client = cluster.client()
    with pytest.raises(RainException, match="exited with code 1") as failure:
        with client.new_session() as session:
            tasks.Execute(["sh", "-c", script])
            session.submit()
            session.wait_all()
    sizes = [line.split() for line in str(failure.value).splitlines()
             if line.startswith("SIZE ") and "total" not in line]
    assert {os.path.basename(path) for _, _, path in sizes} >= {"stderr", "stdout",
                                                                 "stderr.1", "stdout.1"}
    assert all(int(size) <= 64 * 1024 for _, size, _ in sizes), sizes
    # stdout asked as an output is data, kept whole
    with client.new_session() as session:
        task = tasks.Execute(["head", "-c", "300000", "/dev/zero"], stdout=True)
        task.output.keep()
        session.submit()
        assert task.output.fetch().get_bytes() == bytes(300000)


# -- what cannot be encoded for one peer ---------------------------------------------------------
class _RecordingConn:
    """A connection of the server's comm that keeps what would be written to its peer."""

    transport = None
    peer = None

    def __init__(self):
        self.frames = []
        self.closed = False

    def send_now(self, frames):
        self.frames.extend(frames)

    def send(self, frame):
        self.frames.append(frame)

    def flush(self):
        pass

    def close(self):
        self.closed = True


class _Events:
    def __init__(self):
        self.listeners = []
        self.added = []

    def add(self, event):
        self.added.append(event)


def _graph(session_name):
    from rain.server.rest import parse_graph
    return parse_graph({"objects": [{"id": 10, "data": "x"}],
                        "tasks": [{"id": 12, "type": "buildin/concat", "inputs": [10],
                                   "outputs": [{"id": 11, "keep": True}],
                                   "name": session_name}]})


def _assigned_tasks(frames):
    from rain.capnp import rain_capnp as R
    from rain.common.assign_columns import read_rows
    keys = []
    for frame in frames:
        with R.ServerToGovernor.from_bytes(frame) as msg:
            if msg.which() == "assign":
                keys += [row[0] for row in read_rows(msg.assign.rows)[1]]
    return keys


def _error_replies(frames):
    from rain.capnp import rain_capnp as R
    errors = {}
    for frame in frames:
        with R.ServerToClient.from_bytes(frame) as msg:
            if msg.which() == "response" and msg.response.which() == "error":
                errors[msg.response.requestId] = msg.response.error.message
    return errors


def test_work_that_cannot_be_encoded_fails_only_its_own_session():
    """A task whose name cannot be encoded (half a surrogate pair, which JSON can carry)
    fails its session with the reason, while the same governor gets every other task."""
    import asyncio

    from rain.server.connections import RainServer

    async def scenario():
        server = RainServer(_Events())
        server.comm.loop = asyncio.get_running_loop()
        core = server.core
        governor = core.add_governor("127.0.0.1:1", 4, {}, _RecordingConn())
        careless, other = core.add_client(_RecordingConn()), core.add_client(_RecordingConn())
        bad = core.new_session(careless, {})
        good = core.new_session(other, {})
        core.submit(careless, bad, *_graph("\ud800"))
        core.wait_all(careless, 7, bad)
        core.submit(other, good, *_graph("fine"))
        for _ in range(5):
            await asyncio.sleep(0)
        return core, governor.conn, careless.conn, bad, good

    core, governor_conn, careless_conn, bad, good = asyncio.run(scenario())
    assert _assigned_tasks(governor_conn.frames) == [(good, 12)]
    assert not governor_conn.closed
    message = _error_replies(careless_conn.frames)[7]
    assert "Task 12 could not be sent to a governor: UnicodeEncodeError" in message
    assert core.sessions[bad].error is not None and core.sessions[good].error is None


def test_a_reply_that_cannot_be_encoded_is_an_error_for_that_request():
    from rain.server.connections import RainServer
    server = RainServer(_Events())
    client = server.core.add_client(_RecordingConn())
    server.comm.reply(client, 5, "serverInfo", {"governors": ["\udc00"]})
    server.comm.reply(client, 6, "session", 3)
    errors = _error_replies(client.conn.frames)
    assert "the reply could not be encoded" in errors[5] and 6 not in errors
    assert len(client.conn.frames) == 2 and not client.conn.closed


def test_half_a_surrogate_pair_is_a_400_at_rest(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}/api"
    headers = cluster.http_headers
    sid = requests.post(f"{base}/sessions", json={"name": "odd text"}, headers=headers,
                        timeout=30).json()["session"]
    for name in ('"\\ud800"', '"a\\udfff"'):
        body = ('{"objects": [{"id": 10, "data": "x"}], "tasks": [{"id": 12, "type": '
                '"buildin/concat", "inputs": [10], "outputs": [{"id": 11}], "name": %s}]}' % name)
        response = requests.post(f"{base}/sessions/{sid}/submit", data=body,
                                 headers=headers, timeout=30)
        assert response.status_code == 400, response.text
        assert "surrogate" in response.json()["error"]
    client = cluster.client()
    assert _joined(client, b"still ", b"fine") == b"still fine"


# -- the HTTP port before a request is whole ------------------------------------------------------
def test_half_sent_headers_cannot_hold_the_http_port(cluster):
    """Strangers sending half a request's headers are closed when their time is over, and
    oversized headers are refused: neither holds the server's memory for long."""
    from rain.server.http import HEADER_TIMEOUT, MAX_HEADER_SIZE
    address = ("127.0.0.1", cluster.http_port)
    strangers = []
    try:
        for _ in range(200):
            stranger = socket.create_connection(address, timeout=30)
            stranger.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000)
            strangers.append(stranger)
        with socket.create_connection(address, timeout=30) as big:
            big.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\nX-Big: " +
                        b"b" * (MAX_HEADER_SIZE + 1024) + b"\r\n\r\n")
            assert _closed_by_peer(big, 30)
        deadline = time.monotonic() + HEADER_TIMEOUT + 60
        for stranger in strangers:
            assert _closed_by_peer(stranger, max(1, deadline - time.monotonic()))
        # the port still serves
        r = requests.get(f"http://127.0.0.1:{cluster.http_port}/api",
                         headers=cluster.http_headers, timeout=30)
        assert r.status_code == 200
    finally:
        for stranger in strangers:
            stranger.close()
