"""Speed check of the working tree against a baseline commit: scenarios (a)-(e), Rain only.

    python benchmarks/ab.py                          # baseline 4ca6565, 3 rounds, full sizes
    python benchmarks/ab.py --baseline main --rounds 5
    python benchmarks/ab.py --no-large               # skip the 100k / 2^16 sizes
    python benchmarks/ab.py --new HEAD               # a commit instead of the working tree
    python benchmarks/ab.py --smoke                  # tiny sizes, one round (CI)

The baseline (and ``--new``, when given) is extracted with ``git archive`` into a
temporary directory; the new version is otherwise this working tree as it is. Both versions
run with this interpreter (the same virtualenv), each through its own
``benchmarks/scenarios/rain_side.py``, with PYTHONPATH and the working directory set to its
own tree, so the server, governors and executors each one starts import that version.

The runs alternate: per round and scenario, one version then the other, the first one
swapping every round (A B, B A, A B, ...), so that a change of load on the machine falls on
both alike. The table shows each version's median over all its runs (with min-max) and the
ratio new/old; for rates higher is better, for times lower is better. The rows marked
"machine" measure the machine, not Rain (the same code in both trees): their ratio shows
how much the load moved between runs.
"""
import argparse
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BASELINE = "4ca6565"
SCENARIOS = ["a", "b", "c", "d", "e"]
HIGHER_IS_BETTER = {"tasks/s", "hops/s"}


def _suite():
    """The working tree's ``benchmarks/run.py``: sizes, rows (labels, units) and helpers."""
    spec = importlib.util.spec_from_file_location("rain_bench_suite",
                                                  os.path.join(HERE, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(*args):
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def resolve(revision):
    """The full commit id of ``revision``; SystemExit with the reason when unknown."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"ab.py: unknown baseline commit {revision!r} (is it in this "
                         "clone's history? `git log --oneline` lists what is)") from None


def extract(commit, into):
    """Write the tree of ``commit`` into the directory ``into`` (``git archive``)."""
    archive = subprocess.Popen(["git", "-C", ROOT, "archive", "--format=tar", commit],
                               stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", into], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise SystemExit(f"ab.py: could not extract {commit} with git archive")


def side_env(tree):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(tree, "benchmarks", "scenarios"), tree])
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def check_imports(tree):
    """Make sure a process started for ``tree`` imports that tree's ``rain``."""
    probe = subprocess.run([sys.executable, "-c",
                            "import os, rain; print(os.path.dirname(rain.__file__))"],
                           env=side_env(tree), cwd=tree, capture_output=True, text=True)
    found = probe.stdout.strip()
    wanted = os.path.join(os.path.realpath(tree), "rain")
    if probe.returncode != 0 or os.path.realpath(found) != wanted:
        raise SystemExit(f"ab.py: a process for {tree} imports rain from {found!r} "
                         f"instead of {wanted!r}:\n{probe.stderr[-2000:]}")


def run_side(tree, scenario, sizes, repeat, timeout):
    """One scenario in a fresh cluster of ``tree``'s code: {figure: [values]}."""
    command = [sys.executable, os.path.join(tree, "benchmarks", "scenarios", "rain_side.py"),
               "--scenario", scenario, "--sizes", json.dumps(sizes), "--repeat", str(repeat)]
    try:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=side_env(tree), cwd=tree, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return {"_error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = proc.stderr.strip().splitlines()[-5:]
    return {"_error": f"failed (exit code {proc.returncode}): " + " / ".join(tail)}


def merge(into, result):
    for key, values in result.items():
        if key == "_error":
            into.setdefault("_errors", []).append(values)
        elif isinstance(values, list):
            into.setdefault(key, []).extend(values)


def derive(result):
    if "c.ms_per_link" in result:
        result["c.hops"] = [1000.0 / v for v in result["c.ms_per_link"] if v]


def _cell(values, digits):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def ratio_cell(old, new, unit):
    if not old or not new:
        return "-", ""
    old_med, new_med = statistics.median(old), statistics.median(new)
    if old_med == 0:
        return "-", ""
    ratio = new_med / old_med
    better = ratio > 1 if unit in HIGHER_IS_BETTER else ratio < 1
    change = abs(ratio - 1)
    verdict = "same" if change < 0.005 else ("better" if better else "worse")
    return f"{ratio:.3f}", f"{verdict} {change:.0%}" if verdict != "same" else verdict


def table(row_defs, results, labels, scenarios):
    old_label, new_label = labels
    lines = [f"| figure | unit | old: {old_label} | new: {new_label} | new/old | |",
             "|---|---|---:|---:|---:|---|"]
    for scenario, key, label, unit, digits, _target in row_defs:
        if scenario not in scenarios:
            continue
        old, new = results["old"].get(key), results["new"].get(key)
        if not old and not new:
            continue
        ratio, verdict = ratio_cell(old, new, unit)
        if "machine baseline" in label:
            verdict = f"machine: {verdict}" if verdict else "machine"
        lines.append(f"| {label} | {unit} | {_cell(old, digits)} | {_cell(new, digits)} "
                     f"| {ratio} | {verdict} |")
    return "\n".join(lines)


def loadavg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "?"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Scenarios (a)-(e) of Rain, a baseline commit against the working tree",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE,
                        help=f"the old version: a commit of this clone (default "
                        f"{DEFAULT_BASELINE})")
    parser.add_argument("--new", help="the new version: a commit of this clone (default: "
                        "the working tree, uncommitted changes included)")
    parser.add_argument("--rounds", type=int,
                        help="runs of every scenario per version (default 3; smoke 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measurements per run inside one cluster (default 1)")
    parser.add_argument("--only", help="comma-separated scenarios among a,b,c,d,e")
    parser.add_argument("--no-large", action="store_true",
                        help="skip the large sizes of (a), (b) and (e)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one round: checks that the tool works (CI)")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.smoke else 3)
    if rounds < 1 or args.repeat < 1:
        parser.error("--rounds and --repeat must be at least 1")
    scenarios = SCENARIOS if not args.only else [s.strip() for s in args.only.split(",")]
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        parser.error(f"unknown scenario(s) {', '.join(bad)}; choose from a,b,c,d,e")

    suite = _suite()
    all_sizes = suite.SMOKE if args.smoke else suite.FULL     # the rows' labels
    sizes = json.loads(json.dumps(all_sizes))
    if args.no_large:
        for key in ("a", "b", "e"):
            sizes[key].pop("large", None)
    commit = resolve(args.baseline)
    new_commit = resolve(args.new) if args.new else None
    if new_commit:
        new_label = new_commit[:7]
    else:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        new_label = f"working tree ({head}{' + changes' if dirty else ''})"
    labels = (commit[:7], new_label)
    timeout = 300 if args.smoke else 3600
    meta = {"command": "python benchmarks/ab.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": loadavg()}

    old_tree = tempfile.mkdtemp(prefix="rain-ab-")
    new_tree = tempfile.mkdtemp(prefix="rain-ab-") if new_commit else ROOT
    try:
        extract(commit, old_tree)
        if new_commit:
            extract(new_commit, new_tree)
        trees = {"old": old_tree, "new": new_tree}
        for tree in trees.values():
            check_imports(tree)
        results = {"old": {}, "new": {}}
        for round_ in range(rounds):
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            for scenario in scenarios:
                for version in order:
                    print(f"[round {round_ + 1}/{rounds}] ({scenario}) {version} ...",
                          flush=True)
                    merge(results[version],
                          run_side(trees[version], scenario, sizes, args.repeat, timeout))
    finally:
        shutil.rmtree(old_tree, ignore_errors=True)
        if new_commit:
            shutil.rmtree(new_tree, ignore_errors=True)
    for result in results.values():
        derive(result)
    meta["load_after"] = loadavg()

    report = "\n".join([
        f"Command: `{meta['command']}`, {meta['date']}, on {os.cpu_count()} cores; "
        f"load average before {meta['load_before']}, after {meta['load_after']}.",
        f"{rounds} round(s) of runs alternating between the versions, "
        f"{args.repeat} measurement(s) per run; medians (min-max).",
        "",
        table(suite.rows(all_sizes), results, labels, scenarios), ""])
    errors = [f"{version}: {e}" for version, r in results.items()
              for e in r.get("_errors", ())]
    if errors:
        report += "\nFailed runs:\n" + "\n".join(f"- {e}" for e in errors) + "\n"
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report)
        print(f"wrote {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
