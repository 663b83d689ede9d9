"""A run that skips tests says which ones and why, grouped by reason, at its end
(``skip_summary``, loaded by conftest.py): a run without root, npm or a browser must not
look like a full one."""
import os
import subprocess
import sys

import pytest

import skip_summary

TESTS = os.path.dirname(os.path.abspath(__file__))

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
