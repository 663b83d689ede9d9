"""The Jupyter server extension of Rain: cluster list, stop, and a dashboard proxy.

Enabled by ``jupyter-config/jupyter_server_config.d/rain_jupyter.json`` (installed with the
package). Everything lives under Jupyter's base URL and behind its authentication, so the
JupyterLab sidebar and dashboard panes work where only the Jupyter port is reachable
(JupyterHub, Binder):

- ``GET  <base>/rain/api/clusters``: the Rain servers of this user on this machine (their
  state files, ``rain.statefile``), each with its governors, sessions and dashboard
  charts read from the server's HTTP port.
- ``DELETE <base>/rain/api/clusters/<pid>`` (or ``POST .../<pid>/stop``): stop that server
  and its governors.
- ``POST <base>/rain/api/clusters`` ``{"governors": N, "cpus": C}``: start a local cluster
  (``rain start``); ``GET .../clusters?brief=1``: only the pids of the servers (cheap).
- ``<base>/rain/proxy/<http port>/<path>``: HTTP and websocket requests forwarded to the
  HTTP port of a known Rain server of this machine (never to any other port or host).
- ``<base>/rain/report/<path>``: an HTML report under Jupyter's root shown as a page.
"""
import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import psutil
import tornado.httpclient
import tornado.web
import tornado.websocket
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado.routing import PathMatches, Rule

from rain.auth import auth_headers, token_of
from rain.runtime_dir import pid_alive
from rain.statefile import list_servers

logger = logging.getLogger(__name__)

AUTH_RESOURCE = "rain"
INFO_TIMEOUT = 2.0
STOP_TIMEOUT = 10.0
RECENT_SESSIONS = 3
LOOPBACK = ("127.0.0.1", "localhost", "::1")
START_TIMEOUT = 120
MAX_GOVERNORS = 16
#: Cluster ids of clusters started from the sidebar.
LAB_CLUSTER_PREFIX = "jupyterlab-"

# Headers that belong to one connection, not to the message (RFC 9110 7.6.1), plus the
# ones the proxy must not pass on (Jupyter's own credentials stay with Jupyter).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
REQUEST_DROP = HOP_BY_HOP | {"cookie", "authorization", "x-xsrftoken", "accept-encoding",
                             "sec-websocket-key", "sec-websocket-version",
                             "sec-websocket-extensions", "sec-websocket-protocol", "origin"}
RESPONSE_DROP = HOP_BY_HOP | {"content-encoding", "set-cookie", "server", "date"}
ABSOLUTE_ATTR = re.compile(r"""(\s(?:src|href|action|data-base)=["'])/(?!/)""")


def _jupyter_server_extension_points():
    return [{"module": "rain_jupyter.server_extension"}]


def _load_jupyter_server_extension(server_app):
    setup_handlers(server_app.web_app)
    # Kernels of this server link dashboards through the proxy: no token in notebooks.
    os.environ.setdefault("RAIN_DASHBOARD_PREFIX", url_path_join(
        server_app.web_app.settings.get("base_url", "/"), "rain", "proxy") + "/")
    # ... and link reports to their pages here (``report_link``).
    os.environ["RAIN_JUPYTER_BASE_URL"] = server_app.web_app.settings.get("base_url", "/")
    os.environ["RAIN_JUPYTER_ROOT"] = os.path.realpath(
        server_app.web_app.settings.get("server_root_dir") or os.getcwd())
    server_app.log.info("Rain extension: clusters and dashboard proxy under %srain/",
                        server_app.web_app.settings.get("base_url", "/"))


# ------------------------------------------------------------------------------------------
# Which servers exist, and what they say about themselves

def known_servers():
    """State of the live Rain servers of this user, by server pid."""
    return {int(s["pid"]): s for s in list_servers() if "pid" in s}


def server_by_http_port(port):
    for state in list_servers():
        if state.get("http_port") == port:
            return state
    return None


def upstream_tls(state):
    """The TLS context that reaches the server of ``state`` (its pinned certificate, or its
    CA), or None for a plain server."""
    from rain.tls import from_record
    tls = from_record(state.get("tls"))
    return tls.client_context() if tls is not None else None


def upstream_scheme(state, scheme="http"):
    """``http``/``ws``, or ``https``/``wss`` for a server that speaks TLS."""
    return scheme + "s" if state.get("tls") else scheme


def upstream_host(state):
    host = state.get("http_host") or "127.0.0.1"
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def cluster_records():
    """``rain start`` clusters (their records know every pid), by server port."""
    try:
        from rain.starter import list_clusters
        records = list_clusters()
    except Exception as exc:     # a damaged record must not break the listing
        logger.debug("cannot read cluster records: %s", exc)
        return {}
    by_port = {}
    for record in records:
        try:
            by_port[int(str(record.get("server", "")).rsplit(":", 1)[1])] = record
        except (IndexError, ValueError):
            continue
    return by_port


async def fetch_json(url, timeout=INFO_TIMEOUT, headers=None, ssl_options=None):
    client = tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(url, request_timeout=timeout, connect_timeout=timeout,
                                  headers=headers, raise_error=False, ssl_options=ssl_options)
    if response.code == 599 and response.error is not None:
        raise response.error
    if response.code != 200:
        raise LookupError(f"HTTP {response.code} from {url}")
    return json.loads(response.body)


def governor_summary(governor):
    return {"id": governor.get("governor"), "cpus": governor.get("cpus"),
            "cpu_usage": governor.get("cpu_usage"), "mem_usage": governor.get("mem_usage"),
            "running": governor.get("running", governor.get("assigned_tasks", 0)),
            "finished": governor.get("finished"), "alive": governor.get("alive", True)}


def session_summary(session):
    return {key: session.get(key) for key in (
        "session", "name", "status", "tasks", "waiting", "running", "finished", "failed",
        "progress", "created", "ended")}


def pick_sessions(sessions):
    """Open sessions, and the most recent few that ended (so a finished run stays visible)."""
    sessions = sorted(sessions, key=lambda s: s.get("session") or 0)
    open_ = [s for s in sessions if s.get("status") == "open"]
    ended = [s for s in sessions if s.get("status") != "open"][-RECENT_SESSIONS:]
    return [session_summary(s) for s in open_ + ended], len(sessions)


async def info_over_rest(state):
    base = f"{upstream_scheme(state)}://{upstream_host(state)}:{state['http_port']}"
    headers = auth_headers(token_of(state))
    tls = upstream_tls(state)
    governors, sessions, charts = await asyncio.gather(
        fetch_json(f"{base}/api/governors", headers=headers, ssl_options=tls),
        fetch_json(f"{base}/api/sessions", headers=headers, ssl_options=tls),
        fetch_json(f"{base}/charts.json", headers=headers, ssl_options=tls),
        return_exceptions=True)
    if isinstance(governors, BaseException):
        raise governors
    result = {"governors": [governor_summary(g) for g in governors if g.get("alive", True)]}
    if not isinstance(sessions, BaseException):
        result["sessions"], result["session_count"] = pick_sessions(sessions)
    if not isinstance(charts, BaseException) and isinstance(charts, list):
        # One list per cluster: its own charts and those following its latest session
        # (not a set more for every session it ever ran).
        result["charts"] = [{"id": c.get("id"), "title": c.get("title"), "url": c.get("url")}
                            for c in charts if isinstance(c, dict) and c.get("url")
                            and c.get("session") in (None, "latest")]
    return result


def info_over_rpc(state, timeout=INFO_TIMEOUT):
    """Fallback for a server without the REST API: ask it as a client does."""
    from rain.client import Client
    client = Client(state["host"], state["port"])
    try:
        info = client.get_server_info()
    finally:
        client.close()
    governors = []
    for governor in info.get("governors", ()):
        governors.append({"id": governor.get("governor_id"),
                          "cpus": (governor.get("resources") or {}).get("cpus"),
                          "cpu_usage": None, "mem_usage": None,
                          "running": len(governor.get("tasks", ())), "finished": None,
                          "alive": True})
    return {"governors": governors}


KERNEL_FILE = re.compile(r"kernel-([0-9a-f-]{36})\.json$")


def origin_of(pid, notebooks=None):
    """Who started a server that is not a ``rain start`` cluster: a notebook's kernel
    (``%rain start``; named by the notebook when this Jupyter server runs that kernel,
    ``notebooks``: kernel id -> notebook path), or the command of another program (a
    script using ``LocalCluster``)."""
    try:
        parent = psutil.Process(pid).parent()
        cmdline = parent.cmdline() if parent is not None else []
    except (psutil.Error, OSError):
        return "process"
    if parent is None:
        return "process"
    if any("ipykernel" in part for part in cmdline):
        for part in cmdline:
            found = KERNEL_FILE.search(part)
            if found and notebooks and found.group(1) in notebooks:
                return f"notebook {notebooks[found.group(1)]}"
        return "notebook kernel"
    command = " ".join(os.path.basename(part) if i == 0 else part
                       for i, part in enumerate(cmdline[:4]))
    return f"{command} (pid {parent.pid})" if command else f"process {parent.pid}"


def record_origin(record):
    if str(record.get("id", "")).startswith(LAB_CLUSTER_PREFIX):
        return "JupyterLab"
    return f"rain start ({record['id']})"


async def describe(state, records, notebooks=None):
    cluster = {key: state.get(key) for key in (
        "pid", "address", "host", "port", "http_host", "http_port", "started", "owner",
        "logdir")}
    cluster.update(governors=[], sessions=[], session_count=0, charts=[], reachable=False,
                   error=None, dashboard=state.get("dashboard"))
    record = records.get(state.get("port"))
    cluster["origin"] = record_origin(record) if record else \
        origin_of(state["pid"], notebooks)
    try:
        cluster.update(await info_over_rest(state))
        cluster["reachable"] = True
    except LookupError:
        try:
            loop = asyncio.get_running_loop()
            cluster.update(await asyncio.wait_for(
                loop.run_in_executor(None, info_over_rpc, state), INFO_TIMEOUT * 2))
            cluster["reachable"] = True
        except Exception as exc:
            cluster["error"] = f"server not answering: {exc}"
    except Exception as exc:
        cluster["error"] = f"server not answering: {exc}"
    return cluster


async def list_clusters(notebooks=None):
    servers = list_servers()
    records = cluster_records()
    clusters = await asyncio.gather(*(describe(s, records, notebooks) for s in servers))
    return sorted(clusters, key=lambda c: c.get("started") or 0)


async def kernel_notebooks(settings):
    """Kernel id -> path of the notebook (or console) using it, from this Jupyter server."""
    manager = settings.get("session_manager")
    if manager is None:
        return {}
    try:
        sessions = await manager.list_sessions()
    except Exception as exc:     # the listing is a nicety: never break the cluster list
        logger.debug("cannot list Jupyter sessions: %s", exc)
        return {}
    return {s["kernel"]["id"]: s.get("path") or s.get("name") for s in sessions
            if s.get("kernel")}


# ------------------------------------------------------------------------------------------
# Starting

def start_cluster(governors, cpus, cwd=None):
    """``rain start`` a local cluster of ``governors`` governors of ``cpus`` CPUs each on
    free ports; returns its record (as ``rain status`` knows it)."""
    port, http_port = _free_port(), _free_port()
    cluster_id = f"{LAB_CLUSTER_PREFIX}{port}"
    command = [sys.executable, "-m", "rain", "start", "--local-governors",
               json.dumps([cpus] * governors), "--listen", f"127.0.0.1:{port}",
               "--http-listen", f"127.0.0.1:{http_port}", "--cluster-id", cluster_id]
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT,
                          cwd=cwd, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError((done.stderr or done.stdout).strip()[-2000:] or
                           f"rain start exited with {done.returncode}")
    return {"id": cluster_id, "address": f"127.0.0.1:{port}", "http_port": http_port}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# Stopping

def governor_pids(state):
    """Local governor processes connected to this server (found by their command line:
    ``rain governor <host>:<port>``), of this user."""
    address = f"{state['host']}:{state['port']}"
    aliases = {address, f"localhost:{state['port']}", f"127.0.0.1:{state['port']}"}
    pids = []
    for process in psutil.process_iter(["pid", "cmdline", "uids"]):
        try:
            cmdline = process.info["cmdline"] or []
            uids = process.info["uids"]
        except (psutil.Error, KeyError):
            continue
        if uids is not None and uids.real != os.getuid():
            continue
        if "governor" in cmdline and aliases.intersection(cmdline) \
                and process.info["pid"] != state["pid"]:
            pids.append(process.info["pid"])
    return pids


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_server(state, timeout=STOP_TIMEOUT):
    """Stop a server and its governors: SIGTERM (governors first), SIGKILL after
    ``timeout``. A ``rain start`` cluster is stopped through its record, which also
    knows remote governors' ssh processes. Returns the pids signalled."""
    record = cluster_records().get(state.get("port"))
    if record is not None:
        from rain.starter import stop_cluster
        pids = list(record.get("pids", []))
        stop_cluster(record, timeout)
        return pids
    pids = governor_pids(state) + [int(state["pid"])]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            logger.warning("Rain process %s did not stop on SIGTERM; killing it", pid)
            _signal(pid, signal.SIGKILL)
    list_servers()      # drops the state file if the server could not remove it itself
    return pids


# ------------------------------------------------------------------------------------------
# Handlers

class ClustersHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @tornado.web.authenticated
    async def get(self):
        if self.get_query_argument("brief", None):
            # Which servers exist (their state files only): cheap, polled often so that
            # a new cluster shows up at once.
            pids = sorted(int(s["pid"]) for s in list_servers() if "pid" in s)
            self.finish(json.dumps({"pids": pids, "time": time.time()}))
            return
        notebooks = await kernel_notebooks(self.settings)
        self.finish(json.dumps({"clusters": await list_clusters(notebooks),
                                "time": time.time()}, default=str))

    @tornado.web.authenticated
    async def post(self):
        """Start a local cluster: ``{"governors": N, "cpus": C}`` (CPUs per governor)."""
        try:
            body = json.loads(self.request.body or b"{}")
            governors = int(body.get("governors", 1))
            cpus = int(body.get("cpus", 1))
        except (ValueError, TypeError, AttributeError):
            raise tornado.web.HTTPError(
                400, 'expected {"governors": <number>, "cpus": <number>}') from None
        most = psutil.cpu_count() or 1
        if not 1 <= governors <= MAX_GOVERNORS or not 1 <= cpus <= most:
            raise tornado.web.HTTPError(
                400, f"governors must be 1 to {MAX_GOVERNORS} and CPUs per governor 1 to "
                     f"{most} (the CPUs of this machine)")
        loop = asyncio.get_running_loop()
        root = self.settings.get("server_root_dir")
        try:
            started = await loop.run_in_executor(None, start_cluster, governors, cpus,
                                                 root if root and os.path.isdir(root) else None)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raise tornado.web.HTTPError(500, f"cannot start a Rain cluster: {exc}") from None
        logger.info("started Rain cluster %s (%d x %d CPUs)", started["id"], governors, cpus)
        self.set_status(201)
        self.finish(json.dumps(started))


class ClusterHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def find(self, pid):
        state = known_servers().get(int(pid))
        if state is None:
            raise tornado.web.HTTPError(404, f"no running Rain server with pid {pid}")
        return state

    @tornado.web.authenticated
    async def get(self, pid):
        state = self.find(pid)
        self.finish(json.dumps(await describe(state, cluster_records()), default=str))

    @tornado.web.authenticated
    async def delete(self, pid):
        state = self.find(pid)
        loop = asyncio.get_running_loop()
        pids = await loop.run_in_executor(None, stop_server, state)
        logger.info("stopped Rain server %s (%s) and processes %s", state["pid"],
                    state.get("address"), pids)
        self.finish(json.dumps({"stopped": True, "pid": state["pid"],
                                "address": state.get("address"), "pids": pids}))

    post = delete       # POST .../<pid>/stop


class ReportHandler(JupyterHandler):
    """``<base>/rain/report/<path>``: an HTML file under Jupyter's root directory (a
    ``rain report`` output) as a page of its own, so its charts run in a browser tab
    instead of JupyterLab's untrusted HTML viewer."""

    auth_resource = AUTH_RESOURCE

    @tornado.web.authenticated
    def get(self, path):
        root = os.path.realpath(self.settings.get("server_root_dir") or os.getcwd())
        full = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([root, full]) != root or not full.endswith((".html", ".htm")):
            raise tornado.web.HTTPError(404, "only HTML files under the Jupyter root")
        if not os.path.isfile(full):
            raise tornado.web.HTTPError(404, f"no file {path}")
        with open(full, "rb") as f:
            body = f.read()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(body)


def report_path(base_url, path):
    """``<base>/rain/report/<path>`` (for links from Python; ``path`` relative to
    Jupyter's root directory)."""
    return url_path_join(base_url, "rain", "report", quote(path.lstrip("/")))


def rewrite_html(body, prefix):
    """Make the absolute paths of a proxied page (``src="/dashboard/..."``) go through
    the proxy."""
    text = body.decode("utf-8", "replace")
    return ABSOLUTE_ATTR.sub(lambda m: m.group(1) + prefix + "/", text).encode("utf-8")


class ProxyMixin:
    def proxy_prefix(self, port):
        return url_path_join(self.base_url, "rain", "proxy", str(port))

    def upstream_url(self, port, path, scheme="http"):
        state = server_by_http_port(int(port))
        if state is None:
            raise tornado.web.HTTPError(
                404, f"no Rain server of this user with HTTP port {port} on this machine")
        self.upstream_state = state
        url = f"{upstream_scheme(state, scheme)}://{upstream_host(state)}:{int(port)}/" \
              f"{(path or '').lstrip('/')}"
        if self.request.query:
            url += "?" + self.request.query
        return url

    def upstream_headers(self):
        headers = {k: v for k, v in self.request.headers.get_all()
                   if k.lower() not in REQUEST_DROP}
        headers["X-Forwarded-Prefix"] = self.proxy_prefix(self.path_args[0])
        # Jupyter has authenticated the user; the Rain server wants its own token.
        headers.update(auth_headers(token_of(self.upstream_state)))
        return headers


class ProxyHandler(ProxyMixin, JupyterHandler):
    """HTTP requests to ``<base>/rain/proxy/<port>/<path>``, forwarded."""

    auth_resource = AUTH_RESOURCE
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def check_xsrf_cookie(self):
        """Jupyter's XSRF check, or else a same-origin ``Origin`` header: the proxied
        pages' own scripts post without Jupyter's XSRF token, and a browser always sends
        ``Origin`` on such a request, which another site cannot forge."""
        try:
            return super().check_xsrf_cookie()
        except tornado.web.HTTPError:
            origin = self.request.headers.get("Origin")
            if origin and origin == f"{self.request.protocol}://{self.request.host}":
                return None
            raise

    @tornado.web.authenticated
    async def proxy(self, port, path=""):
        url = self.upstream_url(port, path)
        method = self.request.method
        body = self.request.body if method in ("POST", "PUT", "PATCH", "DELETE") else None
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        request = tornado.httpclient.HTTPRequest(
            url, method=method, headers=self.upstream_headers(), body=body,
            follow_redirects=False, request_timeout=120, connect_timeout=10,
            decompress_response=True, allow_nonstandard_methods=True,
            ssl_options=upstream_tls(self.upstream_state))
        try:
            response = await tornado.httpclient.AsyncHTTPClient().fetch(
                request, raise_error=False)
        except (OSError, tornado.httpclient.HTTPClientError) as exc:   # timeouts are the latter
            raise tornado.web.HTTPError(502, f"Rain server on port {port}: {exc}") from None
        if response.code == 599:
            raise tornado.web.HTTPError(502, f"Rain server on port {port}: "
                                             f"{response.error}")
        self.set_status(response.code, response.reason)
        prefix = self.proxy_prefix(port)
        content_type = ""
        for name, value in response.headers.get_all():
            lower = name.lower()
            if lower in RESPONSE_DROP:
                continue
            if lower == "location" and value.startswith("/") and not value.startswith("//"):
                value = prefix + value
            if lower == "content-type":
                content_type = value
            self.set_header(name, value)
        payload = response.body or b""
        if content_type.startswith("text/html") and payload:
            payload = rewrite_html(payload, prefix)
        if method != "HEAD" and response.code not in (204, 304):
            self.write(payload)
        self.finish()

    get = head = post = put = patch = delete = options = proxy


class ProxyWebSocketHandler(ProxyMixin, WebSocketMixin, tornado.websocket.WebSocketHandler,
                            JupyterHandler):
    """Websocket connections to ``<base>/rain/proxy/<port>/<path>``, relayed both ways."""

    auth_resource = AUTH_RESOURCE
    upstream = None

    async def get(self, port, path=""):
        if self.current_user is None:
            raise tornado.web.HTTPError(403)
        self.target = self.upstream_url(port, path, scheme="ws")
        return await super().get(port, path)

    def select_subprotocol(self, subprotocols):
        return subprotocols[0] if subprotocols else None

    async def open(self, port, path=""):
        super().open(port, path)
        protocols = [p.strip() for p in self.request.headers.get(
            "Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        request = tornado.httpclient.HTTPRequest(
            self.target, headers=self.upstream_headers(), connect_timeout=10,
            request_timeout=None, ssl_options=upstream_tls(self.upstream_state))
        try:
            self.upstream = await tornado.websocket.websocket_connect(
                request, subprotocols=protocols or None)
        except Exception as exc:
            logger.info("proxy websocket to %s failed: %s", self.target, exc)
            self.close(1011, "cannot reach the Rain server")
            return
        asyncio.ensure_future(self.relay_from_upstream())

    async def relay_from_upstream(self):
        upstream = self.upstream
        while True:
            message = await upstream.read_message()
            if message is None:
                if self.ws_connection is not None:
                    self.close(upstream.close_code or 1000, upstream.close_reason)
                return
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except tornado.websocket.WebSocketClosedError:
                upstream.close()
                return

    async def on_message(self, message):
        if self.upstream is not None:
            try:
                await self.upstream.write_message(message, binary=isinstance(message, bytes))
            except tornado.websocket.WebSocketClosedError:
                self.close(1011, "the Rain server closed the connection")

    def on_close(self):
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


class WebSocketUpgrade(PathMatches):
    """Matches the path only on a websocket handshake."""

    def match(self, request):
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)


def setup_handlers(web_app):
    base_url = web_app.settings.get("base_url", "/")
    api = url_path_join(base_url, "rain", "api")
    proxy = url_path_join(base_url, "rain", "proxy") + r"/(\d+)(/.*)?"
    web_app.add_handlers(".*$", [
        (url_path_join(api, "clusters") + "/?", ClustersHandler),
        (url_path_join(api, "clusters") + r"/(\d+)/?", ClusterHandler),
        (url_path_join(api, "clusters") + r"/(\d+)/stop/?", ClusterHandler),
        (url_path_join(base_url, "rain", "report") + r"/(.+)", ReportHandler),
        Rule(WebSocketUpgrade(proxy), ProxyWebSocketHandler),
        (proxy, ProxyHandler),
    ])


def proxy_path(base_url, http_port, path="/"):
    """``<base>/rain/proxy/<port>/<path>`` (for links from Python)."""
    return url_path_join(base_url, "rain", "proxy", str(http_port), quote(path.lstrip("/")))
