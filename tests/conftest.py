"""Fixtures: real clusters on loopback (see rain_cluster.py)."""
import os

import pytest

from rain_cluster import TestCluster
from skip_summary import pytest_terminal_summary  # noqa: F401 (a hook: lists skipped tests)

# Every governor the tests start checks that its state is only touched on its loop thread.
os.environ.setdefault("RAIN_CHECK_THREADS", "1")


@pytest.fixture
def make_cluster(tmp_path):
    clusters = []

    def make(governors=(1,), **kwargs):
        cluster = TestCluster(str(tmp_path / f"c{len(clusters)}"), governors, **kwargs)
        os.makedirs(cluster.tmp, exist_ok=True)
        clusters.append(cluster)
        return cluster.start()

    yield make
    leftovers = []
    for cluster in clusters:
        leftovers.extend(cluster.stop())
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def cluster(make_cluster):
    """A server and one governor with 2 CPUs."""
    return make_cluster([2])


@pytest.fixture
def client(cluster):
    return cluster.client()
