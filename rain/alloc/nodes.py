"""The hosts of an allocation and their CPUs, from a host file, PBS or Slurm (pure parsing;
``scontrol`` expands Slurm's compressed host lists)."""
import re
import shutil
import subprocess
from collections import Counter


class NodesError(Exception):
    """The hosts cannot be found (the message says why, for the user)."""


def read_host_file(path):
    """Host names in a file, one a line (``#`` comments); a host listed k times stays k times."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise NodesError(f"cannot read {path}: {exc}") from None
    hosts = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise NodesError(f"no hosts in {path}")
    return hosts


def pbs_nodes(environ):
    """``[(host, cpus)]`` from ``$PBS_NODEFILE``: PBS lists a host once per CPU (slot), so
    the count of its lines is its CPUs; first-seen order."""
    path = environ.get("PBS_NODEFILE")
    if not path:
        raise NodesError("--autoconf pbs: $PBS_NODEFILE is not set (not inside a PBS job?)")
    counts = Counter(read_host_file(path))
    return list(counts.items())


def expand_counts(text):
    """Slurm's ``2(x3),1`` -> ``[2, 2, 2, 1]``."""
    result = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise NodesError(f"cannot read the Slurm CPU counts {text!r}")
        result += [int(m.group(1))] * int(m.group(2) or 1)
    return result


def slurm_cpus(environ, nnodes):
    """CPUs of the job on each of its ``nnodes`` nodes: ``SLURM_JOB_CPUS_PER_NODE``, else
    ``SLURM_CPUS_PER_TASK`` times the tasks per node, else None (not known)."""
    text = environ.get("SLURM_JOB_CPUS_PER_NODE")
    if text:
        counts = expand_counts(text)
        if len(counts) == nnodes:
            return counts
    per_task = environ.get("SLURM_CPUS_PER_TASK")
    if per_task and per_task.isdigit():
        tasks = environ.get("SLURM_NTASKS_PER_NODE", "1")
        return [int(per_task) * (int(tasks) if tasks.isdigit() else 1)] * nnodes
    return None


def slurm_hostnames(environ):
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        raise NodesError("--autoconf slurm: $SLURM_JOB_NODELIST is not set "
                         "(not inside a Slurm job?)")
    if shutil.which("scontrol") is None:
        raise NodesError("--autoconf slurm: 'scontrol' is not available to expand "
                         f"the node list {nodelist!r}")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise NodesError(f"scontrol failed: {out.stderr.strip()}")
    return out.stdout.split()


def slurm_nodes(environ):
    """``[(host, cpus or None)]`` of the Slurm job this runs in."""
    hosts = slurm_hostnames(environ)
    cpus = slurm_cpus(environ, len(hosts)) or [None] * len(hosts)
    return list(zip(hosts, cpus))
