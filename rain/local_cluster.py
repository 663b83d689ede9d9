"""A server and governors as child processes of this Python process.

Used by the demo, by ``%rain start`` in notebooks and by benchmarks. The children are
tied to this process (``PR_SET_PDEATHSIG`` on Linux): if it dies, they get SIGTERM, so a
crashed kernel or script leaves nothing running.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .auth import auth_headers, cluster_token, with_token
from .common.lifetime import die_with_parent
from .common.private import private_dir
from .starter import Cluster, StartError

def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalCluster:
    """``LocalCluster(governors=[2, 2]).start()``: a cluster on loopback; ``stop()`` ends it.

    ``port``/``http_port`` default to free ports; ``env`` adds environment variables of
    the children. ``logdir`` keeps the logs (the server's ``events.db`` in
    ``<logdir>/server``) in a directory of your choice that ``stop()`` leaves in place;
    by default they live in the work directory and are removed with it.
    ``governor_config`` is a governor TOML file (``[executors.NAME]``, ``[resources]``)
    given to every governor.
    """

    def __init__(self, governors=(None,), *, port=None, http_port=None, workdir=None,
                 env=None, host="127.0.0.1", logdir=None, governor_config=None,
                 server_args=()):
        self.governor_cpus = list(governors)
        self.server_args = list(server_args)     # more ``rain server`` options
        self.host = host
        self.port = port
        self.http_port = http_port
        self._own_workdir = workdir is None
        # Our own work directory is made by start(): a cluster never started leaves none.
        self.workdir = workdir
        self._logdir = os.path.abspath(logdir) if logdir else None
        self.governor_config = os.path.abspath(governor_config) if governor_config else None
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.token = None       # the cluster's token (rain.auth), made by start()
        self._cluster = None
        self.governors = []     # (name, Popen)
        self._clients = []
        self._counter = 0

    @property
    def server_address(self):
        return f"{self.host}:{self.port}"

    @property
    def dashboard_url(self):
        """The server's HTTP address (send ``http_headers`` with requests to it)."""
        return f"http://{self.host}:{self.http_port}/"

    @property
    def dashboard_link(self):
        """The dashboard as a browser opens it: with the token, traded for a cookie."""
        return with_token(self.dashboard_url, self.token)

    @property
    def http_headers(self):
        """What an HTTP request to the server must carry (the REST API, the event log)."""
        return auth_headers(self.token)

    def _command(self):
        return [sys.executable, "-m", "rain"]

    @property
    def logdir(self):
        if self._logdir is not None:
            return self._logdir
        return os.path.join(self.workdir, "logs") if self.workdir is not None else None

    def start(self, timeout=60.0):
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="rain-local-")
        private_dir(self.logdir)
        if self.token is None:
            self.token = cluster_token(self.env)
        if self.token:
            self.env["RAIN_TOKEN"] = self.token     # the server's and the governors'
        self._cluster = Cluster(self.workdir, self.logdir, env=self.env,
                                preexec_fn=die_with_parent)
        fixed = self.port is not None
        for attempt in range(1 if fixed else 5):
            port = self.port if fixed else free_port(self.host)
            http_port = self.http_port or free_port(self.host)
            ready = os.path.join(self.workdir, f"server-{attempt}.ready")
            process = self._cluster.spawn("server", self._command() + [
                "server", "--listen", f"{self.host}:{port}",
                "--http-listen", f"{self.host}:{http_port}",
                "--logdir", os.path.join(self.logdir, "server"), "--ready-file", ready,
                *self.server_args], ready, os.path.join(self.logdir, "server.out"))
            try:
                self._cluster.wait_ready(timeout)
            except StartError:
                self._cluster.children.remove(next(c for c in self._cluster.children
                                                   if c[1] is process))
                if fixed or attempt == 4:
                    self.stop()
                    raise
                continue
            self.port, self.http_port = port, http_port
            self.server_process = process
            break
        try:
            for cpus in self.governor_cpus:
                self._spawn_governor(cpus)
            self._cluster.wait_ready(timeout)
        except StartError:
            self.stop()
            raise
        return self

    def _spawn_governor(self, cpus):
        name = f"governor-{self._counter}"
        self._counter += 1
        ready = os.path.join(self.workdir, f"{name}.ready")
        command = self._command() + [
            "governor", self.server_address, "--listen", f"{self.host}:0",
            "--workdir", os.path.join(self.workdir, name),
            "--logdir", os.path.join(self.logdir, name), "--ready-file", ready]
        if cpus is not None:
            command += ["--cpus", str(cpus)]
        if self.governor_config:
            command += ["--config", self.governor_config]
        process = self._cluster.spawn(name, command, ready,
                                      os.path.join(self.logdir, f"{name}.out"))
        self.governors.append((name, process, cpus))
        return process

    def add_governors(self, count, cpus=None, timeout=60.0):
        for _ in range(count):
            self._spawn_governor(cpus)
        self._cluster.wait_ready(timeout)

    def remove_governors(self, count, drain_timeout=None):
        """Stop the ``count`` most recently added governors.

        With ``drain_timeout`` they first leave gracefully (SIGUSR1: the server sends them
        no new tasks and re-queues what waits there; they exit once their running tasks
        are done), and are terminated when that takes longer. Returns their names and
        whether all drained in time."""
        victims = self.governors[-count:] if count else []
        drained = True
        if drain_timeout is not None:
            for _name, process, _cpus in victims:
                try:
                    process.send_signal(signal.SIGUSR1)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + drain_timeout
            for _name, process, _cpus in victims:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    drained = False
        for name, process, _cpus in victims:
            self._cluster.terminate(process)
        for entry in victims:
            self.governors.remove(entry)
        self.last_drained = drained
        return [name for name, _p, _c in victims]

    def client(self):
        from .client import Client
        client = Client(self.host, self.port, token=self.token or "")
        self._clients.append(client)
        return client

    def is_running(self):
        return self._cluster is not None and self.server_process.poll() is None

    def stop(self):
        for client in self._clients:
            try:
                client.close()
            except Exception:
                pass
        self._clients = []
        if self._cluster is not None:
            self._cluster.kill_all()
            self._cluster = None
        self.governors = []
        if self._own_workdir and self.workdir is not None:
            import shutil
            from .governor.protect import remove_tree
            remove_tree(self.workdir)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        if self._cluster is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait_governors(self, count, timeout=10.0):
        """Wait until the server reports ``count`` governors."""
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            info = client.get_server_info()
            if len(info["governors"]) == count or time.monotonic() > deadline:
                return info
            time.sleep(0.05)
