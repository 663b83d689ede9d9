"""The executor process: connect, register, then answer ``call`` messages in order.

Blocking socket I/O on purpose: an executor runs one task at a time and never has
anything else to do. The frame format (4-byte little-endian length + CBOR) is described
in ``docs/executor-protocol.md``.
"""
import os
import signal
import socket
import sys
import time

import cbor2

from ..common.frame_reader import HEADER, FrameReader

PROTOCOL = "rain-executor/1"


def _die_with_parent():
    """Ask Linux to SIGKILL us when the governor dies, so a long task never outlives it
    (the socket's EOF is only seen between tasks)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:       # the parent died before prctl took effect
        os._exit(1)


def _send(sock, kind, body):
    payload = cbor2.dumps([kind, body])
    header = len(payload).to_bytes(HEADER, "little")
    if len(payload) < 65536:
        sock.sendall(header + payload)
    else:
        sock.sendall(header)
        sock.sendall(payload)


def serve(sock, executor_id, executor_type="py"):
    """Register on ``sock`` and serve calls until the governor closes the connection.

    The executor announces ``pipeline``: the governor may send further calls before a
    result is back; they run in order. Results still leave one by one as soon as each
    call is done, so nothing waits behind a long task.
    """
    from .runner import PyExecutor

    executor = PyExecutor(pipeline=True)
    _send(sock, "register", {"protocol": PROTOCOL, "executor_id": executor_id,
                             "executor_type": executor_type, "pipeline": True})
    frames = FrameReader(sock.recv)
    loads = cbor2.loads
    run, tidy = executor.run, executor.tidy
    clock = time.time
    while True:
        frame = frames.next()
        if frame is None:
            return
        message = loads(frame)
        kind = message[0]
        if kind == "call":
            start = clock()
            result = run(message[1])
            result["start_time"] = start
            result["duration"] = clock() - start
            _send(sock, "result", result)
            tidy()      # after the result left: it is not on the caller's critical path
        elif kind == "drop_cached":
            executor.drop_cached(message[1])
        # Unknown kinds are ignored: a newer governor may send hints we do not need.


def main():
    try:
        path = os.environ["RAIN_EXECUTOR_SOCKET"]
        executor_id = int(os.environ["RAIN_EXECUTOR_ID"])
    except (KeyError, ValueError):
        print("rain.executor: this program is started by a Rain governor "
              "(RAIN_EXECUTOR_SOCKET and RAIN_EXECUTOR_ID are not set)", file=sys.stderr)
        sys.exit(2)
    executor_type = os.environ.get("RAIN_EXECUTOR_TYPE", "py")
    _die_with_parent()
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except AttributeError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        print(f"rain.executor: cannot connect to {path}: {exc}", file=sys.stderr)
        sys.exit(1)
    code = 0
    try:
        serve(sock, executor_id, executor_type)
    except ConnectionError:
        pass
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        # Threads a task may have left behind must not keep the process alive.
        os._exit(code)
