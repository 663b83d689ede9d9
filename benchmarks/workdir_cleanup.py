"""What the Python executor's clean-up of its working directory costs per call.

Every call of a Python task starts in an empty directory: after each call the executor
lists the directory and removes whatever the function left (no timestamp shortcut that
could skip it). This measures that step (``PyExecutor.tidy``) alone, in-process:

    .venv/bin/python benchmarks/workdir_cleanup.py

- "empty": the function left nothing (the common case: one directory listing);
- "one file", "one dangling link": what a function that litters costs on top.
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rain.executor.runner import PyExecutor  # noqa: E402

CALLS = 20_000


def measure(executor, litter):
    samples = []
    for _ in range(CALLS // 100):
        start = time.perf_counter_ns()
        for _ in range(100):
            litter()
            executor.tidy()
        samples.append((time.perf_counter_ns() - start) / 100)
    return statistics.median(samples) / 1000, min(samples) / 1000


def main():
    with tempfile.TemporaryDirectory() as base:
        workdir = os.path.join(base, "work")
        os.mkdir(workdir)
        os.chdir(workdir)
        executor = PyExecutor(workdir)

        def nothing():
            pass

        def one_file():
            with open("left-over", "wb"):
                pass

        def dangling_link():
            os.symlink(os.path.join(base, "gone"), "link")

        base_litter = {"one file": one_file, "one dangling link": dangling_link}
        results = [("empty", *measure(executor, nothing))]
        creation = {name: measure(PyExecutor(workdir), lambda f=f: (f(), _clear(workdir)))
                    for name, f in base_litter.items()}
        for name, f in base_litter.items():
            median, low = measure(executor, f)
            results.append((name, median, low))
        print(f"Python executor: clean-up of the working directory after a call "
              f"({CALLS:,} calls each)")
        print("| left by the call | us per call, median | min |")
        print("|---|---:|---:|")
        for name, median, low in results:
            print(f"| {name} | {median:.2f} | {low:.2f} |")
        print("(the 'one file'/'link' rows include making the file or link: "
              + ", ".join(f"{n} alone ~{m:.2f} us" for n, (m, _) in creation.items())
              + ")")


def _clear(workdir):
    for name in os.listdir(workdir):
        os.unlink(os.path.join(workdir, name))


if __name__ == "__main__":
    main()
