"""A cluster that spans hosts speaks TLS: ``rain start`` over ssh makes a certificate for
it, hands it to the governors with the token, and every port (RPC, HTTP, each governor's
data port) shows that certificate to a peer on another host; without the certificate or its
fingerprint, the token alone gets nobody in."""
import json
import sys

from helpers import cluster_record, rain, rain_processes, run_pipeline, write_shared

# Run on another host: the certificate fingerprint and TLS version each address shows.
PROBE = """
import hashlib, json, socket, ssl, sys
shown = {}
for address in sys.argv[1:]:
    host, port = address.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with context.wrap_socket(raw) as conn:
            shown[address] = [hashlib.sha256(conn.getpeercert(True)).hexdigest(),
                              conn.version()]
print(json.dumps(shown))
"""

# Run on another host with the token but nothing to trust: plain RPC and data connections.
PLAIN = """
import asyncio, json, sys
from rain.client import Client
from rain.transfer.peer import DataConnection
errors = {}
try:
    Client(sys.argv[1], tls=False)
except Exception as exc:
    errors["rpc"] = str(exc)
async def data():
    connection = DataConnection(sys.argv[2], sys.argv[3])
    try:
        await asyncio.wait_for(connection.connect(), 30)
    except Exception as exc:
        errors["data"] = str(exc) or type(exc).__name__
asyncio.run(data())
try:
    Client(sys.argv[1], tls="0" * 64)
except Exception as exc:
    errors["wrong pin"] = str(exc)
print(json.dumps(errors))
"""


def test_rain_start_over_ssh_speaks_tls_on_every_port(hosts):
    head, node1, _node2 = hosts.hosts
    env = {"RAIN_SSH": f"ssh -F {hosts.ssh_config}"}
    host_file = write_shared(hosts, "hostfile-tls", "node1\nnode2\n")
    out = rain(head, ["start", "--governor-host-file", host_file, "--cluster-id", "tls"],
               env=env).stdout
    try:
        record = cluster_record(head, "tls", env)
        tls = record["tls"]
        assert tls["made"] is True and tls["ca"] is None
        pin = tls["fingerprint"]
        assert f"pinned sha256:{pin}" in out
        assert f"dashboard: https://{head.ip}:7222/" in out
        for path in (tls["cert"], tls["key"]):
            assert head.run(["stat", "-c", "%a", path]).stdout.strip() == "600"

        # The client on the head finds the certificate by itself; tasks on both nodes,
        # their outputs joined on one of them: governor-to-governor data over TLS.
        result = run_pipeline(head, record["server"], env)
        assert {line.split("@")[1] for line in result["lines"]} == {"node1", "node2"}
        data_ports = [g["governor_id"] for g in result["governors"]]
        assert len(data_ports) == 2

        # From another host, every port shows the cluster's certificate.
        ports = [record["server"], f"{head.ip}:7222"] + data_ports
        shown = json.loads(node1.run([sys.executable, "-c", PROBE, *ports], env=env).stdout)
        assert sorted(shown) == sorted(ports)
        for address, (fingerprint, version) in shown.items():
            assert fingerprint == pin, address
            assert version in ("TLSv1.2", "TLSv1.3"), address

        # Elsewhere, the token alone is not enough: plain RPC and data connections, and a
        # wrong pin, are refused, each with its reason...
        token = rain(head, ["token", record["server"]], env=env).stdout.strip()
        errors = json.loads(node1.run([sys.executable, "-c", PLAIN, record["server"],
                                       data_ports[0], token], env=env).stdout)
        assert "before answering" in errors["rpc"] and "TLS" in errors["rpc"], errors
        assert "data" in errors, errors
        assert "not the pinned one" in errors["wrong pin"], errors
        log = head.run(["cat", f"{record['logdir']}/server.out"]).stdout
        assert f"refused a connection to the RPC port from {node1.ip}" in log, log[-3000:]
        assert "the peer does not speak TLS" in log
        # ...while the token with the certificate's fingerprint gets in from there.
        elsewhere = run_pipeline(node1, record["server"],
                                 dict(env, RAIN_TOKEN=token, RAIN_TLS_PIN=pin))
        assert len(elsewhere["lines"]) == 12
    finally:
        stopped = rain(head, ["stop", "tls"], env=env)
    assert "stopped cluster 'tls'" in stopped.stdout, stopped.stderr
    assert not rain_processes(hosts)
    for path in (tls["cert"], tls["key"]):
        assert head.run(["test", "-e", path], check=False).returncode != 0, path
