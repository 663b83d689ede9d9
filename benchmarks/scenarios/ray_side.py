"""Ray's side: a local Ray instance with 2 CPUs (``ray.init(num_cpus=2)``), the same
functions (``workload.py``, wrapped with ``ray.remote``) and the same graph shapes.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import add, log, main, percentile  # noqa: E402
import workload  # noqa: E402
from workload import CONST  # noqa: E402

GATHER = 10
_fns = {}


def start():
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR")
    for name in ("triv", "inc", "merge_args", "concat"):
        _fns[name] = ray.remote(getattr(workload, name))
    return ray


def independent(ray, n):
    triv = _fns["triv"]
    t0 = time.perf_counter()
    refs = [triv.remote(i) for i in range(n)]
    ray.wait(refs, num_returns=len(refs), fetch_local=False)
    values = ray.get(refs[:GATHER])
    elapsed = time.perf_counter() - t0
    assert values == [b"x"] * min(GATHER, n)
    return elapsed


def scenario_a(result, sizes, repeat):
    ray = start()
    try:
        independent(ray, 200)
        for label, n in sizes["a"].items():
            for _ in range(repeat):
                elapsed = independent(ray, n)
                add(result, f"a.{label}.rate", n / elapsed)
                log(f"  ray a n={n}: {n / elapsed:,.0f} tasks/s")
            result[f"a.{label}.n"] = n
    finally:
        ray.shutdown()


def scenario_b(result, sizes, repeat):
    ray = start()
    triv, merge = _fns["triv"], _fns["merge_args"]
    try:
        independent(ray, 200)
        for label, n in sizes["b"].items():
            for _ in range(repeat):
                t0 = time.perf_counter()
                refs = [triv.remote(i) for i in range(n)]
                value = ray.get(merge.remote(*refs))
                elapsed = time.perf_counter() - t0
                assert value == str(n).encode()
                add(result, f"b.{label}.rate", (n + 1) / elapsed)
                log(f"  ray b n={n}: {(n + 1) / elapsed:,.0f} tasks/s")
            result[f"b.{label}.n"] = n
    finally:
        ray.shutdown()


def scenario_c(result, sizes, repeat):
    n = sizes["c"]
    ray = start()
    triv, inc = _fns["triv"], _fns["inc"]
    try:
        independent(ray, 200)
        for _ in range(repeat):
            t0 = time.perf_counter()
            x = triv.remote(0)
            for _i in range(n - 1):
                x = inc.remote(x)
            ray.get(x)
            elapsed = time.perf_counter() - t0
            add(result, "c.ms_per_link", elapsed / n * 1e3)
            log(f"  ray c: {elapsed / n * 1e3:.3f} ms/link")
        result["c.n"] = n
    finally:
        ray.shutdown()


def round_trips(ray, count, pause):
    triv = _fns["triv"]
    times = []
    for k in range(count):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter()
        ray.get(triv.remote(k))
        times.append(time.perf_counter() - t0)
    return times


def scenario_d(result, sizes, repeat):
    count, isolated_count, pause = sizes["d"]
    ray = start()
    try:
        independent(ray, 200)
        for _ in range(repeat):
            round_trips(ray, 10, 0)
            b2b = round_trips(ray, count, 0)
            iso = round_trips(ray, isolated_count, pause)
            for name, values in (("py_b2b", b2b), ("py_iso", iso)):
                add(result, f"d.{name}.median", percentile(values, 50) * 1e3)
                add(result, f"d.{name}.p90", percentile(values, 90) * 1e3)
            log(f"  ray d: b2b {percentile(b2b, 50) * 1e3:.2f} ms, isolated "
                f"{percentile(iso, 50) * 1e3:.2f} ms")
    finally:
        ray.shutdown()


def concat_tree(ray, k):
    concat = _fns["concat"]
    layer = [concat.remote(CONST, CONST) for _ in range(2 ** (k - 1))]
    while len(layer) > 1:
        layer = [concat.remote(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    data = ray.get(layer[0])
    assert len(data) == len(CONST) * 2 ** k
    return 2 ** k - 1


def scenario_e(result, sizes, repeat):
    ray = start()
    try:
        concat_tree(ray, 4)
        for label, k in sizes["e"].items():
            for _ in range(repeat):
                t0 = time.perf_counter()
                n = concat_tree(ray, k)
                elapsed = time.perf_counter() - t0
                add(result, f"e.{label}.rate", n / elapsed)
                log(f"  ray e k={k}: {n / elapsed:,.0f} tasks/s")
            result[f"e.{label}.n"] = 2 ** k - 1
    finally:
        ray.shutdown()


def scenario_s(result, sizes, repeat):
    import ray
    for _ in range(repeat):
        t0 = time.perf_counter()
        start()
        t_up = time.perf_counter()
        ray.shutdown()
        t_down = time.perf_counter()
        add(result, "s.up_s", t_up - t0)
        add(result, "s.down_s", t_down - t_up)
        log(f"  ray startup {t_up - t0:.3f} s, stop {t_down - t_up:.3f} s")


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d,
             "e": scenario_e, "s": scenario_s}

if __name__ == "__main__":
    main(SCENARIOS)
