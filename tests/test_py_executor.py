"""The Python executor without a cluster: its pure core, and the process on a socket
driven by a test playing the governor (docs/executor-protocol.md)."""
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time

import cbor2
import cloudpickle
import pytest

from rain.client.remote import _ArgPickler, _Refs
from rain.executor.runner import PyExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def args_bytes(*args, **kwargs):
    buffer = io.BytesIO()
    _ArgPickler(buffer, _Refs(None, 0)).dump((args, kwargs))
    return buffer.getvalue()


def make_call(fn, *, fn_location=None, config=None, inputs=(), outputs=1, task_id=20):
    fn_bytes = cloudpickle.dumps(fn)
    function_input = {"id": [1, 10], "label": None, "data_type": "blob",
                      "content_type": "cloudpickle", "size": len(fn_bytes),
                      "location": fn_location or ["memory", fn_bytes]}
    if isinstance(outputs, int):
        outputs = [{"id": [1, 100 + i], "label": None, "data_type": "blob",
                    "content_type": None} for i in range(outputs)]
    return {"task": {"id": [1, task_id], "type": "py/fn", "method": "fn",
                     "config": cbor2.dumps(config) if config is not None else b"",
                     "name": None, "user": {"u": 1}, "resources": {"cpus": 1}},
            "inputs": [function_input, *inputs], "outputs": outputs}


def blob_input(index, data, content_type=None, label=None):
    return {"id": [1, index], "label": label, "data_type": "blob",
            "content_type": content_type, "size": len(data), "location": ["memory", data]}


def double(ctx, x):
    return str(2 * x)


def test_function_cache_by_id_and_content(tmp_path):
    executor = PyExecutor(str(tmp_path))
    config = {"args": args_bytes(21)}
    first = executor.call(make_call(double, config=config))
    assert first == {"success": True, "cached": [[1, 10]],
                     "outputs": [{"location": ["memory", b"42"], "content_type": "text"}]}
    again = executor.call(make_call(double, config=config, fn_location=["cached"]))
    assert again["success"] and "cached" not in again
    executor.drop_cached({"objects": [[1, 10]]})
    lost = executor.call(make_call(double, config=config, fn_location=["cached"]))
    assert not lost["success"]
    assert "does not keep it" in lost["info"]["error"]
    # The same bytes under a new id: the deserialized function is found by content.
    fn_before = executor.functions.copy()
    executor.call(make_call(double, config=config))
    assert executor.functions == fn_before


def test_inputs_outputs_and_errors(tmp_path):
    executor = PyExecutor(str(tmp_path))

    def both(ctx, raw, loaded):
        ctx.info.user["seen"] = [raw.get_str(), loaded]
        ctx.debug("spec user {}", ctx.spec.user)
        return raw, ctx.blob(loaded, encode="json")

    buffer = io.BytesIO()

    class Ref:
        def __init__(self, index):
            self.index = index

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return obj.index if isinstance(obj, Ref) else None

    Pickler(buffer).dump(((Ref(1), Ref(2)), {}))
    call = make_call(both, config={"args": buffer.getvalue(), "load": [0, 0, 1]},
                     inputs=[blob_input(11, b"abc", "text"), blob_input(12, b"[1]", "json")],
                     outputs=2)
    result = executor.call(call)
    assert result["success"], result
    assert result["outputs"][0] == {"location": ["other", [1, 11]], "content_type": "text"}
    assert result["outputs"][1] == {"location": ["memory", b"[1]"], "content_type": "json"}
    assert result["info"] == {"user": {"seen": ["abc", [1]]}, "debug": "spec user {'u': 1}"}

    def boom(ctx):
        ctx.debug("before")
        raise KeyError("missing")

    failed = executor.call(make_call(boom))
    assert not failed["success"]
    assert failed["info"]["debug"] == "before"
    assert failed["info"]["error"].startswith("Traceback (most recent call last)")
    assert "KeyError: 'missing'" in failed["info"]["error"]


def test_working_directory_is_cleaned_between_calls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # an executor process starts in its directory
    executor = PyExecutor(str(tmp_path))

    def litter(ctx):
        os.mkdir("sub")
        os.chdir("sub")
        with open("f", "w") as f:
            f.write("x")
        return b""

    def look(ctx):
        return ",".join(sorted(os.listdir("."))) + "|" + os.getcwd()

    assert executor.call(make_call(litter))["success"]
    assert os.getcwd() == str(tmp_path)
    result = executor.call(make_call(look))
    assert result["outputs"][0]["location"][1].decode() == f"|{tmp_path}"


def test_directory_is_empty_after_every_call_whatever_its_time(tmp_path, monkeypatch):
    """No timestamp shortcut: litter made within one clock tick of the last clean-up,
    dangling links and staged files are all gone right after each call."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    executor = PyExecutor(str(workdir))
    (tmp_path / "target").write_text("t")

    def litter(ctx):
        with open("left-over", "w") as f:
            f.write("x")
        os.symlink(str(tmp_path / "gone"), "dangling")
        os.symlink(str(tmp_path / "target"), "link")
        os.mkdir("d")
        return b""

    def staged(ctx):
        with open("f", "w") as f:
            f.write("staged")
        instance = ctx.stage_file("f")
        assert os.listdir(".") == []        # moved out at once
        with open("unused", "w") as f:
            f.write("u")
        ctx.stage_file("unused")             # staged but not returned
        return instance

    for _ in range(20):
        stamp = os.stat(workdir).st_mtime_ns
        assert executor.call(make_call(litter))["success"]
        os.utime(workdir, ns=(stamp, stamp))   # as if nothing had changed
        executor.tidy()
        assert os.listdir(workdir) == []
    result = executor.call(make_call(staged))
    assert result["success"] and os.listdir(workdir) == []
    path = result["outputs"][0]["location"][1]
    assert open(path).read() == "staged"
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_call_that_removes_its_directory_leaves_the_next_a_fresh_one(tmp_path,
                                                                        monkeypatch, how):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    executor = PyExecutor(str(workdir))

    def wreck(ctx):
        with open("f", "w") as f:
            f.write("x")
        shutil.rmtree(os.getcwd())
        if how == "replaced":
            os.mkdir(str(workdir))
            with open(os.path.join(str(workdir), "g"), "w") as f:
                f.write("y")
        return b""

    def look(ctx):
        with open("new", "w") as f:     # the directory exists and is writable
            f.write("z")
        return ",".join(sorted(os.listdir("."))) + "|" + os.getcwd()

    for _ in range(2):                  # (the first call: before any clean-up)
        assert executor.call(make_call(look))["success"]
        assert executor.call(make_call(wreck))["success"]
        assert os.listdir(workdir) == []
    for _ in range(2):
        result = executor.call(make_call(look))
        assert result["outputs"][0]["location"][1].decode() == f"new|{workdir}"
        assert os.listdir(workdir) == []


@pytest.fixture
def executor_process(tmp_path):
    sock_path = str(tmp_path / "e.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(sock_path)
    server.listen(1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = dict(os.environ, RAIN_EXECUTOR_SOCKET=sock_path, RAIN_EXECUTOR_ID="7",
               RAIN_EXECUTOR_TYPE="py")
    process = subprocess.Popen([sys.executable, "-m", "rain.executor"], env=env,
                               cwd=str(workdir), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    server.settimeout(30)
    conn, _ = server.accept()
    conn.settimeout(30)
    yield process, conn, workdir
    conn.close()
    server.close()
    if process.poll() is None:
        process.kill()
    process.wait()


def send(conn, kind, body):
    payload = cbor2.dumps([kind, body])
    conn.sendall(len(payload).to_bytes(4, "little") + payload)


def receive(conn):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "executor closed the connection"
            data += chunk
        return data
    size = int.from_bytes(exactly(4), "little")
    return cbor2.loads(exactly(size))


def stage(ctx, text):
    with open("out.txt", "w") as f:
        f.write(text)
    return ctx.stage_file("out.txt", content_type="text")


def test_executor_process_protocol(executor_process):
    process, conn, workdir = executor_process
    assert receive(conn) == ["register", {"protocol": "rain-executor/1", "executor_id": 7,
                                          "executor_type": "py", "pipeline": True}]
    send(conn, "call", make_call(stage, config={"args": args_bytes("hi")}))
    kind, result = receive(conn)
    assert kind == "result" and result["success"]
    location = result["outputs"][0]["location"]
    # Handed over under a name of its own: a queued call may write out.txt again.
    assert location[0] == "path" and location[1].startswith(str(workdir) + ".outputs/")
    assert result["outputs"][0]["content_type"] == "text"
    assert open(location[1]).read() == "hi"
    os.unlink(location[1])               # the governor moves staged files away
    send(conn, "drop_cached", {"objects": [[1, 10]]})
    send(conn, "some_future_hint", {})    # unknown kinds are ignored
    send(conn, "call", make_call(stage, config={"args": args_bytes("again")},
                                 fn_location=["cached"]))
    kind, result = receive(conn)
    assert not result["success"] and "does not keep it" in result["info"]["error"]
    # EOF: the executor exits at once
    conn.shutdown(socket.SHUT_RDWR)
    assert process.wait(timeout=30) == 0


FOREIGN_EXECUTOR = r'''
# An executor written from docs/executor-protocol.md alone: socket + cbor2, no rain.
import os, socket, sys, cbor2

def send(sock, kind, body):
    payload = cbor2.dumps([kind, body])
    sock.sendall(len(payload).to_bytes(4, "little") + payload)

def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            sys.exit(0)                       # EOF: the governor is gone
        data += chunk
    return data

sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["RAIN_EXECUTOR_SOCKET"])
send(sock, "register", {"protocol": "rain-executor/1",
                        "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
                        "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]})
while True:
    kind, body = cbor2.loads(read_exactly(sock, int.from_bytes(read_exactly(sock, 4), "little")))
    if kind != "call":
        continue
    method = body["task"]["method"]
    source = body["inputs"][0]
    location = source["location"]
    data = location[1] if location[0] == "memory" else open(location[1], "rb").read()
    if method == "upper":
        outputs = [{"location": ["memory", data.upper()], "content_type": "text"}]
    elif method == "file":
        with open("result.bin", "wb") as f:
            f.write(data * 2)
        outputs = [{"location": ["path", "result.bin"], "content_type": None,
                    "info": {"user": {"from": "file"}}}]
    elif method == "same":
        outputs = [{"location": ["other", source["id"]], "content_type": None}]
    else:
        send(sock, "result", {"success": False, "info": {"error": f"no method {method}",
                                                        "debug": "foreign debug"}})
        continue
    send(sock, "result", {"success": True, "info": {"user": {"method": method}},
                          "outputs": outputs})
'''


def test_executor_written_from_the_documentation(make_cluster, tmp_path):
    from rain.client import Task, TaskException, blob

    script = tmp_path / "foreign.py"
    script.write_text(FOREIGN_EXECUTOR)
    config = tmp_path / "governor.toml"
    config.write_text(f"[executors.foreign]\ncommand = '{sys.executable} {script}'\n")
    cluster = make_cluster([1], governor_config=str(config))
    client = cluster.client()
    with client.new_session() as s:
        source = blob("hi")
        upper = Task([source], 1, task_type="foreign/upper")
        doubled = Task([upper], 1, task_type="foreign/file")
        same = Task([doubled], 1, task_type="foreign/same")
        for t in (upper, doubled, same):
            t.keep_outputs()
        s.submit()
        assert upper.output.fetch().get_str() == "HI"
        assert upper.output.fetch().content_type == "text"
        assert doubled.output.fetch().get_bytes() == b"HIHI"
        assert same.output.fetch().get_bytes() == b"HIHI"
        upper.update()
        assert upper.info.user == {"method": "upper"}
        doubled.output.update()
        assert doubled.output.info.user == {"from": "file"}
    with client.new_session() as s:
        Task([blob("x")], 1, task_type="foreign/nothing")
        s.submit()
        with pytest.raises(TaskException, match=r"(?s)no method nothing.*foreign debug"):
            s.wait_all()


# -- pipelined calls -----------------------------------------------------------------------

def test_queued_calls_run_in_order_and_hand_over_their_files(executor_process):
    process, conn, workdir = executor_process
    assert receive(conn)[1]["pipeline"] is True
    # Three calls before any result: each stages "out.txt" again.
    for i, text in enumerate(("one", "two", "three")):
        send(conn, "call", make_call(stage, config={"args": args_bytes(text)},
                                     task_id=20 + i))
    results = [receive(conn) for _ in range(3)]
    assert [kind for kind, _ in results] == ["result"] * 3
    paths = [result["outputs"][0]["location"][1] for _, result in results]
    assert len(set(paths)) == 3
    assert [open(path).read() for path in paths] == ["one", "two", "three"]
    starts = [result["start_time"] for _, result in results]
    assert starts == sorted(starts)
    for _, result in results:
        assert result["duration"] >= 0


def wait_forever(ctx):
    time.sleep(600)


def exit_now(ctx):
    os._exit(3)


def run_pool(tmp_path, scenario):
    """Run ``scenario(pool)`` in an event loop with a governor's executor pool."""
    import asyncio

    from rain.governor.executors import ExecutorPool

    async def main():
        pool = ExecutorPool(str(tmp_path / "work"), str(tmp_path))
        await pool.start()
        try:
            return await scenario(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def test_socket_dirs_of_killed_governors_are_removed_by_the_next(tmp_path, monkeypatch,
                                                                 request):
    """A work directory too long for a socket path puts the socket in the temp dir, in a
    directory named after the governor: what a killed one left, the next one removes."""
    import asyncio
    import pathlib
    import shutil
    import tempfile

    from rain.governor.executors import SOCKET_DIR_MAX, ExecutorPool
    # A temp dir of its own, short enough for the socket path wherever pytest runs.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="rx-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = tmp / f"rain-exec-{dead.pid}-k1lled00"
    alive = tmp / f"rain-exec-{os.getppid()}-running"
    unrelated = tmp / "rain-exec-12345678"
    for path in (abandoned, alive, unrelated):
        path.mkdir()
    workdir = tmp_path / ("w" * (SOCKET_DIR_MAX + 1))

    async def main():
        pool = ExecutorPool(str(workdir), str(tmp_path))
        await pool.start()
        try:
            own = pool._socket_dir
            assert os.path.dirname(own) == str(tmp)
            assert os.path.basename(own).startswith(f"rain-exec-{os.getpid()}-")
        finally:
            await pool.close()
        return own

    own = asyncio.run(main())
    assert not abandoned.exists() and not os.path.exists(own)
    assert alive.exists() and unrelated.exists()


def test_socket_dir_in_a_short_temp_dir_when_tmpdir_is_too_long(tmp_path, monkeypatch):
    """A work directory and a TMPDIR both too long for a socket path (batch systems set
    long ones): the socket goes into a short temp dir, and its path fits."""
    import asyncio
    import tempfile

    from rain.governor import executors
    from rain.governor.executors import SOCKET_DIR_MAX, SOCKET_PATH_MAX, ExecutorPool
    long_tmp = tmp_path / ("t" * SOCKET_DIR_MAX)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    workdir = tmp_path / ("w" * (SOCKET_DIR_MAX + 1))

    async def main():
        pool = ExecutorPool(str(workdir), str(tmp_path))
        await pool.start()
        try:
            assert len(pool.socket_path) <= SOCKET_PATH_MAX
            assert os.path.dirname(pool._socket_dir) in executors.SHORT_TEMP_DIRS
            assert os.stat(pool._socket_dir).st_mode & 0o777 == 0o700
            return pool._socket_dir
        finally:
            await pool.close()

    own = asyncio.run(main())
    assert not os.path.exists(own)
    # With no short temp dir either, starting fails with a reason to act on.
    monkeypatch.setattr(executors, "SHORT_TEMP_DIRS", (str(long_tmp),))
    with pytest.raises(OSError, match="at most 107 bytes.*shorter --workdir or TMPDIR"):
        asyncio.run(ExecutorPool(str(workdir), str(tmp_path)).start())


@pytest.mark.timeout(180)
def test_python_task_runs_under_a_tmpdir_too_long_for_a_socket(tmp_path):
    """What a user of a batch system with a long TMPDIR does: a LocalCluster whose work
    directory is long, in a process whose TMPDIR is long too, runs a Python task."""
    from rain.governor.executors import SOCKET_DIR_MAX
    long_tmp = tmp_path / ("t" * SOCKET_DIR_MAX)
    long_tmp.mkdir()
    script = tmp_path / "program.py"
    script.write_text(
        "from rain.client import remote\n"
        "from rain.local_cluster import LocalCluster\n"
        "@remote()\n"
        "def double(ctx, x):\n"
        "    return str(2 * int(x)).encode()\n"
        f"with LocalCluster(governors=[1], workdir={str(long_tmp / ('w' * 40))!r}) as c:\n"
        "    with c.client().new_session() as s:\n"
        "        t = double(\"21\")\n"
        "        t.output.keep()\n"
        "        s.submit()\n"
        "        print(t.output.fetch().get_bytes().decode())\n")
    env = dict(os.environ, TMPDIR=str(long_tmp))
    result = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == "42"


class FakeTask:
    def __init__(self, number):
        self.key = (1, number)
        self.cpus = 1
        self.resources = None


async def outcomes(futures):
    import asyncio
    done = await asyncio.gather(*futures, return_exceptions=True)
    return [type(value).__name__ for value in done]


@pytest.mark.parametrize("how", ["dies", "killed", "stopped"])
def test_lost_executor_fails_its_running_call_and_returns_queued_ones(tmp_path, how):
    import asyncio

    async def scenario(pool):
        executor = await pool.acquire("py")
        assert executor.pipeline
        first = make_call(exit_now if how == "dies" else wait_forever, task_id=30)
        calls = [first] + [make_call(double, config={"args": args_bytes(i)},
                                     task_id=31 + i) for i in range(2)]
        futures = []
        for i, call in enumerate(calls):
            future = asyncio.get_running_loop().create_future()
            executor.send_call(call, FakeTask(30 + i), lambda *r, f=future: f.set_result(r),
                               future.set_exception)
            futures.append(future)
        if how != "dies":
            await asyncio.sleep(0.2)
            executor.kill(return_all=how == "stopped")
        result = await outcomes(futures)
        first_error = futures[0].exception()
        return result, str(first_error)

    result, first_error = run_pool(tmp_path, scenario)
    if how == "stopped":     # killed to stop another task: nothing fails, all run again
        assert result == ["CallReturned"] * 3
    else:
        assert result == ["ExecutorError", "CallReturned", "CallReturned"]
        assert f"Executor 'py' (id 1) terminated" in first_error


PIPELINE_EXECUTOR = r'''
# Reports in each result how many calls it had received but not answered when the call
# started (it reads everything the governor sent so far before each call).
import os, socket, sys, cbor2

sock = socket.socket(socket.AF_UNIX)
sock.connect(os.environ["RAIN_EXECUTOR_SOCKET"])

def send(kind, body):
    payload = cbor2.dumps([kind, body])
    sock.sendall(len(payload).to_bytes(4, "little") + payload)

buffer = b""
def read_available(block):
    global buffer
    sock.setblocking(block)
    try:
        data = sock.recv(1 << 16)
    except BlockingIOError:
        return
    finally:
        sock.setblocking(True)
    if not data:
        sys.exit(0)
    buffer += data

def take_frames():
    global buffer
    frames = []
    while len(buffer) >= 4:
        size = int.from_bytes(buffer[:4], "little")
        if len(buffer) < 4 + size:
            break
        frames.append(cbor2.loads(buffer[4:4 + size]))
        buffer = buffer[4 + size:]
    return frames

register = {"protocol": "rain-executor/1", "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
            "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]}
if sys.argv[1:] == ["pipeline"]:
    register["pipeline"] = True
send("register", register)
calls = []
while True:
    if not calls:
        read_available(True)
    read_available(False)
    calls += [body for kind, body in take_frames() if kind == "call"]
    if not calls:
        continue
    body = calls.pop(0)
    pending = len(calls) + 1
    location = ["memory", str(pending).encode()]
    if body["task"]["method"] == "bad":
        location = ["nowhere"]
    send("result", {"success": True,
                    "outputs": [{"location": location, "content_type": "text"}]})
'''


def pending_counts(client, task_type, count, chain=False):
    from rain.client import Task, blob

    with client.new_session() as s:
        tasks = []
        previous = blob("x")
        for _ in range(count):
            task = Task([previous], 1, task_type=task_type)
            task.keep_outputs()
            tasks.append(task)
            if chain:
                previous = task
        s.submit()
        s.wait_all()
        return [int(task.output.fetch().get_str()) for task in tasks]


def test_governor_queues_calls_only_for_pipelining_executors(make_cluster, tmp_path):
    script = tmp_path / "pipe.py"
    script.write_text(PIPELINE_EXECUTOR)
    config = tmp_path / "governor.toml"
    config.write_text(f"[executors.pipe]\ncommand = '{sys.executable} {script} pipeline'\n"
                      f"[executors.plain]\ncommand = '{sys.executable} {script}'\n")
    client = make_cluster([1], governor_config=str(config)).client()
    # Many small tasks: the local queue gets deep and calls queue up in the executor.
    assert max(pending_counts(client, "pipe/run", 600)) > 1
    # An executor that did not announce the capability gets one call at a time.
    assert set(pending_counts(client, "plain/run", 300)) == {1}
    # A chain never has a second task ready: nothing waits behind a call.
    assert set(pending_counts(client, "pipe/run", 30, chain=True)) == {1}
    # A result the governor cannot read fails its task with a clear error; the
    # executor is replaced and later work runs as before.
    from rain.client import Task, TaskException, blob
    with client.new_session() as s:
        Task([blob("x")], 1, task_type="pipe/bad")
        s.submit()
        with pytest.raises(TaskException, match="invalid output location"):
            s.wait_all()
    assert max(pending_counts(client, "pipe/run", 600)) > 1

