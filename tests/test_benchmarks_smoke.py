"""The benchmark suite runs end to end at tiny sizes (``benchmarks/run.py --smoke``).

Only our runtime is exercised here (peers are optional: ``pip install -e '.[bench]'``);
the full side-by-side run is ``make bench`` and its results live in
``benchmarks/RESULTS.md``.
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "run.py")

SCENARIO_ROWS = ["cluster up, client connected", "(a) ", "(a) server CPU per task",
                 "(b) merge", "(c) chain", "(d) round trip, isolated",
                 "(d) round trip, back to back", "(d) machine baseline: Rain's hops",
                 "(d) machine baseline: the same bare hops, pickled",
                 "(d) machine baseline: the same bare hops, CBOR",
                 "(d) machine baseline: the same bare hops in Rain's wire format", "(e) concat", "(f) ",
                 "(g) scheduler alone",
                 "independent trivial Python tasks", "dependent Python tasks"]


RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")
TABLES = ("## All scenarios", "## Python tasks", "## Memory across sessions")


def row_labels(text):
    """The first cells of the scenario tables, sizes replaced by '#' (a smoke run uses
    smaller ones)."""
    labels, inside = set(), False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.startswith(TABLES)
        elif inside and line.startswith("| ") and not line.startswith("| scenario"):
            labels.add(re.sub(r"\d[\d,.^]*", "#", line.strip("|").split("|")[0].strip()))
    return labels


# About a minute on an idle machine, over three on a loaded one.
@pytest.mark.timeout(660)
def test_smoke_run_writes_every_scenario_row(tmp_path):
    output = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, RUN, "--smoke", "--systems", "rain",
                           "--output", str(output)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for label in SCENARIO_ROWS:
        matching = [row for row in rows if label in row]
        assert matching, f"no row for {label!r} in:\n{text}"
        for row in matching:
            cells = [c.strip() for c in row.strip("|").split("|")]
            rain = cells[3]
            assert rain not in ("", "-", "not run") and "failed" not in rain \
                and "timed out" not in rain, row
    assert "## Memory across sessions" in text
    # Every figure recorded in RESULTS.md is one that the command it names makes.
    with open(RESULTS) as f:
        recorded = f.read()
    assert "Command: `python benchmarks/run.py`" in recorded
    missing = row_labels(recorded) - row_labels(text)
    assert row_labels(recorded) and not missing, missing
    assert "<!-- notes -->" in text


def test_only_and_bad_scenario(tmp_path):
    proc = subprocess.run([sys.executable, RUN, "--smoke", "--only", "x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown scenario" in proc.stderr


def test_ab_smoke_compares_two_versions(tmp_path):
    """``benchmarks/ab.py --smoke``: the baseline (here HEAD, extracted with git archive)
    and the working tree run the same scenario alternately; the table has both medians
    and their ratio."""
    output = tmp_path / "ab.md"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ab.py"),
                           "--smoke", "--baseline", "HEAD", "--only", "c",
                           "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in output.read_text().splitlines() if "(c) chain" in line]
    assert len(rows) == 1, output.read_text()
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    old, new, ratio = cells[2], cells[3], cells[4]
    assert float(old.replace(",", "")) > 0 and float(new.replace(",", "")) > 0
    assert float(ratio) > 0
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "ab.py"),
                          "--smoke", "--baseline", "no-such-commit"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown baseline commit" in bad.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cold", [False, True], ids=["warmed", "cold"])
def test_transfer_smoke_measures_every_row(tmp_path, cold):
    """``benchmarks/transfer.py --smoke`` (scenario (h) at 64 MiB): every Rain row is
    measured against its own copy, with its memory growth, and nothing failed; ``--cold``
    leaves out the page warming and says so."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "transfer.py"),
                           "--smoke", *(["--cold"] if cold else [])],
                          cwd=ROOT, capture_output=True, text=True, timeout=280, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "FAILED" not in out, out[-3000:]
    assert ("pages cold (--cold)" if cold else "pages warmed before each copy") in out
    assert re.search(r"raw loopback copy [\d.]+ s = \d+ MB/s", out), out
    assert re.search(r"splice loopback copy [\d.]+ s = \d+ MB/s \(\d+% of the raw copy "
                     r"above; median of 1: \d+ MB/s\)", out), out
    for label, against in (("task output -> store", "of a plain cp"),
                           ("governor -> governor", "of raw"),
                           ("governor -> client", "of raw"),
                           ("client -> governor", "of raw")):
        row = re.search(rf"rain {re.escape(label)}\s+[\d.]+ s = \d+ MB/s \(\d+% {against};"
                        r".*peak RSS server \+\d+ MB, sender \+\d+ MB, receiver \+\d+ MB, "
                        r"client \+\d+ MB", out)
        assert row, f"{label} missing: {out[-3000:]}"
    # Only the per-user runtime directory stays, with no server registered in it.
    runtime = f"rain-{os.getuid()}"
    assert set(os.listdir(tmp_path)) <= {runtime}
    if os.listdir(tmp_path):
        assert os.listdir(tmp_path / runtime / "servers") == []


@pytest.mark.timeout(120)
def test_write_size_smoke_measures_each_size(tmp_path):
    """``benchmarks/write_size.py`` at 32 MiB: a row of speed and kernel time for each
    write size asked for, and its scratch files gone afterwards."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "write_size.py"),
                           "--gib", "0.03125", "--rounds", "1", "--sizes", "2048,128"],
                          cwd=ROOT, capture_output=True, text=True, timeout=100, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for size in (2048, 128):
        assert re.search(rf"^\| {size} KiB \| \d+ \(\d+-\d+\) \| [\d.]+ \([\d.]+-[\d.]+\) \|$",
                         out, re.M), out
    assert os.listdir(tmp_path) == []
