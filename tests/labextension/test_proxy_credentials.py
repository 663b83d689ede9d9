"""The dashboard proxy of the Jupyter server extension keeps Jupyter's credentials to
itself (docs/jupyterlab.md): what it forwards carries neither Jupyter's cookies nor its
token nor its XSRF header, only the Rain server's own token; cookies the upstream sets
do not reach the browser; and a POST from a logged-in browser needs Jupyter's XSRF token
or a same-origin Origin. The upstream is a header-echoing HTTP server registered as a Rain
server of this user (a state file and a token file), behind a real Jupyter server."""
import asyncio
import json
import os
import secrets
import threading
import time

import pytest
import requests
import tornado.httpserver
import tornado.ioloop
import tornado.web

from labext_helpers import free_port


class Echo(tornado.web.RequestHandler):
    def reply(self):
        self.set_cookie("upstream-cookie", "from-the-rain-server")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"method": self.request.method,
                                "headers": dict(self.request.headers.get_all())}))

    get = post = reply

    def check_xsrf_cookie(self):
        pass


class EchoServer:
    def __init__(self, runtime_dir):
        self.port = free_port()
        self.token = secrets.token_hex(20)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        tokens = os.path.join(runtime_dir, "tokens")
        os.makedirs(tokens, mode=0o700, exist_ok=True)
        self.token_path = os.path.join(tokens, f"echo-{self.port}")
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        servers = os.path.join(runtime_dir, "servers")
        os.makedirs(servers, exist_ok=True)
        self.state_path = os.path.join(servers, f"{os.getpid()}.json")
        with open(self.state_path, "w") as f:
            json.dump({"pid": os.getpid(), "address": "127.0.0.1:1", "host": "127.0.0.1",
                       "port": 1, "http_host": "127.0.0.1", "http_port": self.port,
                       "started": time.time(), "token_path": self.token_path}, f)

    def run(self):
        asyncio.set_event_loop(asyncio.new_event_loop())
        self.server = tornado.httpserver.HTTPServer(
            tornado.web.Application([(r"/.*", Echo)]))
        self.server.listen(self.port, "127.0.0.1")
        self.loop = tornado.ioloop.IOLoop.current()
        self.ready.set()
        self.loop.start()

    def stop(self):
        os.unlink(self.state_path)
        os.unlink(self.token_path)
        self.loop.add_callback(self.server.stop)
        self.loop.add_callback(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def upstream(environment):
    server = EchoServer(environment.runtime_dir)
    yield server
    server.stop()


def logged_in_browser(jupyter_server):
    """A session holding Jupyter's login cookie and its _xsrf cookie, as a browser has."""
    browser = requests.Session()
    r = browser.get(jupyter_server.api(f"lab?token={jupyter_server.token}"), timeout=60)
    assert r.status_code == 200, r.status_code
    assert browser.get(jupyter_server.api("api/status"), timeout=10).status_code == 200
    assert browser.cookies.get("_xsrf"), browser.cookies.keys()
    return browser


def test_the_proxy_forwards_no_jupyter_credentials(jupyter_server, upstream):
    browser = logged_in_browser(jupyter_server)
    browser.cookies.set("some-site-cookie", "private")
    url = jupyter_server.api(f"rain/proxy/{upstream.port}/anything?x=1")
    for method, extra in (("GET", {}), ("POST", {"X-XSRFToken": browser.cookies["_xsrf"]})):
        r = browser.request(method, url, headers=extra, data=b"{}", timeout=30)
        assert r.status_code == 200, r.text
        seen = {k.lower(): v for k, v in r.json()["headers"].items()}
        assert r.json()["method"] == method
        assert "cookie" not in seen, seen
        assert "x-xsrftoken" not in seen, seen
        assert seen["authorization"] == f"token {upstream.token}"
        assert "upstream-cookie" not in r.headers.get("Set-Cookie", "")
        assert "upstream-cookie" not in browser.cookies
    # Jupyter's token in a header is Jupyter's too: replaced, never passed on.
    r = requests.get(url, headers=jupyter_server.headers(), timeout=30)
    seen = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert seen["authorization"] == f"token {upstream.token}"
    assert jupyter_server.token not in json.dumps(seen)


def test_a_browser_post_passes_with_jupyters_xsrf_token(jupyter_server, upstream):
    browser = logged_in_browser(jupyter_server)
    url = jupyter_server.api(f"rain/proxy/{upstream.port}/dashboard/api/update")
    with_xsrf = browser.post(url, data=b"{}", timeout=30,
                             headers={"X-XSRFToken": browser.cookies["_xsrf"]})
    assert with_xsrf.status_code == 200, with_xsrf.text
    assert with_xsrf.json()["method"] == "POST"
    wrong = browser.post(url, data=b"{}", timeout=30, headers={"X-XSRFToken": "forged"})
    assert wrong.status_code == 403 and "headers" not in wrong.text
    bare = browser.post(url, data=b"{}", timeout=30)
    assert bare.status_code == 403 and "headers" not in bare.text
