"""Helpers of the Jupyter tests: finding Rain processes, recording widget messages."""
import json
import threading
import time

import psutil
from rain_cluster import wait_gone  # noqa: F401 (re-exported)

RAIN_ROLES = ("server", "governor")


def is_rain_process(proc):
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if "rain.executor" in cmdline:
        return True
    for i, word in enumerate(cmdline[:-1]):
        if word == "-m" and cmdline[i + 1] == "rain" and len(cmdline) > i + 2 \
                and cmdline[i + 2] in RAIN_ROLES:
            return True
    return False


def rain_descendants(pid):
    """Rain server/governor/executor processes whose parent chain leads to ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if is_rain_process(p)]


def kill_all(procs):
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


class MessageRecorder:
    """Counts the comm messages widgets send (``comm.create_comm`` replaced)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.by_type = {}
        self.times = []

    def record(self, msg_type, data, buffers):
        size = len(json.dumps(data, default=str)) + sum(len(b) for b in buffers or ())
        with self.lock:
            self.messages += 1
            self.bytes += size
            self.by_type[msg_type] = self.by_type.get(msg_type, 0) + 1
            self.times.append(time.monotonic())

    def reset(self):
        with self.lock:
            self.messages = 0
            self.bytes = 0
            self.by_type = {}
            self.times = []
