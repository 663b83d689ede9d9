"""``rain dashboard --logdir DIR`` and ``rain report --logdir DIR -o FILE``: the dashboard of
a finished (or still running) run, from its ``events.db`` alone."""
import asyncio
import html
import logging
import signal

from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import Div
from bokeh.resources import INLINE

from ..auth import cluster_token, with_token
from ..common.address import DEFAULT_HTTP_PORT, parse_listen_address
from ..server.http import NotFoundHandler, TokenGuardedApplication, listen_http
from .charts import make_charts
from ..server.run_model import RunModel
from .web import dashboard_handlers, events_path, post_mortem_dashboard

logger = logging.getLogger(__name__)


def make_app(logdir, token=""):
    """The post-mortem pages; with a ``token`` (a run's log can say a lot), only for
    requests that present it, as on a live server."""
    dashboard = post_mortem_dashboard(logdir)
    return TokenGuardedApplication(dashboard_handlers(dashboard),
                                   default_handler_class=NotFoundHandler,
                                   rain_token=token), dashboard


async def serve(logdir, http_listen=None, ready=None, token=None):
    """Serve until SIGINT/SIGTERM; ``ready(bound address, token)`` once listening."""
    host, port = parse_listen_address(http_listen or DEFAULT_HTTP_PORT, DEFAULT_HTTP_PORT)
    token = cluster_token() if token is None else token
    app, _dashboard = make_app(logdir, token)
    server, bound = listen_http(app, port, host)
    if ready is not None:
        ready(bound, token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def dashboard_command(args):
    try:
        events_path(args.logdir)
    except FileNotFoundError as exc:
        print(f"rain dashboard: {exc}")
        return 1

    def ready(bound, token):
        link = with_token(f"http://{bound[0]}:{bound[1]}/dashboard/", token)
        print(f"Rain dashboard of {args.logdir} at {link} (Ctrl+C to stop)", flush=True)

    try:
        asyncio.run(serve(args.logdir, args.http_listen, ready))
    except OSError as exc:
        print(f"rain dashboard: cannot listen: {exc}")
        return 1
    return 0


def build_report(logdir, session_id=None):
    """A self-contained HTML page (BokehJS inlined) of one session's charts plus the
    governors' CPU and memory; the default session is the last one with tasks."""
    model = RunModel.from_file(events_path(logdir))
    if session_id is None:
        with_tasks = [s for s in model.sessions.values() if s.n_tasks]
        candidates = with_tasks or list(model.sessions.values())
        if not candidates:
            raise LookupError("the event log has no session")
        session = max(candidates, key=lambda s: s.id)
    else:
        session = model.sessions.get(session_id)
        if session is None:
            known = ", ".join(str(s) for s in sorted(model.sessions)) or "none"
            raise LookupError(f"no session {session_id} in the event log (sessions: {known})")
    charts = make_charts()
    title = f"Rain run report: session {session.id}"
    if session.name:
        title += f" ({session.name})"
    parts = [Div(text=f"<h1>{html.escape(title)}</h1>"
                      f"<p>From <code>{html.escape(str(logdir))}</code>: "
                      f"{model.events} events, {len(model.sessions)} sessions, "
                      f"{len(model.governors)} governors.</p>", width=900)]
    for chart_id in ("summary", "graph", "inspector", "stream"):
        chart = charts[chart_id]
        parts.append(Div(text=f"<h2>{html.escape(chart.title)}</h2>"))
        parts.append(chart.build(model, session))
    for chart_id in ("sessions", "governors", "cpu", "memory"):
        chart = charts[chart_id]
        parts.append(Div(text=f"<h2>{html.escape(chart.title)}</h2>"))
        parts.append(chart.build(model, None))
    return file_html(column(*parts), resources=INLINE, title=title)


def report_command(args):
    try:
        page = build_report(args.logdir, args.session)
    except (FileNotFoundError, LookupError) as exc:
        print(f"rain report: {exc.args[0] if exc.args else exc}")
        return 1
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"wrote {args.output}")
    return 0
