"""The C++ and Rust tasklibs (``tasklibs/``): each library and its example executor is
built (once per test run, shared by the xdist workers), registered in a governor config,
and its tasks run on a real cluster, mixed with built-in and Python tasks.

The same example tasks exist in both languages, so every test runs for ``cppex`` (C++)
and ``rustex`` (Rust).
"""
import fcntl
import os
import pathlib
import shutil
import sys

import pytest

from rain.client import OutputDir, Task, TaskException, blob, remote, tasks

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tasklibs"))
import build as tasklibs_build  # noqa: E402

pytestmark = pytest.mark.timeout(900)

EXECUTORS = ["cppex", "rustex"]


def _tools_missing():
    missing = [t for t in ("cmake", "g++") if not shutil.which(t)]
    if not os.path.exists("/usr/include/cbor.h"):
        missing.append("libcbor-dev")
    try:
        tasklibs_build.find_cargo()
    except RuntimeError:
        missing.append("cargo")
    if not os.path.isdir("/usr/share/cargo/registry/serde_cbor-0.11.2"):
        missing.append("librust-serde-cbor-dev")
    return missing


@pytest.fixture(scope="session")
def executables(tmp_path_factory):
    """``{name: executable}``, built once in the directory all xdist workers share (one
    builds under a lock, the others wait for it)."""
    missing = _tools_missing()
    if missing:
        pytest.fail(f"the tasklibs need {', '.join(missing)} (installed by .ci/run)")
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base is a directory of this run's own base
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "tasklibs"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "done"
        if not done.exists():
            if (shared / "bin").exists():
                shutil.rmtree(shared / "bin")
            tasklibs_build.build_all(shared)
            done.touch()
    return {"cppex": shared / "bin" / "rain-cpp-example",
            "rustex": shared / "bin" / "rain-rust-example"}


@pytest.fixture
def native(make_cluster, executables, tmp_path):
    """A client of a cluster (one governor, 2 CPUs) with both example executors."""
    config = tasklibs_build.write_config(tmp_path / "governor.toml", executables)
    cluster = make_cluster([2], governor_config=str(config))
    return cluster.client()


@pytest.mark.parametrize("name", EXECUTORS)
def test_hello_with_memory_and_file_inputs(native, name, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * (3 << 20))          # above the governor's in-memory limit
    with native.new_session() as s:
        small = Task([blob("world")], 1, task_type=f"{name}/hello")
        from_file = Task([tasks.Load(str(big))], 1, task_type=f"{name}/hello")
        small.keep_outputs()
        from_file.keep_outputs()
        s.submit()
        out = small.output.fetch()
        assert out.get_str() == "Hello world!"
        assert out.content_type == "text"
        assert from_file.output.fetch().get_str() == "Hello " + "x" * (3 << 20) + "!"
        small.update()
        from_file.update()
        assert small.info.user == {"in_memory": True}
        assert from_file.info.user == {"in_memory": False}
        assert "greeting 5 bytes" in small.info.debug


@pytest.mark.parametrize("name", EXECUTORS)
def test_file_output_of_a_file_transform(native, name, tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "image.raw"
    path.write_bytes(data)
    with native.new_session() as s:
        source = tasks.Load(str(path))
        inverted = Task([source], 1, task_type=f"{name}/invert")
        back = Task([inverted], 1, task_type=f"{name}/invert")
        small = Task([blob(b"\x00\x10", content_type="user/raw-image")], 1,
                     task_type=f"{name}/invert")
        for t in (inverted, back, small):
            t.keep_outputs()
        s.submit()
        assert inverted.output.fetch().get_bytes() == bytes(255 - b for b in data)
        assert back.output.fetch().get_bytes() == data
        out = small.output.fetch()
        assert out.get_bytes() == b"\xff\xef"
        assert out.content_type == "user/raw-image"


@pytest.mark.parametrize("name", EXECUTORS)
def test_directory_output_and_input(native, name):
    with native.new_session() as s:
        split = Task([blob("a\nb\nc")], [OutputDir("lines")], task_type=f"{name}/split_lines")
        listed = Task([split], 1, task_type=f"{name}/list_dir")
        piece = tasks.SliceDirectory(split, "line-1")
        for t in (listed, piece):
            t.keep_outputs()
        s.submit()
        assert listed.output.fetch().get_str() == "line-0\nline-1\nline-2\n"
        assert piece.output.fetch().get_bytes() == b"b"


@pytest.mark.parametrize("name", EXECUTORS)
def test_pass_through_and_config(native, name):
    with native.new_session() as s:
        source = blob("abc", content_type="text")
        same = Task([source], 1, task_type=f"{name}/pass")
        repeated = Task([same], 1, task_type=f"{name}/repeat",
                        config={"times": 3, "separator": "-"}, user_spec={"tag": [1, "a"]})
        default = Task([same], 1, task_type=f"{name}/repeat")
        for t in (same, repeated, default):
            t.keep_outputs()
        s.submit()
        assert same.output.fetch().get_bytes() == b"abc"
        assert same.output.fetch().content_type == "text"
        assert repeated.output.fetch().get_str() == "abc-abc-abc"
        assert default.output.fetch().get_str() == "abc abc"
        repeated.update()
        assert repeated.info.user == {"length": 11, "tag": [1, "a"]}


@pytest.mark.parametrize("name", EXECUTORS)
@pytest.mark.parametrize("method, message", [
    ("fail", "went wrong here"),
    ("throw", None),
    ("nosuchtask", "has no task 'nosuchtask'"),
])
def test_a_failing_task_fails_only_itself(native, name, method, message):
    with native.new_session() as s:
        Task([blob("x")], 1, task_type=f"{name}/{method}",
             config={"message": "went wrong here"})
        s.submit()
        with pytest.raises(TaskException) as info:
            s.wait_all()
    text = str(info.value)
    if message:
        assert message in text
    if method == "throw":      # an exception / a panic, with what it said
        assert ("exception in task 'throw'" in text) if name == "cppex" else \
            ("task 'throw' panicked" in text)
    if method == "fail":
        assert "about to fail" in text      # the debug log goes with the error
    # the same executor (not a new one) goes on serving tasks
    with native.new_session() as s:
        t = Task([blob("again")], 1, task_type=f"{name}/hello")
        t.keep_outputs()
        s.submit()
        assert t.output.fetch().get_str() == "Hello again!"


@pytest.mark.parametrize("name", EXECUTORS)
def test_a_crashing_executor_fails_its_task_with_its_output(native, name):
    with native.new_session() as s:
        Task([blob("x")], 1, task_type=f"{name}/crash")
        s.submit()
        with pytest.raises(TaskException) as info:
            s.wait_all()
    text = str(info.value)
    assert "terminated" in text and f"{name}: crashing on purpose" in text
    with native.new_session() as s:       # a new executor takes over
        t = Task([blob("after")], 1, task_type=f"{name}/hello")
        t.keep_outputs()
        s.submit()
        assert t.output.fetch().get_str() == "Hello after!"


@remote()
def py_increment(ctx, value):
    return str(int(value.get_bytes()) + 1)


@pytest.mark.parametrize("name", EXECUTORS)
def test_chain_of_1000_tasks_mixed_with_python(native, name):
    with native.new_session() as s:
        value = blob("0")
        for i in range(1000):
            value = Task([value], 1, task_type=f"{name}/increment").output
        last = py_increment(value)
        last.keep_outputs()
        s.submit()
        assert last.output.fetch().get_str() == "1001"


@pytest.mark.parametrize("name", EXECUTORS)
def test_burst_of_10000_tasks(native, name):
    with native.new_session() as s:
        sources = [blob(str(i)) for i in range(100)]
        burst = [Task([sources[i % 100]], 1, task_type=f"{name}/increment")
                 for i in range(10_000)]
        total = tasks.Concat([t.output for t in burst[::1000]])
        total.keep_outputs()
        s.submit()
        assert total.output.fetch().get_bytes() == b"".join(
            str(i % 100 + 1).encode() for i in range(0, 10_000, 1000))


def test_executor_started_by_hand_says_what_it_is(executables):
    import subprocess
    for name, path in executables.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAIN_EXECUTOR_")}
        result = subprocess.run([str(path)], env=env, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 1
        assert f"[executors.{name}]" in result.stderr
