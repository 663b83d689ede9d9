"""Governor-to-governor data connections carry TCP keepalive and TCP_USER_TIMEOUT, so a
peer whose host vanished is dropped by the kernel instead of hanging a fetch. Checked on
the sockets of a real transfer, read out of both governor processes."""
import ctypes
import os
import socket

import psutil
import pytest
import requests

from rain.client import Task, blob
from rain.common.update_columns import INLINE_DATA_MAX
from rain.transfer.peer import KEEPALIVE_TIMEOUT

SYS_PIDFD_GETFD = 438      # x86_64 and arm64 alike


def borrow_socket(pid, fd):
    """A duplicate of another process's socket (``pidfd_getfd``; we are its parent's
    user)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        new_fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if new_fd < 0:
            errno = ctypes.get_errno()
            pytest.skip(f"pidfd_getfd is not allowed here: {os.strerror(errno)}")
        return socket.socket(fileno=new_fd)
    finally:
        os.close(pidfd)


def governor_process(popen):
    """The process of a governor started by the test cluster (``python -m rain``)."""
    return psutil.Process(popen.pid)


def data_sockets(process, port, side):
    """(fd, connection) of the process's established TCP connections to (``side`` =
    "raddr") or from (``side`` = "laddr") ``port``."""
    return [(c.fd, c) for c in process.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and getattr(c, side)
            and getattr(c, side).port == port]


def assert_keepalive(pid, fd):
    sock = borrow_socket(pid, fd)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == \
            int(KEEPALIVE_TIMEOUT * 1000)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == \
            int(KEEPALIVE_TIMEOUT / 3)
    finally:
        sock.close()


def test_data_connections_between_governors_have_keepalive(make_cluster, tmp_path):
    here, there = tmp_path / "here.toml", tmp_path / "there.toml"
    here.write_text("[resources]\nhere = 1\n")
    there.write_text("[resources]\nthere = 1\n")
    cluster = make_cluster([])
    holder = cluster.add_governor(1, ["--config", str(here)])
    fetcher = cluster.add_governor(1, ["--config", str(there)])
    client = cluster.client()
    big = b"x" * (INLINE_DATA_MAX + 10)
    with client.new_session() as s:
        produced = Task([blob(big), blob(b"!")], 1, task_type="buildin/concat",
                        resources={"here": 1})
        moved = Task([produced.output], 1, task_type="buildin/concat",
                     resources={"there": 1})
        moved.output.keep()
        s.submit()
        assert moved.output.fetch().get_bytes() == big + b"!"

        governors = requests.get(f"http://127.0.0.1:{cluster.http_port}/api/governors",
                                 headers=cluster.http_headers, timeout=30).json()
        ports = {int(g["governor"].rsplit(":", 1)[1]) for g in governors}
        holder_process = governor_process(holder)
        (holder_port,) = ports & {c.laddr.port for c in
                                  holder_process.net_connections(kind="tcp")
                                  if c.status == psutil.CONN_LISTEN}
        fetching = data_sockets(governor_process(fetcher), holder_port, "raddr")
        serving = data_sockets(holder_process, holder_port, "laddr")
        assert fetching, "the fetching governor has no data connection to the holder"
        assert serving, "the holding governor serves no data connection"
        for fd, _ in fetching:
            assert_keepalive(fetcher.pid, fd)
        for fd, _ in serving:
            assert_keepalive(holder.pid, fd)
