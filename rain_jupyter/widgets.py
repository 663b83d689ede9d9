"""Live views of a session: progress per name group and the task graph.

Both are ipywidgets containers; their charts are Bokeh models shown through
``jupyter_bokeh.BokehModel``. They never draw from the event thread: the session tracker
tells them that something changed, and one shared flusher thread redraws each view at most
``interval`` seconds apart (0.5 s: at most two updates per second), by setting traits and
Bokeh properties (what ipywidgets' comms support from any thread). A view with nothing new
sends nothing, so the notebook's message traffic grows with the run time, not with the
number of tasks.

A display of a view first loads BokehJS into the page and then, in the same output, shows
the widget (``bokehjs``). When the session reaches an end state, each display of the view
is replaced by the final picture (``bokehjs.final_html``): Bokeh canvases in a live page, a
static HTML and SVG picture in a saved notebook opened without a kernel.
"""
import collections
import contextvars
import logging
import math
import threading
import time

import ipywidgets as widgets
from IPython.display import display
from traitlets import Float, Int, Unicode

from . import bokehjs, rendering
from .graph_view import COLORS
from .tracker import SessionTracker, tracker_for

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.5
ENDED = ("finished", "failed", "closed")


class Flusher:
    """One daemon thread that redraws views no more often than their interval."""

    def __init__(self):
        self._cond = threading.Condition()
        self._due = {}          # view -> time of its next allowed flush
        self._thread = None

    def request(self, view):
        with self._cond:
            if view in self._due:
                return
            self._due[view] = max(time.monotonic(), view._last_flush + view.interval)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rain-widget-flush",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    ready = [view for view, due in self._due.items() if due <= now]
                    if ready:
                        for view in ready:
                            del self._due[view]
                        break
                    timeout = min(self._due.values()) - now if self._due else None
                    self._cond.wait(timeout)
            for view in ready:
                try:
                    view._flush()
                except Exception:
                    logger.exception("redrawing %r failed", view)


flusher = Flusher()


def _in_kernel():
    from IPython import get_ipython
    return getattr(get_ipython(), "kernel", None) is not None


def _as_tracker(source):
    if isinstance(source, SessionTracker):
        return source
    return tracker_for(source)


class _LiveView:
    """Shared machinery: throttled redraws, latency statistics, display handles.

    A view either follows its tracker itself (``watch=True``) or is drawn by a
    container view that does (``SessionWidget``)."""

    interval = DEFAULT_INTERVAL

    def _init_live(self, tracker, interval, watch=True):
        self.tracker = tracker
        self.interval = interval
        self._last_flush = 0.0
        self._dirty_since = None
        self._flush_lock = threading.Lock()
        self._handles = []
        self._last_status = None
        self._closed = False
        self.latencies = collections.deque(maxlen=100000)
        self._watching = watch
        if watch:
            tracker.add_watcher(self._request)
            self._flush(force=True)

    def _request(self):
        """A change happened (called on the event thread): schedule a redraw."""
        if self._closed:
            return
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
        flusher.request(self)

    def _flush(self, force=False):
        with self._flush_lock:
            dirty, self._dirty_since = self._dirty_since, None
            if dirty is None and not force:
                return
            # The interval counts from the start of a redraw: a change that comes while
            # a slow redraw runs must not get the next one right after it.
            self._last_flush = time.monotonic()
            snapshot, layout = self.tracker.take(*self._snapshot_args())
            self._render(snapshot, layout)
            now = time.monotonic()
            if dirty is not None:
                self.latencies.append(now - dirty)
            status = snapshot["status"]
            ended = status in ENDED
            changed_status = status != self._last_status
            self._last_status = status
            if self._watching and snapshot["closed"]:
                self.tracker.remove_watcher(self._request)
                self._watching = False
        if ended and changed_status:
            self._update_displays()

    def _render(self, snapshot, layout):
        self._draw(snapshot, layout)
        self.flushes += 1

    def _snapshot_args(self):
        return (None, 12)

    def refresh(self):
        """Redraw now (in the calling thread)."""
        self._flush(force=True)

    # -- displays: live widget, then the final picture --------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        bundle = widgets.DOMWidget._repr_mimebundle_(self, **kwargs) or {}
        bundle["text/html"] = self.snapshot_html()
        bundle["text/plain"] = self.snapshot_text()
        return bundle

    def final_bundle(self):
        """The picture this view leaves in the notebook once its session ended."""
        parts = [f"<div class='rain-view' style='{rendering.BOX}'>", *self.final_parts(),
                 "</div>"]
        return {"text/html": bokehjs.final_html(self.snapshot_html(), parts),
                "text/plain": self.snapshot_text()}

    def _ended(self):
        return self._last_status in ENDED

    def _ipython_display_(self, **kwargs):
        """Show the live widget (after loading BokehJS in the same output), or the final
        picture when the session has ended already."""
        if self._ended():
            display(self.final_bundle(), raw=True)
            return
        handle = display(bokehjs.load_bundle(), raw=True, display_id=True)
        if handle is None:         # no display id support: a terminal shell
            display(self._repr_mimebundle_(), raw=True)
            return
        handle.update(self._repr_mimebundle_(), raw=True)
        self._handles.append((handle, contextvars.copy_context()))
        if self._ended():           # ended while it was being shown
            self._update_displays()

    def _update_displays(self):
        # Only a kernel turns this into a message; a terminal shell would print it from
        # this (background) thread.
        if not self._handles or not _in_kernel():
            return
        bundle = self.final_bundle()
        for handle, context in list(self._handles):
            try:
                context.copy().run(handle.update, bundle, raw=True)
            except Exception:
                logger.debug("display update failed", exc_info=True)

    @property
    def latency_stats(self):
        """Seconds from a change reaching the client to the redraw that showed it."""
        values = sorted(self.latencies)
        if not values:
            return {"count": 0}
        return {"count": len(values), "median": values[len(values) // 2],
                "p95": values[min(len(values) - 1, int(len(values) * 0.95))],
                "max": values[-1]}


class StackedBar(widgets.HTML):
    """The overall bar: one coloured share per state (finished green, failed red,
    cancelled amber, ...), so a failed run shows red only for what failed."""

    total = Int(0)
    finished = Int(0)
    failed = Int(0)
    cancelled = Int(0)
    bar_style = Unicode("info")      # the run's status: "info", "success" or "danger"

    def show(self, totals, style):
        with self.hold_trait_notifications():
            self.total = totals["total"]
            self.finished = totals["finished"]
            self.failed = totals["failed"]
            self.cancelled = totals.get("cancelled", 0)
            self.bar_style = style
        self.value = (f"<div class='rain-bar rain-bar-{style}'>"
                      f"{rendering.stacked_bar(totals, height=12)}</div>")


def _bokeh_model(figure):
    from jupyter_bokeh import BokehModel
    return BokehModel(figure, layout=widgets.Layout(width="100%"))


def progress_figure():
    """The per-group chart: one stacked bar per name group, coloured by state."""
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure
    source = ColumnDataSource({"group": [], "label": [],
                               **{state: [] for state in rendering.ORDER}})
    chart = figure(y_range=FactorRange(factors=["-"]), height=80,
                   sizing_mode="stretch_width", toolbar_location=None, tools="hover",
                   tooltips="@group: @label")
    chart.hbar_stack(list(rendering.ORDER), y="group", height=0.7,
                     fill_color=[COLORS[s] for s in rendering.ORDER], line_color=None,
                     source=source)
    chart.x_range.start = 0
    chart.xaxis.visible = False
    chart.ygrid.visible = False
    chart.xgrid.visible = False
    chart.outline_line_color = None
    chart.min_border_left = 10
    return chart, source


def progress_data(rows):
    """``(factors, columns)`` of the per-group chart for the rows of a snapshot."""
    factors = [row["group"] for row in reversed(rows)] or ["-"]
    data = {"group": factors, "label": [], **{state: [] for state in rendering.ORDER}}
    for row in reversed(rows):
        for state in rendering.ORDER:
            data[state].append(row.get(state, 0))
        data["label"].append(f"{row['finished']}/{row['total']} finished, "
                             f"{row['running']} running, {row['failed']} failed"
                             + (f", {row['cancelled']} cancelled" if row.get("cancelled")
                                else ""))
    if not rows:
        for key in data:
            if key != "group":
                data[key] = [0] if key != "label" else [""]
    return factors, data


def graph_figure(height):
    """The task-graph chart: nodes coloured by state, edges as segments, and the labels
    that fit without overlapping (``graph_labels``)."""
    from bokeh.models import ColumnDataSource, Range1d
    from bokeh.plotting import figure
    from rain.dashboard.charts import LABEL_FONT_PX
    nodes = ColumnDataSource({k: [] for k in ("x", "y", "size", "color", "label", "text",
                                              "state")})
    edges = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "width": []})
    labels = ColumnDataSource({"x": [], "y": [], "text": [], "dx": []})
    chart = figure(height=height, sizing_mode="stretch_width",
                   x_range=Range1d(-1, 1), y_range=Range1d(-1, 1),
                   tools="pan,wheel_zoom,reset,hover", tooltips="@label: @text",
                   toolbar_location="right")
    chart.segment("x0", "y0", "x1", "y1", line_width="width", color="#b5bac1", source=edges)
    dots = chart.scatter("x", "y", size="size", color="color", line_color="#666",
                         source=nodes)
    chart.text("x", "y", text="text", source=labels, x_offset="dx",
               text_font_size=f"{LABEL_FONT_PX}px", text_baseline="middle",
               text_color="#3d4147", name="rain-graph-labels")
    chart.hover.renderers = [dots]
    chart.axis.visible = False
    chart.grid.visible = False
    chart.outline_line_color = None
    return chart, nodes, edges, labels


def graph_frame(layout):
    """``(x range, y range)`` of the chart: the room the labels are placed in."""
    nodes = layout["nodes"]
    if not nodes:
        return (-1, 1), (-1, 1)
    xs = [n["x"] for n in nodes]
    ys = [n["y"] for n in nodes]
    return (min(xs) - 0.5, max(xs) + 1.5), (min(ys) - 1, max(ys) + 1)


def graph_labels(layout, height):
    """Labels of the nodes that fit without overlapping at the chart's usual width,
    biggest groups first: a 100k-task graph (drawn as at most a few hundred group or
    level nodes) stays readable."""
    from rain.dashboard.charts import GRAPH_WIDTH_ESTIMATE, LABEL_OFFSET, place_labels
    nodes = layout["nodes"]
    positions = [(n["x"], n["y"]) for n in nodes]
    texts = [str(n["label"]) for n in nodes]
    priority = sorted(range(len(nodes)), key=lambda i: (-nodes[i]["total"], i))
    shown = place_labels(positions, texts, priority, GRAPH_WIDTH_ESTIMATE, height)
    chosen = sorted(shown)
    big = max((n["total"] for n in nodes), default=1)
    # right of its node's edge (place_labels keeps LABEL_OFFSET px for the node)
    return {"x": [positions[i][0] for i in chosen], "y": [positions[i][1] for i in chosen],
            "text": [texts[i] for i in chosen],
            "dx": [max(LABEL_OFFSET, node_size(layout["mode"], nodes[i], big) / 2 + 3)
                   for i in chosen]}


def show_graph(figure, layout, height):
    """Set the ranges and labels of a graph chart for a new graph structure."""
    (x0, x1), (y0, y1) = graph_frame(layout)
    figure.x_range.start, figure.x_range.end = x0, x1
    figure.y_range.start, figure.y_range.end = y0, y1
    return graph_labels(layout, height)


def node_size(mode, node, big):
    """Diameter (px) of a node: tasks alike, groups and levels by their task count."""
    return 12 if mode == "tasks" else 10 + 18 * math.sqrt(node["total"] / big)


def graph_data(layout):
    """``(node columns, edge columns)`` of the task-graph chart for a layout."""
    nodes = layout["nodes"]
    big = max((n["total"] for n in nodes), default=1)
    data = {"x": [], "y": [], "size": [], "color": [], "label": [], "text": [], "state": []}
    for node in nodes:
        data["x"].append(node["x"])
        data["y"].append(node["y"])
        data["size"].append(node_size(layout["mode"], node, big))
        data["color"].append(COLORS[node["state"]])
        data["label"].append(str(node["label"]))
        data["text"].append(f"{node['finished']}/{node['total']} finished, "
                            f"{node['running']} running, {node['failed']} failed"
                            + (f", {node['cancelled']} cancelled" if node.get("cancelled")
                               else ""))
        data["state"].append(node["state"])
    edges = {"x0": [], "y0": [], "x1": [], "y1": [], "width": []}
    for source, target, count in layout["edges"]:
        edges["x0"].append(nodes[source]["x"])
        edges["y0"].append(nodes[source]["y"])
        edges["x1"].append(nodes[target]["x"])
        edges["y1"].append(nodes[target]["y"])
        edges["width"].append(min(6.0, 1.0 + math.log10(count)))
    return data, edges


class ProgressWidget(_LiveView, widgets.VBox):
    """Progress of a session, per task-name group (``a/b/c`` names fold to a depth)."""

    status = Unicode("empty")
    total = Int(0)
    finished = Int(0)
    running = Int(0)
    failed = Int(0)
    waiting = Int(0)
    flushes = Int(0)
    depth = Int(None, allow_none=True)
    max_rows = Int(12)

    def __init__(self, session, *, depth=None, max_rows=12, interval=DEFAULT_INTERVAL,
                 chart=True, watch=True):
        self.header = widgets.HTML()
        self.bar = StackedBar(layout=widgets.Layout(width="99%"))
        children = [self.header, self.bar]
        self.source = None
        if chart:
            self.figure, self.source = progress_figure()
            self.chart = _bokeh_model(self.figure)
            children.append(self.chart)
        super().__init__(children=children, depth=depth, max_rows=max_rows)
        self._snapshot = None
        self._factors = None
        self._redraw_target = self
        self.observe(lambda _change: self._redraw_target._flush(force=True),
                     names=["depth", "max_rows"])
        self._init_live(_as_tracker(session), interval, watch)

    def _snapshot_args(self):
        return (self.depth, self.max_rows)

    def _draw(self, snapshot, layout):
        self._snapshot = snapshot
        totals = snapshot["totals"]
        self.header.value = rendering.progress_header_html(snapshot)
        style = {"finished": "success", "failed": "danger"}.get(snapshot["status"], "info")
        self.bar.show(totals, style)
        if self.source is not None:
            self._draw_chart(snapshot["rows"])
        # the summary traits last: once ``status`` says so, the whole view shows it
        with self.hold_trait_notifications():
            self.total = totals["total"]
            self.finished = totals["finished"]
            self.running = totals["running"]
            self.failed = totals["failed"]
            self.waiting = totals["waiting"]
            self.status = snapshot["status"]

    def _draw_chart(self, rows):
        factors, data = progress_data(rows)
        document = self.figure.document
        if document is not None:
            document.hold("combine")
        try:
            if factors != self._factors:
                self._factors = factors
                self.figure.y_range.factors = factors
                self.figure.height = 40 + 22 * len(factors)
            self.source.data = data
        finally:
            if document is not None:
                document.unhold()

    def snapshot_html(self):
        """The current state as static HTML (what a saved notebook shows)."""
        return rendering.progress_html(self.tracker.snapshot(self.depth, self.max_rows))

    def final_parts(self):
        snapshot = self.tracker.snapshot(self.depth, self.max_rows)
        parts = [rendering.progress_top_html(snapshot)]
        if self.source is not None:
            figure, source = progress_figure()
            factors, data = progress_data(snapshot["rows"])
            figure.y_range.factors = factors
            figure.height = 40 + 22 * len(factors)
            source.data = data
            parts.append(figure)
        return parts

    def snapshot_text(self):
        return rendering.progress_text(self.tracker.snapshot(self.depth, self.max_rows))


class GraphWidget(_LiveView, widgets.VBox):
    """The task graph coloured by state; large graphs are drawn as groups or levels."""

    mode = Unicode("tasks")
    nodes = Int(0)
    finished_nodes = Int(0)
    failed_nodes = Int(0)
    tasks = Int(0)
    flushes = Int(0)
    fraction_finished = Float(0.0)
    labels = Int(0)             # node labels drawn (those that fit without overlapping)

    def __init__(self, session, *, interval=DEFAULT_INTERVAL, height=320, watch=True):
        self.caption = widgets.HTML()
        self.height = height
        self.figure, self.node_source, self.edge_source, self.label_source = \
            graph_figure(height)
        self.chart = _bokeh_model(self.figure)
        super().__init__(children=[self.caption, self.chart])
        self._layout = None
        self._description = ""
        self._structure = None
        self._init_live(_as_tracker(session), interval, watch)

    def _draw(self, snapshot, layout):
        self._layout = layout
        self._description = snapshot["graph"]
        nodes = layout["nodes"]
        with self.hold_trait_notifications():
            self.mode = layout["mode"]
            self.tasks = layout["tasks"]
            self.nodes = len(nodes)
            self.finished_nodes = sum(1 for n in nodes if n["state"] == "finished")
            self.failed_nodes = sum(1 for n in nodes if n["state"] == "failed")
            total = sum(n["total"] for n in nodes)
            self.fraction_finished = (sum(n["finished"] for n in nodes) / total) if total \
                else 0.0
        self.caption.value = (f"<b>Task graph</b> &nbsp; {rendering.escape(snapshot['graph'])}"
                              if layout["tasks"] else "<b>Task graph</b> &nbsp; (no tasks)")
        data, edges = graph_data(layout)
        structure = (layout["mode"], layout["tasks"], len(nodes), len(layout["edges"]))
        document = self.figure.document
        if document is not None:
            document.hold("combine")
        try:
            if structure != self._structure:
                self._structure = structure
                self.edge_source.data = edges
                self.label_source.data = show_graph(self.figure, layout, self.height)
                self.labels = len(self.label_source.data["text"])
            self.node_source.data = data
        finally:
            if document is not None:
                document.unhold()

    def snapshot_html(self):
        """The current graph as static HTML with an inline SVG."""
        snapshot, layout = self.tracker.take()
        return rendering.graph_html(layout, snapshot["graph"])

    def final_parts(self):
        snapshot, layout = self.tracker.take()
        caption = (f"<b>Task graph</b> &nbsp; {rendering.escape(snapshot['graph'])}"
                   if layout["tasks"] else "<b>Task graph</b> &nbsp; (no tasks)")
        figure, nodes, edges, labels = graph_figure(self.height)
        nodes.data, edges.data = graph_data(layout)
        labels.data = show_graph(figure, layout, self.height)
        return [f"<div style='margin-top:6px'>{caption}</div>", figure]

    def snapshot_text(self):
        snapshot, layout = self.tracker.take()
        return rendering.graph_text(layout, snapshot["graph"])


class SessionWidget(_LiveView, widgets.VBox):
    """Progress above the task graph: the view ``%%rain`` shows under a cell."""

    flushes = Int(0)

    def __init__(self, session, *, interval=DEFAULT_INTERVAL, graph=True, **progress_args):
        tracker = _as_tracker(session)
        self.progress = ProgressWidget(tracker, interval=interval, watch=False,
                                       **progress_args)
        children = [self.progress]
        self.graph = None
        if graph:
            self.graph = GraphWidget(tracker, interval=interval, watch=False)
            children.append(self.graph)
        super().__init__(children=children)
        self.progress._redraw_target = self
        self._phase = None          # (phase, session) while the cell builds and submits
        self._ticker = None
        self._init_live(tracker, interval)

    def _snapshot_args(self):
        return self.progress._snapshot_args()

    def _draw(self, snapshot, layout):
        phase = self._phase
        if phase is not None:
            name, session = phase
            count = len(session._tasks)
            snapshot = dict(snapshot, phase=name, note=(
                f"building the graph: {count:,} tasks so far" if name == "building"
                else f"submitting {count:,} tasks"))
        if self.graph is not None:
            self.graph._render(snapshot, layout)
        self.progress._render(snapshot, layout)

    # -- the cell's own phases (``%%rain``) ---------------------------------------------------
    def follow_building(self, session):
        """Show how many tasks the cell has made so far, redrawn while it runs."""
        self._phase = ("building", session)
        self._ticker = threading.Event()
        threading.Thread(target=self._tick, args=(self._ticker,), daemon=True,
                         name="rain-widget-tick").start()
        self._request()

    def follow_submitting(self, session):
        self._phase = ("submitting", session)
        self._request()

    def follow_done(self):
        self._phase = None
        if self._ticker is not None:
            self._ticker.set()
            self._ticker = None
        self._request()

    def _tick(self, stop):
        while not stop.wait(self.interval):
            self._request()

    def withdraw(self):
        """The cell failed before submitting: take the view out of the output."""
        self.follow_done()
        self.close_all()
        for handle, context in self._handles:
            try:
                context.copy().run(handle.update, {"text/plain": ""}, raw=True)
            except Exception:
                logger.debug("display update failed", exc_info=True)
        self._handles = []

    @property
    def status(self):
        return self.progress.status

    def close_all(self):
        """Stop following the session and close this widget and its children."""
        self.tracker.remove_watcher(self._request)
        self._watching = False
        self._closed = True
        for child in (self.progress, self.graph):
            if child is not None:
                for widget in child.children:
                    widget.close()
                child.close()
        self.close()

    def final_parts(self):
        parts = self.progress.final_parts()
        if self.graph is not None:
            parts += self.graph.final_parts()
        return parts

    def snapshot_html(self):
        parts = [self.progress.snapshot_html()]
        if self.graph is not None:
            parts.append(self.graph.snapshot_html())
        return "".join(parts)

    def snapshot_text(self):
        parts = [self.progress.snapshot_text()]
        if self.graph is not None:
            parts.append(self.graph.snapshot_text())
        return "\n".join(parts)


def live(session, **kwargs):
    """Display the live view of ``session`` and return it."""
    widget = SessionWidget(session, **kwargs)
    display(widget)
    return widget
