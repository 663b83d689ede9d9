"""The multi-host environment (see hosts.py), made once per test process and torn down at
its end, also when tests fail. Skipped, with the reason, only where namespaces cannot be
made; in CI (``CI=true``) a missing program is a failure, not a skip."""
import os

import pytest

from hosts import Environment, unavailable_reason


def pytest_collection_modifyitems(items):
    # One environment per test process: the multi-host tests run in the same worker.
    for item in items:
        if "multihost" in str(item.fspath):
            item.add_marker(pytest.mark.xdist_group("multihost"))


@pytest.fixture(scope="session")
def hosts():
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    environment = Environment(3).start()
    try:
        yield environment
    finally:
        environment.close()
