"""Rain vs Dask distributed vs Ray, side by side on this machine: one command.

    python benchmarks/run.py                 # full run, writes benchmarks/RESULTS.md
    python benchmarks/run.py --smoke         # tiny sizes (CI), prints the table
    python benchmarks/run.py --only a,c      # some scenarios (prints; --output to save)
    python benchmarks/run.py --systems rain  # only our runtime

Every system gets the same work and the same worker processes: Rain a server and 2
governors x 1 CPU (``LocalCluster(governors=[1, 1])``), Dask ``LocalCluster(n_workers=2,
threads_per_worker=1)``, Ray ``ray.init(num_cpus=2)``. Each scenario of each system runs in
its own process (``scenarios/<system>_side.py``) with a fresh cluster and repeats its
measurement ``--repeat`` times; the table shows the median and the spread (min-max).
A peer that is not installed is skipped and marked so in the table.

Scenarios:
  s  cluster start: server + 2 governors up and a client connected
  a  N independent trivial Python tasks, then a gather of 10 results (N = 10k, 100k)
  b  merge: N trivial tasks + one task depending on all of them
  c  a chain of 1,000 dependent tasks
  d  single-task round trip (submit, wait, fetch), back to back and isolated
  e  Rain's concat benchmark: layers of 2-input Concat over 2^11 and 2^16 constants
  f  one graph of 1,000,000 built-in tasks (Rain only): submit, completion, memory
  g  the server core and scheduler alone, no network: 1,000,000 tasks on 100 simulated
     governors (``benchmarks/sim_scheduler.py``)
  leak  20 sessions of 10k tasks in one server: the server's RSS after each (Rain only)

``RESULTS.md`` is regenerated above the line ``<!-- notes -->``; everything below it
(analysis, profiles, what we changed) is kept as written.
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIO_DIR = os.path.join(HERE, "scenarios")
NOTES_MARKER = "<!-- notes -->"

FULL = {
    "a": {"small": 10_000, "large": 100_000},
    "b": {"small": 10_000, "large": 100_000},
    "c": 1000,
    "d": [200, 50, 0.05],           # back-to-back count, isolated count, pause (s)
    "e": {"small": 11, "large": 16},
    "f": 1_000_000,
    "g": [1_000_000, 100],
    "leak": [20, 10_000],
}
SMOKE = {
    "a": {"small": 200, "large": 500},
    "b": {"small": 200, "large": 500},
    "c": 50,
    "d": [20, 5, 0.01],
    "e": {"small": 4, "large": 6},
    "f": 2000,
    "g": [10_000, 10],
    "leak": [3, 200],
}
ORDER = ["s", "a", "b", "c", "d", "e", "f", "g", "leak"]
SYSTEMS = ["rain", "dask", "ray"]
PEER_MODULES = {"dask": "distributed", "ray": "ray"}
SUPPORTED = {"rain": set(ORDER), "dask": {"s", "a", "b", "c", "d", "e"},
             "ray": {"s", "a", "b", "c", "d", "e"}}
NOT_RUN = {"f": "Rain's built-in tasks only", "g": "Rain's scheduler only",
           "leak": "Rain only"}


def _n(sizes, key, label):
    value = sizes[key][label] if isinstance(sizes[key], dict) else sizes[key]
    return f"{value:,}"


# (scenario, key, label(sizes), unit, digits, target) ; target = (op, value, text) or None
def rows(sizes):
    e = sizes["e"]
    return [
        ("s", "s.up_s", "cluster up, client connected", "s", 3, ("<=", 1.0, "<= 1 s")),
        ("s", "s.down_s", "cluster stop", "s", 3, None),
        ("a", "a.small.rate", f"(a) {_n(sizes, 'a', 'small')} independent tasks + gather",
         "tasks/s", 0, (">=", 10_000, ">= 10,000 (min >= 5,000)")),
        ("a", "a.large.rate", f"(a) {_n(sizes, 'a', 'large')} independent tasks + gather",
         "tasks/s", 0, (">=", 10_000, ">= 10,000 (min >= 5,000)")),
        ("a", "a.small.server_us", f"(a) server CPU per task, {_n(sizes, 'a', 'small')}",
         "us", 1, ("<=", 30, "<= 30 us")),
        ("a", "a.large.server_us", f"(a) server CPU per task, {_n(sizes, 'a', 'large')}",
         "us", 1, ("<=", 30, "<= 30 us")),
        ("b", "b.small.rate", f"(b) merge: {_n(sizes, 'b', 'small')} tasks + 1",
         "tasks/s", 0, (">=", 10_000, ">= 10,000 (min >= 5,000)")),
        ("b", "b.large.rate", f"(b) merge: {_n(sizes, 'b', 'large')} tasks + 1",
         "tasks/s", 0, (">=", 10_000, ">= 10,000 (min >= 5,000)")),
        ("c", "c.ms_per_link", f"(c) chain of {sizes['c']:,} tasks", "ms/link", 3,
         ("<=", 0.5, "<= 0.5 ms")),
        ("d", "d.py_iso.median", "(d) round trip, isolated, median", "ms", 2,
         ("<=", 1.5, "<= 1.5 ms")),
        ("d", "d.py_iso.p90", "(d) round trip, isolated, p90", "ms", 2, None),
        ("d", "d.py_b2b.median", "(d) round trip, back to back, median", "ms", 2,
         ("<=", 1.0, "<= 1 ms")),
        ("d", "d.py_b2b.p90", "(d) round trip, back to back, p90", "ms", 2, None),
        ("d", "d.bi_iso.median", "(d) round trip, built-in task, isolated, median", "ms", 2,
         None),
        ("d", "d.bi_b2b.median", "(d) round trip, built-in task, back to back, median", "ms",
         2, None),
        ("d", "d.ping_b2b.median", "(d) machine baseline: raw ping-pong of two processes, "
         "back to back, median", "us", 0, None),
        ("d", "d.ping_iso.median", "(d) machine baseline: the same ping-pong, isolated, median",
         "us", 0, None),
        ("d", "d.bare_b2b.median", "(d) machine baseline: Rain's hops and messages with no "
         "runtime (`scenarios/bare_pipeline.py`), pickled, back to back, median", "ms", 2,
         None),
        ("d", "d.bare_iso.median", "(d) machine baseline: the same bare hops, pickled, "
         "isolated, median", "ms", 2, None),
        ("d", "d.bare_cbor_b2b.median", "(d) machine baseline: the same bare hops, CBOR, "
         "back to back, median", "ms", 2, None),
        ("d", "d.bare_cbor_iso.median", "(d) machine baseline: the same bare hops, CBOR, "
         "isolated, median", "ms", 2, None),
        ("d", "d.bare_capnp_b2b.median", "(d) machine baseline: the same bare hops in Rain's "
         "wire format (Cap'n Proto + CBOR rows), back to back, median", "ms", 2, None),
        ("d", "d.bare_capnp_iso.median", "(d) machine baseline: the same bare hops in Rain's "
         "wire format, isolated, median", "ms", 2, None),
        ("e", "e.small.rate", f"(e) concat, 2^{e['small']} constants "
         f"({2 ** e['small'] - 1:,} tasks)", "tasks/s", 0, (">=", 20_000, ">= 20,000")),
        ("e", "e.large.rate", f"(e) concat, 2^{e['large']} constants "
         f"({2 ** e['large'] - 1:,} tasks)", "tasks/s", 0, (">=", 20_000, ">= 20,000")),
        ("f", "f.submit_s", f"(f) {sizes['f']:,} built-in tasks: submit", "s", 2,
         ("<=", 10, "<= 10 s")),
        ("f", "f.complete_s", "(f) completion (build + submit + run)", "s", 1,
         ("done", 0, "completes")),
        ("f", "f.build_s", "(f) building the graph in the client", "s", 1, None),
        ("f", "f.rate", "(f) throughput", "tasks/s", 0, None),
        ("f", "f.server_live_b", "(f) server memory per task, graph live", "B/task", 0,
         ("<=", 1536, "<= 1.5 KB")),
        ("f", "f.server_peak_b", "(f) server peak memory per task", "B/task", 0, None),
        ("f", "f.server_peak_mib", "(f) server peak RSS", "MiB", 0, None),
        ("f", "f.client_peak_mib", "(f) client peak RSS", "MiB", 0, None),
        ("g", "g.core_s", f"(g) scheduler alone: {sizes['g'][0]:,} tasks on "
         f"{sizes['g'][1]} governors", "s", 2, ("<=", 10, "<= 10 s")),
        ("g", "g.wall_s", "(g) whole simulation, wall (incl. simulated governors)", "s", 2,
         None),
        ("g", "g.bytes_per_task", "(g) live graph in the core", "B/task", 0, None),
    ]


def python_rows(sizes):
    return [
        ("a", "a.small.rate", f"{_n(sizes, 'a', 'small')} independent trivial Python tasks",
         "tasks/s", 0, (">=", 5000, ">= 5,000")),
        ("c", "c.hops", f"chain of {sizes['c']:,} dependent Python tasks", "hops/s", 0,
         (">=", 1500, ">= 1,500")),
    ]


# -- running ---------------------------------------------------------------------------------
def available(system):
    if system == "rain":
        return True, ""
    module = PEER_MODULES[system]
    if importlib.util.find_spec(module) is None:
        return False, f"not installed (`pip install -e '.[bench]'`)"
    return True, ""


def run_side(system, scenario, sizes, repeat, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [SCENARIO_DIR, ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    command = [sys.executable, os.path.join(SCENARIO_DIR, f"{system}_side.py"),
               "--scenario", scenario, "--sizes", json.dumps(sizes), "--repeat", str(repeat)]
    print(f"[{system}] scenario {scenario} ...", flush=True)
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, env=env,
                              timeout=timeout, text=True, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"_error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"_error": f"failed (exit code {proc.returncode})"}


def run_sim(sizes, repeat, smoke, timeout):
    """Scenario (g): ``benchmarks/sim_scheduler.py`` in a child process, parsed."""
    tasks, governors = sizes["g"]
    command = [sys.executable, os.path.join(HERE, "sim_scheduler.py")]
    command += ["--smoke"] if smoke else ["--tasks", str(tasks), "--governors", str(governors)]
    result = {}
    print("[rain] scenario g ...", flush=True)
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout,
                                  cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"_error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        out = proc.stdout
        if proc.returncode != 0:
            return {"_error": f"failed (exit code {proc.returncode})"}
        for key, pattern in (("g.core_s", r"core total\s+([\d.]+) s"),
                             ("g.wall_s", r"simulation loop\s+([\d.]+) s"),
                             ("g.submit_s", r"submit\s+([\d.]+) s"),
                             ("g.bytes_per_task", r"live graph\s+([\d.]+) B/task")):
            m = re.search(pattern, out)
            if m:
                result.setdefault(key, []).append(float(m.group(1)))
        result.setdefault("g.process_s", []).append(wall)
        m = re.search(r"graph: ([\d,]+) tasks", out)
        if m:
            result["g.n"] = int(m.group(1).replace(",", ""))
        print("  " + " | ".join(line.strip() for line in out.splitlines()
                                if "core total" in line or "live graph" in line), flush=True)
    return result


# -- reporting ---------------------------------------------------------------------------------
def summary(values):
    if not isinstance(values, list) or not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(value, digits):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def cell(values, digits):
    s = summary(values)
    if s is None:
        return "-"
    med, lo, hi = s
    if len(values) == 1:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(lo, digits)}-{fmt(hi, digits)})"


def verdict(values, target):
    s = summary(values)
    if target is None:
        return ""
    if s is None:
        return "not run"
    op, limit, _text = target
    med, lo, _hi = s
    if op == "done":
        return "met"
    if op == ">=":
        ok = med >= limit and (limit < 10_000 or lo >= limit / 2)
    else:
        ok = med <= limit
    return "met" if ok else "**missed**"


def table(row_defs, results, systems, skipped):
    lines = ["| scenario | unit | target | " + " | ".join(s.capitalize() for s in systems)
             + " | Rain vs target |", "|---|---|---|" + "---:|" * len(systems) + "---|"]
    for scenario, key, label, unit, digits, target in row_defs:
        cells = []
        for system in systems:
            res = results.get(system, {}).get(scenario)
            if system in skipped:
                cells.append("n/a")
            elif scenario not in SUPPORTED[system]:
                cells.append("-")
            elif res is None:
                cells.append("not run")
            elif "_error" in res:
                cells.append(res["_error"])
            else:
                cells.append(cell(res.get(key), digits))
        rain = results.get("rain", {}).get(scenario) or {}
        lines.append(f"| {label} | {unit} | {target[2] if target else ''} | "
                     + " | ".join(cells) + f" | {verdict(rain.get(key), target)} |")
    return lines


def versions():
    out = {"python": platform.python_version()}
    for dist in ("rain-python", "pycapnp", "dask", "distributed", "ray", "psutil"):
        try:
            from importlib.metadata import version
            out[dist] = version(dist)
        except Exception:
            out[dist] = "not installed"
    return out


def machine():
    import psutil
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} logical CPUs, "
            f"{psutil.virtual_memory().total / 2 ** 30:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}")


def loadavg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "?"


def derive(results):
    rain = results.get("rain", {})
    for system in results:
        c = results[system].get("c")
        if c and "c.ms_per_link" in c:
            c["c.hops"] = [1000.0 / v for v in c["c.ms_per_link"]]


def report(args, sizes, results, systems, skipped, meta):
    derive(results)
    out = []
    out.append("# Benchmarks: Rain vs Dask distributed vs Ray")
    out.append("")
    out.append(f"Command: `{meta['command']}`  ")
    out.append(f"Date: {meta['date']}, {meta['duration']:.0f} s in total  ")
    out.append(f"Machine: {machine()}  ")
    out.append(f"Load average before / after: {meta['load_before']} / {loadavg()}  ")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + "  ")
    peer = f" ({args.peer_repeat} for Dask and Ray)" if args.peer_repeat else ""
    out.append(f"Repetitions: {args.repeat} per scenario{peer}, one for (f) and the leak "
               "check; cells are median (min-max).")
    out.append("")
    out.append("Same work, same worker processes: Rain `LocalCluster(governors=[1, 1])` "
               "(a server + 2 governors x 1 CPU, one Python executor each), Dask "
               "`LocalCluster(n_workers=2, threads_per_worker=1)` (default configuration), "
               "Ray `ray.init(num_cpus=2)`. The trivial task returns `b\"x\"`; functions live "
               "in `benchmarks/scenarios/workload.py`.")
    for system, why in skipped.items():
        out.append(f"\n{system.capitalize()}: skipped, {why}.")
    out.append("")
    out.append("## All scenarios")
    out.append("")
    out.extend(table(rows(sizes), results, systems, skipped))
    out.append("")
    out.append("`-`: not applicable to that system (built-in tasks, Rain's own scheduler "
               "simulator, Rain's server process).")
    out.append("")
    out.append("## Python tasks (`@remote`) against Dask")
    out.append("")
    out.extend(table(python_rows(sizes), results, systems, skipped))
    leak = results.get("rain", {}).get("leak")
    if leak:
        out.append("")
        out.append("## Memory across sessions (leak check)")
        out.append("")
        if "_error" in leak:
            out.append(f"Not measured: {leak['_error']}.")
        else:
            rss = leak["leak.rss_mib"]
            out.append(f"One server, {len(rss)} sessions of {leak['leak.n']:,} trivial Python "
                       "tasks each; the server's RSS (MiB) after each session:")
            out.append("")
            out.append("    " + " ".join(f"{v:.1f}" for v in rss))
            if len(rss) >= 4:
                half = len(rss) // 2
                out.append("")
                out.append(f"Growth over the second half (sessions {half + 1}-{len(rss)}): "
                           f"{rss[-1] - rss[half - 1]:+.1f} MiB; over all: "
                           f"{rss[-1] - rss[0]:+.1f} MiB.")
    out.append("")
    out.append("## Raw figures")
    out.append("")
    out.append("<details><summary>every repetition (JSON)</summary>")
    out.append("")
    out.append("```json")
    out.append(json.dumps(results, indent=None, sort_keys=True))
    out.append("```")
    out.append("</details>")
    out.append("")
    return "\n".join(out)


def load_previous(path):
    """Figures and run details of an earlier report (its raw JSON block), for --update."""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read()
    m = re.search(r"```json\n(.*?)\n```", text, re.S)
    if not m:
        return None
    meta = {"command": "", "date": "", "load_before": "?", "duration": 0.0}
    for key, pattern in (("command", r"Command: `(.*)`  $"),
                         ("date", r"Date: (.*), (\d+) s in total"),
                         ("load_before", r"Load average before / after: (.*) / ")):
        found = re.search(pattern, text, re.M)
        if found:
            meta[key] = found.group(1)
            if key == "date":
                meta["duration"] = float(found.group(2))
    return json.loads(m.group(1)), meta


def write(path, text):
    notes = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
    if not notes:
        notes = NOTES_MARKER + "\n"
    with open(path, "w") as f:
        f.write(text + "\n" + notes)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Rain vs Dask vs Ray benchmark suite",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one repetition (CI smoke test)")
    parser.add_argument("--only", help="comma-separated scenarios (" + ",".join(ORDER) + ")")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated systems (default: rain,dask,ray)")
    parser.add_argument("--repeat", type=int, help="repetitions (default 3; smoke 1)")
    parser.add_argument("--peer-repeat", type=int,
                        help="repetitions for Dask and Ray (default: --repeat); their 100k "
                        "runs take minutes each")
    parser.add_argument("--update", action="store_true",
                        help="re-run only the selected scenarios/systems and merge them "
                        "into the figures already in the output file")
    parser.add_argument("--output", help="write the report here (default: "
                        "benchmarks/RESULTS.md for a full run of every scenario)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 3
    scenarios = ORDER if not args.only else [s.strip() for s in args.only.split(",")]
    bad = [s for s in scenarios if s not in ORDER]
    if bad:
        parser.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(ORDER)}")
    systems = [s.strip() for s in args.systems.split(",")]
    if "rain" not in systems or any(s not in SYSTEMS for s in systems):
        parser.error("--systems must include rain and name only rain, dask, ray")
    skipped = {}
    for system in systems:
        ok, why = available(system)
        if not ok:
            skipped[system] = why
            print(f"{system}: {why}; skipped", flush=True)
    timeout = 180 if args.smoke else 3600
    meta = {"command": "python benchmarks/run.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_before": loadavg()}
    output = args.output
    if output is None and not args.smoke and (not args.only or args.update):
        output = os.path.join(HERE, "RESULTS.md")
    previous = load_previous(output) if args.update else None
    t_start = time.perf_counter()
    results = {s: {} for s in systems}
    if previous:
        old_results, old_meta = previous
        for system, scenarios_ in old_results.items():
            results.setdefault(system, {}).update(scenarios_)
        systems = [s for s in SYSTEMS if s in results]
        meta["command"] = f"{old_meta['command']}`, then `{meta['command']}"
        meta["date"] = f"{old_meta['date']} (updated {meta['date']})"
        meta["load_before"] = old_meta["load_before"]
        meta["duration_before"] = old_meta["duration"]
    selected = [s.strip() for s in args.systems.split(",")]
    for scenario in scenarios:
        for system in systems:
            if system not in selected:
                continue
            if system in skipped or scenario not in SUPPORTED[system]:
                continue
            if scenario == "g":
                res = run_sim(sizes, args.repeat, args.smoke, timeout)
            else:
                repeat = 1 if scenario in ("f", "leak") else args.repeat
                if system != "rain" and args.peer_repeat:
                    repeat = args.peer_repeat
                res = run_side(system, scenario, sizes, repeat, timeout)
            results[system][scenario] = res
    meta["duration"] = time.perf_counter() - t_start + meta.get("duration_before", 0)
    text = report(args, sizes, results, systems, skipped, meta)
    if output:
        write(output, text)
        print(f"wrote {output}")
    else:
        print(text)
    failed = [f"{sys_}/{sc}" for sys_, r in results.items() for sc, v in r.items()
              if "_error" in v and sys_ == "rain"]
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
