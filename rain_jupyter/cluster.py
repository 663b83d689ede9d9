"""A cluster started from a notebook (``%rain start``) and its life cycle.

The server and governors are children of the kernel. They die with it: ``LocalCluster``
sets ``PR_SET_PDEATHSIG`` on each child, and an ``atexit`` hook stops the cluster on a
normal kernel shutdown or restart. ``PR_SET_PDEATHSIG`` fires when the *thread* that
forked the child ends, so children are always spawned from the main thread or, when
called from another thread, from one long-lived spawner thread.
"""
import atexit
import concurrent.futures
import logging
import os
import threading
import time


from rain.local_cluster import LocalCluster

logger = logging.getLogger(__name__)

_spawner = None
_spawner_lock = threading.Lock()


def _in_spawning_thread(function, *args, **kwargs):
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return function(*args, **kwargs)
    with _spawner_lock:
        if _spawner is None:
            _spawner = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="rain-spawner")
    return _spawner.submit(function, *args, **kwargs).result()


def dashboard_link(http_port, direct_url):
    """The dashboard URL to show in the browser.

    Where only Jupyter's own port is reachable (mybinder.org, JupyterHub), the browser
    cannot open ``http://127.0.0.1:<port>/``; Rain's Jupyter server extension proxies each
    cluster's HTTP port at ``<jupyter base url>/rain/proxy/<port>/``. Set
    ``RAIN_DASHBOARD_PREFIX`` to that proxy's path (``binder/start`` sets it to
    ``${JUPYTERHUB_SERVICE_PREFIX}rain/proxy/``) and links point there instead.
    """
    prefix = os.environ.get("RAIN_DASHBOARD_PREFIX", "").strip()
    if not prefix or not http_port:
        return direct_url
    return f"{prefix.rstrip('/')}/{http_port}/dashboard/"


def default_cpus(governors):
    return max(1, (os.cpu_count() or 1) // max(1, governors))


class NotebookCluster:
    def __init__(self, governors=1, cpus=None, port=None, http_port=None, logdir=None,
                 governor_config=None):
        self.cpus = cpus
        self.local = LocalCluster([cpus] * governors, port=port, http_port=http_port,
                                  logdir=logdir, governor_config=governor_config)
        self.client = None
        self.started_at = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, timeout=60.0):
        _in_spawning_thread(self.local.start, timeout)
        atexit.register(self.stop)
        try:
            self.client = self.local.client()
        except BaseException:
            self.stop()
            raise
        self.started_at = time.time()
        return self

    def stop(self):
        atexit.unregister(self.stop)
        self.client = None
        self.local.stop()

    def is_running(self):
        return self.local.is_running()

    # -- description ------------------------------------------------------------------------
    @property
    def server_address(self):
        return self.local.server_address

    @property
    def dashboard_url(self):
        """The server's HTTP address as seen from this kernel (REST API under ``api/``)."""
        return self.local.dashboard_url

    @property
    def http_url(self):
        return self.local.dashboard_url

    @property
    def http_port(self):
        return self.local.http_port

    @property
    def http_headers(self):
        """Headers for requests to ``http_url``: the cluster's token (``rain.auth``)."""
        return self.local.http_headers

    @property
    def dashboard_link(self):
        """The dashboard as the browser should open it (see ``dashboard_link()``): direct
        links carry the token, links through Jupyter's proxy need none (it adds it)."""
        return dashboard_link(self.http_port, self.local.dashboard_link)

    @property
    def logdir(self):
        """Logs of the server (``server/events.db``) and governors."""
        return self.local.logdir

    @property
    def workdir(self):
        return self.local.workdir

    @property
    def governor_count(self):
        return len(self.local.governors)

    def pids(self):
        """Process ids of the server and the governors."""
        pids = []
        if getattr(self.local, "server_process", None) is not None:
            pids.append(self.local.server_process.pid)
        pids.extend(process.pid for _name, process, _cpus in self.local.governors)
        return pids

    def describe(self):
        cpus = sum((c or os.cpu_count() or 1) for _n, _p, c in self.local.governors)
        return (f"server {self.server_address} with {self.governor_count} governors "
                f"({cpus} CPUs), dashboard {self.dashboard_link}")

    # -- scaling ------------------------------------------------------------------------------
    def scale(self, count, timeout=60.0, progress=None):
        """Add or remove governors to have ``count``. Removed governors first finish the
        tasks they are running (up to ``timeout`` s; after it they are stopped anyway and
        the server re-runs what they had). Returns ``(added, removed, drained)``."""
        current = self.governor_count
        if count > current:
            _in_spawning_thread(self.local.add_governors, count - current, self.cpus)
            self._wait_registered(count)
            return count - current, 0, True
        if count == current:
            return 0, 0, True
        if progress is not None:
            progress(f"removing {current - count} governors once their running tasks end")
        self.local.remove_governors(current - count, drain_timeout=timeout)
        self._wait_registered(count)
        return 0, current - count, self.local.last_drained

    def _wait_registered(self, count, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.client.get_server_info().get("governors", ())) == count:
                return
            time.sleep(0.05)
