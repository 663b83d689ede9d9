"""Rain's side of every scenario: a LocalCluster of a server and 2 governors x 1 CPU.

Each scenario starts its own cluster (so memory figures of one do not leak into another)
and repeats its measurement ``repeat`` times in fresh sessions.
"""
import gc
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import psutil  # noqa: E402

from bare_pipeline import BarePipeline  # noqa: E402
from common import RssSampler, add, cpu_seconds, log, main, percentile  # noqa: E402
from workload import CONST, rain_functions  # noqa: E402

from rain.client import blob, tasks  # noqa: E402
from rain.local_cluster import LocalCluster  # noqa: E402

GOVERNORS = [1, 1]
GATHER = 10
triv, inc, merge = rain_functions()


def cluster():
    return LocalCluster(governors=GOVERNORS)


def server_pid(c):
    return c.server_process.pid


# -- (a) independent tasks, then a small gather --------------------------------------------
def independent(client, n, pid=None):
    cpu0 = cpu_seconds(pid) if pid else 0.0
    t0 = time.perf_counter()
    with client.new_session("independent") as s:
        ts = [triv(i) for i in range(n)]
        for t in ts[:GATHER]:
            t.output.keep()
        s.submit()
        s.wait_all()
        values = [t.output.fetch().get_bytes() for t in ts[:GATHER]]
    elapsed = time.perf_counter() - t0
    assert values == [b"x"] * min(GATHER, n)
    cpu = (cpu_seconds(pid) - cpu0) if pid else 0.0
    return elapsed, cpu


def scenario_a(result, sizes, repeat):
    with cluster() as c:
        client = c.client()
        pid = server_pid(c)
        independent(client, 200)        # warm up executors
        for label, n in sizes["a"].items():
            for _ in range(repeat):
                elapsed, cpu = independent(client, n, pid)
                add(result, f"a.{label}.rate", n / elapsed)
                add(result, f"a.{label}.server_us", cpu / n * 1e6)
                log(f"  rain a n={n}: {n / elapsed:,.0f} tasks/s, server {cpu / n * 1e6:.1f} us/task")
            result[f"a.{label}.n"] = n


# -- (b) merge: N tasks + one depending on all ----------------------------------------------
def scenario_b(result, sizes, repeat):
    with cluster() as c:
        client = c.client()
        independent(client, 200)
        for label, n in sizes["b"].items():
            for _ in range(repeat):
                t0 = time.perf_counter()
                with client.new_session("merge") as s:
                    ts = [triv(i) for i in range(n)]
                    m = merge(ts)
                    m.output.keep()
                    s.submit()
                    value = m.output.fetch().get_bytes()
                elapsed = time.perf_counter() - t0
                assert value == str(n).encode(), value
                add(result, f"b.{label}.rate", (n + 1) / elapsed)
                log(f"  rain b n={n}: {(n + 1) / elapsed:,.0f} tasks/s")
            result[f"b.{label}.n"] = n


# -- (c) chain -------------------------------------------------------------------------------
def scenario_c(result, sizes, repeat):
    n = sizes["c"]
    with cluster() as c:
        client = c.client()
        independent(client, 200)
        for _ in range(repeat):
            t0 = time.perf_counter()
            with client.new_session("chain") as s:
                x = triv(0)
                for _i in range(n - 1):
                    x = inc(x)
                x.output.keep()
                s.submit()
                x.output.fetch()
            elapsed = time.perf_counter() - t0
            add(result, "c.ms_per_link", elapsed / n * 1e3)
            log(f"  rain c: {elapsed / n * 1e3:.3f} ms/link")
        result["c.n"] = n


# -- (d) single-task round trip --------------------------------------------------------------
def round_trips(session, make, count, pause):
    times = []
    for k in range(count):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter()
        t = make(k)
        t.output.keep()
        session.submit()
        t.output.fetch()
        times.append(time.perf_counter() - t0)
        t.output.unkeep()
    return times


ECHO = """
import socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
while True:
    data = sock.recv(64)
    if not data:
        break
    sock.send(data)
"""


def raw_ping(count, pause):
    """Round trips of one byte between two blocking processes over a socketpair: what the
    machine itself charges for a hop, hot and after the same pause as the isolated round
    trips (a process woken after a pause runs slower for a while)."""
    import socket
    import subprocess
    ours, theirs = socket.socketpair()
    echo = subprocess.Popen([sys.executable, "-c", ECHO, str(theirs.fileno())],
                            pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        ours.send(b"x")
        ours.recv(64)
        times = []
        for _ in range(count):
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            ours.send(b"x")
            ours.recv(64)
            times.append(time.perf_counter() - t0)
        return times
    finally:
        ours.close()
        echo.wait(10)


def scenario_d(result, sizes, repeat):
    count, isolated_count, pause = sizes["d"]
    for _ in range(repeat):
        add(result, "d.ping_b2b.median", percentile(raw_ping(count, 0), 50) * 1e6)
        add(result, "d.ping_iso.median", percentile(raw_ping(isolated_count, pause), 50) * 1e6)
    for wire in ("pickle", "cbor", "capnp"):
        key = "d.bare" if wire == "pickle" else f"d.bare_{wire}"
        with tempfile.TemporaryDirectory() as tmp, BarePipeline(tmp, wire) as bare:
            bare.round_trips(10, 0)
            for _ in range(repeat):
                add(result, f"{key}_b2b.median",
                    percentile(bare.round_trips(count, 0), 50) * 1e3)
                add(result, f"{key}_iso.median",
                    percentile(bare.round_trips(isolated_count, pause), 50) * 1e3)
    with cluster() as c:
        client = c.client()
        independent(client, 200)
        const = {}

        def builtin(k):
            return tasks.Concat([const["c"]])

        for _ in range(repeat):
            with client.new_session("round trip") as s:
                round_trips(s, triv, 10, 0)
                b2b = round_trips(s, triv, count, 0)
                iso = round_trips(s, triv, isolated_count, pause)
                const["c"] = blob(CONST)
                const["c"].keep()
                s.submit()
                bi_b2b = round_trips(s, builtin, count, 0)
                bi_iso = round_trips(s, builtin, isolated_count, pause)
            for name, values in (("py_b2b", b2b), ("py_iso", iso), ("bi_b2b", bi_b2b),
                                 ("bi_iso", bi_iso)):
                add(result, f"d.{name}.median", percentile(values, 50) * 1e3)
                add(result, f"d.{name}.p90", percentile(values, 90) * 1e3)
            log(f"  rain d: py b2b {percentile(b2b, 50) * 1e3:.2f} ms, isolated "
                f"{percentile(iso, 50) * 1e3:.2f} ms; builtin b2b "
                f"{percentile(bi_b2b, 50) * 1e3:.2f}, isolated {percentile(bi_iso, 50) * 1e3:.2f}")


# -- (e) concat layers -----------------------------------------------------------------------
def concat_tree(client, k):
    with client.new_session("concat") as s:
        layer = [blob(CONST) for _ in range(2 ** k)]
        while len(layer) > 1:
            layer = [tasks.Concat((layer[i], layer[i + 1])) for i in range(0, len(layer), 2)]
        layer[0].output.keep()
        s.submit()
        data = layer[0].output.fetch().get_bytes()
    assert len(data) == len(CONST) * 2 ** k
    return 2 ** k - 1


def scenario_e(result, sizes, repeat):
    with cluster() as c:
        client = c.client()
        concat_tree(client, 6)
        for label, k in sizes["e"].items():
            for _ in range(repeat):
                t0 = time.perf_counter()
                n = concat_tree(client, k)
                elapsed = time.perf_counter() - t0
                add(result, f"e.{label}.rate", n / elapsed)
                log(f"  rain e k={k}: {n / elapsed:,.0f} tasks/s")
            result[f"e.{label}.n"] = 2 ** k - 1


# -- (f) one graph of a million built-in tasks -----------------------------------------------
def scenario_f(result, sizes, repeat):
    n = sizes["f"]
    fan = 1000 if n >= 100_000 else 10
    with cluster() as c:
        client = c.client()
        pid = server_pid(c)
        concat_tree(client, 4)
        gc.collect()
        base = psutil.Process(pid).memory_info().rss
        client_base = psutil.Process().memory_info().rss
        with RssSampler(pid, 0.1) as sampler:
            t0 = time.perf_counter()
            with client.new_session("million") as s:
                consts = [blob(CONST) for _ in range(max(1, n // fan))]
                ts = [tasks.Concat((consts[i % len(consts)],)) for i in range(n)]
                t_built = time.perf_counter()
                s.submit()
                t_submit = time.perf_counter()
                live = psutil.Process(pid).memory_info().rss
                s.wait_all()
                t_done = time.perf_counter()
                count = len(ts)
                del ts, consts
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        add(result, "f.build_s", t_built - t0)
        add(result, "f.submit_s", t_submit - t_built)
        add(result, "f.complete_s", t_done - t0)
        add(result, "f.rate", count / (t_done - t0))
        add(result, "f.server_live_b", (live - base) / count)
        add(result, "f.server_peak_b", (sampler.peak - base) / count)
        add(result, "f.server_peak_mib", sampler.peak / 2 ** 20)
        add(result, "f.client_peak_mib", client_peak / 2 ** 20)
        add(result, "f.client_b", (client_peak - client_base) / count)
        result["f.n"] = count
        log(f"  rain f n={count}: build {t_built - t0:.1f} s, submit {t_submit - t_built:.1f} s,"
            f" complete {t_done - t0:.1f} s; server +{(live - base) / count:.0f} B/task live,"
            f" peak {sampler.peak / 2 ** 20:.0f} MiB; client peak {client_peak / 2 ** 20:.0f} MiB")


# -- startup ---------------------------------------------------------------------------------
def scenario_s(result, sizes, repeat):
    for _ in range(repeat):
        t0 = time.perf_counter()
        c = cluster().start()
        client = c.client()
        client.get_server_info()
        t_up = time.perf_counter()
        c.stop()
        t_down = time.perf_counter()
        add(result, "s.up_s", t_up - t0)
        add(result, "s.down_s", t_down - t_up)
        log(f"  rain startup {t_up - t0:.3f} s, stop {t_down - t_up:.3f} s")


# -- leak: many sessions in one server --------------------------------------------------------
def scenario_leak(result, sizes, repeat):
    sessions, n = sizes["leak"]
    with cluster() as c:
        client = c.client()
        proc = psutil.Process(server_pid(c))
        rss = []
        for i in range(sessions):
            independent(client, n)
            rss.append(proc.memory_info().rss / 2 ** 20)
        log("  rain leak RSS MiB: " + " ".join(f"{v:.1f}" for v in rss))
        result["leak.rss_mib"] = rss
        result["leak.n"] = n


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d,
             "e": scenario_e, "f": scenario_f, "s": scenario_s, "leak": scenario_leak}

if __name__ == "__main__":
    main(SCENARIOS)
