"""Per-server state files (machine-wide discovery), so every Rain server of this user on this machine can be found.

Each running server writes ``<runtime dir>/servers/<pid>.json`` (address, ports, pid, start
time, owner, log dir) once it listens, and removes it on exit. Readers ignore and delete
files whose process is gone (a server killed with SIGKILL cannot clean up after itself).
"""
import getpass
import json
import logging
import os
import time

from .runtime_dir import (pid_alive, read_records, record_problem, remove_file,
                          remove_token_file, runtime_dir)

logger = logging.getLogger(__name__)


def servers_dir():
    return os.path.join(runtime_dir(), "servers")


def write_state_file(host, port, http_host, http_port, logdir, token_path=None, tls=None):
    """``tls``: what ``rain.tls.record_of`` says of the server's TLS (None: plain)."""
    directory = servers_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    connect_http = "127.0.0.1" if http_host in ("0.0.0.0", "", "::") else http_host
    state = {
        "pid": os.getpid(),
        "address": f"{connect_host}:{port}",
        "host": connect_host,
        "port": port,
        "http_host": connect_http,
        "http_port": http_port,
        "dashboard": f"{'https' if tls else 'http'}://{connect_http}:{http_port}/",
        "started": time.time(),
        "owner": getpass.getuser(),
        "uid": os.getuid(),
        "logdir": logdir,
        "token_path": token_path,     # user-only file with the cluster's token (rain.auth)
        "tls": tls,                   # certificate and how to verify it (rain.tls)
    }
    path = os.path.join(directory, f"{os.getpid()}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)
    return path


def remove_state_file(path):
    remove_file(path)


# What a server record must hold before anything reads it (rain.runtime_dir.read_records).
SERVER_FIELDS = {"pid": int, "address": str, "host": str, "port": int,
                 "http_host": str, "http_port": int}


def list_servers():
    """State of every live server of this user; stale files are removed."""
    result = []
    for path, state in read_records(servers_dir()):
        if not pid_alive(state.get("pid", -1)):
            remove_state_file(path)
            remove_token_file(state.get("token_path"))
            continue
        problem = record_problem(state, SERVER_FIELDS)
        if problem:
            logger.warning("ignoring the server record %s: %s", path, problem)
            continue
        result.append(state)
    return result
