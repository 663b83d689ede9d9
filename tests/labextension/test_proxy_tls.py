"""The Jupyter proxy reaches a Rain server that speaks TLS (https, its pinned certificate)."""
import os
import signal
import subprocess
import sys
import time

import requests

from labext_helpers import free_port
from rain.tls import make_certificate


def start_tls_server(environment, tmp):
    cert, key = make_certificate(["127.0.0.1", "localhost"])
    paths = []
    for name, data in (("server.crt", cert), ("server.key", key)):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        paths.append(path)
    http_port = free_port()
    ready = os.path.join(tmp, "server.ready")
    process = subprocess.Popen(
        [sys.executable, "-m", "rain", "server", "-l", f"127.0.0.1:{free_port()}",
         "--http-listen", f"127.0.0.1:{http_port}", "--logdir", os.path.join(tmp, "logs"),
         "--ready-file", ready, "--tls-cert", paths[0], "--tls-key", paths[1]],
        env=environment.env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        assert process.poll() is None, "the TLS server exited"
        assert time.monotonic() < deadline, "the TLS server did not become ready"
        time.sleep(0.05)
    wait_answering(f"https://127.0.0.1:{http_port}/charts.json", paths[0], process)
    return process, http_port


def wait_answering(url, cert, process):
    """Until the server answers over https (any answer: it mounts its dashboard right after
    it is ready, and answers nothing meanwhile)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url, verify=cert, timeout=30)
            return
        except requests.RequestException:
            pass
        assert process.poll() is None, "the TLS server exited"
        assert time.monotonic() < deadline, "the TLS server does not answer"
        time.sleep(0.2)


def jupyter_log(server):
    with open(server.log_path, errors="replace") as f:
        return f.read()[-4000:]


def test_proxy_reaches_a_tls_server(jupyter_server, environment, tmp_path):
    process, http_port = start_tls_server(environment, str(tmp_path))
    try:
        proxied = requests.get(jupyter_server.api(f"rain/proxy/{http_port}/charts.json"),
                               headers=jupyter_server.headers(), timeout=30)
        assert proxied.status_code == 200, jupyter_log(jupyter_server)
        assert isinstance(proxied.json(), list)
        clusters = requests.get(jupyter_server.api("rain/api/clusters"),
                                headers=jupyter_server.headers(), timeout=30).json()
        [found] = [c for c in clusters["clusters"] if c["http_port"] == http_port]
        assert found["reachable"] and found["error"] is None, found
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
