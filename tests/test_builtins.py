"""Built-in tasks and external programs on a real cluster."""
import os
import time

import pytest

from rain.client import (Input, InputDir, Output, OutputDir, Program, RainException,
                         TaskException, blob, directory, tasks)


def fetch_bytes(session, task):
    task.output.keep()
    session.submit()
    return task.output.fetch().get_bytes()


def test_concat(client):
    with client.new_session() as s:
        t = tasks.Concat((blob("Hello "), blob(b"world"), blob("!")))
        assert fetch_bytes(s, t) == b"Hello world!"


def test_concat_tree_and_file_inputs(client, tmp_path):
    # Many small concatenations (run in the governor's loop turn) and one whose input
    # lives in a file (read in a worker thread).
    big = tmp_path / "big"
    big.write_bytes(b"b" * 200_000)
    with client.new_session() as s:
        layer = [blob(str(i % 10)) for i in range(256)]
        while len(layer) > 1:
            layer = [tasks.Concat((layer[i], layer[i + 1]))
                     for i in range(0, len(layer), 2)]
        from_file = tasks.Concat((tasks.Load(str(big)), blob("!")))
        from_file.output.keep()
        assert fetch_bytes(s, layer[0]) == "".join(str(i % 10) for i in range(256)).encode()
        assert from_file.output.fetch().get_bytes() == b"b" * 200_000 + b"!"


def test_concat_of_directory_fails(client, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    with client.new_session() as s:
        t = tasks.Concat((blob("a"), directory(str(tmp_path / "d"))))
        t.output.keep()
        s.submit()
        with pytest.raises(TaskException, match="directory"):
            t.output.fetch()


def test_sleep_passes_input_through(client):
    with client.new_session() as s:
        t = tasks.Sleep(blob("data"), 0.05)
        assert fetch_bytes(s, t) == b"data"


def test_load_and_store(client, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"content")
    target = tmp_path / "out.txt"
    with client.new_session() as s:
        loaded = tasks.Load(str(source))
        tasks.Store(loaded, str(target))
        loaded.output.keep()
        s.submit()
        s.wait_all()
        assert loaded.output.fetch().get_bytes() == b"content"
    assert target.read_bytes() == b"content"


def test_load_missing_file_fails_task(client):
    with client.new_session() as s:
        tasks.Load("/nonexistent/file")
        s.submit()
        with pytest.raises(TaskException, match="Load"):
            s.wait_all()


def test_load_relative_path_is_rejected_at_submit(client):
    with client.new_session() as s:
        tasks.Load("relative.txt")
        with pytest.raises(RainException, match="Load: path 'relative.txt' is not absolute"):
            s.submit()


def test_load_dir_make_and_slice(client, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    with client.new_session() as s:
        loaded = tasks.LoadDir(str(src))
        made = tasks.MakeDirectory({"x/y.txt": blob("Y"), "tree": loaded,
                                    "empty": tasks.MakeDirectory({})})
        file_slice = tasks.SliceDirectory(made, "tree/sub/b.txt")
        dir_slice = tasks.SliceDirectory(made, "tree/sub/")
        for t in (made, file_slice, dir_slice):
            t.output.keep()
        s.submit()
        assert file_slice.output.fetch().get_bytes() == b"B"
        out = tmp_path / "made"
        made.output.fetch().write(str(out))
        assert (out / "x" / "y.txt").read_text() == "Y"
        assert (out / "tree" / "a.txt").read_text() == "A"
        assert (out / "empty").is_dir() and not os.listdir(out / "empty")
        sliced = tmp_path / "sliced"
        dir_slice.output.fetch().write(str(sliced))
        assert os.listdir(sliced) == ["b.txt"]


def test_slice_missing_path_fails(client, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    with client.new_session() as s:
        tasks.SliceDirectory(directory(str(tmp_path / "d")), "missing.txt")
        s.submit()
        with pytest.raises(TaskException, match="missing.txt"):
            s.wait_all()


def test_execute_stdout_stdin_and_files(client):
    with client.new_session() as s:
        sort = tasks.Execute(["sort", blob("b\na\nc\n")], stdout=True)
        cat = tasks.Execute("cat", stdin=blob("piped"), stdout=True)
        files = tasks.Execute("sh -c 'cat in1 in2 > out.txt; mkdir d; echo z > d/z'",
                              input_paths=[Input("one", path="in1", dataobj=blob("1")),
                                           Input("two", path="in2", dataobj=blob("2"))],
                              output_paths=["out.txt", OutputDir("d", path="d")])
        for t in (sort, cat, files):
            t.keep_outputs()
        s.submit()
        assert sort.output.fetch().get_bytes() == b"a\nb\nc\n"
        assert cat.output.fetch().get_bytes() == b"piped"
        assert files.outputs["out.txt"].fetch().get_bytes() == b"12"
        assert files.outputs["d"].fetch().data_type.value == "dir"


def test_execute_shell_and_output_in_args(client):
    with client.new_session() as s:
        t = tasks.Execute(["echo", "hi", ">", Output("res", path="res.txt"), "&&",
                           "cat", blob("x")], shell=True, stdout=True)
        t.keep_outputs()
        s.submit()
        assert t.outputs["res"].fetch().get_bytes() == b"hi\n"
        assert t.outputs["stdout"].fetch().get_bytes() == b"x"


def test_program_template(client):
    grep = Program(["grep", "b", Input("data")], stdout="matches", name="grep")
    with client.new_session() as s:
        t1 = grep(data=blob("a\nb\nab\n"))
        t2 = grep(data=blob("bbb\n"))
        t1.keep_outputs()
        t2.keep_outputs()
        s.submit()
        assert t1.outputs["matches"].fetch().get_bytes() == b"b\nab\n"
        assert t2.outputs["matches"].fetch().get_bytes() == b"bbb\n"
        with pytest.raises(TypeError):
            grep(other=blob("x"))


def test_input_names_never_collide(client):
    with client.new_session() as s:
        a = blob("first", label="same")
        b = blob("second", label="same")
        t = tasks.Execute(["cat", a, b], stdout=True)
        assert fetch_bytes(s, t) == b"firstsecond"


def test_explicit_duplicate_input_path_rejected(client):
    with client.new_session():
        with pytest.raises(RainException, match="twice"):
            tasks.Execute("true", input_paths=[Input("a", path="x", dataobj=blob("1")),
                                               Input("b", path="x", dataobj=blob("2"))])


def test_failing_program_reports_code_and_stderr(client):
    with client.new_session() as s:
        tasks.Execute("sh -c 'echo broken >&2; exit 7'")
        s.submit()
        with pytest.raises(TaskException) as info:
            s.wait_all()
        assert "code 7" in str(info.value) and "broken" in str(info.value)


def test_missing_program_and_missing_output(client):
    with client.new_session() as s:
        tasks.Execute("no-such-program-xyz")
        s.submit()
        with pytest.raises(TaskException, match="no-such-program-xyz"):
            s.wait_all()
    with client.new_session() as s:
        tasks.Execute("true", output_paths=["never.txt"])
        s.submit()
        with pytest.raises(TaskException, match="never.txt"):
            s.wait_all()


def test_input_cannot_be_changed_even_by_root(client):
    """The program tries every way to write its input; the stored object stays intact."""
    script = ("echo evil > data; echo evil >> data; chmod u+w data 2>/dev/null; "
              "echo evil > data; truncate -s 0 data 2>/dev/null; "
              "cat $(readlink -f data) > /dev/null; "
              "( echo evil > \"$(readlink -f data)\" ) 2>/dev/null; true")
    with client.new_session() as s:
        original = tasks.Concat((blob("precious "), blob("data")))
        original.output.keep()
        tasks.Execute(["sh", "-c", script],
                      input_paths=[Input("d", path="data", dataobj=original)])
        writer = tasks.Execute(["sh", "-c", "echo changed >> data; cat data"],
                               input_paths=[Input("d", path="data", dataobj=original,
                                                  write=True)], stdout=True)
        writer.output.keep()
        s.submit()
        s.wait_all()
        assert writer.output.fetch().get_bytes() == b"precious data" + b"changed\n"
        assert original.output.fetch().get_bytes() == b"precious data"
        again = tasks.Execute(["cat", original], stdout=True)
        assert fetch_bytes(s, again) == b"precious data"


def test_directory_input_is_protected(client, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("keep")
    with client.new_session() as s:
        d = directory(str(tmp_path / "d"))
        d.keep()
        tasks.Execute(["sh", "-c", "echo x > dir/f.txt; touch dir/new; rm -f dir/f.txt; true"],
                      input_paths=[InputDir("d", path="dir", dataobj=d)])
        listing = tasks.Execute(["sh", "-c", "ls dir; cat dir/f.txt"],
                                input_paths=[InputDir("d", path="dir", dataobj=d)],
                                stdout=True)
        listing.output.keep()
        s.submit()
        s.wait_all()
        assert listing.output.fetch().get_bytes() == b"f.txt\nkeep"


def test_close_kills_running_program_promptly(cluster, tmp_path):
    client = cluster.client()
    marker = tmp_path / "pid"
    s = client.new_session()
    tasks.Execute(["sh", "-c", f"echo $$ > {marker}; exec sleep 300"], session=s)
    s.submit()
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = int(marker.read_text())
    start = time.monotonic()
    s.close()
    while True:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        # Generous under load, yet far before the program would end by itself.
        assert time.monotonic() - start < 60, "program still running after close"
        time.sleep(0.01)
