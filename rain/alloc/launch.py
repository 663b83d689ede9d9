"""How a command reaches the hosts: ssh (a host list, PBS) or a Slurm job step.

Only command lines are built here; ``rain.starter`` runs them. A governor started this way
says it is ready with one line on its standard output (``rain.common.readyfile``), which
ssh and srun carry back to the head: nothing needs a shared file system.
"""
import os
import shlex
import shutil


class LaunchError(Exception):
    pass


def ssh_argv(ssh_command=None):
    """The ssh client as the user configured it: ``--ssh-command``, else ``$RAIN_SSH``,
    else ``ssh``; never asking for a password."""
    text = ssh_command or os.environ.get("RAIN_SSH") or "ssh"
    argv = shlex.split(text)
    if not argv:
        raise LaunchError("the ssh command is empty")
    if shutil.which(argv[0]) is None:
        raise LaunchError(f"starting remote governors needs {argv[0]!r}, which is not "
                          "installed (set --ssh-command or RAIN_SSH)")
    return argv + ["-o", "BatchMode=yes"]


def ssh_command(ssh, host, remote_command):
    """``ssh host 'remote command'`` (``remote_command`` a shell string)."""
    return list(ssh) + [host, remote_command]


def srun_step(nnodes, cpus, governor_argv, init=""):
    """One job step with a governor on each node of the job (Slurm tracks, limits and
    kills them); ``cpus`` lists the CPUs per node in node order, or is None (all);
    ``init`` is shell code run first on each node."""
    argv = ["srun", "--overlap", f"--nodes={nnodes}", f"--ntasks={nnodes}",
            "--ntasks-per-node=1", "--label", "--kill-on-bad-exit=0", "--input=none"]
    if cpus:
        argv.append(f"--cpus-per-task={min(cpus)}")
    if not init and (not cpus or len(set(cpus)) == 1):
        return argv + governor_argv + (["--cpus", str(cpus[0])] if cpus else [])
    script = f"{init}\n" if init else ""
    if cpus:
        # Each task finds its node's count by its node index.
        script += (f"set -- {' '.join(map(str, cpus))}; shift \"$SLURM_NODEID\"; "
                   f"exec {shlex.join(governor_argv)} --cpus \"$1\"")
    else:
        script += f"exec {shlex.join(governor_argv)}"
    return argv + ["sh", "-c", script]


def srun_on(host, remote_command):
    """A shell command on one node of the job (e.g. to fetch its logs)."""
    return ["srun", "--overlap", "--nodes=1", "--ntasks=1", f"--nodelist={host}",
            "--input=none", "sh", "-c", remote_command]


def collect_logs_command(logdir):
    """The remote shell command that writes ``logdir`` as a tar stream and removes it."""
    quoted = shlex.quote(logdir)
    return f"tar -C {quoted} -cf - . && rm -rf {quoted}"
