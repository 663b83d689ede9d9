"""The Jupyter server extension against a real Jupyter server and real Rain clusters:
installation, the cluster list, the dashboard proxy (HTTP and websocket), stop."""
import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests
import tornado.httpclient
import tornado.httpserver
import tornado.ioloop
import tornado.web
import tornado.websocket

from rain.client import tasks

from labext_helpers import free_port, wait_gone


def jupyter(*commands):
    """Output lines of ``jupyter`` commands (run at once), colours removed, words joined
    by single spaces."""
    running = [subprocess.Popen([sys.executable, "-m", "jupyter", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for args in commands]
    outputs = [p.communicate(timeout=120)[0] for p in running]
    return [[" ".join(re.sub(r"\x1b\[[0-9;]*m", "", line).split())
             for line in output.splitlines()] for output in outputs]


def test_extensions_installed_and_enabled():
    labext, server = jupyter(["labextension", "list"], ["server", "extension", "list"])
    assert any(line.startswith("rain-jupyter v") and "enabled OK" in line
               for line in labext), labext
    assert "rain_jupyter.server_extension enabled" in server, server
    assert "rain_jupyter.server_extension OK" in server, server


def run_graph(client, name="demo", size=3):
    with client.new_session(name) as session:
        outputs = [tasks.Concat((b"a" * i, b"b")) for i in range(size)]
        for task in outputs:
            task.output.keep()
        session.submit()
        session.wait_all()


def clusters_of(server):
    r = requests.get(server.api("rain/api/clusters"), headers=server.headers(), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["clusters"]


def test_needs_authentication(jupyter_server, cluster):
    r = requests.get(jupyter_server.api("rain/api/clusters"), timeout=10)
    assert r.status_code == 403
    r = requests.get(jupyter_server.api(f"rain/proxy/{cluster.http_port}/charts.json"),
                     timeout=10, allow_redirects=False)
    assert r.status_code in (302, 403)
    assert "charts" not in r.text
    servers_pid = clusters_of(jupyter_server)[0]["pid"]
    r = requests.delete(jupyter_server.api(f"rain/api/clusters/{servers_pid}"), timeout=10)
    assert r.status_code == 403
    assert cluster.is_running()


def test_list_clusters(jupyter_server, cluster):
    run_graph(cluster.client(), "listed", 4)
    [found] = clusters_of(jupyter_server)
    assert found["address"] == cluster.server_address
    assert found["http_port"] == cluster.http_port
    assert found["pid"] == cluster.server_process.pid
    assert found["reachable"] and found["error"] is None
    assert len(found["governors"]) == 2
    assert sum(g["cpus"] for g in found["governors"]) == 2
    assert all(isinstance(g["cpu_usage"], (int, float)) for g in found["governors"])
    [session] = [s for s in found["sessions"] if s["name"] == "listed"]
    assert session["status"] == "closed" and session["tasks"] == 4
    assert session["finished"] == 4 and session["progress"] == 1.0
    chart_ids = {c["id"] for c in found["charts"]}
    assert {"sessions", "governors"} <= chart_ids
    assert all(c["url"].startswith("/") and c["title"] for c in found["charts"])
    r = requests.get(jupyter_server.api(f"rain/api/clusters/{found['pid']}"),
                     headers=jupyter_server.headers(), timeout=10)
    assert r.status_code == 200 and r.json()["address"] == cluster.server_address
    r = requests.get(jupyter_server.api("rain/api/clusters/1"),
                     headers=jupyter_server.headers(), timeout=10)
    assert r.status_code == 404


def test_one_chart_list_per_cluster_and_its_origin(jupyter_server, cluster):
    """However many sessions ran, a cluster lists its own charts and the latest
    session's; a script's cluster is labelled with the script's command."""
    client = cluster.client()
    for name in ("first", "second", "third"):
        run_graph(client, name, 2)
    [found] = clusters_of(jupyter_server)
    ids = [c["id"] for c in found["charts"]]
    assert ids == ["sessions", "governors", "recoveries", "allocations", "cpu", "memory",
                   "summary-latest", "graph-latest", "inspector-latest", "stream-latest"], ids
    assert all("session=latest" in c["url"] for c in found["charts"][6:])
    assert found["origin"].startswith("python") and \
        found["origin"].endswith(f"(pid {os.getpid()})"), found["origin"]
    r = requests.get(jupyter_server.api("rain/api/clusters?brief=1"),
                     headers=jupyter_server.headers(), timeout=10)
    assert r.json()["pids"] == [found["pid"]]


@pytest.mark.parametrize("body", [{"governors": 0}, {"governors": 1, "cpus": 100000},
                                  {"governors": "many"}, "not an object"])
def test_start_refuses_bad_input(jupyter_server, body):
    r = requests.post(jupyter_server.api("rain/api/clusters"), json=body,
                      headers=jupyter_server.headers(), timeout=30)
    assert r.status_code == 400, r.text
    assert "governors" in r.json()["message"]
    assert clusters_of(jupyter_server) == []


def test_report_is_served_as_a_page(jupyter_server):
    folder = os.path.join(jupyter_server.root_dir, "reports")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "run.html"), "w") as f:
        f.write("<html><body><script>var charts = 1;</script>report</body></html>")
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not a page")
    url = jupyter_server.api("rain/report/reports/run.html")
    r = requests.get(url, headers=jupyter_server.headers(), timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "<script>var charts = 1;</script>" in r.text
    r = requests.get(url, timeout=10, allow_redirects=False)
    assert r.status_code in (302, 403) and "charts" not in r.text
    for path in ("reports/notes.txt", "reports/missing.html", "../../etc/passwd.html",
                 "%2e%2e/%2e%2e/x.html"):
        r = requests.get(jupyter_server.api(f"rain/report/{path}"),
                         headers=jupyter_server.headers(), timeout=10)
        assert r.status_code == 404, (path, r.status_code)


def test_list_is_empty_without_clusters(jupyter_server):
    assert clusters_of(jupyter_server) == []


def test_stale_state_file_is_ignored(jupyter_server, environment):
    directory = os.path.join(environment.runtime_dir, "servers")
    os.makedirs(directory, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = os.path.join(directory, f"{dead.pid}.json")
    with open(path, "w") as f:
        json.dump({"pid": dead.pid, "address": "127.0.0.1:1", "host": "127.0.0.1",
                   "port": 1, "http_host": "127.0.0.1", "http_port": 2}, f)
    assert clusters_of(jupyter_server) == []
    assert not os.path.exists(path)


def test_proxy_http(jupyter_server, cluster):
    run_graph(cluster.client(), "proxied")
    base = f"http://127.0.0.1:{cluster.http_port}"
    prefix = f"/base/rain/proxy/{cluster.http_port}"
    proxied = requests.get(jupyter_server.api(f"rain/proxy/{cluster.http_port}/charts.json"),
                           headers=jupyter_server.headers(), timeout=10)
    assert proxied.status_code == 200
    assert proxied.headers["Content-Type"].startswith("application/json")
    assert proxied.json() == requests.get(
        base + "/charts.json", timeout=10, headers=cluster.http_headers).json()
    # The proxy presents the server's token; the browser never needed it.
    assert requests.get(base + "/charts.json", timeout=10).status_code == 403

    # A chart page: its absolute links are made to go through the proxy.
    page = requests.get(jupyter_server.api(
        f"rain/proxy/{cluster.http_port}/dashboard/chart/sessions"),
        headers=jupyter_server.headers(), timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f'src="{prefix}/dashboard/static/rain-dashboard.js"' in page.text
    assert f'data-base="{prefix}/dashboard"' in page.text
    assert 'src="/dashboard' not in page.text
    script = requests.get(f"http://127.0.0.1:{jupyter_server.port}{prefix}"
                          "/dashboard/static/bokeh/bokeh.min.js",
                          headers=jupyter_server.headers(), timeout=30)
    assert script.status_code == 200 and len(script.content) > 100_000

    # Query strings and POST bodies pass through; errors keep their status.
    item = requests.get(jupyter_server.api(
        f"rain/proxy/{cluster.http_port}/dashboard/api/item/sessions?x=1"),
        headers=jupyter_server.headers(), timeout=10)
    assert item.status_code == 200 and "cursor" in item.json()
    update = requests.post(
        jupyter_server.api(f"rain/proxy/{cluster.http_port}/dashboard/api/update"),
        headers=jupyter_server.headers(),
        json={"charts": [{"chart": "sessions", "session": None,
                          "cursor": item.json()["cursor"]}]}, timeout=10)
    assert update.status_code == 200, update.text
    assert "charts" in update.json()
    missing = requests.get(jupyter_server.api(
        f"rain/proxy/{cluster.http_port}/api/sessions/999"),
        headers=jupyter_server.headers(), timeout=10)
    assert missing.status_code == 404 and "error" in missing.json()

    # Redirects stay inside the proxy.
    root = requests.get(jupyter_server.api(f"rain/proxy/{cluster.http_port}/"),
                        headers=jupyter_server.headers(), timeout=10, allow_redirects=False)
    assert root.status_code in (301, 302)
    assert root.headers["Location"] == f"{prefix}/dashboard/"


def test_proxy_post_from_the_browser_needs_same_origin(jupyter_server, cluster):
    """A logged-in browser (cookie, no token header): the dashboard's own POSTs carry a
    same-origin Origin header and pass; a cross-site POST does not."""
    browser = requests.Session()
    r = browser.get(jupyter_server.api(f"api/status?token={jupyter_server.token}"),
                    timeout=10)
    assert r.status_code == 200
    assert browser.get(jupyter_server.api("api/status"), timeout=10).status_code == 200, \
        "no login cookie"
    url = jupyter_server.api(f"rain/proxy/{cluster.http_port}/dashboard/api/update")
    body = {"charts": []}
    origin = f"http://127.0.0.1:{jupyter_server.port}"
    same = browser.post(url, json=body, headers={"Origin": origin}, timeout=10)
    assert same.status_code == 200, same.text
    cross = browser.post(url, json=body, headers={"Origin": "http://evil.example"},
                         timeout=10)
    assert cross.status_code in (403, 404) and "charts" not in cross.text
    bare = browser.post(url, json=body, timeout=10)
    assert bare.status_code == 403 and "charts" not in bare.text


def test_proxy_refuses_ports_that_are_not_rain_servers(jupyter_server, cluster):
    for port in (jupyter_server.port, cluster.port, free_port()):
        r = requests.get(jupyter_server.api(f"rain/proxy/{port}/api/status"),
                         headers=jupyter_server.headers(), timeout=10)
        assert r.status_code == 404, (port, r.status_code, r.text[:200])


REFUSED = (tornado.websocket.WebSocketError, tornado.httpclient.HTTPClientError)


class EchoSocket(tornado.websocket.WebSocketHandler):
    def select_subprotocol(self, subprotocols):
        return subprotocols[0] if subprotocols else None

    def on_message(self, message):
        reply = message if isinstance(message, bytes) else f"echo:{message}"
        self.write_message(reply, binary=isinstance(message, bytes))
        if message == "bye":
            self.close(4000, "asked to")


class WebSocketServer:
    """A websocket endpoint registered as a Rain server of this machine (a state file
    with this process's pid), so the proxy forwards to it."""

    def __init__(self, runtime_dir):
        self.port = free_port()
        self.loop = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        directory = os.path.join(runtime_dir, "servers")
        os.makedirs(directory, exist_ok=True)
        self.state_path = os.path.join(directory, f"{os.getpid()}.json")
        with open(self.state_path, "w") as f:
            json.dump({"pid": os.getpid(), "address": "127.0.0.1:1", "host": "127.0.0.1",
                       "port": 1, "http_host": "127.0.0.1", "http_port": self.port,
                       "started": time.time()}, f)

    def run(self):
        asyncio.set_event_loop(asyncio.new_event_loop())
        app = tornado.web.Application([(r"/ws/echo", EchoSocket)])
        self.server = tornado.httpserver.HTTPServer(app)
        self.server.listen(self.port, "127.0.0.1")
        self.loop = tornado.ioloop.IOLoop.current()
        self.ready.set()
        self.loop.start()

    def stop(self):
        os.unlink(self.state_path)
        self.loop.add_callback(self.server.stop)
        self.loop.add_callback(self.loop.stop)
        self.thread.join(10)


def test_proxy_websocket(jupyter_server, environment):
    upstream = WebSocketServer(environment.runtime_dir)
    try:
        url = (f"ws://127.0.0.1:{jupyter_server.port}/base/rain/proxy/{upstream.port}"
               f"/ws/echo?token={jupyter_server.token}")

        async def talk():
            ws = await tornado.websocket.websocket_connect(url, subprotocols=["rain.v1"])
            assert ws.selected_subprotocol == "rain.v1"
            await ws.write_message("hello")
            assert await ws.read_message() == "echo:hello"
            await ws.write_message(b"\x00\x01binary", binary=True)
            assert await ws.read_message() == b"\x00\x01binary"
            await ws.write_message("bye")
            assert await ws.read_message() == "echo:bye"
            assert await ws.read_message() is None       # closed by the upstream end
            ws.close()

            denied = f"ws://127.0.0.1:{jupyter_server.port}/base/rain/proxy/{upstream.port}/ws/echo"
            with pytest.raises(REFUSED):
                await tornado.websocket.websocket_connect(denied)
            unknown = (f"ws://127.0.0.1:{jupyter_server.port}/base/rain/proxy/"
                       f"{free_port()}/ws/echo?token={jupyter_server.token}")
            with pytest.raises(REFUSED):
                await tornado.websocket.websocket_connect(unknown)

        asyncio.run(asyncio.wait_for(talk(), 30))
    finally:
        upstream.stop()


def test_stop_notebook_style_cluster(jupyter_server, cluster):
    [found] = clusters_of(jupyter_server)
    processes = [psutil.Process(cluster.server_process.pid)] + \
        [psutil.Process(p.pid) for _n, p, _c in cluster.governors]
    r = requests.delete(jupyter_server.api(f"rain/api/clusters/{found['pid']}"),
                        headers=jupyter_server.headers(), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["stopped"] is True
    assert sorted(r.json()["pids"]) == sorted(p.pid for p in processes)
    assert wait_gone(processes) == []
    assert clusters_of(jupyter_server) == []


def test_stop_rain_start_cluster(jupyter_server, environment):
    port, http_port = free_port(), free_port()
    workdir = os.path.join(environment.tmp, "started")
    start = subprocess.run(
        [sys.executable, "-m", "rain", "start", "--local-governors", "[1,1]",
         "--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http_port}",
         "--workdir", workdir, "--cluster-id", "labext"],
        env=environment.env, capture_output=True, text=True, timeout=90)
    assert start.returncode == 0, start.stdout + start.stderr
    [found] = clusters_of(jupyter_server)
    assert found["port"] == port and found["origin"] == "rain start (labext)"
    assert len(found["governors"]) == 2
    records = os.path.join(environment.runtime_dir, "clusters", "labext.json")
    with open(records) as f:
        pids = json.load(f)["pids"]
    r = requests.post(jupyter_server.api(f"rain/api/clusters/{found['pid']}/stop"),
                      headers=jupyter_server.headers(), timeout=30)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["pids"]) == sorted(pids)
    assert wait_gone([psutil.Process(p) for p in pids if psutil.pid_exists(p)]) == []
    assert not os.path.exists(records)
    assert clusters_of(jupyter_server) == []
    status = subprocess.run([sys.executable, "-m", "rain", "status"], env=environment.env,
                            capture_output=True, text=True, timeout=30)
    assert "no running Rain cluster" in status.stdout


def test_list_without_rest_api_falls_back_to_rpc(jupyter_server, environment):
    """A server started without its dashboard and REST API is still listed, with its
    governors asked for over the client protocol."""
    cluster = environment.cluster((1,))
    cluster.env["RAIN_DASHBOARD"] = "off"
    cluster.start()
    try:
        [found] = clusters_of(jupyter_server)
        assert found["reachable"] and found["error"] is None
        assert [g["cpus"] for g in found["governors"]] == [1]
        assert found["charts"] == []
    finally:
        cluster.stop()
