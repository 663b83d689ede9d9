"""Automatic allocation: batch jobs that bring governors while tasks wait, and let them go
when they are idle.

``Policy`` decides from what the server reports (waiting tasks, governors and their
assigned tasks) and what the scheduler reports (jobs and their nodes); it does no I/O.
``Autoscaler`` is the shell around it: it polls the server's REST API and the batch
scheduler (``SlurmJobs`` or ``PbsJobs``), submits one-node jobs whose batch script is a
governor, and ends an idle one by its graceful drain (SIGUSR1: finish, take nothing new,
exit), so the job ends by itself. Each job's state changes go to the server
(``POST /api/allocations``), whose dashboard lists them with the governors they brought.
"""
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from ..auth import auth_headers, token_for_server
from ..tls import CERT_PEM_ENV, KEY_PEM_ENV, read_pem, tls_for_server
from ..common.address import parse_server_address

logger = logging.getLogger(__name__)


class AllocError(Exception):
    pass


def parse_duration(text):
    """``90s``, ``30m``, ``1h``, ``1h30m`` or ``[[H:]M:]S`` -> seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(:\d{1,2}){0,2}", text):
        seconds = 0
        for part in text.split(":"):
            seconds = seconds * 60 + int(part)
        return seconds
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or not m:
        raise AllocError(f"invalid duration {text!r} (e.g. 1h, 30m, 90s, 01:30:00)")
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s


def hms(seconds):
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# -- the decisions ------------------------------------------------------------------------

class Policy:
    """Submit a job when tasks wait and no CPU is free (one queued job at a time, at most
    ``max_nodes`` jobs); drain the governor of a job that had no task for
    ``idle_timeout`` seconds while nothing waits."""

    def __init__(self, max_nodes, idle_timeout):
        self.max_nodes = max_nodes
        self.idle_timeout = idle_timeout
        self.idle_since = {}        # job id -> when its governor was first seen idle

    def decide(self, now, waiting, governors, jobs):
        """``waiting``: tasks waiting in open sessions; ``governors``: {address host:
        (free cpus, assigned tasks)}; ``jobs``: {job id: (state, node address or None)},
        state "queued", "running" or "draining". Returns ``(submit: bool, drain: [ids])``."""
        free = sum(f for f, _a in governors.values())
        queued = [j for j, (state, _n) in jobs.items() if state == "queued"]
        submit = bool(waiting) and free == 0 and not queued and len(jobs) < self.max_nodes
        drain = []
        for job, (state, node) in jobs.items():
            governor = governors.get(node) if node else None
            if state != "running" or governor is None or governor[1] or waiting:
                self.idle_since.pop(job, None)
                continue
            since = self.idle_since.setdefault(job, now)
            if now - since >= self.idle_timeout:
                drain.append(job)
        for job in list(self.idle_since):
            if job not in jobs:
                del self.idle_since[job]
        return submit, drain


# -- the batch schedulers -----------------------------------------------------------------

def _run(argv, timeout=30):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AllocError(f"{argv[0]} failed: {exc}") from None
    if result.returncode != 0:
        raise AllocError(f"{shlex.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def governor_script(server, cpus_expr, python=sys.executable):
    """The batch script: the job is one governor (so SIGUSR1 to the script drains it)."""
    return ("#!/bin/sh\n"
            f"exec {shlex.quote(python)} -m rain governor {shlex.quote(server)} "
            f"--cpus {cpus_expr} --ready-file -\n")


class SlurmJobs:
    name = "slurm"
    commands = ("sbatch", "squeue", "scancel")

    def __init__(self, time_seconds, args):
        self.minutes = max(1, (time_seconds + 59) // 60)
        self.args = list(args)

    def submit_command(self, script_path):
        # The job's output goes where sbatch puts it by default (slurm-JOBID.out in the
        # current directory): on a path of the submitting host, which nodes need not have.
        return ["sbatch", "--parsable", "--nodes=1", "--ntasks=1", f"--time={self.minutes}",
                "--job-name=rain-governor"] + self.args + [script_path]

    def submit(self, server, workdir, env):
        script = _write_script(workdir, "governor.sbatch", server,
                               '"${SLURM_CPUS_ON_NODE:-1}"')
        return _submit(self.submit_command(script), env).split(";")[0]

    def states(self, ids):
        """{id: (state, node)} of the jobs still known to Slurm."""
        if not ids:
            return {}
        out = _run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %t %N"])
        result = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ids:
                state = {"PD": "queued", "CF": "queued", "R": "running"}.get(parts[1])
                if state:
                    result[parts[0]] = (state, parts[2] if len(parts) > 2 else None)
        return result

    def drain(self, job):
        _run(["scancel", "--batch", "--signal=USR1", job])

    def cancel(self, jobs):
        if jobs:
            _run(["scancel"] + list(jobs))


def _write_script(workdir, name, server, cpus):
    """The batch script of one governor job (``cpus``: a shell expression)."""
    script = os.path.join(workdir, name)
    with open(script, "w") as f:
        f.write(governor_script(server, cpus))
    return script


def _submit(argv, env):
    """Run a scheduler's submit command; its output (the job id), or AllocError."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env,
                         check=False)
    if out.returncode != 0:
        raise AllocError(f"{argv[0]} failed: {out.stderr.strip()}")
    return out.stdout.strip()


class PbsJobs:
    name = "pbs"
    commands = ("qsub", "qstat", "qsig", "qdel")

    def __init__(self, time_seconds, args):
        self.walltime = hms(time_seconds)
        self.args = list(args)

    def submit_command(self, script_path):
        return ["qsub", "-V", "-N", "rain-governor", "-j", "oe",
                "-l", "nodes=1", "-l", f"walltime={self.walltime}"] + self.args + [script_path]

    def submit(self, server, workdir, env):
        script = _write_script(workdir, "governor.pbs", server, '"$(wc -l < "$PBS_NODEFILE")"')
        return _submit(self.submit_command(script), env)

    def states(self, ids):
        result = {}
        for job in ids:
            try:
                out = _run(["qstat", "-f", job])
            except AllocError:
                continue            # finished and forgotten
            state = re.search(r"job_state = (\w)", out)
            host = re.search(r"exec_host = ([^/\s]+)", out)
            code = state.group(1) if state else ""
            if code in ("Q", "H", "W"):
                result[job] = ("queued", None)
            elif code == "R":
                result[job] = ("running", host.group(1) if host else None)
        return result

    def drain(self, job):
        _run(["qsig", "-s", "USR1", job])

    def cancel(self, jobs):
        if jobs:
            _run(["qdel"] + list(jobs))


SCHEDULERS = {"slurm": SlurmJobs, "pbs": PbsJobs}


# -- the shell ----------------------------------------------------------------------------

class Autoscaler:
    """``Autoscaler("head:7210", "slurm", max_nodes=4, time="1h").start()`` adds
    governors in one-node jobs while tasks wait; ``stop()`` cancels its jobs; as a context
    manager (``with Autoscaler(...):``) it starts and stops around the block.
    ``scheduler_args`` go to sbatch/qsub as they are (partition, account...). Each job's
    state goes to the server, whose dashboard lists the allocations."""

    def __init__(self, server, scheduler="slurm", *, max_nodes=1, time="1h",
                 scheduler_args=(), idle_timeout=60.0, interval=2.0, http=None,
                 workdir=None):
        if scheduler not in SCHEDULERS:
            raise AllocError(f"unknown scheduler {scheduler!r} (slurm or pbs)")
        if max_nodes < 1:
            raise AllocError("--max-nodes must be at least 1")
        self.server = server
        host, port = parse_server_address(server)
        self.token = token_for_server(host, port)
        self.tls = tls_for_server(host, port)   # a TLS cluster: https, and its governors
        self.http = http or self._find_http(host, port)
        self.jobs = SCHEDULERS[scheduler](parse_duration(time), scheduler_args)
        missing = [c for c in self.jobs.commands if shutil.which(c) is None]
        if missing:
            raise AllocError(f"{scheduler} allocations need {', '.join(missing)}, not found "
                             "on this machine's PATH")
        self.policy = Policy(max_nodes, idle_timeout)
        self.interval = interval
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="rain-alloc-")
        self.allocations = {}       # job id -> {"state", "node", "submitted", "since"}
        self.last_error = None      # the last failure of a round, for whoever shows it
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        self._hosts = {}

    @staticmethod
    def _find_http(host, port):
        from ..auth import local_server_state
        state = local_server_state(host, port)
        if not state:
            raise AllocError(f"no server of this user at {host}:{port} on this machine "
                             "(give its dashboard address with --http)")
        return f"{host}:{state['http_port']}"

    def _get(self, path):
        scheme = "https" if self.tls is not None else "http"
        request = urllib.request.Request(f"{scheme}://{self.http}/api/{path}",
                                         headers=auth_headers(self.token))
        context = self.tls.client_context() if self.tls is not None else None
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.load(response)

    def _report(self, job, state, reason=""):
        """Tell the server (its dashboard, ``GET /api/allocations``) a job's new state. A
        server that cannot be told does not stop the scaling."""
        allocation = self.allocations.get(job, {})
        node = allocation.get("node")
        body = {"allocation": job, "scheduler": self.jobs.name, "state": state,
                "nodes": [node] if node and state == "running" else [],
                "addresses": [self._address_of(node)] if node and state == "running" else [],
                "reason": reason}
        headers = {"Content-Type": "application/json", **auth_headers(self.token)}
        request = urllib.request.Request(f"http://{self.http}/api/allocations",
                                         data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (OSError, ValueError) as exc:
            logger.warning("could not report allocation %s (%s) to the server: %s",
                           job, state, exc)

    def status(self):
        """``[{"allocation", "state", "node", "since"}]`` of the jobs now known (state
        queued, running or draining), oldest first."""
        with self._lock:
            return [{"allocation": job, **a} for job, a in self.allocations.items()]

    def _address_of(self, node):
        if node not in self._hosts:
            try:
                self._hosts[node] = socket.gethostbyname(node)
            except OSError:
                self._hosts[node] = node
        return self._hosts[node]

    def step(self, now=None):
        """One round: look, decide, act."""
        now = time.time() if now is None else now
        sessions = self._get("sessions")
        waiting = sum(s.get("waiting", 0) for s in sessions
                      if s.get("status") in ("open", "running", None))
        governors = {}
        for g in self._get("governors"):
            if g.get("alive"):
                host = str(g["governor"]).rsplit(":", 1)[0]
                free, assigned = governors.get(host, (0, 0))
                governors[host] = (free + g.get("free_cpus", 0),
                                   assigned + g.get("assigned_tasks", 0))
        known = self.jobs.states(list(self.allocations))
        for job in list(self.allocations):
            if job not in known:
                logger.info("allocation %s ended", job)
                drained = self.allocations[job]["state"] == "draining"
                with self._lock:
                    del self.allocations[job]
                self._report(job, "ended", "idle, its governor left" if drained
                             else "ended in the batch scheduler")
        jobs = {}
        for job, (state, node) in known.items():
            allocation = self.allocations[job]
            if allocation["state"] == "draining":
                state = "draining"
            started = state == "running" and allocation["state"] == "queued"
            with self._lock:
                allocation.update(state=state, node=node)
                if started:
                    allocation["since"] = now
            if started:
                self._report(job, "running")
            jobs[job] = (state, self._address_of(node) if node else None)
        submit, drain = self.policy.decide(now, waiting, governors, jobs)
        for job in drain:
            logger.info("allocation %s is idle: its governor leaves", job)
            self.jobs.drain(job)
            with self._lock:
                self.allocations[job].update(state="draining", since=now)
        if submit:
            env = dict(os.environ)
            if self.token:
                env["RAIN_TOKEN"] = self.token      # the job's governor finds it there
            if self.tls is not None and self.tls.can_listen:     # with the cluster's TLS
                env[CERT_PEM_ENV] = read_pem(self.tls.cert).decode("ascii")
                env[KEY_PEM_ENV] = read_pem(self.tls.key).decode("ascii")
                if self.tls.ca is not None:
                    env["RAIN_TLS_CA"] = self.tls.ca
            job = self.jobs.submit(self.server, self.workdir, env)
            logger.info("%d task(s) wait: submitted allocation %s", waiting, job)
            with self._lock:
                self.allocations[job] = {"state": "queued", "node": None, "submitted": now,
                                         "since": now}
            self._report(job, "queued")
        return submit, drain

    def run(self):
        while not self._stop.is_set():
            try:
                self.step()
                self.last_error = None
            except (AllocError, OSError, ValueError) as exc:
                logger.warning("autoscaling: %s", exc)
                self.last_error = str(exc)
            self._stop.wait(self.interval)

    def start(self):
        self._thread = threading.Thread(target=self.run, name="rain-autoscaler", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop scaling and cancel the jobs it submitted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        jobs = list(self.allocations)
        try:
            self.jobs.cancel(jobs)
        except AllocError as exc:
            logger.warning("%s", exc)
        for job in jobs:
            self._report(job, "ended", "cancelled when the autoscaler stopped")
        with self._lock:
            self.allocations.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self):
        return self._thread is not None and not self._stop.is_set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def alloc_command(args):
    """``rain alloc slurm|pbs``: scale until interrupted (SIGINT/SIGTERM), then cancel."""
    import signal
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s rain alloc %(levelname)s: %(message)s")
    scheduler_args = list(args.scheduler_args)
    try:
        scaler = Autoscaler(args.server, args.scheduler, max_nodes=args.max_nodes,
                            time=args.time, scheduler_args=scheduler_args,
                            idle_timeout=args.idle_timeout, interval=args.interval,
                            http=args.http)
    except AllocError as exc:
        print(f"rain alloc: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    scaler.start()
    logger.info("scaling %s with %s jobs (at most %d at once)", args.server,
                args.scheduler, args.max_nodes)
    done.wait()
    scaler.stop()
    return 0
