"""Big constants (``blob()`` of an open file or of big bytes, ``directory()``) are streamed
from the client into a governor's store before the submit that names them: correct
content, memory bounded in client, server and governors, nothing left behind on failure."""
import hashlib
import os

import cbor2
import pytest

from rain.client import RainException, Task, blob, directory
from rain.client.program import Input, InputDir, _build_execute
from rain.server.errors import RequestError
from rain.server.submit_batch import SubmitBatch, read_uploads
from rain.transfer.upload import UPLOAD_MIN

from test_transfer import PeakRss, governors_a_and_b, spliced_into
from test_transfer import two_governors  # noqa: F401 (a fixture)

GiB = 1 << 30
MiB = 1 << 20

pytestmark = pytest.mark.timeout(300)


def on(where, args, inputs=(), stdout=True):
    ins, outs, config, name = _build_execute(args, stdout, None, inputs, (), True, None)
    return Task(ins, outs, config=config, task_type="buildin/run", resources={where: 1},
                name=name)


def sparse_file(path, size, marks=3):
    """A ``size``-byte file of holes with ``marks`` random MiB spread over it; returns
    its SHA-256."""
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(marks):
            f.seek(min(size - MiB, i * (size // marks)))
            f.write(os.urandom(MiB))
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def processes(cluster):
    return [p.pid for p in cluster.governor_processes] + [cluster.server_process.pid,
                                                           os.getpid()]


def test_a_file_blob_is_streamed_with_bounded_memory(two_governors, tmp_path):
    """256 MiB from an open file (mostly holes, read as zeros: every byte crosses the
    socket): the consumer on the other governor sees the same bytes, and no process
    grows by anything near the object's size."""
    path = tmp_path / "source"
    size = 256 * MiB + 5
    expected = sparse_file(path, size)
    client = two_governors.client()
    rss = PeakRss(processes(two_governors))
    with client.new_session() as s:
        with open(path, "rb") as f:
            data = blob(f, label="big")     # read when submitted, the file closed by then
        data.keep()
        check = on("b", "sha256sum big | cut -c1-64; stat -L -c %s big",
                   inputs=[Input("big", dataobj=data)])
        check.output.keep()
        s.submit()
        assert check.output.fetch().get_bytes().decode().split() == [expected, str(size)]
        # The object is a finished constant the client can fetch back.
        target = tmp_path / "back"
        data.fetch_to(target)
        assert os.path.getsize(target) == size
    growth = rss.growth()
    # The whole object would be 256 MiB, in several copies on the way through the server.
    assert max(growth) < 200, f"RSS growth (MiB) of governors, server, client: {growth}"


def test_a_file_blob_without_holes_goes_into_the_store_by_splice(make_cluster, tmp_path):
    """A governor takes the upload of a file with no hole straight from the socket into
    its store (its log says so), and the consumer sees the same bytes."""
    cluster = governors_a_and_b(make_cluster, tmp_path, env={"RAIN_LOG_DEBUG": "1"})
    path = tmp_path / "dense"
    path.write_bytes(os.urandom(MiB) * (UPLOAD_MIN // MiB) + b"tail")
    client = cluster.client()
    with client.new_session() as s:
        with open(path, "rb") as f:
            data = blob(f, label="dense")
        check = on("b", "sha256sum big | cut -c1-64", inputs=[Input("big", dataobj=data)])
        check.output.keep()
        s.submit()
        assert check.output.fetch().get_bytes().decode().split() == \
            [hashlib.sha256(path.read_bytes()).hexdigest()]
    assert spliced_into(cluster, 1)


def test_big_bytes_and_a_big_directory_are_uploaded(two_governors, tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    digests = {}
    for name, size in (("one", 20 * MiB), ("sub/two", UPLOAD_MIN), ("three", 17)):
        digests[name] = sparse_file(root / name, size, marks=1 if size > MiB else 0)
    data = os.urandom(MiB) * (UPLOAD_MIN // MiB)
    client = two_governors.client()
    with client.new_session() as s:
        tree = directory(str(root))
        big = blob(data)
        assert tree._upload is not None and big._upload is not None
        check = on("a", "sha256sum t/one t/sub/two t/three b | cut -c1-64",
                   inputs=[InputDir("t", dataobj=tree), Input("b", dataobj=big)])
        check.output.keep()
        s.submit()
        lines = check.output.fetch().get_bytes().decode().split()
    assert lines == [digests["one"], digests["sub/two"], digests["three"],
                     hashlib.sha256(data).hexdigest()]


def test_a_refused_submit_leaves_no_upload_behind(two_governors, tmp_path):
    path = tmp_path / "source"
    sparse_file(path, UPLOAD_MIN + 1, marks=1)
    client = two_governors.client()
    with client.new_session() as s, open(path, "rb") as f:
        data = blob(f)
        # More cpus than any governor has: the server refuses the submit.
        Task([data], 1, config={"seconds": 0}, task_type="buildin/sleep", cpus=5)
        with pytest.raises(RainException, match="largest governor"):
            s.submit()
        held = [obj for g in client.get_server_info()["governors"]
                for obj in g["objects"]]
        assert data.id not in held


def test_a_blob_needs_a_binary_file(tmp_path, two_governors):
    path = tmp_path / "text"
    path.write_text("hello")
    client = two_governors.client()
    with client.new_session():
        with open(path) as f, pytest.raises(RainException, match="binary mode"):
            blob(f)
        with open(path, "rb") as f:
            assert blob(f)._data == b"hello"        # small: it travels in the submit


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_2_gib_file_blob_and_directory(two_governors, tmp_path):
    """GiB sizes: a 2 GiB blob from a file and a directory of 2 GiB, content checked by
    hash on the other side, memory bounded."""
    path = tmp_path / "source"
    size = 2 * GiB + 1
    expected = sparse_file(path, size)
    root = tmp_path / "tree"
    root.mkdir()
    tree_digest = sparse_file(root / "inner", 2 * GiB)
    client = two_governors.client()
    rss = PeakRss(processes(two_governors))
    with client.new_session() as s, open(path, "rb") as f:
        data = blob(f)
        tree = directory(str(root))
        check = on("b", "sha256sum big t/inner | cut -c1-64",
                   inputs=[Input("big", dataobj=data), InputDir("t", dataobj=tree)])
        check.output.keep()
        s.submit()
        assert check.output.fetch().get_bytes().decode().split() == [expected, tree_digest]
    growth = rss.growth()
    assert max(growth) < 200, f"RSS growth (MiB) of governors, server, client: {growth}"


@pytest.mark.parametrize("uploads, message", [
    (b"\xff", "not valid CBOR"),
    (cbor2.dumps({"a": 1}), "must be a list"),
    (cbor2.dumps([[10, "127.0.0.1:1"]]), r"\[object id, governor id, size\]"),
    (cbor2.dumps([[10, 5, 3]]), r"\[object id, governor id, size\]"),
    (cbor2.dumps([[10, "g", -2]]), r"\[object id, governor id, size\]"),
    (cbor2.dumps([[99, "g", 3]]), "not an object of this submit"),
    (cbor2.dumps([[10, "g", 3], [10, "g", 3]]), "uploaded twice"),
    (cbor2.dumps([[11, "g", 3]]), "also given as bytes"),
])
def test_malformed_uploads_of_a_submit_are_refused(uploads, message):
    batch = SubmitBatch.from_tuples([], [(10, "", "", 0, None, False, None),
                                         (11, "", "", 0, None, False, b"x")])
    with pytest.raises(RequestError, match=message):
        read_uploads(uploads, batch)


def test_a_big_constant_goes_to_the_governor_its_consumers_need(two_governors):
    """A constant whose consumers can only run on one governor is uploaded to that one,
    so it is not moved a second time to reach them."""
    client = two_governors.client()
    governors = {g["resources"].get("a") and "a" or "b": g["governor_id"]
                 for g in client.get_server_info()["governors"]}
    with client.new_session() as s:
        placed = []
        for where in ("a", "a", "b", "b"):
            data = blob(os.urandom(1024) * (UPLOAD_MIN // 1024), label=f"for {where}")
            data.keep()
            check = on(where, "stat -L -c %s big", inputs=[Input("big", dataobj=data)])
            check.output.keep()
            s.submit()
            assert check.output.fetch().get_bytes().split() == [str(UPLOAD_MIN).encode()]
            placed.append((where, data))
        holders = {}
        for g in client.get_server_info()["governors"]:
            for obj in g["objects"]:
                holders.setdefault(tuple(obj) if isinstance(obj, list) else obj, []).append(
                    g["governor_id"])
        for where, data in placed:
            assert holders[(s.session_id, data._id)] == [governors[where]], holders
