"""Dask distributed's side: ``LocalCluster(n_workers=2, threads_per_worker=1)``, default
configuration, the same functions (``workload.py``) and the same graph shapes.
"""
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import add, log, main, percentile  # noqa: E402
from workload import CONST, concat, inc, merge, triv  # noqa: E402

GATHER = 10


def cluster():
    from dask.distributed import Client, LocalCluster
    logging.getLogger("distributed").setLevel(logging.ERROR)
    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=None)
    return c, Client(c)


def independent(client, n):
    from dask.distributed import wait
    t0 = time.perf_counter()
    futures = client.map(triv, range(n))
    wait(futures)
    values = client.gather(futures[:GATHER])
    elapsed = time.perf_counter() - t0
    assert values == [b"x"] * min(GATHER, n)
    del futures
    return elapsed


def scenario_a(result, sizes, repeat):
    c, client = cluster()
    with c, client:
        independent(client, 200)
        for label, n in sizes["a"].items():
            for _ in range(repeat):
                elapsed = independent(client, n)
                add(result, f"a.{label}.rate", n / elapsed)
                log(f"  dask a n={n}: {n / elapsed:,.0f} tasks/s")
                time.sleep(0.5)     # let the scheduler forget the released keys
            result[f"a.{label}.n"] = n


def scenario_b(result, sizes, repeat):
    c, client = cluster()
    with c, client:
        independent(client, 200)
        for label, n in sizes["b"].items():
            for _ in range(repeat):
                t0 = time.perf_counter()
                futures = client.map(triv, range(n))
                m = client.submit(merge, futures)
                value = m.result()
                elapsed = time.perf_counter() - t0
                assert value == str(n).encode()
                del futures, m
                add(result, f"b.{label}.rate", (n + 1) / elapsed)
                log(f"  dask b n={n}: {(n + 1) / elapsed:,.0f} tasks/s")
                time.sleep(0.5)
            result[f"b.{label}.n"] = n


def scenario_c(result, sizes, repeat):
    n = sizes["c"]
    c, client = cluster()
    with c, client:
        independent(client, 200)
        for _ in range(repeat):
            t0 = time.perf_counter()
            x = client.submit(triv, 0)
            for _i in range(n - 1):
                x = client.submit(inc, x)
            x.result()
            elapsed = time.perf_counter() - t0
            del x
            add(result, "c.ms_per_link", elapsed / n * 1e3)
            log(f"  dask c: {elapsed / n * 1e3:.3f} ms/link")
            time.sleep(0.5)
        result["c.n"] = n


def round_trips(client, count, pause, offset):
    times = []
    for k in range(count):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter()
        client.submit(triv, offset + k).result()
        times.append(time.perf_counter() - t0)
    return times


def scenario_d(result, sizes, repeat):
    count, isolated_count, pause = sizes["d"]
    c, client = cluster()
    with c, client:
        independent(client, 200)
        offset = 10_000
        for _ in range(repeat):
            round_trips(client, 10, 0, offset)
            b2b = round_trips(client, count, 0, offset + 100)
            iso = round_trips(client, isolated_count, pause, offset + 100 + count)
            offset += 100_000
            for name, values in (("py_b2b", b2b), ("py_iso", iso)):
                add(result, f"d.{name}.median", percentile(values, 50) * 1e3)
                add(result, f"d.{name}.p90", percentile(values, 90) * 1e3)
            log(f"  dask d: b2b {percentile(b2b, 50) * 1e3:.2f} ms, isolated "
                f"{percentile(iso, 50) * 1e3:.2f} ms")


def concat_tree(client, k, tag):
    """The same tree as Rain's: 2**k constants, layers of 2-input concatenations. The
    graph goes in one ``client.get`` (a raw graph is not optimized or fused)."""
    dsk = {}
    layer = []
    for i in range(0, 2 ** k, 2):
        key = f"{tag}-1-{i // 2}"
        dsk[key] = (concat, CONST, CONST)
        layer.append(key)
    level = 2
    while len(layer) > 1:
        nxt = []
        for i in range(0, len(layer), 2):
            key = f"{tag}-{level}-{i // 2}"
            dsk[key] = (concat, layer[i], layer[i + 1])
            nxt.append(key)
        layer = nxt
        level += 1
    data = client.get(dsk, layer[0])
    assert len(data) == len(CONST) * 2 ** k
    return 2 ** k - 1


def scenario_e(result, sizes, repeat):
    c, client = cluster()
    with c, client:
        concat_tree(client, 4, "warm")
        run = 0
        for label, k in sizes["e"].items():
            for _ in range(repeat):
                run += 1
                t0 = time.perf_counter()
                n = concat_tree(client, k, f"e{run}")
                elapsed = time.perf_counter() - t0
                add(result, f"e.{label}.rate", n / elapsed)
                log(f"  dask e k={k}: {n / elapsed:,.0f} tasks/s")
                time.sleep(0.5)
            result[f"e.{label}.n"] = 2 ** k - 1


def scenario_s(result, sizes, repeat):
    for _ in range(repeat):
        t0 = time.perf_counter()
        c, client = cluster()
        client.wait_for_workers(2)
        t_up = time.perf_counter()
        client.close()
        c.close()
        t_down = time.perf_counter()
        add(result, "s.up_s", t_up - t0)
        add(result, "s.down_s", t_down - t_up)
        log(f"  dask startup {t_up - t0:.3f} s, stop {t_down - t_up:.3f} s")


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d,
             "e": scenario_e, "s": scenario_s}

if __name__ == "__main__":
    main(SCENARIOS)
