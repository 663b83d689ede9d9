"""``rain start|stop|status``: a cluster of background processes, and its state file.

``rain start`` launches the server, waits for its ready file, launches the governors
(locally, over ssh for a host list or PBS, as a job step under Slurm), waits until all are
ready, records the cluster in ``<runtime dir>/clusters/<id>.json`` and exits. A child that
dies during start aborts the whole start, kills the others and shows the dead one's log
tail. Remote governors keep their work and logs in node-local temporary directories and
say they are ready with a line that ssh or srun brings back (``rain.alloc.launch``);
``rain stop`` fetches their logs into the head's log directory.
"""
import argparse
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

from .alloc import launch, nodes
from .auth import TokenFileError, local_server_state, read_token_file, token_of, with_token
from .common.address import (DEFAULT_HTTP_PORT, DEFAULT_SERVER_PORT, address_arg,
                             is_loopback, parse_listen_address,
                             parse_listen_range)
from .common.private import private_dir
from .common.readyfile import read_ready_lines
from .governor.workdir import clear_workdir
from .runtime_dir import clusters_dir, pid_alive, pid_is_ours, read_records
from .tls import (CERT_PEM_ENV, KEY_PEM_ENV, TlsError, add_tls_arguments, listener_tls,
                  local_names, make_cluster_certificate, read_pem, remove_cluster_certificate,
                  tls_disabled)

START_TIMEOUT = 60.0
LOG_TAIL = 3000


class StartError(Exception):
    pass


TLS_HELP = """\
TLS: a cluster with governors on other hosts (--governor-host-file, --autoconf) speaks TLS
on its RPC, data and HTTP ports. rain start makes a self-signed certificate for it (EC
P-256, named after the addresses the server listens on), kept user-only in the runtime
directory with the token and removed by rain stop, and hands certificate and key to the
governors with the token (over ssh's standard input, or srun's environment). Every party
pins that exact certificate (its SHA-256 fingerprint); no certificate authority is trusted
for it. Clients on this machine find it by themselves; elsewhere set RAIN_TLS_CERT to a
copy of the certificate file, or RAIN_TLS_PIN to the fingerprint rain start prints.

With --tls-cert/--tls-key a site certificate is used instead, verified against the
system's CAs or --tls-ca FILE (clients: RAIN_TLS_CA), host names included; governors present
it on their data ports too, so it must name their hosts as well (a wildcard, say).
A cluster of this machine alone listens on loopback and stays plain. --no-tls (or
RAIN_TLS=off) turns TLS off: the token then travels in clear text.
"""


def add_start_arguments(p):
    p.epilog = TLS_HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--simple", action="store_true",
                   help="a server and one local governor with all CPUs")
    p.add_argument("--local-governors", metavar="JSON", default=None,
                   help="local governors as a JSON list of CPU counts, e.g. [4,4,2]")
    p.add_argument("--governor-host-file", metavar="FILE", default=None,
                   help="start one governor per host listed in FILE (over ssh)")
    p.add_argument("--autoconf", choices=["pbs", "slurm"], default=None,
                   help="inside a batch job: PBS ($PBS_NODEFILE, over ssh, CPUs from its "
                        "line counts) or Slurm (a job step on every node of the job, CPUs "
                        "of the allocation)")
    p.add_argument("--remote-init", metavar="CMDS", default="",
                   help="shell commands run before each remote governor (e.g. module loads)")
    p.add_argument("--ssh-command", metavar="CMD", default=None,
                   help="ssh client with its options, e.g. 'ssh -p 2222 -i KEY -J JUMP' "
                        "(default: $RAIN_SSH, else 'ssh')")
    p.add_argument("--governor-ports", metavar="PORTS", default=None, type=_ports_arg,
                   help="data listener port of every governor: PORT or FIRST-LAST "
                        "(default: any free port)")
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
    add_tls_arguments(p, "start")


def _ports_arg(text):
    try:
        if ":" in text:
            raise ValueError("give a port or a range FIRST-LAST, without a host")
        parse_listen_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid ports {text!r}: {exc}") from None
    return text


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
        self.children = []     # (name, Popen, ready, log_path); ready: a file or ReadyLines

    def spawn(self, name, command, ready, log_path, stdin_text=None, env=None):
        """Start ``command``; ``stdin_text`` (e.g. a token for ``--token-file -``) is
        written to its standard input, which is closed after it; ``env`` replaces the
        cluster's environment for this child."""
        log = open(log_path, "ab")
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                env=env or self.env, preexec_fn=self.preexec_fn)
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
        self.children.append((name, process, ready, log_path))
        return process

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            waiting = []
            for name, process, ready, log_path in self.children:
                if ready is None or _is_ready(ready):
                    continue
                code = process.poll()
                if code is not None and not _is_ready(ready):
                    raise StartError(f"{name} exited with code {code} during start; "
                                     f"the end of its log ({log_path}):\n{_tail(log_path)}")
                waiting.append(name)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise StartError(f"timed out after {timeout:.0f} s waiting for "
                                 f"{', '.join(waiting)}")
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


class ReadyLines:
    """Ready once ``count`` ready lines (``rain.common.readyfile``) are in the log that
    ssh or srun writes on this host."""

    def __init__(self, log_path, count=1, host=None):
        self.log_path = log_path
        self.count = count
        self.host = host        # as the user named it (ssh); None: as the lines say (srun)

    def infos(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return read_ready_lines(f.read())
        except OSError:
            return []


def _is_ready(ready):
    if isinstance(ready, ReadyLines):
        return len(ready.infos()) >= ready.count
    return os.path.exists(ready)


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


def _is_wildcard(host):
    return host in ("0.0.0.0", "::", "")



class Addresses:
    """Where the server listens and how each party reaches it, decided in one place: this
    machine connects to ``local``, a governor on host H to ``for_host(H)``, a browser to
    the dashboard at ``http_link``."""

    def __init__(self, listen, http_listen, remote_hosts):
        # A cluster of this machine alone listens on loopback only; remote governors need
        # the server on an address they can reach (or the one given).
        default_host = "0.0.0.0" if remote_hosts else "127.0.0.1"
        self.governor_host = default_host
        self.host, self.port = parse_listen_address(listen or DEFAULT_SERVER_PORT,
                                                    DEFAULT_SERVER_PORT, default_host)
        self.http_host, self.http_port = parse_listen_address(
            http_listen or DEFAULT_HTTP_PORT, DEFAULT_HTTP_PORT, default_host)
        elsewhere = [h for h in remote_hosts
                     if not is_loopback(h) and h != socket.gethostname()]
        if elsewhere and is_loopback(self.host):
            raise StartError(
                f"--listen {listen}: a loopback address cannot be reached by governors on "
                f"other hosts ({', '.join(elsewhere[:3])}); listen on all interfaces "
                f"(e.g. -l {self.port}) or on this host's address in the cluster network")
        self.local = "127.0.0.1" if _is_wildcard(self.host) else self.host
        self.remote_hosts = remote_hosts
        http = self.http_host
        if _is_wildcard(http):
            # From elsewhere (the login node) the dashboard is where the governors go.
            http = self._host_for(remote_hosts[0]) if remote_hosts else "127.0.0.1"
        self.http_link = f"{http}:{self.http_port}"

    def _host_for(self, remote):
        return _local_ip_for(remote) if _is_wildcard(self.host) else self.host

    def for_host(self, remote):
        return f"{self._host_for(remote)}:{self.port}"

    @property
    def server(self):
        """The address ``rain status`` shows: one that works from every host."""
        if self.remote_hosts:
            return self.for_host(self.remote_hosts[0])
        return f"{self.local}:{self.port}"


def _cluster_hosts(args):
    """``(local CPU counts, [(remote host, cpus or None)], launcher)``."""
    modes = sum(bool(x) for x in (args.simple, args.local_governors,
                                   args.governor_host_file, args.autoconf))
    if modes > 1:
        raise StartError("choose one of --simple, --local-governors, --governor-host-file, "
                         "--autoconf")
    try:
        if args.governor_host_file:
            return [], [(h, None) for h in nodes.read_host_file(args.governor_host_file)], \
                "ssh"
        if args.autoconf == "pbs":
            return [], nodes.pbs_nodes(os.environ), "ssh"
        if args.autoconf == "slurm":
            return [], nodes.slurm_nodes(os.environ), "srun"
    except nodes.NodesError as exc:
        raise StartError(str(exc)) from None
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
        return local_cpus, [], None     # explicit CPU counts win over -S
    cpu_count = os.cpu_count() or 1
    return [max(1, cpu_count - (1 if args.reserve_cpu else 0))], [], None


def cluster_tls(args, addresses, name, remote):
    """The cluster's TLS as ``(Tls, made)``, ``made`` telling whether its files were made
    here for it (and go with it). A cluster of this machine alone listens on loopback and
    stays plain, unless given a certificate; one with governors elsewhere gets a certificate
    of its own, pinned by every party, unless given a site certificate (or --no-tls)."""
    if args.no_tls or tls_disabled():
        return None, False
    try:
        if args.tls_cert or args.tls_key:
            return listener_tls(args.tls_cert, args.tls_key, args.tls_ca), False
        if not remote:
            return None, False
        hosts = local_names() if _is_wildcard(addresses.host) else \
            [addresses.host, "localhost", "127.0.0.1"]
        cert, key = make_cluster_certificate(name, hosts)
        try:
            return listener_tls(cert, key, args.tls_ca), True
        except TlsError:
            remove_cluster_certificate((cert, key))
            raise
    except TlsError as exc:
        raise StartError(str(exc)) from None


def _tls_arguments(tls, files=True):
    """Command-line options giving a server or local governor ``tls`` (``files``: by its
    files; else ``-``, the PEM blocks following the token on standard input)."""
    if tls is None:
        return []
    argv = ["--tls-cert", tls.cert if files else "-", "--tls-key", tls.key if files else "-"]
    if tls.ca is not None:
        argv += ["--tls-ca", tls.ca]
    return argv


def _tls_secrets(tls):
    """What goes to a remote governor after its token: the certificate and key, PEM."""
    return (read_pem(tls.cert).decode("ascii"), read_pem(tls.key).decode("ascii"))


def start_cluster(args):
    """Start everything; return the cluster record (dict) or raise StartError."""
    local_cpus, remote, launcher = _cluster_hosts(args)
    addresses = Addresses(args.listen, args.http_listen, [h for h, _c in remote])
    ssh = None
    if launcher == "ssh":
        try:
            ssh = launch.ssh_argv(args.ssh_command)
        except launch.LaunchError as exc:
            raise StartError(str(exc)) from None
    workdir = os.path.abspath(args.workdir) if args.workdir else \
        tempfile.mkdtemp(prefix="rain-cluster-")
    private_dir(workdir)
    logdir = os.path.abspath(args.logdir) if args.logdir else os.path.join(workdir, "logs")
    private_dir(logdir)
    cluster = Cluster(workdir, logdir)
    command = _rain_command(args.runprefix)
    port = addresses.port
    tls, tls_made = cluster_tls(args, addresses, args.cluster_id or str(port), remote)
    try:
        ready = os.path.join(workdir, "server.ready")
        _remove(ready)
        server_logdir = os.path.join(logdir, "server")
        cluster.spawn("server", command + [
            "server", "--listen", f"{addresses.host}:{port}",
            "--http-listen", f"{addresses.http_host}:{addresses.http_port}",
            "--logdir", server_logdir, "--ready-file", ready] + _tls_arguments(tls),
            ready, os.path.join(logdir, "server.out"))
        cluster.wait_ready()
        token_path = (local_server_state(addresses.local, port) or {}).get("token_path")
        try:
            token = read_token_file(token_path) if token_path else ""
        except TokenFileError as exc:
            raise StartError(str(exc)) from None
        extra = ["--no-tls"] if tls is None and (args.no_tls or tls_disabled()) else []
        if args.governor_config:
            extra += ["--config", os.path.abspath(args.governor_config)]
        # Local governors of a cluster with remote ones must be reachable from those;
        # alone, they listen on loopback (their default next to a server on loopback).
        if args.governor_ports:
            extra += ["--listen", f"{addresses.governor_host}:{args.governor_ports}"]
        elif remote:
            extra += ["--listen", "0.0.0.0:0"]
        governors = []
        for i, cpus in enumerate(local_cpus):
            name = f"governor-{i}"
            gready = os.path.join(workdir, f"{name}.ready")
            _remove(gready)
            gcommand = command + [
                "governor", f"{addresses.local}:{port}", "--cpus", str(cpus),
                "--workdir", os.path.join(workdir, name),
                "--logdir", os.path.join(logdir, name), "--ready-file", gready] + extra \
                + _tls_arguments(tls)
            cluster.spawn(name, gcommand, gready, os.path.join(logdir, f"{name}.out"))
            governors.append({"name": name, "host": "localhost", "cpus": cpus})
        if launcher == "ssh":
            _spawn_ssh_governors(cluster, args, remote, addresses, command, extra, token, ssh,
                                 tls)
        elif launcher == "srun":
            _spawn_slurm_step(cluster, args, remote, addresses, command, extra, token, tls)
        cluster.wait_ready()
        governors += _remote_governors(cluster, launcher)
    except BaseException:
        cluster.kill_all()
        if tls_made:
            remove_cluster_certificate((tls.cert, tls.key))
        raise
    record = {
        "id": args.cluster_id or str(port),
        "server": addresses.server,
        "http": addresses.http_link,
        "workdir": workdir,
        "logdir": logdir,
        "pids": [p.pid for _n, p, _r, _l in cluster.children],
        "server_pid": cluster.children[0][1].pid,
        "create_times": [_create_time(p.pid) for _n, p, _r, _l in cluster.children],
        "governors": governors,
        "started": time.time(),
        "token_path": token_path,
        "launcher": launcher,
        "ssh": ssh,
        "slurm_job": os.environ.get("SLURM_JOB_ID") if launcher == "srun" else None,
        # its certificate (removed with the cluster when made for it) and how to verify it
        "tls": None if tls is None else {"cert": tls.cert, "key": tls.key, "ca": tls.ca,
                                         "fingerprint": tls.pin, "made": tls_made},
    }
    os.makedirs(clusters_dir(), exist_ok=True)
    with open(os.path.join(clusters_dir(), f"{record['id']}.json"), "w") as f:
        json.dump(record, f, indent=1)
    return record


def _remote_command(args, command, server_address, cpus, name, extra):
    """The governor's command line on another host: work and logs stay node-local unless
    --workdir names a directory (which must then exist there too) and the governor has a
    ``name`` of its own there (a Slurm step's governors do not: they stay node-local)."""
    argv = command + ["governor", server_address, "--ready-file", "-"] + extra
    if cpus:
        argv += ["--cpus", str(cpus)]
    if args.workdir and name:
        argv += ["--workdir", os.path.join(os.path.abspath(args.workdir), name)]
    return argv


def _spawn_ssh_governors(cluster, args, remote, addresses, command, extra, token, ssh, tls):
    secrets = f"{token}\n" if token else ""
    if tls is not None:
        secrets += "".join(_tls_secrets(tls))
    for i, (host, cpus) in enumerate(remote):
        name = f"governor-{host}-{i}"
        argv = _remote_command(args, command, addresses.for_host(host), cpus, name, extra)
        if token:
            argv += ["--token-file", "-"]
        argv += _tls_arguments(tls, files=False)
        remote_cmd = shlex.join(argv)
        if args.remote_init:
            remote_cmd = f"{args.remote_init}; {remote_cmd}"
        # The token (and the TLS certificate and key after it) go through ssh's standard
        # input, never on a command line.
        log_path = os.path.join(cluster.logdir, f"{name}.out")
        cluster.spawn(name, launch.ssh_command(ssh, host, remote_cmd),
                      ReadyLines(log_path, host=host),
                      log_path, stdin_text=secrets or None)


def _spawn_slurm_step(cluster, args, remote, addresses, command, extra, token, tls):
    hosts = [h for h, _c in remote]
    cpus = [c for _h, c in remote]
    argv = _remote_command(args, command, addresses.for_host(hosts[0]), None, None, extra)
    step = launch.srun_step(len(hosts), None if None in cpus else cpus, argv,
                            args.remote_init)
    if shutil.which("srun") is None:
        raise StartError("--autoconf slurm needs 'srun', which is not installed here")
    log_path = os.path.join(cluster.logdir, "governors.out")
    # srun passes its environment to the tasks: the token goes there, not on a command line.
    env = dict(os.environ if cluster.env is None else cluster.env)
    if token:
        env["RAIN_TOKEN"] = token
    if tls is not None:
        env[CERT_PEM_ENV], env[KEY_PEM_ENV] = _tls_secrets(tls)
        if tls.ca is not None:
            env["RAIN_TLS_CA"] = tls.ca
    cluster.spawn("governors (srun)", step, ReadyLines(log_path, len(hosts)), log_path,
                  env=env)


def _remote_governors(cluster, launcher):
    """The remote governors as their ready lines describe them (host, CPUs, node-local log
    directory)."""
    governors = []
    for name, _process, ready, _log in cluster.children:
        if not isinstance(ready, ReadyLines):
            continue
        for info in ready.infos():
            gname = name if ready.host else f"governor-{info.get('host')}"
            governors.append({"name": gname, "host": ready.host or info.get("host"),
                              "cpus": info.get("cpus"), "logdir": info.get("logdir"),
                              "launcher": launcher})
    return governors


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
    tls = record.get("tls")
    if tls:
        how = f"pinned sha256:{tls['fingerprint']}" if tls.get("ca") is None else \
            f"verified against {tls['ca']}"
        print(f"  tls:       {tls['cert']} ({how})")
    for governor in record["governors"]:
        cpus = f" ({governor['cpus']} cpus)" if governor["cpus"] else ""
        print(f"  {governor['name']} on {governor['host']}{cpus}")
    print(f"  logs:      {record['logdir']}")
    print("Stop it with: rain stop" + ("" if record["id"] == "7210" else f" {record['id']}"))
    return 0


def dashboard_link(record):
    """The cluster's dashboard as its user opens it: with the token (see ``rain.auth``)."""
    scheme = "https" if record.get("tls") else "http"
    return with_token(f"{scheme}://{record['http']}/", token_of(record))


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
    remote = [g for g in record.get("governors", []) if g.get("launcher")]
    if remote:
        # The server first: remote governors leave when it is gone, and then their logs
        # are fetched from their hosts.
        if record.get("server_pid") in pids:
            _terminate(record["server_pid"])
        _wait_gone(pids, timeout)
        collect_logs(record, remote)
    for pid in reversed(pids):
        _terminate(pid)
    _wait_gone(pids, timeout)
    for pid in pids:
        if pid_alive(pid):
            _kill(pid)
    _clear_local_workdirs(record)
    tls = record.get("tls")
    if isinstance(tls, dict) and tls.get("made") is True:
        remove_cluster_certificate((tls.get("cert"), tls.get("key")))
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


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.05)


def collect_logs(record, governors, timeout=60.0):
    """Copy each remote governor's node-local log directory (its executors' logs
    included) into ``<logdir>/<governor name>/`` on this host, and remove it there."""
    for governor in governors:
        if not governor.get("logdir"):
            continue
        remote_cmd = launch.collect_logs_command(governor["logdir"])
        if governor["launcher"] == "srun":
            argv = launch.srun_on(governor["host"], remote_cmd)
            if record.get("slurm_job"):
                argv.insert(1, f"--jobid={record['slurm_job']}")
        else:
            argv = launch.ssh_command(record.get("ssh") or ["ssh"], governor["host"],
                                      remote_cmd)
        target = os.path.join(record["logdir"], governor["name"])
        os.makedirs(target, exist_ok=True)
        try:
            fetch = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        except OSError as exc:
            problem = str(exc)
        else:
            try:
                unpack = subprocess.run(["tar", "-C", target, "-xf", "-"],
                                        stdin=fetch.stdout, capture_output=True,
                                        timeout=timeout, check=False)
                fetch.wait(timeout=timeout)
                problem = fetch.stderr.read().decode(errors="replace").strip() \
                    if fetch.returncode else ""
                if not problem and unpack.returncode:
                    problem = unpack.stderr.decode(errors="replace").strip()
            except (OSError, subprocess.TimeoutExpired) as exc:
                problem = f"no answer ({exc})"
            finally:
                if fetch.poll() is None:
                    fetch.kill()
                    fetch.wait()
                fetch.stdout.close()
                fetch.stderr.close()
        if problem:
            print(f"rain stop: could not fetch the logs of {governor['name']} from "
                  f"{governor['host']}:{governor['logdir']}: {problem}", file=sys.stderr)


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
