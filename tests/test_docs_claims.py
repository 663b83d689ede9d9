"""Claims of README.md that no other test checks: what `make demo` prints, the default
ports and runtime directory, RAIN_TOKEN for clients and governors, and the
RAIN_DELETE_LIST_TIMEOUT default. Real processes throughout."""
import os
import shutil
import subprocess
import sys

import pytest

from rain.client import Client, RainException, blob, tasks

from rain_cluster import processes_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAIN_RUNTIME_DIR", "XDG_RUNTIME_DIR", "RAIN_TOKEN",
                        "RAIN_DELETE_LIST_TIMEOUT")}
    env.update(extra)
    return env


def concat(client):
    with client.new_session("claims") as session:
        task = tasks.Concat((blob("Hello "), blob("world!")))
        task.output.keep()
        session.submit()
        return task.output.fetch().get_str()


# -- make demo ------------------------------------------------------------------------------
@pytest.mark.timeout(200)
def test_make_demo_prints_hello_world_and_leaves_nothing_running(tmp_path):
    """What the Makefile's demo target runs (its install step is treated as done: the
    suite runs in that installation), with a marker to find leftover processes."""
    stamp = os.path.join(".venv", ".installed")
    marker = f"demo-{os.getpid()}-{tmp_path.name}"
    env = clean_env(RAIN_DEMO_MARKER=marker, RAIN_RUNTIME_DIR=str(tmp_path / "runtime"))
    result = subprocess.run(["make", "-s", "-o", stamp, "demo", f"PY={sys.executable}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "Hello world!", result.stdout
    assert "computed on a local cluster of 2 governors" in result.stdout
    assert not processes_of(marker, "RAIN_DEMO_MARKER")


# -- defaults -------------------------------------------------------------------------------
IN_NAMESPACE = r'''
import os, subprocess, sys, time
import requests
from rain.auth import auth_headers, token_for_server
from rain.client import Client, blob, tasks
from rain.runtime_dir import runtime_dir

tmp = sys.argv[1]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

def start(*args, name):
    ready = os.path.join(tmp, name + ".ready")
    log = open(os.path.join(tmp, name + ".out"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "rain", *args, "--ready-file", ready],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        assert proc.poll() is None, open(log.name).read()
        assert time.monotonic() < deadline, open(log.name).read()
        time.sleep(0.05)
    return proc

procs = []
try:
    procs.append(start("server", "--logdir", os.path.join(tmp, "logs"), name="server"))
    procs.append(start("governor", "127.0.0.1", "--cpus", "1",
                       "--workdir", os.path.join(tmp, "gw"),
                       "--logdir", os.path.join(tmp, "glogs"), name="governor"))
    client = Client("127.0.0.1")
    with client.new_session() as s:
        t = tasks.Concat((blob("Hello "), blob("world!")))
        t.output.keep()
        s.submit()
        result = t.output.fetch().get_str()
    token = token_for_server("127.0.0.1", 7210)
    api = requests.get("http://127.0.0.1:7222/api/governors", headers=auth_headers(token),
                       timeout=30)
    servers = os.listdir(os.path.join(runtime_dir(), "servers"))
    print(repr((result, client.port, api.status_code, len(api.json()), runtime_dir(),
                servers)))
    client.close()
finally:
    for proc in procs[::-1]:
        proc.terminate()
        proc.wait(30)
'''


def in_new_network(script, tmp_path, env):
    """Run ``script`` in a network namespace of its own: the default ports are free there
    whatever else runs on this machine."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("needs unshare (util-linux) and ip (iproute2)")
    path = tmp_path / "script.py"
    path.write_text(script)
    result = subprocess.run(["unshare", "--map-root-user", "--net", sys.executable, str(path),
                             str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=150)
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"no network namespace for this user: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(200)
def test_default_ports_and_runtime_directory(tmp_path):
    """`rain server` with no addresses: RPC on 7210, HTTP on 7222; `rain governor HOST`
    and `Client(HOST)` default to 7210; the state lives in $XDG_RUNTIME_DIR/rain."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = clean_env(XDG_RUNTIME_DIR=str(xdg))
    env.pop("RAIN_TEST_CLUSTER", None)
    line = in_new_network(IN_NAMESPACE, tmp_path, env)
    result, port, status, governors, directory, servers = eval(line)
    assert (result, port, status, governors) == ("Hello world!", 7210, 200, 1)
    assert directory == str(xdg / "rain")
    assert len(servers) == 1 and servers[0].endswith(".json")


def test_runtime_directory_without_xdg_is_rain_uid_in_the_temp_directory(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = "from rain.runtime_dir import runtime_dir; print(runtime_dir())"
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(TMPDIR=str(tmp)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    expected = tmp / f"rain-{os.getuid()}"
    assert out.stdout.strip() == str(expected)
    assert oct(expected.stat().st_mode & 0o777) == oct(0o700)
    out = subprocess.run([sys.executable, "-c", code],
                         env=clean_env(TMPDIR=str(tmp), RAIN_RUNTIME_DIR=str(tmp / "own")),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(tmp / "own")


def test_delete_list_timeout_defaults_to_five_seconds(monkeypatch):
    from rain.governor.main import ConfigError, delete_timeout_from_env
    monkeypatch.delenv("RAIN_DELETE_LIST_TIMEOUT", raising=False)
    assert delete_timeout_from_env() == 5.0
    monkeypatch.setenv("RAIN_DELETE_LIST_TIMEOUT", "0.5")
    assert delete_timeout_from_env() == 0.5
    monkeypatch.setenv("RAIN_DELETE_LIST_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="RAIN_DELETE_LIST_TIMEOUT"):
        delete_timeout_from_env()


# -- RAIN_TOKEN -----------------------------------------------------------------------------
def test_rain_token_for_clients_and_governors_elsewhere(make_cluster, tmp_path, monkeypatch):
    """A server takes RAIN_TOKEN; a client and a governor that cannot find the token
    file (another runtime directory: as on another machine) get in with RAIN_TOKEN."""
    token = "claims-" + "7" * 40
    cluster = make_cluster([], env={"RAIN_TOKEN": token})
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("RAIN_TOKEN", raising=False)
    with pytest.raises(RainException, match="Authentication failed"):
        Client("127.0.0.1", cluster.port)
    monkeypatch.setenv("RAIN_TOKEN", token)
    assert cluster.token == token
    cluster.env["RAIN_RUNTIME_DIR"] = str(tmp_path / "elsewhere")
    cluster.env["RAIN_TOKEN"] = "not-" + token
    with pytest.raises(RuntimeError, match="Authentication failed"):
        cluster.add_governor(1)
    cluster.governor_processes.pop()
    cluster.env["RAIN_TOKEN"] = token
    cluster.add_governor(1)
    assert concat(cluster.client()) == "Hello world!"
    # A program of its own, as a user on another machine runs it.
    other = subprocess.run(
        [sys.executable, "-c", "from rain.client import Client; "
         f"c = Client('127.0.0.1', {cluster.port}); "
         "print(len(c.get_server_info()['governors'])); c.close()"],
        env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert other.returncode == 0 and other.stdout.split() == ["1"], other.stderr

