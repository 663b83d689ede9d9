"""Automatic allocation: the decisions (rain.alloc.autoscale.Policy) and the PBS commands.
No PBS server can run here: its commands are stand-ins that record their arguments and
answer as PBS does; Slurm is tested for real in tests/multihost/test_alloc.py."""
import os
import stat

import pytest

from rain.alloc.autoscale import AllocError, PbsJobs, Policy, SlurmJobs, parse_duration


def test_durations():
    assert parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration("01:00:00") == 3600
    assert parse_duration("45") == 45
    with pytest.raises(AllocError, match="invalid duration"):
        parse_duration("soon")


def test_policy_submits_one_job_at_a_time_while_tasks_wait():
    policy = Policy(max_nodes=2, idle_timeout=10)
    assert policy.decide(0, 5, {}, {}) == (True, [])
    # One job queued: wait for it before asking for more.
    assert policy.decide(1, 5, {}, {"1": ("queued", None)}) == (False, [])
    # Running and busy, tasks still wait: one more, up to the limit.
    busy = {"10.0.0.1": (0, 1)}
    assert policy.decide(2, 5, busy, {"1": ("running", "10.0.0.1")}) == (True, [])
    two = {"1": ("running", "10.0.0.1"), "2": ("running", "10.0.0.2")}
    assert policy.decide(3, 5, {**busy, "10.0.0.2": (0, 1)}, two) == (False, [])
    # A free CPU: no job although tasks wait (they are about to run).
    assert policy.decide(4, 5, {"10.0.0.1": (1, 0)}, {"1": ("running", "10.0.0.1")}) \
        == (False, [])


def test_policy_drains_a_governor_idle_for_the_timeout():
    policy = Policy(max_nodes=2, idle_timeout=10)
    jobs = {"1": ("running", "10.0.0.1")}
    idle = {"10.0.0.1": (1, 0)}
    assert policy.decide(0, 0, idle, jobs) == (False, [])
    assert policy.decide(9, 0, idle, jobs) == (False, [])
    # Work in between starts the count again.
    assert policy.decide(9.5, 0, {"10.0.0.1": (0, 1)}, jobs) == (False, [])
    assert policy.decide(15, 0, idle, jobs) == (False, [])
    assert policy.decide(25, 0, idle, jobs) == (False, ["1"])


FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
case "$(basename "$0")" in
  qsub) cp "$(eval echo \\${{$#}})" {log}.script; echo 42.pbs-server ;;
  qstat) printf '    job_state = R\\n    exec_host = node7/0*2\\n' ;;
esac
"""


def test_pbs_commands(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    for name in ("qsub", "qstat", "qsig", "qdel"):
        path = bindir / name
        path.write_text(FAKE.format(log=log))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    jobs = PbsJobs(5400, ["-q", "batch"])
    job = jobs.submit("head:7210", str(tmp_path), dict(os.environ))
    assert job == "42.pbs-server"
    assert jobs.states([job]) == {job: ("running", "node7")}
    jobs.drain(job)
    jobs.cancel([job])
    calls = log.read_text().splitlines()
    assert calls[0].startswith("qsub -V -N rain-governor -j oe -l nodes=1 "
                               "-l walltime=01:30:00 -q batch ")
    assert calls[1:] == ["qstat -f 42.pbs-server", "qsig -s USR1 42.pbs-server",
                         "qdel 42.pbs-server"]
    script = (tmp_path / "calls.script").read_text()
    assert "-m rain governor head:7210" in script and "PBS_NODEFILE" in script


def test_slurm_submit_command():
    argv = SlurmJobs(3600, ["--partition=main"]).submit_command("/x/job.sh")
    assert argv[:2] == ["sbatch", "--parsable"]
    assert "--nodes=1" in argv and "--time=60" in argv
    assert argv[-2:] == ["--partition=main", "/x/job.sh"]
