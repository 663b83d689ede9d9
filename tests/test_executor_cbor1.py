"""Executors built for Rain 0.4 (protocol ``cbor-1``) run unchanged: a small executor
that speaks only Rain 0.4's message shapes (tests/executors/cbor1_executor.py) on a real
cluster."""
import os
import sys

import pytest

from rain.client import Task, TaskException, blob, tasks

EXECUTOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "executors",
                        "cbor1_executor.py")


def cbor1_task(method, *inputs):
    class Cbor1(Task):
        TASK_TYPE = f"cbor1/{method}"
    return Cbor1(inputs=inputs, outputs=0 if method == "fail" else 1)


@pytest.fixture
def cbor1_client(make_cluster, tmp_path):
    config = tmp_path / "governor.toml"
    config.write_text(f'[executors.cbor1]\ncommand = "{sys.executable} {EXECUTOR}"\n')
    return make_cluster([2], governor_config=str(config)).client()


def test_hello_memory_and_file_inputs(cbor1_client):
    with cbor1_client.new_session() as s:
        memory = cbor1_task("hello", blob("world"))
        big = blob(b"x" * 100_000)          # large constants reach it as files
        from_file = cbor1_task("hello", tasks.Concat((big, blob(b"!"))))
        for t in (memory, from_file):
            t.output.keep()
        s.submit()
        assert memory.output.fetch().get_bytes() == b"Hello world"
        assert from_file.output.fetch().get_bytes() == b"Hello " + b"x" * 100_000 + b"!"


def test_chain_pass_through_files_and_cache(cbor1_client):
    with cbor1_client.new_session() as s:
        data = blob(b"abc")
        t = data
        for i in range(10):
            method = ("to_file", "pass", "keep", "hello")[i % 4]
            t = cbor1_task(method, t)
        t.output.keep()
        passed = cbor1_task("pass", blob(b"same"))
        passed.output.keep()
        s.submit()
        assert t.output.fetch().get_bytes() == b"HELLO HELLO ABC"
        assert passed.output.fetch().get_bytes() == b"same"
        passed.output.update()
        assert passed.output.info.user == {"seen": True}


def test_failure(cbor1_client):
    with cbor1_client.new_session() as s:
        cbor1_task("fail", blob("reason"))
        s.submit()
        with pytest.raises(TaskException, match="the task said no: reason"):
            s.wait_all()


def test_panic_mid_call_fails_with_stderr(cbor1_client):
    with cbor1_client.new_session() as s:
        t = cbor1_task("panic", blob("x"))
        t.output.keep()
        s.submit()
        with pytest.raises(TaskException) as info:
            s.wait_all()
    message = str(info.value)
    assert "stderr" in message and "panicked at 'index out of bounds'" in message
    # the governor goes on: a new executor serves the next session
    with cbor1_client.new_session() as s:
        t = cbor1_task("hello", blob("again"))
        t.output.keep()
        s.submit()
        assert t.output.fetch().get_bytes() == b"Hello again"


def test_burst_of_100_tasks(cbor1_client):
    with cbor1_client.new_session() as s:
        shared = blob(b"shared")
        kept = [cbor1_task("keep", shared) for _ in range(50)]
        hellos = [cbor1_task("hello", blob(str(i))) for i in range(50)]
        for t in kept + hellos:
            t.output.keep()
        s.submit()
        s.wait_all()
        assert all(t.output.fetch().get_bytes() == b"shared" for t in kept)
        assert [t.output.fetch().get_bytes() for t in hellos] == \
            [b"Hello " + str(i).encode() for i in range(50)]
    # the session's end drops cached objects: the executor checks that it only gets
    # drop_cached for what it reported; a new session still works on the same executors
    with cbor1_client.new_session() as s:
        t = cbor1_task("hello", blob("after"))
        t.output.keep()
        s.submit()
        assert t.output.fetch().get_bytes() == b"Hello after"
