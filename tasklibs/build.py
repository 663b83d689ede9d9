"""Build the C++ and Rust tasklibs' example executors and write a governor config for them.

    python tasklibs/build.py [--debug] OUTDIR   # prints the path of OUTDIR/governor.toml

``--debug`` makes unoptimized builds, which compile in about half the time (a demo's
choice; the tests and benchmarks build for release).

The C++ library builds with CMake (needs g++ and libcbor-dev). The Rust crate builds
offline from Debian's packaged crates (``debian-registry.toml``; needs cargo, rustc and
librust-serde-cbor-dev), from a copy of the crate so the source tree stays clean. Only the
executables are kept in OUTDIR (``bin/``); the build trees are removed.
"""
import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
CPP_NAME = "cppex"
RUST_NAME = "rustex"


def find_cargo():
    """Debian's cargo (it matches Debian's crates) if installed, else the one on PATH."""
    for candidate in ("/usr/bin/cargo", shutil.which("cargo")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("cargo not found (Debian: apt-get install cargo rustc)")


def _run(command, cwd=None, env=None):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def build_cpp(outdir, debug=False):
    """The C++ example executor, built in ``outdir``; returns its path."""
    outdir = pathlib.Path(outdir)
    build = outdir / "cpp-build"
    _run(["cmake", "-S", str(HERE / "cpp"), "-B", str(build),
          f"-DCMAKE_BUILD_TYPE={'Debug' if debug else 'Release'}"])
    _run(["cmake", "--build", str(build), "-j2"])
    target = outdir / "bin" / "rain-cpp-example"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(build / "rain-cpp-example", target)
    shutil.rmtree(build)
    return target


def build_rust(outdir, cargo=None, debug=False):
    """The Rust example executor, built offline in ``outdir``; returns its path."""
    outdir = pathlib.Path(outdir)
    crate = outdir / "rust-build"
    shutil.copytree(HERE / "rust", crate, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(crate / "target"))
    _run([cargo or find_cargo(), "build", *([] if debug else ["--release"]), "--offline",
          "-j2", "--config", "debian-registry.toml", "--example", "rain-rust-example"],
         cwd=crate, env=env)
    target = outdir / "bin" / "rain-rust-example"
    target.parent.mkdir(parents=True, exist_ok=True)
    profile = "debug" if debug else "release"
    shutil.copy2(crate / "target" / profile / "examples" / "rain-rust-example", target)
    shutil.rmtree(crate)
    return target


def write_config(path, executors):
    """A governor config registering ``{name: executable}``."""
    with open(path, "w") as f:
        for name, command in executors.items():
            f.write(f"[executors.{name}]\ncommand = '{command}'\n\n")
    return path


def build_all(outdir, debug=False):
    """Both example executors (built side by side) and ``OUTDIR/governor.toml``
    registering them."""
    outdir = pathlib.Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        cpp = pool.submit(build_cpp, outdir, debug=debug)
        rust = pool.submit(build_rust, outdir, debug=debug)
        executors = {CPP_NAME: cpp.result(), RUST_NAME: rust.result()}
    return write_config(outdir / "governor.toml", executors)


if __name__ == "__main__":
    args = sys.argv[1:]
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if len(args) != 1:
        sys.exit(f"usage: {sys.argv[0]} [--debug] OUTDIR")
    print(build_all(args[0], debug=debug))
