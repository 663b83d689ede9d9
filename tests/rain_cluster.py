"""Real clusters for tests: a server and governors as processes on loopback ports.

Every process started here carries ``RAIN_TEST_CLUSTER=<unique id>`` in its environment
(executors inherit it), so teardown can find and kill whatever is left, and fail the test
if anything survived a clean stop.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import psutil

from rain.auth import auth_headers, token_for_server
from rain.client import Client
from rain.local_cluster import die_with_parent

START_TIMEOUT = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_of(marker, variable="RAIN_TEST_CLUSTER"):
    """Processes whose environment has ``variable=marker``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(variable) == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(procs, timeout=15.0):
    """The processes (psutil objects) still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if left:
            time.sleep(0.05)
    return left


def reap_leftovers(marker, timeout):
    """Wait up to ``timeout`` s for the marked processes to end; kill and return the rest."""
    deadline = time.monotonic() + timeout
    left = processes_of(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_of(marker)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return left


class TestCluster:
    __test__ = False

    def __init__(self, tmp_path, governors=(1,), env=None, governor_config=None,
                 start_governors=True, server_args=()):
        self.tmp = tmp_path
        self.marker = uuid.uuid4().hex
        self.env = dict(os.environ)
        self.env["RAIN_TEST_CLUSTER"] = self.marker
        self.env.setdefault("RAIN_DELETE_LIST_TIMEOUT", "0.2")
        self.env.update(env or {})
        self.governor_cpus = list(governors)
        self.governor_config = governor_config
        self.server_process = None
        self.governor_processes = []
        self.clients = []
        self.port = None
        self.http_port = None
        self.logdir = os.path.join(tmp_path, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self._start_governors = start_governors
        self.server_args = list(server_args)

    # -- processes ------------------------------------------------------------------------
    def _spawn(self, args, log_name):
        log = open(os.path.join(self.logdir, log_name), "ab")
        try:
            # Tied to this process as well: a test run that is killed (timeout, Ctrl-C
            # twice) never reaches the teardown, and must not leave a cluster running.
            return subprocess.Popen([sys.executable, "-m", "rain", *args], env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=die_with_parent)
        finally:
            log.close()

    def _wait_file(self, path, process, what):
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(path):
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}:\n"
                                   f"{self.log_tail(what)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not become ready:\n{self.log_tail(what)}")
            time.sleep(0.01)

    def log_tail(self, what):
        path = os.path.join(self.logdir, f"{what}.out")
        try:
            with open(path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def start(self):
        for attempt in range(5):
            self.port, self.http_port = free_port(), free_port()
            ready = os.path.join(self.tmp, f"server-{attempt}.ready")
            self.server_process = self._spawn(
                ["server", "--listen", f"127.0.0.1:{self.port}", "--http-listen",
                 f"127.0.0.1:{self.http_port}", "--logdir", os.path.join(self.tmp, "server"),
                 "--ready-file", ready, *self.server_args], "server.out")
            try:
                self._wait_file(ready, self.server_process, "server")
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        if self._start_governors:
            for cpus in self.governor_cpus:
                self.add_governor(cpus)
        return self

    def add_governor(self, cpus=1, extra_args=()):
        index = len(self.governor_processes)
        name = f"governor-{index}"
        ready = os.path.join(self.tmp, f"{name}.ready")
        args = ["governor", f"127.0.0.1:{self.port}", "--cpus", str(cpus),
                "--listen", "127.0.0.1:0",
                "--workdir", os.path.join(self.tmp, name),
                "--logdir", os.path.join(self.tmp, f"{name}-logs"), "--ready-file", ready]
        if self.governor_config:
            args += ["--config", self.governor_config]
        args += list(extra_args)
        process = self._spawn(args, f"{name}.out")
        self.governor_processes.append(process)
        self._wait_file(ready, process, name)
        return process

    def client(self):
        client = Client("127.0.0.1", self.port)
        self.clients.append(client)
        return client

    @property
    def server_address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def token(self):
        """The server's token, as a client of this user on this machine finds it."""
        return token_for_server("127.0.0.1", self.port)

    @property
    def http_headers(self):
        return auth_headers(self.token)

    def stop(self):
        for client in self.clients:
            try:
                client.close()
            except Exception:
                pass
        processes = self.governor_processes + [self.server_process]
        for process in processes:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in processes:
            if process is None:
                continue
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return reap_leftovers(self.marker, 5)


def wait_for(what, condition, timeout=60):
    """The first true value of ``condition()``, polled until ``timeout`` s (then an
    assertion error naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not seen within {timeout} s"
        time.sleep(0.1)
