"""How fast a cluster reacts: the figures that the test suite checks only by waiting for
events (a busy machine must not fail a test), measured here instead.

    python benchmarks/reaction_times.py            # prints a Markdown table (--repeat N)

Each figure is the median (min-max) of --repeat runs on a real local cluster (a server and
one governor with 3 CPUs). The "old test bound" column is the wall-clock limit a test once
asserted for the same thing; the tests now wait for the state and check the order of
events.
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import cbor2                                             # noqa: E402
import requests                                          # noqa: E402

from rain.client import RainException, blob, remote, tasks   # noqa: E402
from rain.local_cluster import LocalCluster              # noqa: E402


def wait_until(condition, timeout=120.0, step=0.002):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(step)
    return time.monotonic()


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def close_kills_program(cluster, tmp):
    """A session closed under a running external program: close() called -> program gone."""
    client = cluster.client()
    marker = os.path.join(tmp, f"pid-{time.monotonic_ns()}")
    session = client.new_session()
    tasks.Execute(["sh", "-c", f"echo $$ > {marker}; exec sleep 300"], session=session)
    session.submit()
    wait_until(lambda: os.path.exists(marker) and open(marker).read().strip())
    pid = int(open(marker).read())
    start = time.monotonic()
    session.close()
    return wait_until(lambda: gone(pid)) - start


@remote()
def _sleeper(ctx):
    import time
    time.sleep(300)


@remote()
def _quick(ctx):
    return b"ok"


def close_then_next_task(cluster, tmp):
    """A Python task running in the executor; its session closed, another session's
    task runs: close() called -> next task's result fetched."""
    client = cluster.client()
    session = client.new_session()
    with session.bind_only():
        _sleeper()
    session.submit()
    wait_until(lambda: _running(cluster, session.session_id))
    start = time.monotonic()
    session.close()
    with client.new_session() as s:
        t = _quick()
        t.output.keep()
        s.submit()
        t.output.fetch()
    return time.monotonic() - start


def _running(cluster, sid):
    r = requests.get(f"http://127.0.0.1:{cluster.http_port}/api/sessions/{sid}/tasks",
                     params={"state": "running"}, headers=cluster.http_headers, timeout=30)
    return r.status_code == 200 and len(r.json()) > 0


def parallel_round(cluster, tmp):
    """Three 0.6 s sleeps on three free CPUs: submit -> all finished (one round: 0.6 s)."""
    client = cluster.client()
    with client.new_session() as s:
        sleeps = [tasks.Sleep(blob("x"), 0.6) for _ in range(3)]
        start = time.monotonic()
        s.submit()
        s.wait(sleeps)
        return time.monotonic() - start


def sleep_chain(cluster, tmp):
    """Three 0.25 s sleeps in a chain: submit -> last finished (at least 0.75 s)."""
    client = cluster.client()
    with client.new_session() as s:
        t = blob("x")
        for _ in range(3):
            t = tasks.Sleep(t, 0.25)
        start = time.monotonic()
        s.submit()
        s.wait([t])
        return time.monotonic() - start


def rest_wait_timeout(cluster, tmp):
    """REST ``wait?timeout=0.2`` on a long task: request sent -> 408 received."""
    api = f"http://127.0.0.1:{cluster.http_port}/api"
    headers = cluster.http_headers
    sid = requests.post(api + "/sessions", json={}, headers=headers, timeout=30).json()["session"]
    graph = {"objects": [{"id": 10, "data": "x"}],
             "tasks": [{"id": 11, "type": "buildin/sleep", "config": {"seconds": 300},
                        "inputs": [10], "outputs": [{"id": 12}]}]}
    requests.post(f"{api}/sessions/{sid}/submit", json=graph, headers=headers, timeout=30)
    start = time.monotonic()
    r = requests.post(f"{api}/sessions/{sid}/wait?timeout=0.2", json={}, headers=headers,
                      timeout=30)
    took = time.monotonic() - start
    assert r.status_code == 408, r.text
    requests.delete(f"{api}/sessions/{sid}", headers=headers, timeout=30)
    return took


def event_flush(cluster, tmp):
    """A new session: created -> its SessionNew readable from the event log."""
    client = cluster.client()
    start = time.monotonic()
    session = client.new_session("flush")
    url = f"http://127.0.0.1:{cluster.http_port}/api/events"

    def seen():
        r = requests.get(url, params={"type": "SessionNew", "session": session.session_id},
                         headers=cluster.http_headers, timeout=30)
        return r.status_code == 200 and r.json()

    took = wait_until(seen, step=0.01) - start
    session.close()
    return took


VANISHING = """
import sys, time
from rain.client import Client, blob, tasks
client = Client("127.0.0.1", int(sys.argv[1]))
session = client.new_session("vanishing")
with session.bind_only():
    tasks.Sleep(blob("x"), 300)
session.submit()
print(session.session_id, flush=True)
time.sleep(600)
"""


def vanished_client(cluster, tmp):
    """A client process killed while its session runs a 300 s task: SIGKILL -> the
    server lists the session as no longer open."""
    proc = subprocess.Popen([sys.executable, "-c", VANISHING, str(cluster.port)],
                            stdout=subprocess.PIPE, text=True, env=cluster.env)
    sid = int(proc.stdout.readline())
    wait_until(lambda: _running(cluster, sid))
    url = f"http://127.0.0.1:{cluster.http_port}/api/sessions/{sid}"
    start = time.monotonic()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return wait_until(lambda: requests.get(url, headers=cluster.http_headers, timeout=30)
                      .json()["status"] != "open", step=0.01) - start


def executor_eof(cluster, tmp):
    """The Python executor, its governor's socket closed: close -> executor exited."""
    path = os.path.join(tmp, f"x{time.monotonic_ns() % 10**9}.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    env = dict(os.environ, RAIN_EXECUTOR_SOCKET=path, RAIN_EXECUTOR_ID="1",
               RAIN_EXECUTOR_TYPE="py")
    workdir = tempfile.mkdtemp(dir=tmp)
    proc = subprocess.Popen([sys.executable, "-m", "rain.executor"], cwd=workdir, env=env)
    conn, _ = listener.accept()
    size = int.from_bytes(conn.recv(4, socket.MSG_WAITALL), "little")
    assert cbor2.loads(conn.recv(size, socket.MSG_WAITALL))[0] == "register"
    start = time.monotonic()
    conn.shutdown(socket.SHUT_RDWR)
    conn.close()
    proc.wait(timeout=60)
    took = time.monotonic() - start
    listener.close()
    os.unlink(path)
    return took


def server_death(_cluster, tmp):
    """A client waiting for a 300 s task when the server is killed: SIGKILL -> the
    waiting call fails (a cluster of its own, since the server dies)."""
    with LocalCluster([1], workdir=tempfile.mkdtemp(dir=tmp)) as cluster:
        client = cluster.client()
        session = client.new_session()
        with session.bind_only():
            slow = tasks.Sleep(blob("x"), 300)
        session.submit()
        wait_until(lambda: _running(cluster, session.session_id))
        killed = []

        def kill():
            killed.append(time.monotonic())
            os.kill(cluster.server_process.pid, signal.SIGKILL)

        timer = threading.Timer(0.3, kill)
        timer.start()
        try:
            session.wait([slow])
        except RainException:
            pass
        took = time.monotonic() - killed[0]
        timer.join()
        return took


SCENARIOS = [
    ("closed session: running program gone", close_kills_program, "< 1 s"),
    ("closed session: next task's result (executor killed, new one)",
     close_then_next_task, "< 0.3 s"),
    ("3 x 0.6 s sleeps on 3 CPUs: one round", parallel_round, "0.55-1.15 s"),
    ("chain of 3 x 0.25 s sleeps", sleep_chain, "0.75-5 s"),
    ("REST wait?timeout=0.2 answered", rest_wait_timeout, "< 1.5 s"),
    ("event log: SessionNew readable", event_flush, "< 3 s"),
    ("vanished client: its session no longer open", vanished_client, "< 20 s"),
    ("executor exits after EOF", executor_eof, "< 2 s"),
    ("server killed: the waiting call fails", server_death, "< 10 s"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    tmp = tempfile.mkdtemp(prefix="rain-reaction-")
    rows = []
    with LocalCluster([3], workdir=os.path.join(tmp, "cluster")) as cluster:
        for label, scenario, bound in SCENARIOS:
            values = [scenario(cluster, tmp) for _ in range(args.repeat)]
            rows.append((label, statistics.median(values), min(values), max(values), bound))
    print(f"Load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| what | median s | min-max s | old test bound |")
    print("|---|---:|---|---|")
    for label, median, low, high, bound in rows:
        print(f"| {label} | {median:.3f} | {low:.3f}-{high:.3f} | {bound} |")


if __name__ == "__main__":
    main()
