"""Rain in Jupyter: ``%load_ext rain_jupyter``.

Registers the ``%rain`` line magic and ``%%rain`` cell magic (``magics``), rich displays
of the ``rain.client`` classes (``reprs``), and provides live widgets of a session's
progress and task graph (``widgets``: ``SessionWidget``, ``ProgressWidget``,
``GraphWidget``, ``live(session)``). Nothing here is imported by ``rain.client``.
"""
__all__ = ["load_ipython_extension", "unload_ipython_extension", "live", "current_cluster",
           "report_link"]

_magics = None


def load_ipython_extension(ipython):
    global _magics
    from . import reprs
    from .magics import RainMagics
    if _magics is None or _magics.shell is not ipython:
        _magics = RainMagics(ipython)
    ipython.register_magics(_magics)
    reprs.register(ipython)


def unload_ipython_extension(ipython):
    global _magics
    from . import reprs
    reprs.unregister(ipython)
    if _magics is not None:
        _magics.shutdown()
        _magics = None


def current_cluster():
    """The cluster started by ``%rain start`` in this kernel (None if there is none).

    Its ``http_url`` is the server's HTTP address as this kernel reaches it (REST API
    under ``api/``; send ``http_headers``, the cluster's token, with each request),
    ``dashboard_link`` the dashboard as the browser opens it, ``logdir``
    where the logs and the event log (``server/events.db``) are written.
    """
    if _magics is None:
        return None
    return _magics._running()


def live(session, **kwargs):
    """Show the live progress and graph view of ``session`` (returns the widget)."""
    from .widgets import live as show
    return show(session, **kwargs)


def report_link(path, text=None):
    """A link that opens the ``rain report`` page ``path`` in a new browser tab, through
    Rain's Jupyter server extension (charts included: no "Trust HTML" needed)."""
    from .report_link import ReportLink
    return ReportLink(path, text)


def _jupyter_server_extension_points():
    """The Jupyter server extension lives in ``server_extension`` (imported only when a
    Jupyter server loads it)."""
    from .server_extension import _jupyter_server_extension_points as points
    return points()
