"""Scripts use rain.client without importing anything of Jupyter."""
import subprocess
import sys

SCRIPT = """
import sys
from rain.client import blob, tasks
from rain.local_cluster import LocalCluster
with LocalCluster([1]) as cluster:
    client = cluster.client()
    with client.new_session("plain") as session:
        t = tasks.Concat([blob(b"a"), blob(b"b")])
        t.keep_outputs()
        session.submit()
        assert t.output.fetch().get_bytes() == b"ab"
jupyter = sorted(m for m in sys.modules if m.split(".")[0] in (
    "IPython", "ipykernel", "ipywidgets", "jupyter_bokeh", "bokeh", "traitlets", "comm",
    "jupyter_client", "rain_jupyter"))
print("JUPYTER-MODULES", jupyter)
"""


def test_rain_client_imports_no_jupyter_package():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "JUPYTER-MODULES []" in result.stdout
