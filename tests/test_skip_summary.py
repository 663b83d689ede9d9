"""A run that skips tests says which ones and why, grouped by reason, at its end
(``skip_summary``, loaded by conftest.py): a run without root, npm or a browser must not
look like a full one."""
import os
import shutil
import site
import subprocess
import sys
import tempfile

import pytest

import skip_summary
from second_user import NAME, second_user

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

# Tests of the suite that need root, each with the reason an ordinary user's run gives.
NEEDS_ROOT = {
    "tests/test_security.py::test_rain_stop_never_signals_another_users_process":
        "needs root to create and act as a second local user",
    "tests/test_governor_faults.py::test_a_full_disk_fails_the_task_and_the_governor_goes_on":
        "mounting a small tmpfs to fill up needs root",
    "tests/multihost/test_ssh.py":
        "multi-host tests need root to create network namespaces",
}

SAMPLE = '''
import pytest

from second_user import second_user


def test_runs():
    pass


def test_as_another_user():
    second_user()


@pytest.mark.skipif(True, reason="no browser here")
def test_in_a_browser():
    pass


@pytest.mark.parametrize("n", [1, 2])
def test_with_a_missing_module(n):
    pytest.importorskip("rain_no_such_module")
'''


def run_pytest(directory, *args):
    env = dict(os.environ, PYTHONPATH=TESTS)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "skip_summary",
                           "-p", "no:cacheprovider", "-q", *args], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=500)


def test_the_suite_loads_the_summary(request):
    hook = request.config.pluginmanager.hook.pytest_terminal_summary
    assert skip_summary.pytest_terminal_summary in [
        impl.function for impl in hook.get_hookimpls()]


# A pytest run of its own: minutes on a loaded machine.
@pytest.mark.timeout(600)
def test_skipped_tests_are_listed_by_reason_also_under_xdist(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    result = run_pytest(tmp_path, "-n", "2")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "SKIPPED, by reason" in out, out
    block = out[out.index("SKIPPED, by reason"):]
    lines = block.splitlines()
    missing = next(i for i, line in enumerate(lines) if "rain_no_such_module" in line)
    assert lines[missing].startswith("2 skipped:")
    assert sorted(lines[missing + 1:missing + 3]) == [
        "    test_sample.py::test_with_a_missing_module[1]",
        "    test_sample.py::test_with_a_missing_module[2]"]
    assert "1 skipped: no browser here" in block
    assert "    test_sample.py::test_in_a_browser" in block
    if os.getuid() != 0:
        assert "needs root to create and act as a second local user" in block
        assert "    test_sample.py::test_as_another_user" in block
    assert "test_runs" not in block


@pytest.mark.timeout(600)
def test_no_block_when_nothing_is_skipped(tmp_path):
    (tmp_path / "test_sample.py").write_text("def test_runs():\n    pass\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SKIPPED" not in result.stdout


def _as_ordinary_user():
    """``(argv prefix, run kwargs)`` that run Python as an ordinary user: this user, or
    the second user when root (with the system's Python of this version, as this one
    may lie where that user cannot reach)."""
    if os.getuid() != 0:
        return [sys.executable], {}
    uid, gid = second_user()
    python = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    probe = subprocess.run([python, "-c", f"open({REPO + '/README.md'!r}).close()"],
                           user=uid, group=gid, extra_groups=[], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{NAME} cannot run {python} on this checkout: {probe.stderr[-300:]!r}")
    paths = [TESTS, REPO] + [p for p in site.getsitepackages() if os.path.isdir(p)]
    return [python], {"user": uid, "group": gid, "extra_groups": [],
                      "env": {"PATH": os.environ["PATH"], "HOME": "/",
                              "PYTHONPATH": os.pathsep.join(paths)}}


# A pytest run of its own: minutes on a loaded machine.
@pytest.mark.timeout(600)
def test_an_ordinary_users_run_skips_what_needs_root_and_says_why():
    """Tests that need root skip for an ordinary user, each with its reason in the list
    at the end of the run; none fails or hangs."""
    python, kwargs = _as_ordinary_user()
    kwargs.setdefault("env", dict(os.environ, PYTHONPATH=TESTS))
    # Not under pytest's own tmp_path: that lies in a directory only its user may enter.
    scratch = tempfile.mkdtemp(prefix="rain-skips-")
    try:
        os.chmod(scratch, 0o777)
        result = subprocess.run([*python, "-m", "pytest", "-p", "no:cacheprovider",
                                 "--basetemp", os.path.join(scratch, "run"), *NEEDS_ROOT],
                                cwd=REPO, capture_output=True, text=True, timeout=500,
                                **kwargs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "SKIPPED, by reason" in out, out[-4000:]
    block = out[out.index("SKIPPED, by reason"):]
    for test, reason in NEEDS_ROOT.items():
        assert reason in block, block
        assert f"    {test}" in block, block
