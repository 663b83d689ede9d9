"""A root governor's programs and executors see its store read-only through a mount
namespace (``rain/governor/mountns.py``), so stored files need no immutable flag, whose
setting makes the kernel write each file to disk first. Where the namespace cannot be
made, the immutable flag is used as before. An ordinary user's governor gives private
copies instead (``tests/test_builtins.py``, ``tests/test_filecopy.py``)."""
import fcntl
import os
import struct
import subprocess

import pytest

from rain.client import Input, blob, tasks
from rain.governor import protect
from rain.governor.mountns import ReadOnlyView

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mount namespaces and the immutable flag need root "
    "(an ordinary user's governor gives its programs private copies)")


def immutable(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, protect.FS_IOC_GETFLAGS,
                                               struct.pack("l", 0)))[0]
    finally:
        os.close(fd)
    return bool(flags & protect.FS_IMMUTABLE_FL)


def mount_points():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


@pytest.fixture
def own_view():
    """Restores the process's view afterwards (tests that set one in this process)."""
    saved = protect._view
    yield
    if protect._view is not saved and protect._view is not None:
        protect._view.close()
    protect._view = saved


@needs_root
def test_a_child_in_the_view_cannot_write_while_we_can(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "obj").write_bytes(b"keep")
    view = ReadOnlyView(str(store))
    try:
        script = ("pwd; echo x >> obj || echo refused; true > new || echo refused; "
                  "rm -f obj || echo refused; chmod 666 obj || echo refused; "
                  "mkdir sub || echo refused")
        result = subprocess.run(["/bin/sh", "-c", script], cwd=store, capture_output=True,
                                text=True, preexec_fn=view.enter, timeout=60)
        lines = result.stdout.splitlines()
        assert lines[0] == str(store)                  # its working directory is kept
        assert lines[1:] == ["refused"] * 5, result.stdout + result.stderr
        assert "Read-only file system" in result.stderr
        assert (store / "obj").read_bytes() == b"keep"
        assert sorted(os.listdir(store)) == ["obj"]
        # Our own namespace is untouched: we still write there, and nothing is mounted.
        (store / "ours").write_bytes(b"x")
        assert str(store) not in mount_points()
    finally:
        view.close()
    assert view.fd is None


@needs_root
def test_a_view_protects_by_mode_and_without_it_the_flag_is_set(tmp_path, own_view,
                                                                 monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    assert protect.use_read_only_view(str(store))
    assert not protect.protect_flushes()
    inside = store / "obj"
    inside.write_bytes(b"x")
    assert protect.protect(str(inside)) is True
    assert not immutable(inside) and not os.stat(inside).st_mode & 0o222
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"x")
    assert protect.protect(str(outside)) is True and immutable(outside)
    protect.remove_tree(str(outside))
    protect._view.close()
    protect._view = None

    def refused(directory):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(protect, "ReadOnlyView", refused)
    assert not protect.use_read_only_view(str(store))
    assert protect.protect_flushes()
    second = store / "second"
    second.write_bytes(b"x")
    assert protect.protect(str(second)) is True and immutable(second)
    protect.remove_tree(str(second))
    assert not second.exists()


@needs_root
def test_a_root_governors_programs_cannot_write_its_unflagged_store(make_cluster):
    cluster = make_cluster([1])
    client = cluster.client()
    data_dir = os.path.join(cluster.tmp, "governor-0", "data")
    with client.new_session() as session:
        original = tasks.Concat((blob(b"precious "), blob(b"data")))
        original.output.keep()
        writer = tasks.Execute(["sh", "-c", "(echo evil >> data) 2>&1; true"],
                               input_paths=[Input("d", path="data", dataobj=original)],
                               stdout=True)
        writer.output.keep()
        session.submit()
        session.wait_all()
        assert b"Read-only file system" in writer.output.fetch().get_bytes()
        # The input was written to a file for the program; no immutable flag on it.
        stored = [os.path.join(data_dir, name) for name in os.listdir(data_dir)]
        assert stored and not any(immutable(path) for path in stored)
        assert original.output.fetch().get_bytes() == b"precious data"
    assert data_dir not in mount_points()
