"""Python tasks (``@remote``) and the executor on a real cluster (SPEC §4, §5, §8)."""
import json
import os
import sys
import time
import warnings

import cloudpickle
import psutil
import pytest

from rain.client import (Input, InputDir, Output, OutputDir, RainException, RainWarning,
                         Remote, Task, TaskException, blob, directory, pickled, remote)
from rain.client.rpc.common import TaskState
from rain.common import DataInstance

# The functions below refer to module globals (Box, helpers): ship them by value, since
# executors cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fetch(session, task_or_obj):
    obj = task_or_obj.output if isinstance(task_or_obj, Task) else task_or_obj
    obj.keep()
    session.submit()
    return obj.fetch()


class Box:
    def __init__(self, item):
        self.item = item


# ------------------------------------------------------------------------------------------
# Decorator forms, calls and arguments

@remote
def add(ctx, a, b=10):
    return str(a + b)


@remote(outputs=1, name="renamed", cpus=2)
def two_cpus(ctx):
    return json.dumps({"cpus": ctx.spec.resources["cpus"], "type": ctx.spec.task_type})


def test_bare_and_parameterized_decorator(client):
    assert isinstance(add, Remote)
    assert add.__name__ == "add"
    with client.new_session() as s:
        t1 = add(1, 2)
        t2 = add(5)
        t3 = two_cpus()
        assert t1.task_type == "py/add"
        assert t3.task_type == "py/renamed" and t3.name == "renamed"
        assert t3.spec.resources["cpus"] == 2
        for t in (t1, t2, t3):
            t.keep_outputs()
        s.submit()
        assert t1.output.fetch().get_str() == "3"
        assert t2.output.fetch().get_str() == "15"
        result = t3.output.fetch()
        assert result.content_type == "text"
        assert json.loads(result.get_str()) == {"cpus": 2, "type": "py/renamed"}


def test_wrong_signature_raises_type_error(client):
    with client.new_session():
        with pytest.raises(TypeError, match=r"add\(\): missing a required argument: .a."):
            add()
        with pytest.raises(TypeError, match="positional arguments but 4 were given"):
            add(1, 2, 3)
        with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
            add(1, c=3)
        with pytest.raises(TypeError, match="multiple values for argument 'a'"):
            add(1, a=3)
    with pytest.raises(RainException, match="first argument"):
        remote(lambda: None)


@remote
def gather(ctx, items, mapping, box=None, *rest, **extra):
    parts = [items[0].get_str(), items[1][0].get_str(), mapping["k"].get_str(),
             box.item.get_str(), str(items[2]), str(len(ctx.spec.inputs))]
    parts += [r.get_str() for r in rest]
    parts += [f"{k}={v.get_str()}" for k, v in sorted(extra.items())]
    return ",".join(parts)


def test_nested_data_objects_in_arguments(client):
    with client.new_session() as s:
        a, b, c, d = blob("A"), blob("B"), blob("C"), blob("D")
        producer = add(40, 2)
        t = gather([a, [b], 7], {"k": c}, Box(producer), d, a, x=b)
        # function + a, b, c, producer's output, d (each object once)
        assert len(t.inputs) == 6
        assert fetch(s, t).get_str() == "A,B,C,42,7,6,D,A,x=B"


@remote
def length(ctx, data):
    return str(len(data))


def test_big_arguments_warn(client):
    with client.new_session():
        with pytest.warns(RainWarning, match="blob"):
            length(b"x" * (300 * 1024))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            length(b"x" * 1024)


def test_function_shipped_once_per_session(client):
    with client.new_session() as s:
        tasks = [add(i) for i in range(5)]
        function_objects = {t.inputs[0] for t in tasks}
        assert len(function_objects) == 1
        (function_obj,) = function_objects
        assert function_obj.is_kept() and function_obj.content_type == "cloudpickle"
        s.submit()
        s.wait_all()
        # a later submit reuses the kept function object
        t = add(100)
        assert t.inputs[0] is function_obj
        assert fetch(s, t).get_str() == "110"


# ------------------------------------------------------------------------------------------
# Return forms and outputs

@remote(outputs=7)
def every_form(ctx, passthrough):
    with open("file.txt", "w") as f:
        f.write("staged")
    return (b"raw", "text", ctx.blob({"x": 1}, encode="json"), ctx.stage_file("file.txt"),
            passthrough, ctx.pickled({1, 2}), ctx.blob("latin é", content_type="text-latin1"))


def test_every_return_form(client):
    with client.new_session() as s:
        source = blob([1, 2], encode="cbor")
        t = every_form(source)
        t.keep_outputs()
        s.submit()
        results = t.fetch_outputs()
        assert results[0].get_bytes() == b"raw" and not results[0].content_type
        assert results[1].content_type == "text" and results[1].get_str() == "text"
        assert results[2].content_type == "json" and results[2].load() == {"x": 1}
        assert results[3].get_bytes() == b"staged"
        assert results[4].content_type == "cbor" and results[4].load() == [1, 2]
        assert results[5].content_type == "pickle" and results[5].load() == {1, 2}
        assert results[6].content_type == "text-latin1"
        assert results[6].get_str() == "latin é"


@remote(outputs=("a", "b"))
def labeled(ctx, as_dict):
    if as_dict:
        return {"b": b"B", "a": b"A"}
    return [b"A", b"B"]


@remote(outputs=[Output("data", encode="json"), Output("raw")])
def with_output_items(ctx):
    return {"k": [1, 2]}, b"raw bytes"


@remote
def annotated(ctx) -> Output(encode="json"):
    return [1, "two"]


@remote
def annotated_many(ctx) -> (Output("p", encode="pickle"), Output("q")):
    return {"set": {3}}, "q"


@remote(auto_encode="pickle")
def auto_encoded(ctx, value):
    return value


def test_outputs_forms(client):
    with client.new_session() as s:
        t_list, t_dict = labeled(False), labeled(True)
        assert t_list.outputs.get_label(0) == "a"
        items = with_output_items()
        ann, ann_many = annotated(), annotated_many()
        auto = auto_encoded({"any": object.__name__})
        for t in (t_list, t_dict, items, ann, ann_many, auto):
            t.keep_outputs()
        s.submit()
        for t in (t_list, t_dict):
            assert t.outputs["a"].fetch().get_bytes() == b"A"
            assert t.outputs["b"].fetch().get_bytes() == b"B"
        assert items.outputs["data"].fetch().load() == {"k": [1, 2]}
        assert items.outputs["data"].content_type == "json"
        assert items.outputs["raw"].fetch().get_bytes() == b"raw bytes"
        assert ann.output.fetch().load() == [1, "two"]
        assert ann_many.outputs["p"].fetch().load() == {"set": {3}}
        assert ann_many.outputs["q"].fetch().get_str() == "q"
        assert auto.output.spec.content_type == "pickle"
        assert auto.output.fetch().load() == {"any": "object"}


def test_per_call_overrides(client):
    with client.new_session() as s:
        t1 = auto_encoded([1, 2], output=Output("lst", encode="json"), name="custom")
        t2 = labeled(False, outputs=["x", "y"])
        t3 = auto_encoded("plain", outputs=1)
        assert t1.name == "custom" and t1.output.label == "lst"
        assert t2.outputs.get_label(1) == "y"
        for t in (t1, t2, t3):
            t.keep_outputs()
        s.submit()
        assert t1.output.fetch().content_type == "json"
        assert t1.output.fetch().load() == [1, 2]
        assert t2.outputs["y"].fetch().get_bytes() == b"B"
        assert t3.output.fetch().load() == "plain"
        with pytest.raises(RainException, match="either"):
            auto_encoded(1, output="a", outputs=["b"])


@remote
def returns_int(ctx):
    return 42


def test_bad_return_type_fails_with_clear_message(client):
    with client.new_session() as s:
        t = returns_int()
        s.submit()
        with pytest.raises(TaskException, match=r"output 0.*'int'.*Output\(encode"):
            s.wait_all()


@remote(outputs=[Output("j", content_type="json")])
def wrong_content_type(ctx):
    return ctx.blob("text, not json")


@remote(outputs=2)
def wrong_count(ctx):
    return b"only one"


def test_output_content_type_and_count_checked(client):
    with client.new_session() as s:
        wrong_content_type()
        s.submit()
        with pytest.raises(TaskException, match="'text' is not a sub-type of the declared "
                                                "'json'"):
            s.wait_all()
    with client.new_session() as s:
        wrong_count()
        s.submit()
        with pytest.raises(TaskException, match="2 outputs"):
            s.wait_all()


# ------------------------------------------------------------------------------------------
# Inputs: DataInstance, loading, content types

@remote(inputs={"x": Input(load=True), "y": Input(content_type="json")})
def declared_inputs(ctx, x, y, z):
    assert isinstance(y, DataInstance) and isinstance(z, DataInstance)
    return json.dumps([x, y.load(), z.content_type])


@remote(auto_load=True)
def auto_loaded(ctx, a, b):
    return json.dumps([a, b.get_str() if isinstance(b, DataInstance) else "loaded"])


@remote(inputs=[Input(load=True, content_type="json")])
def load_positional(ctx, value):
    return json.dumps(value)


@remote(inputs={"values": Input(load=True)})
def total(ctx, values, scale):
    return str(sum(values) * scale)


def test_input_declaration_applies_to_nested_objects(client):
    with client.new_session() as s:
        t = total([blob(1, encode="json"), pickled(2)], scale=10)
        assert fetch(s, t).get_str() == "30"


def test_input_loading_and_content_types(client):
    with client.new_session() as s:
        t1 = declared_inputs(pickled(("p", 1)), blob({"j": 1}, encode="json"),
                             blob("txt"))
        t2 = auto_loaded(blob([5], encode="json"), blob(b"raw"))
        t3 = load_positional(blob(b'{"raw": "json"}'))  # unknown type read as declared
        for t in (t1, t2, t3):
            t.keep_outputs()
        s.submit()
        assert t1.output.fetch().get_str() == json.dumps([["p", 1], {"j": 1}, "text"])
        assert t2.output.fetch().get_str() == json.dumps([[5], "raw"])
        assert t3.output.fetch().get_str() == json.dumps({"raw": "json"})
    with client.new_session():
        with pytest.raises(RainException, match="expects content type 'json'"):
            load_positional(blob("text is not json"))


@remote
def untyped_text(ctx):
    return ctx.blob("not json")


def test_input_content_type_checked_at_run_time(client):
    with client.new_session() as s:
        t = load_positional(untyped_text())
        s.submit()
        with pytest.raises(TaskException, match="content type 'text', expected 'json'"):
            s.wait_all()


@remote(outputs=[Output(), Output(), Output(), Output(content_type="user/thing"),
                 Output(content_type="mime/text"), Output(content_type="pickle")])
def content_types(ctx, table_in):
    import pyarrow as pa
    table = table_in.load()
    doubled = pa.table({"n": [v * 2 for v in table.column("n").to_pylist()]})
    return (ctx.blob(doubled, encode="arrow"), ctx.blob({"c": [1, b"2"]}, encode="cbor"),
            ctx.blob("ž", content_type="text-utf-16"), b"thing",
            ctx.blob(b"a,b", content_type="mime/text/csv"),
            ctx.blob(lambda v: v + 1, encode="cloudpickle"))


def test_content_types_round_trip(client):
    import pyarrow as pa
    with client.new_session() as s:
        table = pa.table({"n": [1, 2, 3]})
        t = content_types(blob(table, encode="arrow"))
        t.keep_outputs()
        s.submit()
        arrow, cbor, text, user, mime, cloud = t.fetch_outputs()
        assert user.content_type == "user/thing" and user.get_bytes() == b"thing"
        assert mime.content_type == "mime/text/csv"
        assert cloud.content_type == "cloudpickle" and cloud.load()(1) == 2
        assert arrow.content_type == "arrow"
        assert arrow.load().equals(pa.table({"n": [2, 4, 6]}))
        assert cbor.content_type == "cbor" and cbor.load() == {"c": [1, b"2"]}
        assert text.content_type == "text-utf-16" and text.get_str() == "ž"


# ------------------------------------------------------------------------------------------
# ctx

@remote(outputs=2)
def uses_ctx(ctx, x):
    ctx.info.user["answer"] = 42
    ctx.debug("started {} with {}", ctx.function.__name__, x.get_str())
    spec = ctx.spec
    return json.dumps({"id": list(spec.id), "type": spec.task_type, "name": spec.name,
                       "inputs": len(spec.inputs), "outputs": len(spec.outputs),
                       "resources": spec.resources, "function": ctx.function.__name__}), \
        ctx.pickled(ctx.info.debug)


def test_ctx_spec_info_debug_function(client):
    with client.new_session() as s:
        t = uses_ctx(blob("in"), name="my/task")
        t.keep_outputs()
        s.submit()
        t.wait()
        described = json.loads(t.outputs[0].fetch().get_str())
        assert described == {"id": list(t.id), "type": "py/uses_ctx", "name": "my/task",
                             "inputs": 2, "outputs": 2, "resources": {"cpus": 1},
                             "function": "uses_ctx"}
        assert t.outputs[1].fetch().load() == "started uses_ctx with in"
        t.update()
        assert t.state == TaskState.finished
        assert t.info.user == {"answer": 42}
        assert "started uses_ctx with in" in t.info.debug
        assert t.info.governor


@remote
def failing(ctx, value):
    ctx.debug("about to fail with {}", value)
    return helper_that_raises(value)


def helper_that_raises(value):
    raise ValueError(f"bad value {value}")


def test_exception_gives_traceback_debug_log_and_creation_place(client):
    with client.new_session() as s:
        t = failing(13)
        line = sys._getframe().f_lineno - 1
        s.submit()
        with pytest.raises(TaskException) as info:
            s.wait_all()
        message = str(info.value)
        assert "Traceback (most recent call last)" in message
        assert "in helper_that_raises" in message
        assert "ValueError: bad value 13" in message
        assert "about to fail with 13" in message
        assert f"{__file__}:{line}" in message
        assert "runner.py" not in message      # no executor frames
        with pytest.raises(TaskException, match="bad value 13"):
            t.update()


# ------------------------------------------------------------------------------------------
# Executors: reuse, killing, failures

@remote(auto_load=True, auto_encode="pickle")
def chain_pid(ctx, previous):
    return previous + [(os.getpid(), id(ctx.function))]


@remote
def pid(ctx):
    return str(os.getpid())


def test_chain_runs_in_one_executor_process(client):
    with client.new_session() as s:
        t = pickled([])
        for _ in range(30):
            t = chain_pid(t)
        results = fetch(s, t).load()
    assert len(results) == 30
    assert len(set(results)) == 1        # one process, one deserialized function
    assert results[0][0] != os.getpid()
    # Another session ships the same function again: the executor finds it by content.
    with client.new_session() as s:
        again = fetch(s, chain_pid(pickled([]))).load()
    assert again == results[:1]


def test_failed_task_does_not_lose_its_executor(client):
    with client.new_session() as s:
        first = fetch(s, pid()).get_str()
    with client.new_session() as s:
        failing(1)
        s.submit()
        with pytest.raises(TaskException):
            s.wait_all()
    with client.new_session() as s:
        assert fetch(s, pid()).get_str() == first


@remote
def sleeper(ctx, path):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(60)
    open(path + ".done", "w").close()
    return b""


def _gone(process_id):
    try:
        return psutil.Process(process_id).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_closing_session_kills_executor_and_next_task_starts_quickly(client, tmp_path):
    marker = str(tmp_path / "pid")
    session = client.new_session()
    with session.bind_only():
        sleeper(marker)
    session.submit()
    deadline = time.monotonic() + 10
    while not os.path.exists(marker):
        assert time.monotonic() < deadline, "the sleeping task did not start"
        time.sleep(0.01)
    executor_pid = int(open(marker).read())
    session.close()
    with client.new_session() as s:
        t = pid()
        t.output.keep()
        s.submit()
        new_pid = int(t.output.fetch().get_str())
    assert new_pid != executor_pid
    # The next task did not wait for the closed session's task to end by itself.
    assert not os.path.exists(marker + ".done")
    deadline = time.monotonic() + 30
    while not _gone(executor_pid):
        assert time.monotonic() < deadline, "the executor of the closed session survived"
        time.sleep(0.01)
    assert not os.path.exists(marker + ".done")


def test_executor_dying_before_registering_fails_task(make_cluster, tmp_path):
    config = tmp_path / "governor.toml"
    config.write_text('[executors.bad]\ncommand = "sh -c \'echo boom; exit 3\'"\n')
    cluster = make_cluster([1], governor_config=str(config))
    client = cluster.client()
    with client.new_session() as s:
        Task([], 1, task_type="bad/x")
        s.submit()
        with pytest.raises(TaskException, match=r"(?s)exit code 3.*boom"):
            s.wait_all()
    with client.new_session() as s:   # the governor is fine afterwards
        assert fetch(s, add(1, 1)).get_str() == "2"


# ------------------------------------------------------------------------------------------
# Directories

@remote(outputs=[OutputDir("tree")])
def make_tree(ctx, name):
    time.sleep(0.3)     # keep both producers running at once (one per governor)
    os.makedirs("tree/sub")
    with open("tree/name.txt", "w") as f:
        f.write(name)
    with open("tree/sub/data.bin", "wb") as f:
        f.write(name.encode() * 3)
    return ctx.stage_directory("tree")


@remote(inputs={"left": InputDir(), "right": InputDir()}, outputs=[OutputDir("merged")])
def merge_trees(ctx, left, right, constant):
    assert left.data_type.value == "dir" and os.path.isdir(left.path)
    os.mkdir("merged")
    for label, tree in (("left", left), ("right", right), ("const", constant)):
        tree.write(os.path.join("merged", label))
    return ctx.stage_directory("merged")


@remote
def passthrough_dir(ctx, tree) -> OutputDir():
    return tree


def test_directories_across_two_governors(make_cluster, tmp_path):
    cluster = make_cluster([1, 1])
    client = cluster.client()
    src = tmp_path / "src"
    src.mkdir()
    (src / "c.txt").write_text("const")
    with client.new_session() as s:
        t1, t2 = make_tree("one"), make_tree("two")
        merged = merge_trees(t1, t2, directory(str(src)))
        same = passthrough_dir(merged)
        same.output.keep()
        merged.output.keep()
        s.submit()
        s.wait_all()
        s.update([t1, t2])
        assert t1.info.governor != t2.info.governor
        out = tmp_path / "out"
        result = same.output.fetch()
        assert result.data_type.value == "dir"
        result.write(str(out))
    assert (out / "left" / "name.txt").read_text() == "one"
    assert (out / "right" / "sub" / "data.bin").read_bytes() == b"twotwotwo"
    assert (out / "const" / "c.txt").read_text() == "const"


@remote
def wants_tree(ctx, tree) -> OutputDir():
    return b"not a directory"


def test_directory_output_needs_a_directory(client):
    with client.new_session() as s:
        wants_tree(blob("x"))
        s.submit()
        with pytest.raises(TaskException, match="stage_directory"):
            s.wait_all()
    with client.new_session():
        with pytest.raises(RainException, match="InputDir"):
            merge_trees(blob("a"), blob("b"), blob("c"))


# ------------------------------------------------------------------------------------------
# Calls queued in an executor (many small tasks on one CPU)

@remote
def square(ctx, x):
    return str(x * x)


@remote
def hold(ctx, started, go, then_die):
    """Signal ``started``, wait for ``go`` (at most a minute), then return or die."""
    with open(started, "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    if then_die:
        os._exit(1)
    return b""


def assigned_tasks(cluster):
    import urllib.request
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.http_port}/api/governors",
                                     headers=cluster.http_headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return sum(g.get("assigned_tasks", 0) for g in json.loads(response.read()))


def queue_behind_a_held_task(cluster, tmp_path, then_die):
    """Session A holds the only CPU with one task while session B's small tasks queue in
    the same executor behind it. Returns (A, B, B's tasks, the file that releases A)."""
    client = cluster.client()
    with client.new_session() as warm_up:       # the server learns that tasks are tiny
        for i in range(300):
            square(i)
        warm_up.submit()
        warm_up.wait_all()
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    a, b = client.new_session(), client.new_session()
    with a.bind_only():
        hold(started, go, then_die)
    a.submit()
    deadline = time.monotonic() + 30
    while not os.path.exists(started):
        assert time.monotonic() < deadline, "the holding task did not start"
        time.sleep(0.005)
    with b.bind_only():
        # No retries: a queued call that failed instead of coming back fails the test.
        b_tasks = [square(i, retries=0) for i in range(100)]
        for task in b_tasks:
            task.output.keep()
    b.submit()
    # B's calls go to the governor beside A's running one (and from there to the queue of
    # A's executor, which the governor fills at once).
    deadline = time.monotonic() + 60
    while assigned_tasks(cluster) < 2:
        assert time.monotonic() < deadline, "no call of B was sent to the governor"
        time.sleep(0.01)
    time.sleep(0.3)
    return a, b, b_tasks, go


def check_b(b, b_tasks):
    b.wait_all()
    assert [t.output.fetch().get_str() for t in b_tasks] == \
        [str(i * i) for i in range(len(b_tasks))]
    b.close()


def test_stopping_a_session_returns_queued_calls_of_others(make_cluster, tmp_path):
    a, b, b_tasks, _ = queue_behind_a_held_task(make_cluster([1]), tmp_path, False)
    a.close()
    check_b(b, b_tasks)


def test_executor_death_fails_its_task_and_returns_queued_calls(make_cluster, tmp_path):
    a, b, b_tasks, go = queue_behind_a_held_task(make_cluster([1]), tmp_path, True)
    open(go, "w").close()
    with pytest.raises(TaskException, match=r"Executor 'py' \(id \d+\) terminated"):
        a.wait_all()
    a.close()
    check_b(b, b_tasks)
