"""Programs written for Rain 0.4's Python client, in the style of its own test programs,
run against a real cluster. Where a behaviour depends on file permissions, the cluster
runs as a non-root user (``rain_user``)."""
import gc
import os
import pickle
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings

import cloudpickle
import pytest

from rain.client import (Input, Output, Program, RainException,
                         RainWarning, Task, TaskException, blob, remote, tasks)
from rain.client.session import get_active_session
from rain.common import LabeledList
from rain.common.errors import SessionException

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER = "rain-compat-test"


# ------------------------------------------------------------------------------------------
# Running a program as a non-root user

def _ensure_user():
    """A plain user for permission-dependent behaviour; None when it cannot exist here."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name     # already not root
    try:
        pwd.getpwnam(USER)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--no-create-home",
                                 "--shell", "/usr/sbin/nologin", USER],
                                capture_output=True)
        if result.returncode not in (0, 9):     # 9: made meanwhile by a parallel test
            return None
    return USER


def _site_packages():
    import site
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def _interpreter_for(user):
    """This Python, or the system's of the same version where this one is not reachable
    by ``user`` (a virtualenv inside root's home, say)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.path.exists(candidate):
            continue
        if os.geteuid() != 0:
            return candidate
        probe = subprocess.run(["runuser", "-u", user, "--", candidate, "-c", "import sys"],
                               capture_output=True)
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture
def as_plain_user():
    """``run(code)``: run Python ``code`` as a non-root user with a local cluster of its
    own (``cluster.client()`` in ``client``); returns its stdout."""
    user = _ensure_user()
    if user is None:
        pytest.skip("cannot create a non-root user on this machine (useradd failed)")
    interpreter = _interpreter_for(user)
    if interpreter is None:
        pytest.skip(f"no Python {sys.version_info[0]}.{sys.version_info[1]} that user "
                    f"{user!r} may run")
    home = tempfile.mkdtemp(prefix="rain-compat-")
    os.chmod(home, 0o777)

    def run(code):
        script = os.path.join(home, "program.py")
        with open(script, "w") as f:
            f.write("from rain.local_cluster import LocalCluster\n"
                    "with LocalCluster(governors=[1], workdir=%r) as cluster:\n"
                    "    client = cluster.client()\n" % os.path.join(home, "cluster"))
            f.write(textwrap.indent(textwrap.dedent(code), "    "))
        os.chmod(script, 0o644)
        env = {"PATH": os.environ["PATH"], "HOME": home, "TMPDIR": home,
               "PYTHONPATH": os.pathsep.join([ROOT] + _site_packages())}
        command = [interpreter, script]
        if os.geteuid() == 0:
            command = ["runuser", "-u", user, "--"] + command
        result = subprocess.run(command, env=env, cwd=home, capture_output=True,
                                timeout=240)
        assert result.returncode == 0, result.stderr.decode()[-4000:]
        return result.stdout.decode()

    yield run
    shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# 1. Input and output at the same path

def test_input_and_output_at_same_path(as_plain_user):
    out = as_plain_user("""
        from rain.client import tasks, blob, Input, Output, InputDir, OutputDir, Program
        from rain.client import TaskException
        with client.new_session() as s:
            o = blob(b"abc")
            same = tasks.Execute("true", input_paths=[Input("x", dataobj=o)],
                                 output_paths=[Output("x")])
            over = tasks.Execute(["/bin/sh", "-c", "rm -f x; echo new > x"],
                                 input_paths=[Input("x", dataobj=o)],
                                 output_paths=[Output("x")])
            private = tasks.Execute(["/bin/sh", "-c", "echo xyz > x"],
                                    input_paths=[Input("x", dataobj=o, write=True)],
                                    output_paths=[Output("x")])
            d = tasks.MakeDirectory({"a.txt": blob(b"A")})
            dsame = tasks.Execute("true", input_paths=[InputDir("d", dataobj=d)],
                                  output_paths=[OutputDir("d")])
            prog = Program(["/bin/sh", "-c", "cat d > /dev/null"],
                           input_paths=[Input("d")], output_paths=[Output("d")])
            p = prog(d=o)
            o.keep()
            for t in (same, over, private, dsame, p):
                t.keep_outputs()
            s.submit()
            s.wait_all()
            print(same.output.fetch().get_bytes())
            print(over.output.fetch().get_bytes())
            print(private.output.fetch().get_bytes())
            print(o.fetch().get_bytes())
            print(sorted(dsame.output.fetch().get_tar_members()) if hasattr(
                dsame.output.fetch(), "get_tar_members") else "dir ok")
            print(p.output.fetch().get_bytes())
        with client.new_session() as s:
            t = tasks.Execute(["/bin/sh", "-c", "echo xyz > x"],
                              input_paths=[Input("x", dataobj=blob(b"abc"))],
                              output_paths=[Output("x")])
            t.output.keep()
            s.submit()
            try:
                s.wait_all()
                print("readonly write passed")
            except TaskException:
                print("readonly write failed")
    """)
    lines = out.splitlines()
    assert lines[0] == "b'abc'"
    assert lines[1] == "b'new\\n'"
    assert lines[2] == "b'xyz\\n'"
    assert lines[3] == "b'abc'"
    assert lines[5] == "b'abc'"
    assert lines[6] == "readonly write failed"


# ------------------------------------------------------------------------------------------
# 2. Output paths inside an input directory

def test_outputs_inside_input_directory(as_plain_user):
    out = as_plain_user("""
        from rain.client import tasks, blob, InputDir, Output, OutputDir
        with client.new_session() as s:
            d = tasks.MakeDirectory({"a/x.txt": blob(b"X"), "b.txt": blob(b"B")})
            t = tasks.Execute(["/bin/sh", "-c", "find ./mydir | sort; echo hi > mydir/f.txt"],
                              input_paths=[InputDir("mydir", dataobj=d)],
                              output_paths=[Output("f", path="mydir/f.txt"),
                                            OutputDir("a", path="mydir/a")],
                              stdout=True)
            t.keep_outputs()
            d.output.keep()
            s.submit()
            s.wait_all()
            print(t.outputs["f"].fetch().get_bytes())
            print(t.outputs["stdout"].fetch().get_str().split())
            print(d.output.fetch().data_type)
    """)
    lines = out.splitlines()
    assert lines[0] == "b'hi\\n'"
    assert "./mydir/a/x.txt" in lines[1] and "./mydir/b.txt" in lines[1]


def test_a_plain_users_program_cannot_change_its_inputs(as_plain_user):
    """Its program runs as the owner of the store's files, so file modes alone would not
    stop it: it makes its inputs writable again and writes them, a file and a file in a
    directory, each kept in the governor's memory until a program first needs a file."""
    out = as_plain_user("""
        import os
        from rain.client import tasks, blob, directory, Input, InputDir
        os.mkdir("leaves")
        with open("leaves/f", "w") as f:
            f.write("leaf")
        spoil = ("chmod -R u+w data tree $(readlink -f data) $(readlink -f tree) "
                 "2>/dev/null; echo evil > data; echo evil > tree/f; "
                 "echo evil > \\"$(readlink -f data)\\"; "
                 "echo evil > \\"$(readlink -f tree)/f\\"; true")
        with client.new_session() as s:
            small = blob(b"small")
            big = blob(b"b" * 5_000_000)
            tree = directory("leaves")
            for obj in (small, big, tree):
                obj.keep()
            for data in (small, big):
                tasks.Execute(["sh", "-c", spoil],
                              input_paths=[Input("data", dataobj=data),
                                           InputDir("tree", dataobj=tree)])
            s.submit()
            s.wait_all()
            # Read back as the governor's next programs see them, from its files
            # (fetch() may answer from its memory).
            readers = [tasks.Execute(["sh", "-c", "cat - tree/f"], stdin=data,
                                     input_paths=[InputDir("tree", dataobj=tree)],
                                     stdout=True)
                       for data in (small, big)]
            for reader in readers:
                reader.output.keep()
            s.submit()
            print(readers[0].output.fetch().get_bytes())
            print(readers[1].output.fetch().get_bytes() == b"b" * 5_000_000 + b"leaf")
    """)
    assert out.splitlines() == ["b'smallleaf'", "True"]


def test_a_plain_users_python_task_may_return_its_input_directory(as_plain_user):
    """The governor stores a copy of the read-only stored directory: moving that copy
    into the store needs write permission on it, which root has without asking."""
    out = as_plain_user("""
        from rain.client import remote, tasks, blob, InputDir, OutputDir

        @remote(inputs=[InputDir("tree")], outputs=[OutputDir("same")])
        def same(ctx, tree):
            return tree

        with client.new_session() as s:
            made = tasks.MakeDirectory({"f": blob(b"leaf")})
            back = same(made)
            back.output.keep()
            s.submit()
            back.output.fetch().write("back")
            print(open("back/f").read())
    """)
    assert out.splitlines() == ["leaf"]


# ------------------------------------------------------------------------------------------
# 3. Custom task classes

class Hello(Task):
    TASK_TYPE = "buildin/concat"


def test_custom_task_class(client):
    with client.new_session() as s:
        t = Hello(inputs=(blob("a"), blob("b")), outputs=1)
        assert t.task_type == "buildin/concat"
        t.output.keep()
        s.submit()
        assert t.output.fetch().get_bytes() == b"ab"
        with pytest.raises(RainException):
            Task(inputs=(), outputs=1)


# ------------------------------------------------------------------------------------------
# 4. Task and object info is fetched, not pushed

@remote()
def with_info(ctx, a):
    assert ctx.info.user is not None
    ctx.info.user["first"] = 1
    a.info.user["new"] = "value"
    return a


def test_info_is_fetched(client):
    with client.new_session() as s:
        t = with_info(blob(b"data"))
        t.output.keep()
        s.submit()
        s.wait_all()
        assert t.info is None
        t.update()
        assert t.info.governor
        assert t.info.duration is not None and t.info.start_time
        assert t.info.user == {"first": 1}
        t.output.update()
        assert t.output.info.user == {"new": "value"}
        assert t.output.fetch().get_bytes() == b"data"


# ------------------------------------------------------------------------------------------
# 5. Active sessions

def test_active_session_nesting(client):
    with pytest.raises(SessionException):
        get_active_session()
    with client.new_session() as s:
        assert get_active_session() is s
    assert s.closed                               # leaving `with s:` closes s
    with pytest.raises(SessionException):
        get_active_session()

    with client.new_session() as s:
        with client.new_session() as s2:
            assert get_active_session() is s2
        assert s2.closed and not s.closed
        assert get_active_session() is s
    with pytest.raises(SessionException):
        get_active_session()

    # Closed sessions may be entered again: the stack is restored all the same.
    with s:
        with s2:
            assert get_active_session() is s2
        assert get_active_session() is s
    with pytest.raises(SessionException):
        get_active_session()
    # bind_only() activates without closing; a later `with` closes.
    s3 = client.new_session()
    with s3.bind_only():
        with s3.bind_only():
            assert get_active_session() is s3
        assert get_active_session() is s3
    assert not s3.closed
    with s3:
        assert get_active_session() is s3
    assert s3.closed


def test_inner_with_closes_the_session(client):
    """An inner ``with s:`` makes s active again and closes it when it ends; the outer
    session is active again, and s refuses new work with a clear error."""
    with client.new_session() as s:
        t = tasks.Concat((blob("a"), blob("b")))
        t.output.keep()
        s.submit()
        assert t.output.fetch().get_bytes() == b"ab"
        with client.new_session() as s2:
            with s:
                assert get_active_session() is s
            assert s.closed and not s2.closed
            assert get_active_session() is s2
            u = tasks.Concat((blob("c"), blob("d")))     # s2 still works
            u.output.keep()
            s2.submit()
            assert u.output.fetch().get_bytes() == b"cd"
        assert get_active_session() is s
        with pytest.raises(RainException, match="closed"):
            blob("late")
    with pytest.raises(SessionException):
        get_active_session()


def test_active_session_is_per_thread(client):
    seen = []
    with client.new_session() as s:
        def other():
            try:
                seen.append(get_active_session())
            except SessionException:
                seen.append(None)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [None]


def test_closed_clients_leave_no_descriptors(cluster):
    def count():
        return len(os.listdir("/proc/self/fd"))

    cluster.client().close()
    gc.collect()
    before = count()
    threads = threading.active_count()
    for _ in range(1000):
        cluster.client().close()
    cluster.clients.clear()
    gc.collect()
    assert count() <= before
    assert threading.active_count() <= threads


# ------------------------------------------------------------------------------------------
# 6. Program and output specs

@remote(outputs=("a", "b", "c", "d"))
def four(ctx):
    return b"1", b"2", {"x": 3}, b"4"


@remote(outputs=Output(encode="pickle"))
def gives_dict(ctx):
    return {"x": [1, 2]}


def test_program_and_output_specs(client):
    with client.new_session() as s:
        prog = Program(["cat", Input("i")], stdout=True)
        t = prog(i=blob(b"hello"))
        assert t.name is None
        prog2 = Program(["cp", Input("i"), Output("output", path="out")])
        t2 = prog2(i=blob(b"abc"), output=Output(content_type="pickle"))
        assert t2.output.content_type == "pickle"
        t3 = four(outputs=[None, None, Output(content_type="pickle"), "foo"])
        assert [o.label for o in t3.outputs] == ["a", "b", "c", "foo"]
        assert t3.outputs["c"].content_type == "pickle"
        t4 = gives_dict()
        for task in (t, t3, t4):
            task.keep_outputs()
        s.submit()
        assert t.output.fetch().get_bytes() == b"hello"
        assert t4.output.fetch().load() == {"x": [1, 2]}


def test_execute_without_name_is_unnamed(cluster, client):
    """``Execute`` without ``name=`` gives an unnamed task, as Rain 0.4's client does;
    views that group tasks by name group such tasks by their type."""
    import requests
    with client.new_session() as s:
        ts = [tasks.Execute(["cat", blob(b"x")], stdout=True),
              tasks.execute("true"),
              tasks.Execute("echo hi", shell=True, stdout=True),
              Program("true")()]
        assert [t.name for t in ts] == [None] * 4
        assert [t.spec.name for t in ts] == [None] * 4
        named = tasks.Execute("true", name="mine")
        assert named.name == "mine"
        s.submit()
        s.wait_all()
        sid = s.session_id
        base = f"http://127.0.0.1:{cluster.http_port}/api/sessions/{sid}"
        groups = {}
        for _ in range(300):
            groups = {g["path"]: g["tasks"] for g in
                      requests.get(base + "/groups", headers=cluster.http_headers,
                                   timeout=30).json()}
            if sum(groups.values()) >= 5:
                break
            time.sleep(0.1)
        assert groups == {"buildin": 4, "buildin/run": 4, "mine": 1}, groups


# ------------------------------------------------------------------------------------------
# A Rain 0.4 program as its own tests wrote them

@remote()
def rain04_hello(ctx, data):
    ctx.debug("saying hello")
    return data.get_bytes() + b" rocks!"


@remote(outputs=2)
def rain04_two(ctx, data1, data2):
    joined = data1.get_bytes() + data2.get_bytes()
    return joined, joined + b"!"


@remote()
def rain04_args(ctx, a, b, c={}, d=0, *args, **kwargs):
    return pickle.dumps((a, b.load(), c["a"].load(), d.load(), [x.load() for x in args],
                         {k: v.load() for k, v in kwargs.items()}))


def test_rain04_program(cluster, tmp_path):
    """Client(address, port), tasks.*, Program, remote, blob, pickled, Input/Output,
    wait_all, fetch, update and unkeep, written the way Rain 0.4's programs were."""
    from rain.client import Client, InputDir, OutputDir, directory, pickled
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.txt").write_text("text here")
    client = Client("127.0.0.1", cluster.port)
    try:
        with client.new_session() as s:
            t1 = tasks.concat((blob("Hello "), blob("world!")))
            t1.output.keep()
            h = rain04_hello(blob("Rain"))
            h.output.keep()
            two = rain04_two(blob("a"), blob("b"))
            two.keep_outputs()
            b, c = pickled("B"), pickled("C")
            args = rain04_args(1, b, {"a": c}, c, b, x=c)
            args.output.keep()
            grep = Program("grep ab", stdin="inp", stdout="output")
            g = grep(inp=blob("abc\nxyz\nab\n"))
            g.output.keep()
            made = tasks.Execute(("/bin/sh", "-c", "echo ABC > output.txt"),
                                 output_paths=[Output("my_output", path="output.txt")])
            made.outputs["my_output"].keep()
            listing = tasks.Execute("ls d", input_paths=[InputDir("d", dataobj=directory(
                str(tmp_path / "data")))], stdout=True)
            listing.output.keep()
            loaded = tasks.Load(str(tmp_path / "data" / "t.txt"), content_type="text")
            loaded.output.keep()
            loaded_dir = tasks.LoadDir(str(tmp_path / "data"))
            sliced = tasks.SliceDirectory(loaded_dir, "t.txt", content_type="text")
            sliced.output.keep()
            built = tasks.MakeDirectory([("x/y.txt", blob("Y"))])
            built.output.keep()
            s.submit()
            s.wait_all()
            assert t1.output.fetch().get_bytes() == b"Hello world!"
            assert h.output.fetch().get_bytes() == b"Rain rocks!"
            h.update()
            assert h.info.debug == "saying hello"
            assert [o.get_bytes() for o in two.fetch_outputs()] == [b"ab", b"ab!"]
            assert pickle.loads(args.output.fetch().get_bytes()) == \
                (1, "B", "C", "C", ["B"], {"x": "C"})
            assert g.output.fetch().get_bytes() == b"abc\nab\n"
            assert made.outputs["my_output"].fetch().get_bytes() == b"ABC\n"
            assert listing.output.fetch().get_str() == "t.txt\n"
            assert loaded.output.content_type == "text"
            assert loaded.output.fetch().load() == "text here"
            assert sliced.output.fetch().load() == "text here"
            assert built.output.fetch().data_type.name == "DIRECTORY"
            client.update([t1, t1.output])
            assert t1.info.governor and t1.output.info.size == 12
            s.unkeep([t1.output])
            assert not t1.output.is_kept()
            with pytest.raises(RainException, match="content type"):
                tasks.Load("/x", Output("o"), content_type="text")
        assert not s.active
    finally:
        client.close()


# ------------------------------------------------------------------------------------------
# 9. Argument checking at call time

@remote()
def needs_a(ctx, a, *, b):
    return b""


def test_argument_checking(client):
    with client.new_session():
        with pytest.raises(TypeError, match="required argument: 'a'"):
            needs_a(b=1)
        with pytest.raises(TypeError, match="required argument: 'b'"):
            needs_a(1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            needs_a(b"a" * 1024, b=1)
        with pytest.warns(RainWarning, match="Pickled object a length"):
            needs_a(b"a" * 1024 * 1024, b=1)


# ------------------------------------------------------------------------------------------
# 11. Small internals

def test_labeled_list_internals():
    ll = LabeledList(pairs=[("a", 1), ("b", 2), (None, 3)])
    ll._check()
    copy = LabeledList(ll)
    assert copy == ll and copy is not ll
    ll.set(0, 10, label="x")
    assert ll.get_label(0) == "x" and ll["x"] == 10
    ll.set_label(1, "y")
    assert ll["y"] == 2
    ll[1:3] = [20, 30]
    assert list(ll) == [10, 20, 30]
    assert ll.get_label(1) is None
    ll._check()
    assert LabeledList([1, 2]) == LabeledList([1, 2])
    assert LabeledList([1, 2], labels=["a", None]) != LabeledList([1, 2])


def test_dataobject_internals(client):
    with client.new_session() as s:
        o = blob(b"abc")
        assert o._session is s
        assert o._data == b"abc"


# ------------------------------------------------------------------------------------------
# 12. An executor that never registers

def test_executor_that_never_registers(make_cluster, tmp_path):
    config = tmp_path / "governor.toml"
    config.write_text("[executors.ls]\ncommand = \"/bin/sh -c 'echo to-stdout; echo to-stderr >&2'\"\n")
    cluster = make_cluster([1], governor_config=str(config))
    client = cluster.client()

    class Ls(Task):
        TASK_TYPE = "ls/run"

    with client.new_session() as s:
        t = Ls(inputs=(), outputs=1)
        t.output.keep()
        s.submit()
        with pytest.raises(TaskException) as info:
            s.wait_all()
    message = str(info.value)
    assert "stdout" in message and "to-stdout" in message
    assert "stderr" in message and "to-stderr" in message


# ------------------------------------------------------------------------------------------
# 7. Input specs for *args and **kwargs

@remote(inputs={"args": Input(content_type="text", load=False), "kwargs": Input(load=True)},
        outputs=Output(encode="pickle"))
def extras_declared(ctx, *args, **kwargs):
    return [type(a).__name__ for a in args], [a.get_str() for a in args], kwargs


@remote(outputs=Output(encode="pickle"))
def extras_annotated(ctx, *args: Input(content_type="text", load=False),
                     **kwargs: Input(load=True)):
    return [type(a).__name__ for a in args], [a.get_str() for a in args], kwargs


@remote()
def dynamic(ctx):
    return ctx.pickled({"made": "at run time"})     # no declared content type


def test_inputs_of_var_arguments(client):
    with client.new_session() as s:
        tasks_ = []
        for factory in (extras_declared, extras_annotated):
            t = factory(blob("a"), blob("b"), x=blob([1, 2], encode="json"), y=dynamic())
            t.output.keep()
            tasks_.append(t)
        s.submit()
        for t in tasks_:
            assert t.output.fetch().load() == (
                ["DataInstance", "DataInstance"], ["a", "b"],
                {"x": [1, 2], "y": {"made": "at run time"}})


# ------------------------------------------------------------------------------------------
# 8. Content type arrow for plain Python values

@remote(outputs=Output(encode="arrow"))
def arrow_value(ctx, v: Input(load=True)):
    return {"a": v["a"] + [3], "b": v["b"] + ["z"]}


def test_arrow_plain_values(client):
    with client.new_session() as s:
        t = arrow_value(blob({"a": [1, 2], "b": ["x", "y"]}, encode="arrow"))
        t.output.keep()
        s.submit()
        assert t.output.fetch().load() == {"a": [1, 2, 3], "b": ["x", "y", "z"]}
