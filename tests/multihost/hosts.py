"""A small cluster of hosts on this machine, for the multi-host tests.

Every host is a network namespace (``ip netns``) with its own mount and UTS namespace: its
own host name and ``/etc/hosts``, a node-local tmpfs on ``/tmp`` and ``/run``; the rest of
the file system (the repository, the virtualenv, the shared directory in ``/var/tmp``) is
seen by all, as a cluster shares its home over NFS. The hosts are joined by veth pairs to
one bridge that has no address in this machine's own namespace: they reach each other and
their own loopback, nothing else (no default route, no forwarding).

Each host runs an sshd (key only, own configuration, port 2222) and munged; the head runs
slurmctld and every host a slurmd (non-default ports, per-node spool directories, no
cgroups). ``Environment.close()`` kills every process in the namespaces and removes them.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUBNET = "10.77.0"
SSH_PORT = 2222
SLURMCTLD_PORT = 16817
SLURMD_PORT = 16818
PREFIX = "rain-mh"
TOOLS = ("ip", "nsenter", "unshare", "mount", "ssh", "ssh-keygen", "munged", "slurmctld",
         "slurmd", "sbatch", "srun", "scontrol", "sinfo")
DAEMONS = {"sshd": "/usr/sbin/sshd"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class EnvironmentError_(Exception):
    """The environment cannot be made here (the reason is for the skip message)."""


def unavailable_reason():
    """Why namespaces and daemons cannot be made here, or None."""
    if sys.platform != "linux":
        return "multi-host tests need Linux network namespaces"
    if os.geteuid() != 0:
        return "multi-host tests need root to create network namespaces"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    missing += [p for p in DAEMONS.values() if not os.path.exists(p)]
    if missing:
        return ("multi-host tests need these programs (Debian: iproute2 util-linux "
                f"openssh-server munge slurm-wlm): missing {', '.join(missing)}")
    return None


def _run(argv, timeout=30, check=True, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}): "
                           f"{result.stdout}{result.stderr}")
    return result


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def remove_stale():
    """Namespaces and bridges left by runs whose process is gone (killed before teardown)."""
    listing = _run(["ip", "netns", "list"], check=False).stdout.split()
    for name in listing:
        parts = name.split("-")
        if name.startswith(PREFIX + "-") and len(parts) >= 4 and parts[2].isdigit() \
                and not _pid_alive(int(parts[2])):
            _kill_netns(name)
            _run(["ip", "netns", "del", name], check=False)


def _kill_netns(netns):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _run(["ip", "netns", "pids", netns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = _run(["ip", "netns", "pids", netns], check=False).stdout.split()
            time.sleep(0.05)
        if not pids:
            return


class Host:
    """One host: run commands in it with ``run``/``popen`` (argv lists)."""

    def __init__(self, environment, index, name):
        self.environment = environment
        self.index = index
        self.name = name
        self.ip = f"{SUBNET}.{index + 1}"
        self.netns = f"{environment.prefix}-{name}"
        self.holder = None

    def command(self, argv):
        return ["nsenter", "-t", str(self.holder.pid), "--net", "--mount", "--uts",
                "--"] + list(argv)

    def run(self, argv, timeout=60, check=True, input=None, env=None):
        return _run(self.command(argv), timeout=timeout, check=check, input=input,
                    env=self.environment.env(env))

    def popen(self, argv, log_name, env=None):
        log = open(os.path.join(self.environment.shared, log_name), "ab")
        try:
            return subprocess.Popen(self.command(argv), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.environment.env(env),
                                    start_new_session=True)
        finally:
            log.close()

    def python(self, code, timeout=90, check=True, env=None):
        """Run Python ``code`` on this host; return its standard output."""
        result = self.run([sys.executable, "-c", code], timeout=timeout, check=check, env=env)
        return result.stdout

    def pids(self):
        return [int(p) for p in _run(["ip", "netns", "pids", self.netns],
                                     check=False).stdout.split()]

    def processes(self, pattern):
        """Command lines of this host's processes that contain ``pattern``."""
        found = []
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    line = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if pattern in line:
                found.append(line)
        return found

    def __repr__(self):
        return f"<Host {self.name} {self.ip}>"


class Environment:
    """The hosts ``head``, ``node1``, ``node2``...: ``Environment(3).start()``."""

    def __init__(self, nhosts=3):
        self.prefix = f"{PREFIX}-{os.getpid()}-{os.urandom(2).hex()}"
        self.bridge = f"rmb{os.getpid() % 100000}{os.urandom(1).hex()}"
        names = ["head"] + [f"node{i}" for i in range(1, nhosts)]
        self.hosts = [Host(self, i, name) for i, name in enumerate(names)]
        self.shared = None
        self.daemons = []
        self.cpus = os.cpu_count() or 1

    @property
    def head(self):
        return self.hosts[0]

    def host(self, name):
        return next(h for h in self.hosts if h.name == name)

    @property
    def ssh_config(self):
        return os.path.join(self.shared, "ssh_config")

    @property
    def home(self):
        return os.path.join(self.shared, "home")

    @property
    def slurm_conf(self):
        return os.path.join(self.shared, "slurm.conf")

    def env(self, extra=None):
        env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/sbin:/usr/local/bin:"
                       "/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": self.home, "LANG": "C.UTF-8",
               "SLURM_CONF": self.slurm_conf, "RAIN_DELETE_LIST_TIMEOUT": "0.2"}
        env.update(extra or {})
        return env

    # -- set-up ---------------------------------------------------------------------------
    def start(self):
        try:
            remove_stale()
            self.shared = tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/var/tmp")
            os.chmod(self.shared, 0o755)
            self._write_files()
            self._network()
            for host in self.hosts:
                self._start_holder(host)
            for host in self.hosts:
                self._start_daemons(host)
            self._wait_slurm()
            return self
        except BaseException:
            self.close()
            raise

    def _write_files(self):
        with open(os.path.join(self.shared, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
            for host in self.hosts:
                f.write(f"{host.ip} {host.name}\n")
        key = os.path.join(self.shared, "id_ed25519")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
              os.path.join(self.shared, "ssh_host_ed25519_key")])
        shutil.copy(key + ".pub", os.path.join(self.shared, "authorized_keys"))
        # A home directory shared by all hosts, as on NFS, with a key and known hosts.
        dot_ssh = os.path.join(self.shared, "home", ".ssh")
        os.makedirs(dot_ssh, mode=0o700)
        shutil.copy(key, os.path.join(dot_ssh, "cluster_key"))
        os.chmod(os.path.join(dot_ssh, "cluster_key"), 0o600)
        with open(os.path.join(self.shared, "ssh_host_ed25519_key.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        names = ",".join(f"[{n}]:{SSH_PORT}" for h in self.hosts for n in (h.name, h.ip))
        with open(os.path.join(dot_ssh, "known_hosts"), "w") as f:
            f.write(f"{names} {host_key}\n")
        # ssh finds ~/.ssh through the password database: the hosts see a copy whose home
        # directory of this user is the shared one.
        import pwd
        user = pwd.getpwuid(os.getuid()).pw_name
        with open("/etc/passwd") as f, open(os.path.join(self.shared, "passwd"), "w") as out:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) == 7 and fields[0] == user:
                    fields[5] = self.home
                    line = ":".join(fields) + "\n"
                out.write(line)
        with open(os.path.join(self.shared, "sshd_config"), "w") as f:
            f.write(f"""Port {SSH_PORT}
ListenAddress 0.0.0.0
HostKey {self.shared}/ssh_host_ed25519_key
AuthorizedKeysFile {self.shared}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PidFile none
Subsystem sftp internal-sftp
""")
        with open(self.ssh_config, "w") as f:
            f.write(f"""Host *
  Port {SSH_PORT}
  IdentityFile {key}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 10
""")
        munge_key = os.path.join(self.shared, "munge.key")
        with open(munge_key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(munge_key, 0o400)
        nodes = "\n".join(f"NodeName={h.name} NodeAddr={h.ip} CPUs={self.cpus} State=UNKNOWN"
                          for h in self.hosts)
        s = self.shared
        with open(self.slurm_conf, "w") as f:
            f.write(f"""ClusterName=rainmh
SlurmctldHost={self.head.name}({self.head.ip})
SlurmctldPort={SLURMCTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={s}/slurmctld
SlurmdSpoolDir={s}/slurmd-%n
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd-%n.pid
SlurmctldLogFile={s}/slurmctld.log
SlurmdLogFile={s}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MpiDefault=none
{nodes}
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        with open(os.path.join(self.shared, "cgroup.conf"), "w") as f:
            f.write("CgroupPlugin=cgroup/v1\n")
        os.makedirs(os.path.join(s, "slurmctld"), exist_ok=True)

    def _network(self):
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "link", "set", self.bridge, "up"])
        for host in self.hosts:
            _run(["ip", "netns", "add", host.netns])
            veth = f"{self.bridge}v{host.index}"
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                  "netns", host.netns])
            _run(["ip", "link", "set", veth, "master", self.bridge])
            _run(["ip", "link", "set", veth, "up"])
            inside = ["ip", "netns", "exec", host.netns]
            _run(inside + ["ip", "addr", "add", f"{host.ip}/24", "dev", "eth0"])
            _run(inside + ["ip", "link", "set", "eth0", "up"])
            _run(inside + ["ip", "link", "set", "lo", "up"])

    def _start_holder(self, host):
        """A process that holds the host's mount and UTS namespaces: commands enter them
        with nsenter (which keeps the cgroup mounts that ``ip netns exec`` would hide)."""
        lines = ["set -e", f"hostname {host.name}"]
        # Shared directories under /tmp stay visible through the node-local /tmp.
        keep = [p for p in {REPO, os.path.realpath(sys.prefix), self.shared}
                if p == "/tmp" or p.startswith("/tmp/")]
        if keep:
            lines += [f"mkdir -p {self.shared}/oldtmp-{host.name}",
                      f"mount --bind /tmp {self.shared}/oldtmp-{host.name}"]
        lines += ["mount -t tmpfs -o mode=1777,size=1g tmpfs /tmp",
                  "mount -t tmpfs -o mode=755,size=64m tmpfs /run",
                  "mkdir -p /run/sshd /run/munge /run/user",
                  "chmod 0711 /run/munge",
                  f"mount --bind {self.shared}/hosts /etc/hosts",
                  f"mount --bind {self.shared}/passwd /etc/passwd"]
        for path in keep:
            rel = os.path.relpath(path, "/tmp")
            lines += [f"mkdir -p {shlex.quote(path)}",
                      f"mount --bind {self.shared}/oldtmp-{host.name}/{shlex.quote(rel)} "
                      f"{shlex.quote(path)}"]
        lines += ["echo ready", "exec sleep infinity"]
        host.holder = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host.netns}", "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", "\n".join(lines)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True)
        line = host.holder.stdout.readline()
        if line.strip() != "ready":
            host.holder.wait(timeout=10)
            raise RuntimeError(f"host {host.name} could not be set up: "
                               f"{host.holder.stderr.read()}")

    def _start_daemons(self, host):
        s = self.shared
        self.daemons.append(host.popen(
            [DAEMONS["sshd"], "-D", "-e", "-f", f"{s}/sshd_config"], f"sshd-{host.name}.log"))
        self.daemons.append(host.popen(
            ["munged", "-F", "--force", f"--key-file={s}/munge.key",
             "--socket=/run/munge/munge.socket.2", "--pid-file=/run/munge/munged.pid",
             f"--seed-file={s}/munge-seed-{host.name}",
             f"--log-file={s}/munged-{host.name}.log"], f"munged-{host.name}.out"))
        _wait_for(lambda: host.run(["test", "-S", "/run/munge/munge.socket.2"],
                                   check=False).returncode == 0, f"munged on {host.name}")
        if host is self.head:
            self.daemons.append(host.popen(["slurmctld", "-D", "-i", "-f", self.slurm_conf],
                                           "slurmctld.out"))
        os.makedirs(f"{s}/slurmd-{host.name}", exist_ok=True)
        self.daemons.append(host.popen(["slurmd", "-D", "-f", self.slurm_conf],
                                       f"slurmd-{host.name}.out"))

    def _slurm_states(self):
        out = self.head.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def _wait_slurm(self, timeout=60):
        def idle():
            states = self._slurm_states()
            return len(states) == len(self.hosts) and all(
                s == "idle" for s in states.values())
        _wait_for(idle, "slurmd on every host to register at slurmctld", timeout,
                  lambda: self.log_tail("slurmctld.log") + self.log_tail("slurmd-head.log"))

    def slurm_ready(self, timeout=90):
        """Every node idle again, as after start: a node that an earlier test cut off was
        marked down by slurmctld and would keep the next job pending."""
        for name, state in self._slurm_states().items():
            if state.rstrip("*~#") in ("down", "drain", "drng", "fail"):
                self.head.run(["scontrol", "update", f"NodeName={name}", "State=RESUME"],
                              check=False)
        self._wait_slurm(timeout)

    def log_tail(self, name, size=3000):
        try:
            with open(os.path.join(self.shared, name), "rb") as f:
                return f.read()[-size:].decode(errors="replace")
        except OSError:
            return f"(no {name})"

    # -- tear-down ------------------------------------------------------------------------
    def close(self):
        for host in self.hosts:
            if os.path.exists(f"/run/netns/{host.netns}"):
                _kill_netns(host.netns)
        for process in self.daemons + [h.holder for h in self.hosts if h.holder]:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream:
                    stream.close()
        for host in self.hosts:
            _run(["ip", "netns", "del", host.netns], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        if self.shared:
            shutil.rmtree(self.shared, ignore_errors=True)

    def leftovers(self):
        """Processes still running in the hosts' namespaces."""
        return [p for h in self.hosts for p in h.pids()]


def _wait_for(predicate, what, timeout=30, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}\n{detail()}")
        time.sleep(0.1)
