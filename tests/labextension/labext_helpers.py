"""Helpers of the JupyterLab extension tests: a real Jupyter server (a subprocess, with a token, a random free port, a temporary root
dir and a base URL) and real Rain clusters, sharing one private Rain runtime directory.

Every process started here, and everything those start (kernels, clusters started from
notebooks), carries ``RAIN_LABEXT_TEST=<unique id>`` in its environment, so teardown finds
and kills whatever is left, and fails the test if anything survived a clean stop.
"""
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid

import psutil
import requests

from rain.local_cluster import LocalCluster
from rain_cluster import alive, processes_of, wait_gone  # noqa: F401 (re-exported)

START_TIMEOUT = 60
MARKER = "RAIN_LABEXT_TEST"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_processes(marker):
    return processes_of(marker, MARKER)


def kill_leftovers(marker):
    """Kill the marked processes still running; return descriptions of them."""
    left = [p for p in marked_processes(marker) if alive(p)]
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    wait_gone(left, 10)
    return described


class Environment:
    """The runtime directory and environment shared by the Jupyter server and clusters."""

    def __init__(self, tmp):
        self.marker = uuid.uuid4().hex
        self.tmp = tmp
        self.runtime_dir = os.path.join(tmp, "rain-runtime")
        os.makedirs(self.runtime_dir, mode=0o700)
        self.env = dict(os.environ)
        self.env[MARKER] = self.marker
        self.env["RAIN_RUNTIME_DIR"] = self.runtime_dir
        self.env.pop("JUPYTER_TOKEN", None)

    def cluster(self, governors=(1, 1)):
        return LocalCluster(list(governors), env={MARKER: self.marker,
                                                   "RAIN_RUNTIME_DIR": self.runtime_dir})


class JupyterServer:
    """``jupyter lab`` (or ``jupyter server``) as a subprocess."""

    def __init__(self, environment, app="jupyter_server", base_url="/"):
        self.environment = environment
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base_url = base_url
        self.root_dir = os.path.join(environment.tmp, "notebooks")
        os.makedirs(self.root_dir, exist_ok=True)
        home = os.path.join(environment.tmp, "home")
        os.makedirs(home, exist_ok=True)
        self.env = dict(environment.env)
        # A private home and runtime dir: no user settings or workspaces of the machine
        # change what the test sees; the installed extensions still load from sys.prefix.
        self.env.update(HOME=home, JUPYTER_RUNTIME_DIR=os.path.join(environment.tmp, "jrt"),
                        JUPYTER_CONFIG_DIR=os.path.join(home, ".jupyter"),
                        JUPYTERLAB_WORKSPACES_DIR=os.path.join(home, "workspaces"),
                        JUPYTERLAB_SETTINGS_DIR=os.path.join(home, "lab-settings"),
                        IPYTHONDIR=os.path.join(home, ".ipython"))
        self.log_path = os.path.join(environment.tmp, f"{app}.log")
        command = [sys.executable, "-m", app, "--no-browser", "--ip=127.0.0.1",
                   f"--port={self.port}", "--port-retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
                   f"--ServerApp.base_url={base_url}",
                   "--ServerApp.open_browser=False"]
        if os.geteuid() == 0:
            command.append("--allow-root")
        if app == "jupyterlab":
            command += ["--LabApp.news_url=", "--LabApp.check_for_updates_class="
                        "jupyterlab.NeverCheckForUpdate"]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=self.root_dir, start_new_session=True)
        self.wait_ready()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    def api(self, path):
        return self.url + path.lstrip("/")

    def headers(self):
        return {"Authorization": f"token {self.token}"}

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Jupyter server exited: {self.log_text()}")
            try:
                r = requests.get(self.api("api/status"), headers=self.headers(), timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the Jupyter server did not start: {self.log_text()}")

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
