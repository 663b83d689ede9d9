"""What the multi-host tests do on the hosts: ``rain`` commands and client scripts."""
import json
import os
import sys
import textwrap

RAIN = [sys.executable, "-m", "rain"]

# Tasks that report the host they ran on; the last one joins their outputs, so the data
# of the other hosts travels to the host that runs it.
PIPELINE = """
import json, sys
from rain.client import Client, remote, blob, tasks

@remote()
def where(ctx, index):
    import socket, time
    time.sleep(0.3)
    return f"{index}@{socket.gethostname()}\\n"

host, port = sys.argv[1].rsplit(":", 1)
client = Client(host, int(port))
with client.new_session("multihost") as session:
    parts = [where(i) for i in range(12)]
    joined = tasks.Concat([p.output for p in parts])
    joined.output.keep()
    session.submit()
    lines = joined.output.fetch().get_str().split()
info = client.get_server_info()
print(json.dumps({"lines": lines, "governors": info["governors"]}, default=str))
"""


def rain(host, args, env=None, timeout=150, check=True):
    return host.run(RAIN + list(args), env=env, timeout=timeout, check=check)


def run_pipeline(host, server_address, env=None):
    """The pipeline's output lines (``index@host``) and the server's governors."""
    out = host.run([sys.executable, "-c", textwrap.dedent(PIPELINE), server_address],
                   env=env, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def cluster_record(host, cluster_id, env=None):
    out = rain(host, ["status", "--json"], env=env).stdout
    records = [r for r in json.loads(out) if r["id"] == cluster_id]
    assert records, out
    return records[0]


def write_shared(environment, name, text):
    path = os.path.join(environment.shared, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def rain_processes(environment):
    """Rain servers, governors and executors still running on any host."""
    found = {}
    for host in environment.hosts:
        procs = [p for p in host.processes(" -m rain") + host.processes("rain.executor")]
        if procs:
            found[host.name] = procs
    return found
