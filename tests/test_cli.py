"""The ``rain`` command line: help and usage errors, ``rain server``, ``rain governor``,
``rain start|status|stop`` (local, simple and "remote" over a stand-in ssh), and the
governor's ``RAIN_DELETE_LIST_TIMEOUT``.

Every process started here carries a ``RAIN_TEST_CLUSTER`` marker in its environment, so
the fixture can check (and enforce) that nothing is left running afterwards.
"""
import glob
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import requests

from rain_cluster import free_port, processes_of, reap_leftovers
from rain.auth import read_token_file
from rain.client import Client, blob, tasks

RAIN = [sys.executable, "-m", "rain"]
TIMEOUT = 60          # generous: the reference machine has 2 busy cores
START_TIMEOUT = 120   # `rain start` waits for a server and governors


# ------------------------------------------------------------------------------------------
# Helpers

class Env:
    """An isolated environment for rain commands: own runtime dir, own process marker."""

    def __init__(self, tmp_path):
        self.tmp = str(tmp_path)
        self.marker = uuid.uuid4().hex
        self.runtime_dir = os.path.join(self.tmp, "runtime")
        self.env = dict(os.environ)
        self.env["RAIN_TEST_CLUSTER"] = self.marker
        self.env["RAIN_RUNTIME_DIR"] = self.runtime_dir
        self.env.pop("PBS_NODEFILE", None)
        self.popens = []

    def run(self, *args, timeout=TIMEOUT, env=None):
        return subprocess.run(RAIN + [str(a) for a in args], env=env or self.env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def spawn(self, *args, log_name):
        log = open(os.path.join(self.tmp, log_name), "ab")
        try:
            process = subprocess.Popen(RAIN + [str(a) for a in args], env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.popens.append(process)
        return process

    def log(self, log_name):
        try:
            with open(os.path.join(self.tmp, log_name), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def state_files(self):
        return sorted(glob.glob(os.path.join(self.runtime_dir, "clusters", "*.json")))

    def cleanup(self):
        """Stop what is left; return the processes that were still alive."""
        for process in self.popens:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self.popens:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Clusters of `rain start` are stopped by `rain stop`; whatever a failed test left
        # behind is stopped here.
        if self.state_files():
            self.run("stop", "--all")
        return reap_leftovers(self.marker, 10)


@pytest.fixture
def rain_env(tmp_path, monkeypatch):
    env = Env(tmp_path)
    # Clients made by the test find the servers' tokens where the commands keep them.
    monkeypatch.setenv("RAIN_RUNTIME_DIR", env.runtime_dir)
    yield env
    left = env.cleanup()
    assert not left, f"processes left behind: {left}"


def wait_for(predicate, timeout=TIMEOUT, what="condition", process=None, log=""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} while waiting "
                                 f"for {what}:\n{log() if callable(log) else log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n"
                                 f"{log() if callable(log) else log}")
        time.sleep(0.05)


def run_concat(address_or_client, port=None):
    """Run a Concat of two constants in a new session; check the result."""
    client = address_or_client if isinstance(address_or_client, Client) else \
        Client(address_or_client, port)
    try:
        with client.new_session("cli-test") as session:
            a = blob(b"hello ")
            b = blob(b"world")
            task = tasks.Concat((a, b))
            task.output.keep()
            session.submit()
            assert task.output.fetch().get_bytes() == b"hello world"
    finally:
        if client is not address_or_client:
            client.close()


def pids_gone(pids, timeout=30):
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if psutil.pid_exists(p) and
             psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
    return not alive


def start_local_cluster(rain_env, *mode_args, attempts=3):
    """``rain start`` on fresh loopback ports (retried if a port was taken meanwhile).
    Returns (completed process, server port, http port, state record)."""
    for attempt in range(attempts):
        port, http_port = free_port(), free_port()
        workdir = os.path.join(rain_env.tmp, f"cluster-{attempt}")
        result = rain_env.run("start", *mode_args, "-l", f"127.0.0.1:{port}",
                              "--http-listen", f"127.0.0.1:{http_port}", "--workdir", workdir,
                              timeout=START_TIMEOUT)
        if result.returncode == 0:
            files = rain_env.state_files()
            assert len(files) == 1, files
            with open(files[0]) as f:
                record = json.load(f)
            return result, port, http_port, record
        if "in use" not in result.stderr or attempt == attempts - 1:
            raise AssertionError(f"rain start failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
    raise AssertionError("unreachable")


def stop_and_check(rain_env, record, *stop_args):
    result = rain_env.run("stop", *stop_args)
    assert result.returncode == 0, result.stderr
    assert "stopped" in result.stdout
    assert pids_gone(record["pids"]), f"processes of the cluster still run: {record['pids']}"
    assert rain_env.state_files() == []
    status = rain_env.run("status")
    assert status.returncode == 0
    assert "no running Rain cluster" in status.stdout


# ------------------------------------------------------------------------------------------
# Help and usage errors

HELP_FLAGS = {
    None: ["server", "governor", "start", "stop", "status", "alloc"],
    "server": ["-l", "--listen", "--http-listen", "--logdir", "--ready-file"],
    "governor": ["SERVER_ADDR", "-l", "--listen", "--cpus", "--config", "--workdir",
                 "--logdir", "--ready-file"],
    "start": ["--simple", "--local-governors", "--governor-host-file", "--autoconf",
              "--remote-init", "-S", "-l", "--listen", "--http-listen", "--governor-config",
              "--runprefix", "--workdir", "--logdir", "--ssh-command", "--governor-ports"],
    "alloc": ["--server", "--max-nodes", "--time", "--idle-timeout"],
    "stop": ["--all"],
    "status": ["--json"],
}


@pytest.mark.parametrize("command", list(HELP_FLAGS), ids=lambda c: c or "rain")
def test_help_lists_flags(rain_env, command):
    args = ([command] if command else []) + ["--help"]
    result = rain_env.run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for flag in HELP_FLAGS[command]:
        assert re.search(rf"(^|[\s,\[{{]){re.escape(flag)}\b", result.stdout), \
            f"{flag} missing from `rain {command or ''} --help`:\n{result.stdout}"


def test_governor_help_explains_negative_cpus(rain_env):
    result = rain_env.run("governor", "--help")
    assert "-X" in result.stdout


@pytest.mark.parametrize("args", [
    [],
    ["no-such-command"],
    ["server", "--no-such-flag"],
    ["server", "--listen"],
    ["governor"],
    ["governor", "127.0.0.1:1", "--bogus"],
    ["start", "--autoconf", "lsf"],
    ["start", "--unknown"],
    ["start", "--governor-ports", "9-3"],
    ["start", "--governor-ports", "h:7000"],
    ["governor", "127.0.0.1:1", "-l", "7000-x"],
    ["alloc", "lsf"],
    ["alloc", "slurm", "--max-nodes", "two"],
    ["stop", "a", "b"],
], ids=lambda a: " ".join(a) or "nothing")
def test_usage_errors_exit_2(rain_env, args):
    result = rain_env.run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------
# rain server

@pytest.mark.parametrize("form", ["ip:port", "port"])
def test_server_listen_forms_ready_file_and_events_db(rain_env, form):
    for attempt in range(3):
        port, http_port = free_port(), free_port()
        listen = f"127.0.0.1:{port}" if form == "ip:port" else str(port)
        logdir = os.path.join(rain_env.tmp, f"server-logs-{attempt}")
        ready = os.path.join(rain_env.tmp, f"server-{attempt}.ready")
        log_name = f"server-{attempt}.out"
        process = rain_env.spawn("server", "--listen", listen, "--http-listen",
                                 f"127.0.0.1:{http_port}", "--logdir", logdir,
                                 "--ready-file", ready, log_name=log_name)
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(ready) and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(ready):
            break
        assert process.poll() is not None and attempt < 2, rain_env.log(log_name)
    with open(ready) as f:
        assert f.read() == "ready\n"
    assert os.path.exists(os.path.join(logdir, "events.db"))
    # Both listeners answer.
    with socket.create_connection(("127.0.0.1", http_port), timeout=10):
        pass
    client = Client("127.0.0.1", port)
    try:
        info = client.get_server_info()
        assert info["governors"] == []
    finally:
        client.close()
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=TIMEOUT) == 0, rain_env.log(log_name)


@pytest.mark.parametrize("args", [
    ["server", "--listen", "127.0.0.1:notaport"],
    ["server", "--http-listen", "70000"],
    ["governor", "127.0.0.1:notaport"],
    ["governor", "127.0.0.1:1", "--listen", "127.0.0.1:notaport"],
], ids=["server-listen", "server-http", "governor-server", "governor-listen"])
def test_bad_addresses_are_usage_errors(rain_env, args):
    result = rain_env.run(*args, "--logdir", os.path.join(rain_env.tmp, "logs"))
    assert result.returncode == 2
    assert "invalid address" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_port_in_use_exits_1(rain_env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = rain_env.run("server", "--listen", f"127.0.0.1:{port}", "--http-listen",
                              f"127.0.0.1:{free_port()}",
                              "--logdir", os.path.join(rain_env.tmp, "logs"))
    assert result.returncode == 1, result.stderr
    assert "cannot start the server" in result.stderr


# ------------------------------------------------------------------------------------------
# rain governor

def governor_resources(client):
    info = client.get_server_info()
    return [g["resources"] for g in info["governors"]]


def test_governor_cpus_minus_one(make_cluster, monkeypatch):
    cluster = make_cluster([])
    cluster.add_governor("-1")
    client = cluster.client()
    expected = max(1, (os.cpu_count() or 1) - 1)
    assert [r["cpus"] for r in governor_resources(client)] == [expected]
    run_concat(client)
    # On a small machine -1 and the clamp to 1 look alike: count on a bigger one too.
    from rain.governor.main import parse_cpus
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert parse_cpus("-1") == 7


def test_governor_cpus_minus_many_keeps_one(make_cluster):
    cluster = make_cluster([])
    cluster.add_governor("-1000")
    assert [r["cpus"] for r in governor_resources(cluster.client())] == [1]


def test_governor_cpus_explicit(make_cluster):
    cluster = make_cluster([3])
    assert [r["cpus"] for r in governor_resources(cluster.client())] == [3]


def test_governor_config_with_executor_section(make_cluster, tmp_path):
    config = tmp_path / "governor.toml"
    config.write_text('[executors.myexec]\ncommand = "sh -c \'echo myexec started; exit 3\'"\n'
                      '\n[executors.other]\ncommand = "python3 -c pass"\n')
    cluster = make_cluster([1], governor_config=str(config))
    client = cluster.client()
    assert len(governor_resources(client)) == 1
    run_concat(client)
    # A task of the configured type runs the section's command.
    from rain.client import Task, TaskException
    with client.new_session() as s:
        Task([], 1, task_type="myexec/run", retries=0)
        s.submit()
        with pytest.raises(TaskException, match=r"(?s)exit code 3.*myexec started"):
            s.wait_all()


@pytest.mark.parametrize("content, message", [
    ('[executors.x\ncommand = "y"\n', "invalid TOML"),
    ("[executors.x]\ncommand = 42\n", "needs a string 'command'"),
    (None, "cannot read config"),
], ids=["malformed", "wrong-type", "missing"])
def test_governor_bad_config_exits_with_message(rain_env, content, message):
    path = os.path.join(rain_env.tmp, "governor.toml")
    if content is not None:
        with open(path, "w") as f:
            f.write(content)
    result = rain_env.run("governor", f"127.0.0.1:{free_port()}", "--config", path,
                          "--logdir", os.path.join(rain_env.tmp, "glogs"),
                          "--workdir", os.path.join(rain_env.tmp, "gwork"))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output
    assert "governor.toml" in output
    assert "Traceback" not in output


def test_governor_bad_cpus_exits_with_message(rain_env):
    result = rain_env.run("governor", f"127.0.0.1:{free_port()}", "--cpus", "many",
                          "--logdir", os.path.join(rain_env.tmp, "glogs"))
    assert result.returncode != 0
    assert "--cpus" in result.stderr and "many" in result.stderr


def test_governor_without_server_exits_nonzero(rain_env):
    result = rain_env.run("governor", f"127.0.0.1:{free_port()}",
                          "--logdir", os.path.join(rain_env.tmp, "glogs"),
                          "--workdir", os.path.join(rain_env.tmp, "gwork"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------
# rain start / status / stop

def test_start_local_governors_status_stop(rain_env):
    result, port, http_port, record = start_local_cluster(rain_env, "--local-governors=[1,1]")
    assert f"127.0.0.1:{port}" in result.stdout
    token = read_token_file(record["token_path"])
    # The dashboard link carries the token; it opens the dashboard, the bare URL does not.
    link = f"http://127.0.0.1:{http_port}/?token={token}"
    assert link in result.stdout
    assert requests.get(link, timeout=10).status_code == 200
    assert requests.get(f"http://127.0.0.1:{http_port}/api/governors",
                        timeout=10).status_code == 403
    assert record["server"] == f"127.0.0.1:{port}"
    assert len(record["pids"]) == 3
    assert [g["cpus"] for g in record["governors"]] == [1, 1]

    client = Client("127.0.0.1", port)
    try:
        assert sorted(r["cpus"] for r in governor_resources(client)) == [1, 1]
        run_concat(client)
    finally:
        client.close()

    status = rain_env.run("status")
    assert status.returncode == 0
    assert f"127.0.0.1:{port}" in status.stdout
    assert link in status.stdout
    assert "2 governor(s)" in status.stdout
    status_json = rain_env.run("status", "--json")
    assert [c["server"] for c in json.loads(status_json.stdout)] == [f"127.0.0.1:{port}"]

    stop_and_check(rain_env, record, str(port))


def test_start_simple(rain_env):
    result, port, _http_port, record = start_local_cluster(rain_env, "--simple")
    assert f"127.0.0.1:{port}" in result.stdout
    assert len(record["governors"]) == 1
    client = Client(f"127.0.0.1:{port}")
    try:
        assert [r["cpus"] for r in governor_resources(client)] == [os.cpu_count() or 1]
        run_concat(client)
    finally:
        client.close()
    status = rain_env.run("status")
    assert f"127.0.0.1:{port}" in status.stdout
    stop_and_check(rain_env, record)


def test_start_twice_then_stop_all(rain_env):
    _r1, port1, _h1, record1 = start_local_cluster(rain_env, "--local-governors=[1]")
    port2, http2 = free_port(), free_port()
    second = rain_env.run("start", "--local-governors=[1]", "-l", f"127.0.0.1:{port2}",
                          "--http-listen", f"127.0.0.1:{http2}",
                          "--workdir", os.path.join(rain_env.tmp, "second"),
                          timeout=START_TIMEOUT)
    assert second.returncode == 0, second.stderr
    files = rain_env.state_files()
    assert len(files) == 2
    records = []
    for path in files:
        with open(path) as f:
            records.append(json.load(f))
    # Without a target, `rain stop` refuses to guess.
    ambiguous = rain_env.run("stop")
    assert ambiguous.returncode != 0
    assert "several clusters" in ambiguous.stderr
    unknown = rain_env.run("stop", "no-such-cluster")
    assert unknown.returncode == 1
    result = rain_env.run("stop", "--all")
    assert result.returncode == 0, result.stderr
    for record in records:
        assert pids_gone(record["pids"])
    assert rain_env.state_files() == []
    assert rain_env.run("stop").returncode == 1


@pytest.mark.parametrize("value", ["[1,", "{\"a\": 1}", "[]", "[0]", "[1, \"x\"]", "[true]"])
def test_start_bad_local_governors(rain_env, value):
    result = rain_env.run("start", f"--local-governors={value}", "-l",
                          f"127.0.0.1:{free_port()}", "--http-listen",
                          f"127.0.0.1:{free_port()}",
                          "--workdir", os.path.join(rain_env.tmp, "w"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "--local-governors" in result.stderr
    assert "Traceback" not in result.stderr
    assert rain_env.state_files() == []


def test_start_autoconf_pbs_without_nodefile(rain_env):
    result = rain_env.run("start", "--autoconf", "pbs", "-l", f"127.0.0.1:{free_port()}",
                          "--http-listen", f"127.0.0.1:{free_port()}",
                          "--workdir", os.path.join(rain_env.tmp, "w"))
    assert result.returncode == 1
    assert "PBS_NODEFILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_autoconf_slurm_outside_a_job(rain_env):
    rain_env.env.pop("SLURM_JOB_NODELIST", None)
    rain_env.env.pop("SLURM_NODELIST", None)
    result = rain_env.run("start", "--autoconf", "slurm")
    assert result.returncode == 1
    assert "SLURM_JOB_NODELIST is not set (not inside a Slurm job?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_alloc_without_a_cluster_asks_for_the_server(rain_env):
    result = rain_env.run("alloc", "slurm")
    assert result.returncode == 2
    assert "give --server" in result.stderr


def test_start_conflicting_modes(rain_env):
    result = rain_env.run("start", "--simple", "--local-governors=[1]")
    assert result.returncode == 1
    assert "choose one" in result.stderr


def test_start_missing_host_file(rain_env):
    result = rain_env.run("start", "--governor-host-file",
                          os.path.join(rain_env.tmp, "nope.txt"), "-l",
                          f"127.0.0.1:{free_port()}", "--http-listen",
                          f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "nope.txt" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_bad_listen_address(rain_env):
    result = rain_env.run("start", "--local-governors=[1]", "-l", "127.0.0.1:notaport",
                          "--workdir", os.path.join(rain_env.tmp, "w"))
    assert result.returncode == 2
    assert "invalid address '127.0.0.1:notaport'" in result.stderr
    assert "Traceback" not in result.stderr


FAKE_SSH = """#!/bin/sh
# Stands in for ssh: records the call, then runs the remote command here, as on another
# machine: without this machine's runtime directory (where the token is) or RAIN_TOKEN.
echo "$@" >> "{log}"
for last; do :; done
exec env -u RAIN_TOKEN RAIN_RUNTIME_DIR="{remote_runtime}" sh -c "$last"
"""


def test_start_governor_host_file_over_ssh(rain_env):
    bindir = os.path.join(rain_env.tmp, "bin")
    os.makedirs(bindir)
    ssh_log = os.path.join(rain_env.tmp, "ssh.log")
    ssh = os.path.join(bindir, "ssh")
    remote_runtime = os.path.join(rain_env.tmp, "remote-runtime")
    os.makedirs(remote_runtime, mode=0o700)
    with open(ssh, "w") as f:
        f.write(FAKE_SSH.format(log=ssh_log, remote_runtime=remote_runtime))
    os.chmod(ssh, os.stat(ssh).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    hosts = os.path.join(rain_env.tmp, "hosts.txt")
    with open(hosts, "w") as f:
        f.write("# governors of the test\nlocalhost\n\n127.0.0.1   # the same machine\n")
    marker_file = os.path.join(rain_env.tmp, "remote-init-ran")
    rain_env.env["PATH"] = bindir + os.pathsep + rain_env.env.get("PATH", "")

    result, port, _http, record = start_local_cluster(
        rain_env, "--governor-host-file", hosts, "--remote-init", f"touch {marker_file}")
    assert f"127.0.0.1:{port}" in result.stdout
    with open(ssh_log) as f:
        calls = f.read().splitlines()
    assert len(calls) == 2
    assert all(call.startswith("-o BatchMode=yes ") for call in calls)
    # The token reaches the governors on their standard input, never on a command line.
    assert all(" --token-file - " in call + " " for call in calls), calls
    assert sorted(call.split()[2] for call in calls) == ["127.0.0.1", "localhost"]
    assert os.path.exists(marker_file)
    assert [g["host"] for g in record["governors"]] == ["localhost", "127.0.0.1"]

    client = Client("127.0.0.1", port)
    try:
        assert len(governor_resources(client)) == 2
        run_concat(client)
    finally:
        client.close()
    stop_and_check(rain_env, record)


def test_start_aborts_when_server_cannot_bind(rain_env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = rain_env.run("start", "--local-governors=[1]", "-l", f"127.0.0.1:{port}",
                              "--http-listen", f"127.0.0.1:{free_port()}",
                              "--workdir", os.path.join(rain_env.tmp, "w"),
                              timeout=START_TIMEOUT)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "server exited" in result.stderr
    # The tail of the server's log explains why.
    assert "cannot start the server" in result.stderr
    assert "in use" in result.stderr
    assert rain_env.state_files() == []
    deadline = time.monotonic() + 10
    while processes_of(rain_env.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(rain_env.marker) == []


def test_start_aborts_when_a_governor_dies(rain_env, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("this is not toml ===\n")
    result = rain_env.run("start", "--local-governors=[1]", "-l", f"127.0.0.1:{free_port()}",
                          "--http-listen", f"127.0.0.1:{free_port()}",
                          "--governor-config", str(config),
                          "--workdir", os.path.join(rain_env.tmp, "w"),
                          timeout=START_TIMEOUT)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "governor-0 exited" in result.stderr
    assert "invalid TOML" in result.stderr
    assert rain_env.state_files() == []
    deadline = time.monotonic() + 10
    while processes_of(rain_env.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(rain_env.marker) == []


# ------------------------------------------------------------------------------------------
# RAIN_DELETE_LIST_TIMEOUT

def held(client):
    """(objects, objects_to_delete) of the only governor, as sets of (session, id)."""
    [governor] = client.get_server_info()["governors"]
    return ({tuple(i) for i in governor["objects"]},
            {tuple(i) for i in governor["objects_to_delete"]})


def submit_kept_concat(client):
    session = client.new_session("delete-timeout")
    with session.bind_only():
        a = blob(b"a" * 100)
        b = blob(b"b" * 100)
        task = tasks.Concat((a, b))
        task.output.keep()
        session.submit()
    task.output.wait()
    return session, task.output, tuple(task.output.id)


def test_delete_list_timeout_zero(make_cluster):
    cluster = make_cluster([1], env={"RAIN_DELETE_LIST_TIMEOUT": "0"})
    client = cluster.client()
    session, output, key = submit_kept_concat(client)
    objects, to_delete = held(client)
    assert key in objects
    session.unkeep([output])
    # The delete order reaches the governor before the next info request: gone at once.
    objects, to_delete = held(client)
    assert key not in objects
    assert key not in to_delete
    assert not to_delete
    session.close()
    run_concat(client)


def test_delete_list_timeout_two_seconds(make_cluster):
    cluster = make_cluster([1], env={"RAIN_DELETE_LIST_TIMEOUT": "2"})
    client = cluster.client()
    session, output, key = submit_kept_concat(client)
    session.unkeep([output])
    objects, to_delete = held(client)
    assert key in to_delete
    # ... and later it is gone from both lists.
    wait_for(lambda: all(key not in s for s in held(client)), timeout=30,
             what="the object to leave the delete list")
    session.close()
    run_concat(client)
