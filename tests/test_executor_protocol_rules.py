"""Rules of docs/executor-protocol.md that other tests leave out: a wrong protocol is
refused, an executor must register in time, executors die with their governor, and the
governor sends `drop_cached` when a cached object is deleted. Real governors and real
executor processes (small scripts written from the document)."""
import asyncio
import json
import os
import signal
import sys

import psutil
import pytest

from rain.client import Task, TaskException, blob

from rain_cluster import processes_of, wait_for

SCRIPT_HEAD = r'''
import json, os, socket, sys, cbor2

def send(sock, kind, body):
    payload = cbor2.dumps([kind, body])
    sock.sendall(len(payload).to_bytes(4, "little") + payload)

def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data

def receive(sock):
    return cbor2.loads(read_exactly(sock, int.from_bytes(read_exactly(sock, 4), "little")))

sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["RAIN_EXECUTOR_SOCKET"])
'''

WRONG_PROTOCOL = SCRIPT_HEAD + r'''
send(sock, "register", {"protocol": "rain-executor/99",
                        "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
                        "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]})
while True:
    receive(sock)
'''

SILENT = SCRIPT_HEAD + r'''
print("connected, saying nothing", flush=True)
while True:
    receive(sock)
'''

BUSY = SCRIPT_HEAD + r'''
import time
send(sock, "register", {"protocol": "rain-executor/1",
                        "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
                        "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]})
receive(sock)
time.sleep(600)
'''

# Keeps every input it is given, and logs every drop_cached it receives.
CACHING = SCRIPT_HEAD + r'''
log = os.environ["CLAIMS_DROP_LOG"]
send(sock, "register", {"protocol": "rain-executor/1",
                        "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
                        "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]})
kept = {}
while True:
    kind, body = receive(sock)
    if kind == "drop_cached":
        with open(log, "a") as f:
            f.write(json.dumps(body["objects"]) + "\n")
        for key in body["objects"]:
            kept.pop(tuple(key), None)
    elif kind == "call":
        source = body["inputs"][0]
        key = tuple(source["id"])
        location = source["location"]
        if location[0] == "cached":
            data = kept[key]
        elif location[0] == "memory":
            data = location[1]
        else:
            data = open(location[1], "rb").read()
        new = [] if key in kept else [list(key)]
        kept[key] = data
        send(sock, "result", {"success": True, "cached": new,
                              "outputs": [{"location": ["memory", data[::-1]],
                                           "content_type": None}]})
'''


def executor_config(tmp_path, name, script):
    path = tmp_path / f"{name}.py"
    path.write_text(script)
    config = tmp_path / f"{name}.toml"
    config.write_text(f"[executors.{name}]\ncommand = '{sys.executable} {path}'\n")
    return str(config)


def test_an_executor_speaking_another_protocol_is_refused(make_cluster, tmp_path):
    cluster = make_cluster([1], governor_config=executor_config(tmp_path, "alien",
                                                                 WRONG_PROTOCOL))
    client = cluster.client()
    with client.new_session() as session:
        Task([blob("x")], 1, task_type="alien/run")
        session.submit()
        with pytest.raises(TaskException, match=r"speaks protocol 'rain-executor/99'"):
            session.wait_all()
    # The refused executor is gone; the governor still serves.
    wait_for("the refused executor to end", lambda: not [
        p for p in processes_of(cluster.marker) if "alien.py" in " ".join(p.cmdline())])
    with client.new_session() as session:
        t = Task([blob("ab"), blob("c")], 1, task_type="buildin/concat")
        t.output.keep()
        session.submit()
        assert t.output.fetch().get_bytes() == b"abc"


def test_an_executor_that_does_not_register_in_time_fails_its_task(tmp_path, monkeypatch):
    """The limit is 60 s; shortened here, the governor's executor pool is the real one."""
    from rain.governor import executors
    from rain.governor.executors import ExecutorError, ExecutorPool

    assert executors.REGISTER_TIMEOUT == 60.0
    monkeypatch.setattr(executors, "REGISTER_TIMEOUT", 5.0)   # room for its start
    script = tmp_path / "silent.py"
    script.write_text(SILENT)

    async def main():
        pool = ExecutorPool(str(tmp_path / "work"), str(tmp_path),
                            {"silent": [sys.executable, str(script)]})
        await pool.start()
        try:
            with pytest.raises(ExecutorError) as error:
                await pool.acquire("silent")
            return str(error.value), list(pool.all.values())
        finally:
            await pool.close()

    message, executors_left = asyncio.run(main())
    assert "did not register within 5 s" in message
    assert "connected, saying nothing" in message          # the tail of its output
    for executor in executors_left:
        assert executor.process.returncode is not None


def test_executors_die_with_their_governor(make_cluster, tmp_path):
    """An executor busy in a call (it reads nothing, so never sees its socket close),
    written without any death signal of its own: the governor's dying takes it along."""
    config = executor_config(tmp_path, "busy", BUSY)
    cluster = make_cluster([1], governor_config=config)
    client = cluster.client()

    def executors_running():
        return [p for p in processes_of(cluster.marker)
                if "busy.py" in " ".join(p.cmdline())]

    with client.new_session() as session:
        Task([blob("x")], 1, task_type="busy/work")
        session.submit()
        executor = wait_for("the executor to run the task", executors_running)[0]
        governor = cluster.governor_processes[0]
        os.kill(governor.pid, signal.SIGKILL)        # the governor only, not its group
        governor.wait(timeout=30)
        wait_for("the executor to die with its governor",
                 lambda: not executor.is_running()
                 or executor.status() == psutil.STATUS_ZOMBIE)


def test_deleting_a_cached_object_sends_drop_cached(make_cluster, tmp_path):
    log = tmp_path / "drops.log"
    cluster = make_cluster([1], env={"CLAIMS_DROP_LOG": str(log)},
                           governor_config=executor_config(tmp_path, "keeper", CACHING))
    client = cluster.client()
    with client.new_session() as session:
        source = blob("abc")
        source.keep()
        first = Task([source], 1, task_type="keeper/flip")
        first.output.keep()
        session.submit()
        assert first.output.fetch().get_bytes() == b"cba"
        # The same object again: sent as ["cached"], the executor answers from its copy.
        second = Task([source], 1, task_type="keeper/flip")
        second.output.keep()
        session.submit()
        assert second.output.fetch().get_bytes() == b"cba"
        source_id = list(source.id)
        assert not log.exists()                  # still in use: nothing dropped yet
    drops = wait_for("drop_cached for the deleted input", lambda: log.exists() and [
        json.loads(line) for line in log.read_text().splitlines()])
    assert [source_id] in drops
