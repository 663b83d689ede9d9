"""The dashboard over HTTP: pages, standalone Bokeh documents as JSON, and their deltas.

Why standalone documents (``bokeh.embed.json_item``) refreshed by small JSON deltas rather
than a Bokeh server (``BokehTornado``) mounted on the server's tornado:

- Cost on the server's loop. A Bokeh server keeps a Python ``Document`` per open page and
  turns every data change into a websocket patch message from a periodic callback of each
  session, on the same loop that schedules tasks. Here a page costs nothing between polls,
  and a poll (at most 1 per second per page, never two in flight) returns only what changed
  since the cursor the page holds: new task-stream rows, new monitoring samples, and small
  derived tables (groups, sessions) only when the model's version moved. The model itself
  is built from the event log when first viewed, then folded from events in bulk, O(1) each.
- Plain HTTP only. No websocket, no Bokeh session ids, tokens or origin allow-lists, so the
  pages work unchanged behind the Jupyter server proxy, in iframes (``/charts.json``), and
  post mortem from ``rain dashboard --logdir`` with no cluster.
- One set of builders. The charts of ``charts.py`` make the live documents, the post-mortem
  ones and the self-contained report (``bokeh.embed.file_html``) alike.

BokehJS is served from the installed bokeh package (``/dashboard/static/bokeh/``), so the
dashboard needs no internet access and always matches the Python side's version.
"""
import html
import json
import logging
import os
import time

import tornado.web
from bokeh.embed import json_item
from bokeh.models import Div
from bokeh.util.paths import bokehjs_path

from ..server.http import PAGE_POLICY, JsonHandler
from . import assets
from .charts import make_charts
from ..server.live_model import ReadyModel, live_edges_provider, live_model
from ..server.run_model import RunModel

logger = logging.getLogger(__name__)

BASE = "/dashboard"
#: The session argument of a chart that follows the newest session.
LATEST = "latest"
BOKEH_FILES = ("bokeh.min.js", "bokeh-widgets.min.js", "bokeh-tables.min.js")
PAGES = {
    "sessions": ("Sessions", ["sessions", "governors", "recoveries"]),
    "governors": ("Governors", ["governors", "allocations", "recoveries", "cpu", "memory"]),
    "session": ("Session", ["summary", "graph", "inspector", "stream"]),
}


class Dashboard:
    """What the handlers share: the model (``await models.get()``), the charts, and (post
    mortem) a file to follow."""

    def __init__(self, models, edges_provider=None, events_path=None, note=""):
        self.models = models
        self.charts = make_charts(edges_provider)
        self.events_path = events_path
        self.note = note
        self._last_refresh = 0.0

    def refresh(self):
        """Post mortem: read events appended to the file since the last look (at most once
        a second), so ``rain dashboard --logdir`` also follows a run still writing."""
        if self.events_path is None:
            return
        now = time.monotonic()
        if now - self._last_refresh < 1.0:
            return
        self._last_refresh = now
        from ..server.events import read_rows_file
        model = self.models.model
        try:
            rows = read_rows_file(self.events_path, model.last_id)
        except Exception as exc:     # the file may be mid-write or gone
            logger.debug("cannot read %s: %s", self.events_path, exc)
            return
        model.last_id = model.feed_stored(rows, model.last_id)

    def chart_and_session(self, model, chart_id, session_arg):
        """The chart and the session (None for a global chart) a request names.
        ``session=latest`` is the newest session, None while there is none."""
        chart = self.charts.get(chart_id)
        if chart is None:
            raise tornado.web.HTTPError(404, f"no such chart {chart_id!r}; charts: "
                                             f"{', '.join(self.charts)}")
        session = None
        if chart.scope == "session":
            if session_arg is None or session_arg == "":
                raise tornado.web.HTTPError(400, f"chart {chart_id!r} needs ?session=N "
                                                 "or ?session=latest")
            if session_arg == LATEST:
                return chart, (model.sessions[max(model.sessions)]
                               if model.sessions else None)
            try:
                sid = int(session_arg)
            except (TypeError, ValueError):
                raise tornado.web.HTTPError(400, f"invalid session id {session_arg!r}") \
                    from None
            session = model.sessions.get(sid)
            if session is None:
                raise tornado.web.HTTPError(404, f"no session {sid}")
        return chart, session

    def manifest(self, model):
        entries = []
        for chart in self.charts.values():
            if chart.scope == "global":
                entries.append({"id": chart.id, "title": chart.title, "chart": chart.id,
                                "session": None, "url": f"{BASE}/chart/{chart.id}"})
        for chart in self.charts.values():
            if chart.scope == "session":
                entries.append({"id": f"{chart.id}-latest",
                                "title": f"{chart.title} (latest session)",
                                "chart": chart.id, "session": LATEST,
                                "url": f"{BASE}/chart/{chart.id}?session={LATEST}"})
        for sid in sorted(model.sessions):
            name = model.sessions[sid].name
            for chart in self.charts.values():
                if chart.scope == "session":
                    title = f"{chart.title} (session {sid}{': ' + name if name else ''})"
                    entries.append({"id": f"{chart.id}-{sid}", "title": title,
                                    "chart": chart.id, "session": sid,
                                    "url": f"{BASE}/chart/{chart.id}?session={sid}"})
        return entries


def render_page(title, charts_html, note="", base=BASE, fill=False):
    """A dashboard page; ``fill``: one chart filling the whole window (no header), for
    a frame such as a docked JupyterLab pane."""
    scripts = "\n".join(f'<script src="{base}/static/bokeh/{name}"></script>'
                        for name in BOKEH_FILES)
    header = "" if fill else assets.HEADER.format(base=base, note=html.escape(note))
    return assets.PAGE.format(
        title=html.escape(title), style=assets.STYLE, bokeh_scripts=scripts, base=base,
        header=header, body=charts_html, body_class="rain-fill" if fill else "")


def chart_div(index, chart, session=None, heading=True, fill=False):
    attrs = f'data-chart="{chart.id}"'
    if session is not None:
        attrs += f' data-session="{session}"'
    if fill:
        attrs += ' data-fill="1"'
    inner = f'<div class="rain-chart" id="rain-chart-{index}" {attrs}></div>'
    if not heading:
        return inner
    return f'<section class="rain-panel"><h2>{html.escape(chart.title)}</h2>{inner}</section>'


def fill(root):
    """Make a chart's root fill its container both ways (a figure or table alone), or
    fill the width and give the last child the height left (a column)."""
    children = getattr(root, "children", None)
    if children:
        root.sizing_mode = "stretch_both"
        for child in children[:-1]:
            child.sizing_mode = "stretch_width"
        children[-1].sizing_mode = "stretch_both"
    else:
        root.sizing_mode = "stretch_both"
    return root


class BaseHandler(JsonHandler):
    content_security_policy = PAGE_POLICY

    def initialize(self, dashboard):
        self.dashboard = dashboard

    async def prepare(self):
        self.model = await self.dashboard.models.get()
        self.dashboard.refresh()


class PageHandler(BaseHandler):
    def initialize(self, dashboard, page):
        super().initialize(dashboard)
        self.page = page

    def get(self, session_arg=None):
        title, chart_ids = PAGES[self.page]
        session = None
        if self.page == "session":
            sid = int(session_arg)
            if sid not in self.model.sessions:
                raise tornado.web.HTTPError(404, f"no session {sid}")
            session = sid
            title = f"Session {sid}"
            name = self.model.sessions[sid].name
            if name:
                title += f": {name}"
        charts = self.dashboard.charts
        body = "\n".join(chart_div(i, charts[c], session) for i, c in enumerate(chart_ids))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_page(f"Rain: {title}", f"<h1>{html.escape(title)}</h1>\n{body}",
                                self.dashboard.note))


class ChartPageHandler(BaseHandler):
    """One chart alone on a page (what ``/charts.json`` points to; embeddable)."""

    def get(self, chart_id):
        session_arg = self.get_query_argument("session", None)
        chart, session = self.dashboard.chart_and_session(self.model, chart_id, session_arg)
        shown = LATEST if session_arg == LATEST else (session.id if session else None)
        body = chart_div(0, chart, shown, heading=False, fill=True)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(render_page(f"Rain: {chart.title}", body, self.dashboard.note,
                                fill=True))


class ItemHandler(BaseHandler):
    """``GET /dashboard/api/item/<chart>?session=N``: a standalone Bokeh document (the
    ``json_item`` form) with its current data, plus the cursor for later deltas."""

    def get(self, chart_id):
        model = self.model
        chart, session = self.dashboard.chart_and_session(
            model, chart_id, self.get_query_argument("session", None))
        if chart.scope == "session" and session is None:
            cursor = {}
            root = Div(text="No session has started on this server yet.",
                       name="no-session")
        else:
            cursor = chart.initial_cursor(model, session)
            root = chart.build(model, session)
        if chart.scope == "session":
            cursor["sid"] = session.id if session is not None else None
        if self.get_query_argument("fill", None):
            fill(root)
        sources = sorted({m.name for m in root.references()
                          if m.name and type(m).__name__ == "ColumnDataSource"})
        self.send_json({"item": json_item(root), "cursor": cursor, "sources": sources})


class UpdateHandler(BaseHandler):
    """``POST /dashboard/api/update`` ``{"charts": [{"chart", "session", "cursor"}]}`` ->
    ``{"charts": [{"sources", "props", "cursor"} | {"reload": true} | {"error"}]}``."""

    def post(self):
        body = self.read_json()
        if not isinstance(body, dict) or not isinstance(body.get("charts"), list):
            raise tornado.web.HTTPError(400, 'expected {"charts": [...]}')
        model = self.model
        replies = []
        for entry in body["charts"][:64]:
            if not isinstance(entry, dict):
                replies.append({"error": "each entry must be an object"})
                continue
            try:
                chart, session = self.dashboard.chart_and_session(
                    model, entry.get("chart"), entry.get("session"))
            except tornado.web.HTTPError as exc:
                replies.append({"error": exc.log_message})
                continue
            cursor = entry.get("cursor")
            if chart.scope == "session":
                # A chart of the latest session starts over when a newer one begins.
                sid = session.id if session is not None else None
                if not isinstance(cursor, dict) or cursor.get("sid") != sid:
                    replies.append({"reload": True})
                    continue
                if session is None:
                    replies.append({"cursor": cursor})
                    continue
            reply, cursor = chart.update(model, session, cursor)
            if chart.scope == "session" and isinstance(cursor, dict):
                cursor = dict(cursor, sid=session.id)
            if not reply.get("reload"):
                reply["cursor"] = cursor
            replies.append(reply)
        self.send_json({"charts": replies, "version": model.version})


class ManifestHandler(BaseHandler):
    def get(self):
        self.send_json(self.dashboard.manifest(self.model))


class ScriptHandler(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/javascript; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(assets.SCRIPT)


def dashboard_handlers(dashboard):
    args = {"dashboard": dashboard}
    return [
        (r"/", tornado.web.RedirectHandler, {"url": f"{BASE}/"}),
        (rf"{BASE}", tornado.web.RedirectHandler, {"url": f"{BASE}/"}),
        (rf"{BASE}/", PageHandler, dict(args, page="sessions")),
        (rf"{BASE}/governors/?", PageHandler, dict(args, page="governors")),
        (rf"{BASE}/session/(\d+)/?", PageHandler, dict(args, page="session")),
        (rf"{BASE}/chart/([\w-]+)/?", ChartPageHandler, args),
        (rf"{BASE}/api/item/([\w-]+)/?", ItemHandler, args),
        (rf"{BASE}/api/update/?", UpdateHandler, args),
        (rf"{BASE}/static/rain-dashboard.js", ScriptHandler),
        (rf"{BASE}/static/bokeh/(.*)", tornado.web.StaticFileHandler,
         {"path": os.path.join(str(bokehjs_path()), "js")}),
        (r"/charts.json", ManifestHandler, args),
    ]


# ------------------------------------------------------------------------------------------
# Live (inside the server) and post mortem

def live_dashboard(server):
    dashboard = getattr(server, "dashboard", None)
    if dashboard is None:
        dashboard = Dashboard(live_model(server), live_edges_provider(server))
        server.dashboard = dashboard
    return dashboard


def live_handlers(server):
    return dashboard_handlers(live_dashboard(server))


def post_mortem_dashboard(logdir):
    path = events_path(logdir)
    model = RunModel.from_file(path)
    return Dashboard(ReadyModel(model), events_path=path, note=f"post mortem: {path}")


def events_path(logdir):
    path = logdir
    if os.path.isdir(path):
        path = os.path.join(path, "events.db")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no events database at {path}")
    return path


def json_dumps(value):
    return json.dumps(value, default=str)
