"""Faults in the data plane end as task failures with their reason, never as hangs, and
the governor stays usable afterwards."""
import os
import subprocess
import uuid

import pytest

from rain.client import OutputDir, Task, TaskException, blob, tasks
from rain.client.program import Execute

# A hang (the failure these tests guard against) ends the test instead of the run.
pytestmark = pytest.mark.timeout(180)


def test_a_bad_archive_from_a_peer_fails_the_consumer(make_cluster, tmp_path):
    """A directory holding a named pipe travels as a tar archive the receiver refuses
    to extract: the consumer fails with that reason instead of waiting forever."""
    config = tmp_path / "b.toml"
    config.write_text("[resources]\nb = 1\n")
    cluster = make_cluster([2])
    cluster.add_governor(1, ["--config", str(config)])
    client = cluster.client()
    with client.new_session() as s:
        # cpus=2: only the first governor can run it.
        producer = Execute("mkdir d && mkfifo d/pipe", shell=True,
                           output_paths=[OutputDir("d")], cpus=2)
        # Resource b: only the second governor can run it, so it must fetch "d".
        consumer = Task([producer.output], 1, config={"seconds": 0},
                        task_type="buildin/sleep", resources={"b": 1})
        consumer.output.keep()
        s.submit()
        with pytest.raises(TaskException) as raised:
            s.wait([consumer])
    message = str(raised.value)
    assert "Cannot obtain input" in message and "unsafe member" in message
    assert "pipe" in message


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, mounted for this test and torn down after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs",
                             str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _used(path):
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def test_a_full_disk_fails_the_task_and_the_governor_goes_on(make_cluster, small_disk):
    cluster = make_cluster([])
    cluster.add_governor(1, ["--workdir", str(small_disk / "work")])
    client = cluster.client()
    before = _used(small_disk)
    with client.new_session() as s:
        # 18 MB of output, written to a file by the governor: more than the disk holds.
        big = tasks.Concat([blob(b"a" * 9_000_000), blob(b"b" * 9_000_000)])
        big.output.keep()
        s.submit()
        with pytest.raises(TaskException) as raised:
            s.wait([big])
    # The partial file is gone: the disk is as empty as before.
    assert _used(small_disk) - before < 1 << 20
    assert "no space left on device" in str(raised.value)
    # A task that fits (a 5 MB file, more than half of the disk) runs on that governor.
    with client.new_session() as s:
        ok = Execute("head -c 5000000 /dev/zero > out", shell=True,
                     output_paths=["out"])
        ok.output.keep()
        s.submit()
        s.wait([ok])
        assert len(ok.output.fetch().get_bytes()) == 5_000_000


def test_a_program_filling_the_disk_fails_with_its_stderr(make_cluster, small_disk):
    """The program's own complaint about the full disk reaches the task's error (its
    stderr does not need the disk), its partial output is removed and the governor
    goes on."""
    cluster = make_cluster([])
    cluster.add_governor(1, ["--workdir", str(small_disk / "work")])
    client = cluster.client()
    before = _used(small_disk)
    with client.new_session() as s:
        # The program's first word on stderr comes when the disk is already full.
        full = Execute("head -c 20000000 /dev/zero > out; c=$?; "
                       "echo \"head: $c\" >&2; exit $c",
                       shell=True, output_paths=["out"])
        full.output.keep()
        s.submit()
        with pytest.raises(TaskException) as raised:
            s.wait([full])
    message = str(raised.value)
    assert "stderr:" in message and "No space left on device" in message
    assert "head: 1" in message
    assert _used(small_disk) - before < 1 << 20
    with client.new_session() as s:
        ok = Execute("head -c 5000000 /dev/zero > out; echo fine >&2", shell=True,
                     output_paths=["out"])
        ok.output.keep()
        s.submit()
        s.wait([ok])
        assert len(ok.output.fetch().get_bytes()) == 5_000_000
