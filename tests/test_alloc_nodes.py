"""Hosts and CPUs of allocations (rain.alloc.nodes) and the commands that reach them
(rain.alloc.launch)."""
import pytest

from rain.alloc import launch, nodes


def test_pbs_line_counts_are_cpus(tmp_path):
    path = tmp_path / "nodefile"
    path.write_text("n2\nn1\nn2\n\nn2\n")
    assert nodes.pbs_nodes({"PBS_NODEFILE": str(path)}) == [("n2", 3), ("n1", 1)]


def test_pbs_outside_a_job_says_so():
    with pytest.raises(nodes.NodesError, match="PBS_NODEFILE is not set"):
        nodes.pbs_nodes({})


@pytest.mark.parametrize("text, expected", [
    ("1(x3)", [1, 1, 1]), ("2(x2),1", [2, 2, 1]), ("4", [4]), ("3,2(x2)", [3, 2, 2])])
def test_slurm_cpu_counts(text, expected):
    assert nodes.expand_counts(text) == expected
    assert nodes.slurm_cpus({"SLURM_JOB_CPUS_PER_NODE": text}, len(expected)) == expected


def test_slurm_cpus_per_task_when_the_job_counts_are_missing():
    assert nodes.slurm_cpus({"SLURM_CPUS_PER_TASK": "3"}, 2) == [3, 3]
    assert nodes.slurm_cpus({}, 2) is None
    with pytest.raises(nodes.NodesError, match="cannot read"):
        nodes.expand_counts("2(y3)")


def test_srun_step_gives_each_node_its_cpus():
    argv = launch.srun_step(3, [2, 2, 1], ["rain", "governor", "h:1"])
    assert argv[:2] == ["srun", "--overlap"]
    assert "--nodes=3" in argv and "--ntasks-per-node=1" in argv and "--label" in argv
    assert "--cpus-per-task=1" in argv
    assert argv[-3:-1] == ["sh", "-c"]
    assert 'set -- 2 2 1; shift "$SLURM_NODEID"' in argv[-1]
    same = launch.srun_step(2, [4, 4], ["rain", "governor", "h:1"])
    assert same[-5:] == ["rain", "governor", "h:1", "--cpus", "4"]


def test_ssh_command_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAIN_SSH", "ssh -p 2222 -i /k")
    assert launch.ssh_argv() == ["ssh", "-p", "2222", "-i", "/k", "-o", "BatchMode=yes"]
    assert launch.ssh_argv("ssh -J jump")[:3] == ["ssh", "-J", "jump"]
    with pytest.raises(launch.LaunchError, match="not installed"):
        launch.ssh_argv("no-such-ssh-client")
