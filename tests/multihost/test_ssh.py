"""``rain start --governor-host-file`` over ssh on hosts with node-local disks: the normal
path from start to stop, and clean-up on every host."""
import json
import os
import sys
import textwrap

from helpers import (cluster_record, rain, rain_processes, run_pipeline, write_shared)


def ssh_env(hosts):
    return {"RAIN_SSH": f"ssh -F {hosts.ssh_config}"}


def test_host_file_cluster_with_node_local_tmp(hosts):
    """Readiness comes back over ssh although nothing under /tmp is shared; work and logs
    stay on the nodes while it runs and the logs reach the head at ``rain stop``."""
    head, node1, node2 = hosts.hosts
    env = ssh_env(hosts)
    host_file = write_shared(hosts, "hostfile", "node1\nnode2  # a comment\n")
    out = rain(head, ["start", "--governor-host-file", host_file, "--cluster-id", "ssh"],
               env=env).stdout
    try:
        record = cluster_record(head, "ssh", env)
        assert [g["host"] for g in record["governors"]] == ["node1", "node2"]
        assert record["server"] == f"{head.ip}:7210"
        assert f"governor-node1-0 on node1 ({hosts.cpus} cpus)" in out
        result = run_pipeline(head, record["server"], env)
        ran_on = {line.split("@")[1] for line in result["lines"]}
        assert ran_on == {"node1", "node2"}
        assert sorted(int(line.split("@")[0]) for line in result["lines"]) == list(range(12))
        assert len(result["governors"]) == 2
        # Work and logs are node-local: in the node's own /tmp, absent from the head's.
        for node, governor in ((node1, record["governors"][0]),
                               (node2, record["governors"][1])):
            assert governor["logdir"].startswith("/tmp/")
            assert node.run(["test", "-f", f"{governor['logdir']}/governor.log"],
                            check=False).returncode == 0
            assert head.run(["test", "-e", governor["logdir"]], check=False).returncode != 0
        # The dashboard link works from another host of the cluster (the login node).
        link = [line.split("dashboard:", 1)[1].strip() for line in out.splitlines()
                if "dashboard:" in line][0]
        assert link.startswith(f"https://{head.ip}:7222/")
        cert = write_shared(hosts, "ssh-cluster.crt",
                            head.run(["cat", record["tls"]["cert"]]).stdout)
        page = node1.python(f"import requests; r = requests.get({link!r}, timeout=30, "
                            f"verify={cert!r}); print(r.status_code, r.url)")
        assert page.split()[0] == "200", page
    finally:
        stopped = rain(head, ["stop", "ssh"], env=env)
    assert "stopped cluster 'ssh'" in stopped.stdout, stopped.stderr
    assert not stopped.stderr.strip(), stopped.stderr
    # Clean-up on every host: no process, no work or log directory left on the nodes,
    # and the logs (the executors' too) in the head's log directory.
    assert not rain_processes(hosts)
    for node, governor in ((node1, record["governors"][0]), (node2, record["governors"][1])):
        left = node.run(["sh", "-c", "ls -d /tmp/rain-governor-* 2>/dev/null; true"]).stdout
        assert not left.strip(), left
        collected = os.path.join(record["logdir"], governor["name"])
        logs = head.run(["ls", collected]).stdout.split()
        assert "governor.log" in logs
        assert any(name.startswith("executor-py-") for name in logs), logs


def test_loopback_listen_with_remote_governors_is_refused(hosts):
    head = hosts.head
    host_file = write_shared(hosts, "hostfile-loopback", "node1\n")
    result = rain(head, ["start", "--governor-host-file", host_file, "-l", "127.0.0.1:7211",
                         "--cluster-id", "loopback"], env=ssh_env(hosts), check=False)
    assert result.returncode == 1
    assert "loopback address cannot be reached by governors on other hosts (node1)" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert not rain_processes(hosts)


def test_governor_data_ports_from_a_range(hosts):
    """Two governors on one host take the first free ports of the range given."""
    head = hosts.head
    env = ssh_env(hosts)
    host_file = write_shared(hosts, "hostfile-ports", "node1\nnode1\n")
    rain(head, ["start", "--governor-host-file", host_file, "--governor-ports", "7300-7302",
                "--cluster-id", "ports"], env=env)
    try:
        record = cluster_record(head, "ports", env)
        result = run_pipeline(head, record["server"], env)
        addresses = sorted(g["governor_id"] for g in result["governors"])
        assert addresses == [f"{hosts.host('node1').ip}:7300", f"{hosts.host('node1').ip}:7301"]
    finally:
        rain(head, ["stop", "ports"], env=env)
    assert not rain_processes(hosts)


# A client on the head fetches a governor's object without holes across the link; it counts
# the bytes its sink took by splice.
FETCH_DENSE = """
import hashlib, json, os, sys
from rain.client import Client, Output, tasks
from rain.transfer.sinks import FileSink

spliced = []
take = FileSink.write_from_pipe


def counting(sink, pipe, count):
    spliced.append(count)
    return take(sink, pipe, count)


FileSink.write_from_pipe = counting
host, port = sys.argv[1].rsplit(":", 1)
target = sys.argv[2]
client = Client(host, int(port))
with client.new_session("dense") as session:
    make = tasks.Execute("head -c 20000000 /dev/urandom > out && sha256sum out > sum",
                         output_paths=[Output("out"), Output("sum")], shell=True)
    for output in make.outputs:
        output.keep()
    session.submit()
    made = make.outputs[1].fetch().get_str().split()[0]
    make.outputs[0].fetch_to(target)
    with open(target, "rb") as f:
        fetched = hashlib.sha256(f.read()).hexdigest()
    os.unlink(target)
    make.update()
print(json.dumps({"made": made, "fetched": fetched, "spliced": sum(spliced),
                  "on": make.info.governor}))
"""


def test_plain_tcp_fetch_across_hosts_is_spliced(hosts):
    """Without TLS (``--no-tls``), an object without holes made on a node reaches a
    client on the head by splice, over the link between their own hosts and disks."""
    head, node1, node2 = hosts.hosts
    env = ssh_env(hosts)
    host_file = write_shared(hosts, "hostfile-plain", "node1\n")
    rain(head, ["start", "--governor-host-file", host_file, "--no-tls",
                "--cluster-id", "plain"], env=env)
    try:
        record = cluster_record(head, "plain", env)
        target = f"/tmp/rain-dense-{os.getpid()}"
        out = head.run([sys.executable, "-c", textwrap.dedent(FETCH_DENSE), record["server"],
                        target], env=env, timeout=120).stdout
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        rain(head, ["stop", "plain"], env=env)
    assert result["made"] == result["fetched"]
    assert result["on"].startswith(f"{node1.ip}:")
    # All but what the connection read before handing its socket over.
    assert result["spliced"] >= 20_000_000 - (1 << 16)
    assert not rain_processes(hosts)
