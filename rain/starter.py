"""``rain start|stop|status``: a cluster of background processes, and its state file.

``rain start`` launches the server, waits for its ready file, launches the governors
(locally, or over ssh for a host list), waits for all of theirs, records the cluster in
``<runtime dir>/clusters/<id>.json`` and exits. A child that dies during start aborts the
whole start, kills the others and shows the dead one's log tail.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

from .auth import TokenFileError, local_server_state, read_token_file, token_of, with_token
from .common.address import (DEFAULT_HTTP_PORT, DEFAULT_SERVER_PORT, address_arg,
                             parse_listen_address)
from .common.private import private_dir
from .governor.workdir import clear_workdir
from .runtime_dir import clusters_dir, pid_alive, pid_is_ours, read_records

START_TIMEOUT = 60.0
LOG_TAIL = 3000


class StartError(Exception):
    pass


def add_start_arguments(p):
    p.add_argument("--simple", action="store_true",
                   help="a server and one local governor with all CPUs")
    p.add_argument("--local-governors", metavar="JSON", default=None,
                   help="local governors as a JSON list of CPU counts, e.g. [4,4,2]")
    p.add_argument("--governor-host-file", metavar="FILE", default=None,
                   help="start one governor per host listed in FILE (over ssh)")
    p.add_argument("--autoconf", choices=["pbs", "slurm"], default=None,
                   help="take the host list from PBS ($PBS_NODEFILE) or Slurm")
    p.add_argument("--remote-init", metavar="CMDS", default="",
                   help="shell commands run before each remote governor (e.g. module loads)")
    p.add_argument("-S", dest="reserve_cpu", action="store_true",
                   help="leave one CPU of the local machine to the server")
    p.add_argument("-l", "--listen", metavar="ADDR", default=None, type=address_arg,
                   help="server RPC address (default port 7210)")
    p.add_argument("--http-listen", metavar="ADDR", default=None, type=address_arg,
                   help="server HTTP address (default port 7222)")
    p.add_argument("--governor-config", metavar="FILE", default=None,
                   help="TOML config passed to every governor")
    p.add_argument("--runprefix", metavar="CMD", default=None,
                   help="prefix for the server and governor commands (e.g. a profiler)")
    p.add_argument("--workdir", metavar="DIR", default=None,
                   help="working directory root (default: a fresh temporary dir)")
    p.add_argument("--logdir", metavar="DIR", default=None,
                   help="log directory root (default: <workdir>/logs)")
    p.add_argument("--cluster-id", metavar="NAME", default=None,
                   help="name of the cluster in 'rain status' (default: the server port)")


def _rain_command(prefix):
    command = [sys.executable, "-m", "rain"]
    if prefix:
        command = shlex.split(prefix) + command
    return command


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"


def _read_hosts(path):
    hosts = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                hosts.append(line)
    if not hosts:
        raise StartError(f"no hosts in {path}")
    return hosts


def _autoconf_hosts(kind):
    if kind == "pbs":
        path = os.environ.get("PBS_NODEFILE")
        if not path:
            raise StartError("--autoconf pbs: $PBS_NODEFILE is not set (not inside a PBS job?)")
        hosts = _read_hosts(path)
        return list(dict.fromkeys(hosts))
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        raise StartError("--autoconf slurm: $SLURM_JOB_NODELIST is not set "
                         "(not inside a Slurm job?)")
    if shutil.which("scontrol") is None:
        raise StartError("--autoconf slurm: 'scontrol' is not available to expand "
                         f"the node list {nodelist!r}")
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise StartError(f"scontrol failed: {out.stderr.strip()}")
    return out.stdout.split()


def _local_ip_for(host):
    """The address of this machine that a remote host can reach."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


class Cluster:
    """Processes started so far; killed together when the start fails."""

    def __init__(self, workdir, logdir, env=None, preexec_fn=None):
        self.workdir = workdir
        self.logdir = logdir
        self.env = env
        self.preexec_fn = preexec_fn
        self.children = []     # (name, Popen, ready_file, log_path)

    def spawn(self, name, command, ready_file, log_path, stdin_text=None):
        """Start ``command``; ``stdin_text`` (e.g. a token for ``--token-file -``) is
        written to its standard input, which is closed after it."""
        log = open(log_path, "ab")
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                env=self.env, preexec_fn=self.preexec_fn)
        except OSError as exc:
            raise StartError(f"cannot start {name} ({shlex.join(command)}): {exc}") from None
        finally:
            log.close()
        if stdin_text is not None:
            try:
                process.stdin.write(stdin_text.encode())
                process.stdin.close()
            except OSError:
                pass        # it died at once: wait_ready reports it with its log
        self.children.append((name, process, ready_file, log_path))
        return process

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            waiting = False
            for name, process, ready_file, log_path in self.children:
                if ready_file and os.path.exists(ready_file):
                    continue
                code = process.poll()
                if code is not None:
                    raise StartError(f"{name} exited with code {code} during start; "
                                     f"the end of its log ({log_path}):\n{_tail(log_path)}")
                waiting = True
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = [n for n, _p, r, _l in self.children if r and not os.path.exists(r)]
                raise StartError(f"timed out after {timeout:.0f} s waiting for "
                                 f"{', '.join(names)}")
            time.sleep(0.02)

    def terminate(self, process, timeout=10.0):
        """Stop one child (SIGTERM to its group, SIGKILL after ``timeout``)."""
        _terminate(process.pid)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process.pid)
            process.wait()
        self.children = [c for c in self.children if c[1] is not process]

    def kill_all(self):
        for _name, process, _ready, _log in self.children:
            _terminate(process.pid)
        for _name, process, _ready, _log in self.children:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(process.pid)
                process.wait()


def _signal_group(pid, signum):
    """Signal the process group that ``pid`` leads (our children start their own), or
    only ``pid`` when it leads none: never a group someone else named."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(pid):
    _signal_group(pid, signal.SIGTERM)


def _kill(pid):
    _signal_group(pid, signal.SIGKILL)


def start_cluster(args):
    """Start everything; return the cluster record (dict) or raise StartError."""
    modes = sum(bool(x) for x in (args.simple, args.local_governors,
                                   args.governor_host_file, args.autoconf))
    if modes > 1:
        raise StartError("choose one of --simple, --local-governors, --governor-host-file, "
                         "--autoconf")
    local_cpus = []
    hosts = []
    cpu_count = os.cpu_count() or 1
    if args.local_governors:
        try:
            local_cpus = json.loads(args.local_governors)
        except ValueError:
            raise StartError(f"--local-governors: invalid JSON {args.local_governors!r}") \
                from None
        if not isinstance(local_cpus, list) or not local_cpus or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in local_cpus):
            raise StartError("--local-governors must be a non-empty JSON list of positive "
                             "CPU counts, e.g. [4,4,2]")
    elif args.governor_host_file:
        try:
            hosts = _read_hosts(args.governor_host_file)
        except OSError as exc:
            raise StartError(f"cannot read {args.governor_host_file}: {exc}") from None
    elif args.autoconf:
        hosts = _autoconf_hosts(args.autoconf)
    else:
        local_cpus = [max(1, cpu_count - (1 if args.reserve_cpu else 0))]
    if args.reserve_cpu and args.local_governors:
        pass  # explicit CPU counts win over -S

    # A cluster of this machine alone listens on loopback only; remote governors need
    # the server on an address they can reach (or the one given).
    default_host = "0.0.0.0" if hosts else "127.0.0.1"
    host, port = parse_listen_address(args.listen or DEFAULT_SERVER_PORT, DEFAULT_SERVER_PORT,
                                      default_host)
    http_host, http_port = parse_listen_address(args.http_listen or DEFAULT_HTTP_PORT,
                                                DEFAULT_HTTP_PORT, default_host)
    workdir = os.path.abspath(args.workdir) if args.workdir else \
        tempfile.mkdtemp(prefix="rain-cluster-")
    private_dir(workdir)
    logdir = os.path.abspath(args.logdir) if args.logdir else os.path.join(workdir, "logs")
    private_dir(logdir)
    cluster = Cluster(workdir, logdir)
    command = _rain_command(args.runprefix)
    try:
        ready = os.path.join(workdir, "server.ready")
        _remove(ready)
        server_logdir = os.path.join(logdir, "server")
        cluster.spawn("server", command + [
            "server", "--listen", f"{host}:{port}", "--http-listen", f"{http_host}:{http_port}",
            "--logdir", server_logdir, "--ready-file", ready],
            ready, os.path.join(logdir, "server.out"))
        cluster.wait_ready()
        connect_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        token_path = (local_server_state(connect_host, port) or {}).get("token_path")
        try:
            token = read_token_file(token_path) if token_path else ""
        except TokenFileError as exc:
            raise StartError(str(exc)) from None
        governors = []
        for i, cpus in enumerate(local_cpus):
            name = f"governor-{i}"
            gready = os.path.join(workdir, f"{name}.ready")
            _remove(gready)
            gcommand = command + [
                "governor", f"{connect_host}:{port}", "--cpus", str(cpus),
                "--listen", f"{'0.0.0.0' if hosts else '127.0.0.1'}:0",
                "--workdir", os.path.join(workdir, name),
                "--logdir", os.path.join(logdir, name), "--ready-file", gready]
            if args.governor_config:
                gcommand += ["--config", os.path.abspath(args.governor_config)]
            cluster.spawn(name, gcommand, gready, os.path.join(logdir, f"{name}.out"))
            governors.append({"name": name, "host": "localhost", "cpus": cpus})
        for i, remote in enumerate(hosts):
            name = f"governor-{remote}-{i}"
            gready = os.path.join(workdir, f"{name}.ready")
            _remove(gready)
            server_ip = _local_ip_for(remote) if connect_host == "127.0.0.1" else connect_host
            remote_cmd = shlex.join(command + [
                "governor", f"{server_ip}:{port}",
                "--workdir", os.path.join(workdir, name),
                "--logdir", os.path.join(logdir, name), "--ready-file", gready] + (
                ["--config", os.path.abspath(args.governor_config)]
                if args.governor_config else []) + (["--token-file", "-"] if token else []))
            if args.remote_init:
                remote_cmd = f"{args.remote_init}; {remote_cmd}"
            ssh = shutil.which("ssh")
            if ssh is None:
                raise StartError("starting remote governors needs 'ssh', which is not "
                                 "installed")
            # The ready file is looked for on a shared file system, as on clusters.
            # The token goes through ssh's standard input, never on a command line.
            cluster.spawn(name, [ssh, "-o", "BatchMode=yes", remote, remote_cmd], gready,
                          os.path.join(logdir, f"{name}.out"),
                          stdin_text=f"{token}\n" if token else None)
            governors.append({"name": name, "host": remote, "cpus": None})
        cluster.wait_ready()
    except BaseException:
        cluster.kill_all()
        raise
    record = {
        "id": args.cluster_id or str(port),
        "server": f"{connect_host}:{port}",
        "http": f"{'127.0.0.1' if http_host in ('0.0.0.0', '') else http_host}:{http_port}",
        "workdir": workdir,
        "logdir": logdir,
        "pids": [p.pid for _n, p, _r, _l in cluster.children],
        "create_times": [_create_time(p.pid) for _n, p, _r, _l in cluster.children],
        "governors": governors,
        "started": time.time(),
        "token_path": token_path,
    }
    os.makedirs(clusters_dir(), exist_ok=True)
    with open(os.path.join(clusters_dir(), f"{record['id']}.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def start_command(args, parser):
    try:
        record = start_cluster(args)
    except StartError as exc:
        print(f"rain start: {exc}", file=sys.stderr)
        return 1
    print(f"Rain cluster '{record['id']}' is running")
    print(f"  server:    {record['server']}")
    print(f"  dashboard: {dashboard_link(record)}")
    for governor in record["governors"]:
        cpus = f" ({governor['cpus']} cpus)" if governor["cpus"] else ""
        print(f"  {governor['name']} on {governor['host']}{cpus}")
    print(f"  logs:      {record['logdir']}")
    print("Stop it with: rain stop" + ("" if record["id"] == "7210" else f" {record['id']}"))
    return 0


def dashboard_link(record):
    """The cluster's dashboard as its user opens it: with the token (see ``rain.auth``)."""
    return with_token(f"http://{record['http']}/", token_of(record))


# What a cluster record must hold before `rain status`/`rain stop` read it.
CLUSTER_FIELDS = {"id": str, "server": str, "http": str, "logdir": str, "pids": list,
                  "governors": list}


def list_clusters():
    """Records of running clusters; records whose processes are all gone are removed."""
    result = []
    for path, record in read_records(clusters_dir(), CLUSTER_FIELDS):
        record["pids"] = _own_pids(record)
        if not any(pid_alive(pid) for pid in record["pids"]):
            _remove(path)
            continue
        record["_path"] = path
        result.append(record)
    return result


def _create_time(pid):
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _own_pids(record):
    """The recorded pids that still belong to the cluster's processes: a process of
    another user, or a pid reused by an unrelated process (different start time), is never
    signalled, whatever the record says."""
    pids = record["pids"]
    times = record.get("create_times")
    if not isinstance(times, list) or len(times) != len(pids):
        return []
    return [pid for pid, created in zip(pids, times)
            if isinstance(created, (int, float)) and pid_is_ours(pid, created)]


def stop_cluster(record, timeout=10.0):
    pids = record.get("pids", [])
    for pid in reversed(pids):
        _terminate(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            _kill(pid)
    _clear_local_workdirs(record)
    _remove(record["_path"])


def _clear_local_workdirs(record):
    """What killed local governors left in their work directories (stored objects, made
    immutable when run as root) goes with the cluster; the logs stay."""
    workdir = record.get("workdir")
    if not isinstance(workdir, str):
        return
    for governor in record.get("governors", []):
        if not isinstance(governor, dict):
            continue
        name = governor.get("name")
        if governor.get("host") == "localhost" and isinstance(name, str) \
                and name == os.path.basename(name) and name not in ("", ".", ".."):
            path = os.path.join(workdir, name)
            if os.path.isdir(path) and os.stat(path).st_uid == os.getuid():
                clear_workdir(path)


def stop_command(args):
    clusters = list_clusters()
    if args.all:
        chosen = clusters
    elif args.target is not None:
        chosen = [c for c in clusters if c["id"] == args.target
                  or c["server"].endswith(f":{args.target}")]
        if not chosen:
            print(f"rain stop: no running cluster {args.target!r}", file=sys.stderr)
            return 1
    else:
        if len(clusters) > 1:
            ids = ", ".join(c["id"] for c in clusters)
            print(f"rain stop: several clusters are running ({ids}); name one or use --all",
                  file=sys.stderr)
            return 2
        chosen = clusters
    if not chosen:
        print("rain stop: no running cluster", file=sys.stderr)
        return 1
    for record in chosen:
        stop_cluster(record)
        print(f"stopped cluster '{record['id']}' ({record['server']})")
    return 0


def status_command(args):
    clusters = list_clusters()
    if args.json:
        print(json.dumps([{k: v for k, v in c.items() if not k.startswith("_")}
                          for c in clusters], indent=1))
        return 0
    if not clusters:
        print("no running Rain cluster")
        return 0
    for record in clusters:
        alive = sum(pid_alive(p) for p in record["pids"])
        print(f"cluster '{record['id']}': server {record['server']}, dashboard "
              f"{dashboard_link(record)}, {len(record['governors'])} governor(s), "
              f"{alive}/{len(record['pids'])} processes alive, logs {record['logdir']}")
    return 0
