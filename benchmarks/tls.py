"""What TLS costs: scenario (a) (independent tiny tasks, tasks/s) and (h) (1 GiB moved
governor -> governor), on a plain cluster and on a TLS cluster in the same run.

    python benchmarks/tls.py                         # (a) 10,000 tasks, (h) 1 GiB, 3 rounds
    python benchmarks/tls.py --tasks 2000 --size-mib 256 --repeat 1   # quicker

Each cluster is a server and two governors of 1 CPU on loopback, as ``rain server`` and
``rain governor`` processes; the TLS one gets ``--tls-cert/--tls-key`` (a self-signed
certificate, pinned by governors and client, as ``rain start`` makes for clusters that
span hosts). Rounds alternate plain and TLS so that load on a shared machine hits both
alike. Results (medians) go to standard output as JSON; ``benchmarks/tls.md`` records them.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "scenarios"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

from transfer import _free_port, _on, _wait, make_source  # noqa: E402
from workload import rain_functions  # noqa: E402

from rain.tls import make_certificate  # noqa: E402

MiB = 1 << 20
GATHER = 10


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Cluster:
    """A server and governors ``a`` and ``b`` (1 CPU each, a resource of their name)."""

    def __init__(self, tmp, tls):
        self.procs = []
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        os.makedirs(tmp, exist_ok=True)
        extra = []
        if tls:
            cert, key = make_certificate(["127.0.0.1", "localhost"])
            for name, data in (("c.crt", cert), ("c.key", key)):
                path = os.path.join(tmp, name)
                with open(path, "wb") as f:
                    f.write(data)
                os.chmod(path, 0o600)
            extra = ["--tls-cert", os.path.join(tmp, "c.crt"),
                     "--tls-key", os.path.join(tmp, "c.key")]
        ready = os.path.join(tmp, "server.ready")
        self._spawn(["server", "--listen", self.address, "--http-listen",
                     f"127.0.0.1:{_free_port()}", "--logdir", os.path.join(tmp, "server-logs"),
                     "--ready-file", ready] + extra)
        _wait(ready)
        for name in ("a", "b"):
            config = os.path.join(tmp, f"{name}.toml")
            with open(config, "w") as f:
                f.write(f"[resources]\n{name} = 1\n")
            ready = os.path.join(tmp, f"{name}.ready")
            self._spawn(["governor", self.address, "--cpus", "1", "--config", config,
                         "--workdir", os.path.join(tmp, f"gov-{name}"), "--logdir",
                         os.path.join(tmp, f"gov-{name}-logs"), "--ready-file", ready])
            _wait(ready)

    def _spawn(self, args):
        self.procs.append(subprocess.Popen([sys.executable, "-m", "rain", *args],
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def task_rate(client, triv, n):
    """Scenario (a): ``n`` independent tiny tasks, then a gather of 10; tasks/s."""
    start = time.perf_counter()
    with client.new_session("independent") as session:
        ts = [triv(i) for i in range(n)]
        for t in ts[:GATHER]:
            t.output.keep()
        session.submit()
        session.wait_all()
        values = [t.output.fetch().get_bytes() for t in ts[:GATHER]]
    elapsed = time.perf_counter() - start
    assert len(values) == GATHER
    return n / elapsed


def transfer(client, source, size):
    """Scenario (h): a task on governor a copies the file, one on b takes it; MiB/s."""
    from rain.client.program import Input, Output
    with client.new_session("transfer") as session:
        produce = _on("a", f"cp {source} big", outputs=[Output("big")])
        produce.output.keep()
        session.submit()
        session.wait([produce])
        consume = _on("b", "test -s big", inputs=[Input("big", dataobj=produce.output)])
        start = time.perf_counter()
        session.submit()
        session.wait([consume])
        elapsed = time.perf_counter() - start
    return size / MiB / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from rain.client import Client
    triv, _inc, _merge = rain_functions()
    tmp = tempfile.mkdtemp(prefix="rain-bench-tls-")
    results = {"plain": {"a_tasks_per_s": [], "h_mib_per_s": []},
               "tls": {"a_tasks_per_s": [], "h_mib_per_s": []}}
    try:
        source = os.path.join(tmp, "source")
        make_source(source, args.size_mib * MiB)
        for round_ in range(args.repeat):
            for mode in ("plain", "tls"):
                cluster = Cluster(os.path.join(tmp, f"{mode}-{round_}"), mode == "tls")
                try:
                    client = Client(*cluster.address.split(":"))
                    assert (client._connection.tls is not None) == (mode == "tls")
                    task_rate(client, triv, 200)          # warm up the executors
                    rate = task_rate(client, triv, args.tasks)
                    speed = transfer(client, source, args.size_mib * MiB)
                    client.close()
                finally:
                    cluster.stop()
                results[mode]["a_tasks_per_s"].append(round(rate))
                results[mode]["h_mib_per_s"].append(round(speed))
                log(f"round {round_ + 1} {mode:5}: (a) {rate:,.0f} tasks/s, "
                    f"(h) {speed:,.0f} MiB/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {mode: {key: statistics.median(values) for key, values in figures.items()}
               for mode, figures in results.items()}
    print(json.dumps({"runs": results, "median": summary, "load": os.getloadavg(),
                      "tasks": args.tasks, "size_mib": args.size_mib}, indent=1))


if __name__ == "__main__":
    main()
