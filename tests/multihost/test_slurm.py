"""``rain start --autoconf slurm`` inside a real Slurm job on the hosts: governors as a job
step on every node, with the CPUs of the allocation."""
import json
import os
import sys

import pytest

from helpers import PIPELINE, rain_processes, write_shared

BATCH = """#!/bin/sh
set -e
cd {shared}
{rain} start --autoconf slurm --cluster-id slurm > start.out 2>&1
{rain} status --json > status.json
squeue -h -s -j "$SLURM_JOB_ID" -o '%i %N' > steps.txt
{python} pipeline.py "$(python3 -c 'import json; print(json.load(open("status.json"))[0]["server"])')" > pipeline.json
{rain} stop slurm > stop.out 2>&1
logdir=$(python3 -c 'import json; print(json.load(open("status.json"))[0]["logdir"])')
ls -R "$logdir" > logs.txt
cp "$logdir/governors.out" governors.out
echo "$SLURM_JOB_CPUS_PER_NODE" > cpus.txt
"""


@pytest.mark.timeout(400)
def test_autoconf_slurm_starts_governors_as_a_job_step(hosts):
    hosts.slurm_ready()
    head = hosts.head
    shared = os.path.join(hosts.shared, "slurm-job")
    os.makedirs(shared)
    with open(os.path.join(shared, "pipeline.py"), "w") as f:
        f.write(PIPELINE)
    rain = f"{sys.executable} -m rain"
    script = write_shared(hosts, "slurm-job/job.sh", BATCH.format(
        shared=shared, rain=rain, python=sys.executable))
    result = head.run(["sbatch", "--wait", "-N", "3", "--ntasks-per-node=1",
                       "--cpus-per-task=1", "-o", f"{shared}/job.out", "-t", "5", script],
                      timeout=240, check=False)

    def read(name):
        try:
            with open(os.path.join(shared, name)) as f:
                return f.read()
        except OSError:
            return ""
    detail = "\n".join(f"--- {n}\n{read(n)}" for n in ("job.out", "start.out", "stop.out"))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{detail}"
    assert read("cpus.txt").strip() == "1(x3)"
    record = json.loads(read("status.json"))[0]
    governors = record["governors"]
    # One governor on each node, offering the CPUs of the allocation, not of the node.
    assert sorted(g["host"] for g in governors) == ["head", "node1", "node2"]
    assert [g["cpus"] for g in governors] == [1, 1, 1]
    # Slurm knows them: a step of the job on all three nodes.
    steps = read("steps.txt").split("\n")
    assert any(line.split()[1:] == ["head,node[1-2]"] and "." in line.split()[0]
               for line in steps if line.strip()), steps
    # Their output is labelled per node.
    labelled = [line.split(":", 1)[0] for line in read("governors.out").splitlines()
                if "rain-ready" in line]
    assert sorted(labelled) == ["0", "1", "2"], read("governors.out")
    lines = json.loads(read("pipeline.json").strip().splitlines()[-1])["lines"]
    assert {line.split("@")[1] for line in lines} <= {"head", "node1", "node2"}
    assert len(lines) == 12
    logs = read("logs.txt")
    for node in ("head", "node1", "node2"):
        assert f"governor-{node}:" in logs and "governor.log" in logs, logs
    assert "stopped cluster 'slurm'" in read("stop.out"), read("stop.out")
    assert not rain_processes(hosts)
