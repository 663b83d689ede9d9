"""A link to a ``rain report`` page that opens in a browser tab.

JupyterLab shows an HTML file from its file browser as untrusted text (its charts do not
run); Rain's Jupyter server extension serves such a file as a page of its own at
``<base url>/rain/report/<path under Jupyter's root>``. The extension tells the kernels of
its server where that is (``RAIN_JUPYTER_BASE_URL``, ``RAIN_JUPYTER_ROOT``).
"""
import os
from html import escape
from urllib.parse import quote


def report_url(path):
    """The page of the HTML file ``path`` (relative to the kernel's directory) through
    the server extension, or None outside such a Jupyter server or outside its root."""
    base = os.environ.get("RAIN_JUPYTER_BASE_URL")
    root = os.environ.get("RAIN_JUPYTER_ROOT")
    if not base or not root:
        return None
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return None
    return f"{base.rstrip('/')}/rain/report/{quote(relative.replace(os.sep, '/'))}"


class ReportLink:
    """Displays as a link that opens the report in a new browser tab."""

    def __init__(self, path, text=None):
        self.path = path
        self.text = text or f"Open {os.path.basename(path)} in a new tab"
        self.url = report_url(path)

    def _repr_html_(self):
        if self.url is None:
            return (f"<a class='rain-report-link' href='{escape(self.path, quote=True)}' "
                    f"target='_blank'>{escape(self.path)}</a> (open the file in a browser; "
                    "this Jupyter server has no Rain extension to show it as a page)")
        return (f"<a class='rain-report-link' href='{escape(self.url, quote=True)}' "
                f"target='_blank' rel='noopener'>{escape(self.text)}</a>")

    def __repr__(self):
        return f"{self.text}: {self.url or self.path}"
