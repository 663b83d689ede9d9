"""Fixtures of the JupyterLab extension tests (see ``labext_helpers``)."""
import shutil
import tempfile

import pytest

from labext_helpers import Environment, JupyterServer, kill_leftovers


@pytest.fixture(scope="module")
def environment():
    tmp = tempfile.mkdtemp(prefix="rain-labext-")
    env = Environment(tmp)
    yield env
    leftovers = kill_leftovers(env.marker)
    shutil.rmtree(tmp, ignore_errors=True)
    assert not leftovers, f"processes left running: {leftovers}"


@pytest.fixture(scope="module")
def jupyter_server(environment):
    server = JupyterServer(environment, base_url="/base/")
    yield server
    server.stop()


@pytest.fixture
def cluster(environment):
    cluster = environment.cluster()
    cluster.start()
    yield cluster
    cluster.stop()
