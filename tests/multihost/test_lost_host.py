"""A host that vanishes: its network link goes down while a session runs on it. The
session must not hang, the server must drop the silent governor, and the governor, cut
off from a server that then stops, must exit by itself (heartbeats)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import cluster_record, rain, write_shared

SESSION = """
import json, sys, time
from rain.client import Client, remote

@remote()
def slow(ctx, index):
    import socket, time
    time.sleep(1.0)
    return f"{index}@{socket.gethostname()}\\n"

host, port = sys.argv[1].rsplit(":", 1)
client = Client(host, int(port))
with client.new_session("lost host") as session:
    parts = [slow(i) for i in range(24)]
    for p in parts:
        p.output.keep()
    session.submit()
    print("submitted", flush=True)
    lines = [p.output.fetch().get_str().strip() for p in parts]
print(json.dumps({"lines": lines,
                  "governors": len(client.get_server_info()["governors"])}), flush=True)
"""


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.5)


@pytest.mark.timeout(300)
def test_downed_link_drops_the_governor_and_it_exits(hosts):
    head, node1, node2 = hosts.hosts
    env = {"RAIN_SSH": f"ssh -F {hosts.ssh_config}"}
    host_file = write_shared(hosts, "hostfile-lost", "node1\nnode2\n")
    rain(head, ["start", "--governor-host-file", host_file, "--cluster-id", "lost"], env=env)
    veth = f"{hosts.bridge}v{node2.index}"
    session = None
    try:
        record = cluster_record(head, "lost", env)
        session = head.popen([sys.executable, "-c", textwrap.dedent(SESSION),
                              record["server"]], "lost-session.out", env=env)
        _wait(lambda: "submitted" in hosts.log_tail("lost-session.out"), 60, "submitted")
        time.sleep(2)       # tasks run on both hosts now
        # The link of node2 goes down: no FIN, no RST, only silence.
        subprocess.run(["ip", "link", "set", veth, "down"], check=True, timeout=30)
        # The session does not hang: node2's tasks run again on node1.
        session.wait(timeout=120)
        out = hosts.log_tail("lost-session.out").strip().splitlines()[-1]
        result = json.loads(out)
        assert sorted(int(line.split("@")[0]) for line in result["lines"]) == list(range(24))
        assert result["governors"] == 1
    finally:
        if session is not None and session.poll() is None:
            session.kill()
            session.wait()
        rain(head, ["stop", "lost"], env=env, check=False)
        try:
            # Cut off from its stopped server, node2's governor exits by itself.
            _wait(lambda: not node2.processes(" -m rain"), 90, "node2's governor exits")
        finally:
            subprocess.run(["ip", "link", "set", veth, "up"], check=True, timeout=30)
            for pid in node2.pids():     # what a failure left: not for the next tests
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        # Rain's processes only: the host's sshd, munged and slurmd
                        # have "rain" in their configuration paths.
                        if b"-m\0rain" in f.read():
                            os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            # The governor that lost its server keeps its logs on node2 (nobody collected
            # them): evidence for a user, litter for the next tests.
            node2.run(["sh", "-c", "rm -rf /tmp/rain-governor-*"], check=False)
            hosts.slurm_ready()     # slurmctld saw node2 silent and marked it down
