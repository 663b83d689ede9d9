"""The Binder environment, rebuilt from ``binder/`` alone the way repo2docker does it: a
copy of the repository as git sees it (no build output, no node_modules), a fresh
virtualenv, ``pip install -r binder/requirements.txt`` from the repository root, then
``binder/postBuild``. In that environment JupyterLab must list the Rain extension as
enabled, and every notebook must run through ``binder/start`` with that venv's kernel and show
the outputs it stores in its checked cells (times, ports and tokens sanitized as for nbval).

Slow (a few minutes: pip and the extension's npm build), marked ``binder``; it runs once in
the normal test run (``-m "not binder"`` leaves it out).
"""
import configparser
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SCALE = 0.1     # RAIN_DEMO_SCALE of this run: a smaller large graph than the shipped one


def sanitizers():
    """The replacements ``tests/nbval_sanitize.cfg`` gives nbval (times, ports, tokens)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(config[name]["regex"]), config[name]["replace"])
            for name in config.sections()]


def sanitized(text):
    for pattern, replacement in sanitizers():
        text = pattern.sub(replacement, text)
    return text.replace("\r\n", "\n")


def expected(notebook, stored):
    """What a checked cell must show at ``SCALE``: the stored output, with the large graph's
    counts as ``04-large-graph`` computes them for that scale."""
    if notebook.startswith("04-"):
        chunks = max(2, int(250 * SCALE))
        stored = stored.replace("50,251 tasks", f"{chunks * 200 + chunks + 1:,} tasks")
        stored = stored.replace("100,000 bytes", f"{chunks * 200 * 2:,} bytes")
    return sanitized(stored)

pytestmark = [pytest.mark.binder, pytest.mark.timeout(1500)]

RUNNER = r'''
import json, pathlib, sys, time, nbformat
from nbclient import NotebookClient
import rain
assert rain.__file__.startswith(sys.prefix), rain.__file__   # installed, not the checkout


def shown(cell):
    return "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for output in cell.get("outputs", ()))


for path in sorted(pathlib.Path("notebooks").glob("*.ipynb")):
    nb = nbformat.read(path, 4)
    stored = [shown(cell) for cell in nb.cells]
    started = time.monotonic()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    print(f"NOTEBOOK {path.name} {time.monotonic() - started:.1f}s")
    for index, cell in enumerate(nb.cells):
        if "nbval-check-output" in cell.metadata.get("tags", ()):
            print("CHECKED " + json.dumps({"notebook": path.name, "cell": index,
                                           "stored": stored[index], "shown": shown(cell)}))
    print("\n".join(shown(cell) for cell in nb.cells))
'''


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, \
        f"{command} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return ANSI.sub("", result.stdout + result.stderr)


def repository_copy(dest):
    """The files a clone of the repository has (tracked plus new, not ignored)."""
    try:
        listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                                 cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs git to know which files a clone of the repository has")
    for name in filter(None, listing.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_binder_environment(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("needs Node.js/npm to build the JupyterLab extension (Binder has it)")
    repo = repository_copy(tmp_path / "repo")
    assert not (repo / "rain_jupyter" / "labextension").exists()   # built by postBuild
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    run([base_python, "-m", "venv", str(venv)])
    bin_dir = venv / "bin"
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONPATH", "JUPYTER_PATH", "JUPYTER_CONFIG_DIR",
                          "RAIN_DEMO_SCALE", "RAIN_DASHBOARD_PREFIX", "PYTEST_XDIST_WORKER")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    python = str(bin_dir / "python")

    run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], cwd=repo, env=env)
    run([python, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
        cwd=repo, env=env)
    run([str(repo / "binder" / "postBuild")], cwd=repo, env=env)

    extensions = run([str(bin_dir / "jupyter"), "labextension", "list"], cwd=repo, env=env)
    line = next((l for l in extensions.splitlines() if "rain-jupyter" in l), None)
    assert line is not None, extensions
    assert "enabled" in line and "OK" in line, line
    servers = run([str(bin_dir / "jupyter"), "server", "extension", "list"], cwd=repo, env=env)
    assert re.search(r"rain_jupyter\.server_extension\s+enabled", servers) or \
        "rain_jupyter.server_extension enabled" in servers, servers

    # The notebooks, through binder/start as on mybinder.org; a smaller large graph here
    # (tests/test_notebooks.py runs the full one).
    env.update({"JUPYTERHUB_SERVICE_PREFIX": "/user/binder-test/", "RAIN_DEMO_SCALE": str(SCALE),
                "RAIN_TEST_CLUSTER": uuid.uuid4().hex})
    (tmp_path / "runner.py").write_text(RUNNER)
    output = run([str(repo / "binder" / "start"), python, str(tmp_path / "runner.py")],
                 cwd=repo, env=env, timeout=900)
    ran = re.findall(r"NOTEBOOK (\S+) ([\d.]+)s", output)
    assert [name for name, _t in ran] == sorted(p.name for p in (repo / "notebooks").glob("*.ipynb"))
    assert "/user/binder-test/rain/proxy/" in output     # the dashboard link, proxied
    # The outputs that matter (results, counts, "Hello world!") are what the notebooks show.
    checked = [json.loads(line[len("CHECKED "):]) for line in output.splitlines()
               if line.startswith("CHECKED ")]
    assert {c["notebook"] for c in checked} == {name for name, _t in ran}, checked
    for cell in checked:
        shown, wanted = sanitized(cell["shown"]), expected(cell["notebook"], cell["stored"])
        assert shown == wanted, \
            f"{cell['notebook']} cell {cell['cell']} shows\n{shown}\ninstead of\n{wanted}"
    print(ran)
