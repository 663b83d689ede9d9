"""The dashboard's charts: Bokeh documents built from the run model, plus their deltas.

Each chart has an id, a title and a scope (``global`` or ``session``). ``build`` makes the
Bokeh root (its data sources carry ``name``s) and an opaque cursor; ``update`` takes the
cursor a viewer holds and returns only what changed since:

- ``{"sources": {name: {"stream": {...}, "rollover": n}}}`` for append-only data (task
  stream, monitoring series): just the new rows;
- ``{"sources": {name: {"data": {...}}}}`` for small derived tables (sessions, groups,
  node colours), only when the model's version moved;
- ``{"props": {name: {attr: value}}}`` for texts;
- ``{"reload": true}`` when the shape changed (a new submit, a new governor) and the viewer
  should fetch a fresh document.

The same builders make the static report (``rain report``) and the post-mortem pages.
"""
import html
import math
import zlib

from bokeh.models import (ColumnDataSource, DataTable, DateFormatter,
                          DatetimeTickFormatter, Div, FactorRange, HoverTool,
                          HTMLTemplateFormatter, NumberFormatter, Range1d, TableColumn)
from bokeh.layouts import column
from bokeh.palettes import Category10_10, Category20_20
from bokeh.plotting import figure

from ..server.run_model import FINISHED, RUNNING, STATE_NAMES, natural_key

COLORS = {"waiting": "#bdbdbd", "running": "#ff9f1c", "finished": "#2ca02c",
          "failed": "#d62728", "partial": "#98df8a"}
STREAM_ROWS = 10000         # task-stream rows kept by a viewer
ROWS_PER_UPDATE = 500       # new task-stream rows per delta at most (the latest ones)
MONITOR_POINTS = 3600       # monitoring samples kept per governor by a viewer
STATUS_COLORS = {"open": "#1f77b4", "closed": "#2ca02c", "failed": "#d62728"}
GRAPH_TASK_LIMIT = 200      # above: one node per task name
GRAPH_NODE_LIMIT = 40       # above: one node per task name prefix
GRAPH_MIN_HEIGHT = 320
GRAPH_MAX_HEIGHT = 720
GRAPH_WIDTH_ESTIMATE = 700  # px: the narrowest usual width of the graph, for its labels
LABEL_FONT_PX = 11
LABEL_CHAR_PX = 6.6         # mean width of a label character at that size
LABEL_ROW_PX = 22
LABEL_OFFSET = 10
OTHER_NAMES = "(other names)"
TABLE_ROWS = 2000


def group_prefix(key):
    """The task-name group of a task name: the part before the first ``/``."""
    return str(key).split("/", 1)[0]


def group_color(key):
    """One colour per task-name group (``load/3`` and ``load/4`` alike)."""
    return Category20_20[zlib.crc32(group_prefix(key).encode()) % 20]


class Chart:
    scope = "global"
    id = ""
    title = ""

    def structure(self, model, session):
        return 0

    def version(self, model, session):
        return model.version

    def build(self, model, session):
        raise NotImplementedError

    def data(self, model, session):
        """Full contents of the replaceable sources/props: ``{"sources": ..., "props": ...}``."""
        return {}

    def initial_cursor(self, model, session):
        return {"s": self.structure(model, session), "v": self.version(model, session)}

    def update(self, model, session, cursor):
        structure = self.structure(model, session)
        if not isinstance(cursor, dict) or cursor.get("s") != structure:
            return {"reload": True}, cursor
        version = self.version(model, session)
        if cursor.get("v") == version:
            return {}, cursor
        reply = self.delta(model, session, cursor)
        cursor = dict(cursor, v=version)
        return reply, cursor

    def delta(self, model, session, cursor):
        return self.data(model, session)

    def _table(self, model, session, source_name, source, columns, height, name):
        """A table chart filled with the current data of ``source_name``; ``columns``:
        (field, title, width[, formatter]) each."""
        columns = [TableColumn(field=field, title=title, width=width,
                               **({"formatter": rest[0]} if rest else {}))
                   for field, title, width, *rest in columns]
        table = DataTable(source=source, columns=columns, height=height,
                          sizing_mode="stretch_width", index_position=None, name=name)
        _apply({source_name: source}, self.data(model, session))
        return table


def _columns(fields, rows):
    """A source's data from row tuples: one list per field."""
    if not rows:
        return {field: [] for field in fields}
    return dict(zip(fields, map(list, zip(*rows))))


def _count_columns():
    """The task-count columns that the sessions and inspector tables share."""
    return [("tasks", "Tasks", 70), ("waiting", "Waiting", 70), ("running", "Running", 70),
            ("finished", "Finished", 70), ("failed", "Failed", 60),
            ("progress", "Progress", 70, NumberFormatter(format="0.0%"))]


def _source(name, data):
    return ColumnDataSource(data=data, name=name)


def _apply(root_sources, data):
    """Fill sources/props of a freshly built document with ``data``."""
    for name, values in (data.get("sources") or {}).items():
        root_sources[name].data = values["data"]
    for name, props in (data.get("props") or {}).items():
        for attr, value in props.items():
            setattr(root_sources[name], attr, value)


# ------------------------------------------------------------------------------------------
# Global charts

class SessionsChart(Chart):
    id = "sessions"
    title = "Sessions"

    def data(self, model, session):
        sessions = sorted(model.sessions.values(), key=lambda s: -s.id)[:TABLE_ROWS]
        cols = _columns(
            ("session", "name", "status", "tasks", "waiting", "running", "finished",
             "failed", "progress", "message"),
            [(s.id, s.name, s.status, s.n_tasks, s.waiting, s.running, s.finished, s.failed,
              s.finished / s.n_tasks if s.n_tasks else 0.0, s.message[:200])
             for s in sessions])
        return {"sources": {"sessions": {"data": cols}}}

    def build(self, model, session):
        source = _source("sessions", {})
        link = HTMLTemplateFormatter(
            template='<a href="/dashboard/session/<%= value %>" class="rain-session-link">'
                     '<%= value %></a>')
        status = HTMLTemplateFormatter(
            template='<span class="rain-status-<%= value %>"><%= value %></span>')
        columns = [("session", "Session", 60, link), ("name", "Name", 180),
                   ("status", "Status", 70, status), *_count_columns(),
                   ("message", "Message", 300)]
        return self._table(model, session, "sessions", source, columns, 280,
                           "sessions-table")


class GovernorsChart(Chart):
    id = "governors"
    title = "Governors"

    def data(self, model, session):
        cols = _columns(
            ("governor", "cpus", "status", "running", "finished", "cpu", "mem"),
            [(g.id, g.cpus, "alive" if g.alive else f"removed: {g.reason}", g.running,
              g.finished, round(g.cpu[-1], 1) if g.cpu else float("nan"),
              round(g.mem[-1], 1) if g.mem else float("nan"))
             for g in model.governors.values()])
        return {"sources": {"governors": {"data": cols}}}

    def build(self, model, session):
        source = _source("governors", {})
        columns = [("governor", "Governor", 160), ("cpus", "CPUs", 50),
                   ("status", "Status", 140), ("running", "Running tasks", 90),
                   ("finished", "Finished tasks", 90), ("cpu", "CPU %", 60),
                   ("mem", "Memory %", 70)]
        return self._table(model, session, "governors", source, columns, 180,
                           "governors-table")


class RecoveriesChart(Chart):
    """Governors lost, tasks run again, objects recomputed and tasks no governor can run,
    over time (latest first)."""
    id = "recoveries"
    title = "Failures and recoveries"

    def version(self, model, session):
        return model.recoveries_version

    def data(self, model, session):
        rows = model.recoveries[::-1][:TABLE_ROWS]
        cols = _columns(
            ("time", "event", "session", "subject", "reason"),
            [(when * 1000.0, kind, "" if sid is None else str(sid), subject, reason[:300])
             for when, kind, sid, subject, reason in rows])
        return {"sources": {"recoveries": {"data": cols}}}

    def build(self, model, session):
        source = _source("recoveries", {})
        kind = HTMLTemplateFormatter(
            template='<span class="rain-recovery-<%= value.split(" ")[0] %>">'
                     '<%= value %></span>')
        columns = [("time", "Time", 80, DateFormatter(format="%H:%M:%S")),
                   ("event", "Event", 130, kind), ("session", "Session", 60),
                   ("subject", "What", 220), ("reason", "Why", 400)]
        return self._table(model, session, "recoveries", source, columns, 200,
                           "recoveries-table")
class AllocationsChart(Chart):
    """Batch jobs of autoscalers (``rain alloc``): a count by state above a table."""
    id = "allocations"
    title = "Allocations"

    def data(self, model, session):
        table = model.allocations
        rows = sorted(table.items.values(), key=lambda a: -(a.submitted or 0))[:TABLE_ROWS]
        cols = _columns(
            ("allocation", "scheduler", "state", "nodes", "since", "governors"),
            [(a.id, a.scheduler, a.state, ", ".join(a.nodes),
              (a.since or float("nan")) * 1000.0, ", ".join(a.governors)) for a in rows])
        counts = table.counts()
        total = sum(counts.values())
        text = (f"{total} allocation{'' if total == 1 else 's'}: {counts['queued']} "
                f"queued, {counts['running']} running, {counts['ended']} ended" if total else
                "No allocations (<code>rain alloc</code> submits batch jobs of governors "
                "while tasks wait).")
        return {"sources": {"allocations": {"data": cols}},
                "props": {"allocations-summary": {"text": text}}}

    def build(self, model, session):
        source = _source("allocations", {})
        text = Div(text="", name="allocations-summary", sizing_mode="stretch_width")
        state = HTMLTemplateFormatter(
            template='<span class="rain-allocation-<%= value %>"><%= value %></span>')
        columns = [("allocation", "Job", 90), ("scheduler", "Scheduler", 70),
                   ("state", "State", 70, state), ("nodes", "Nodes", 140),
                   ("since", "Since", 150,
                    DateFormatter(format="%Y-%m-%d %H:%M:%S", nan_format="")),
                   ("governors", "Governors", 240)]
        columns = [TableColumn(field=field, title=title, width=width,
                               **({"formatter": rest[0]} if rest else {}))
                   for field, title, width, *rest in columns]
        table = DataTable(source=source, columns=columns, height=160,
                          sizing_mode="stretch_width", index_position=None,
                          name="allocations-table")
        _apply({"allocations": source, "allocations-summary": text},
               self.data(model, session))
        return column(text, table, sizing_mode="stretch_width")


class MonitoringChart(Chart):
    """CPU or memory usage per governor over time (one line and one source each)."""
    attr = "cpu"
    label = "CPU usage (%, mean over CPUs)"

    def structure(self, model, session):
        return "|".join(model.governors)

    def version(self, model, session):
        return sum(g.version for g in model.governors.values())

    def _series(self, gov, start):
        values = getattr(gov, self.attr)
        n = min(len(gov.times), len(values))
        start = max(start, n - MONITOR_POINTS)
        return {"time": [t * 1000.0 for t in gov.times[start:n]],
                "value": list(values[start:n])}, n

    def build(self, model, session):
        fig = figure(title=self.label, x_axis_type="datetime", height=260,
                     sizing_mode="stretch_width",
                     y_range=Range1d(0, 105), tools="pan,xwheel_zoom,box_zoom,reset,save",
                     name=f"{self.id}-figure")
        fig.xaxis.formatter = DatetimeTickFormatter(
            milliseconds="%H:%M:%S.%3N", seconds="%H:%M:%S", minsec="%H:%M:%S",
            minutes="%H:%M", hourmin="%H:%M", hours="%H:%M", context=None)
        fig.xaxis.ticker.desired_num_ticks = 4      # readable in a narrow pane too
        for i, gov in enumerate(model.governors.values()):
            data, _ = self._series(gov, 0)
            source = _source(f"{self.id}:{gov.id}", data)
            color = Category10_10[i % 10]
            fig.line("time", "value", source=source, color=color, line_width=2,
                     legend_label=gov.id)
            fig.scatter("time", "value", source=source, color=color, size=3)
        fig.add_tools(HoverTool(tooltips=[("value", "@value{0.0}%"),
                                          ("time", "@time{%H:%M:%S}")],
                                formatters={"@time": "datetime"}))
        if model.governors:
            fig.legend.location = "top_left"
            fig.legend.click_policy = "hide"
        return fig

    def initial_cursor(self, model, session):
        cursor = super().initial_cursor(model, session)
        cursor["n"] = {g.id: min(len(g.times), len(getattr(g, self.attr)))
                       for g in model.governors.values()}
        return cursor

    def update(self, model, session, cursor):
        structure = self.structure(model, session)
        if not isinstance(cursor, dict) or cursor.get("s") != structure:
            return {"reload": True}, cursor
        counts = dict(cursor.get("n") or {})
        sources = {}
        for gov in model.governors.values():
            have = counts.get(gov.id, 0)
            if not isinstance(have, int):
                have = 0
            data, n = self._series(gov, have)
            if n > have:
                sources[f"{self.id}:{gov.id}"] = {"stream": data, "rollover": MONITOR_POINTS}
            counts[gov.id] = n
        return ({"sources": sources} if sources else {}), dict(cursor, n=counts)


class CpuChart(MonitoringChart):
    id = "cpu"
    title = "Governors: CPU usage"
    attr = "cpu"
    label = "CPU usage of each governor's processes (%, mean over its CPUs)"


class MemoryChart(MonitoringChart):
    id = "memory"
    title = "Governors: memory usage"
    attr = "mem"
    label = "Memory of each governor's processes (% of the machine)"


# ------------------------------------------------------------------------------------------
# Session charts

class SessionChart(Chart):
    scope = "session"

    def version(self, model, session):
        return session.version if session is not None else -1


class SummaryChart(SessionChart):
    id = "summary"
    title = "Session summary"

    def data(self, model, session):
        s = session
        parts = [f"<b>Session {s.id}</b>"]
        if s.name:
            parts.append(html.escape(s.name))
        color = STATUS_COLORS.get(s.status, "#333")
        parts.append(f'<b style="color: {color}">{s.status}</b>')
        text = " &middot; ".join(parts)
        total = s.n_tasks
        text += (f"<br>{total} tasks: {s.finished} finished, {s.running} running, "
                 f"{s.waiting} waiting, {s.failed} failed")
        if total:
            text += f" ({100.0 * s.finished / total:.1f}% done)"
        if s.first_start is not None and s.last_end is not None:
            text += f"<br>task time span: {s.last_end - s.first_start:.3f} s"
        if s.status == "failed":
            task = f" (task {s.error_task})" if s.error_task not in (None, -1) else ""
            text += (f'<div style="color: #b00"><b>Error{task}:</b> <pre style="white-space: '
                     f'pre-wrap; max-height: 12em; overflow: auto">{html.escape(s.message)}'
                     '</pre></div>')
        elif s.status == "closed" and s.message:
            text += f"<br>closed: {html.escape(s.message)}"
        progress = {"y": ["tasks"], "finished": [s.finished], "running": [s.running],
                    "waiting": [s.waiting], "failed": [s.failed]}
        return {"sources": {"progress": {"data": progress}},
                "props": {"summary-text": {"text": text}}}

    def build(self, model, session):
        text = Div(text="", name="summary-text", sizing_mode="stretch_width")
        source = _source("progress", {})
        fig = figure(y_range=FactorRange("tasks"), height=120, sizing_mode="stretch_width",
                     toolbar_location=None, tools="",
                     name="progress-figure")
        states = ["finished", "running", "failed", "waiting"]
        fig.hbar_stack(states, y="y", height=0.8, source=source,
                       color=[COLORS[s] for s in states], legend_label=states)
        legend = fig.legend[0]
        legend.orientation = "horizontal"
        fig.add_layout(legend, "above")
        fig.yaxis.visible = False
        fig.x_range.start = 0
        _apply({"progress": source, "summary-text": text}, self.data(model, session))
        return column(text, fig, sizing_mode="stretch_width")


class GraphChart(SessionChart):
    """Tasks as nodes coloured by state, edges from producers to consumers.

    Up to ``GRAPH_TASK_LIMIT`` tasks each task is a node; above, one node per task name
    (sized by its task count, coloured by the state of its tasks), and when there are more
    than ``GRAPH_NODE_LIMIT`` names, one node per name prefix (``a/b`` for ``a/b/c``, ...),
    so a 100k-task graph stays a few dozen glyphs. Labels are placed so that none covers
    another at the chart's usual size (the hover shows every node's full name). Edges
    come from the live server's graph (``edges_provider``) while the session is open;
    once closed, and post mortem, from its close event (the edges between names).
    """
    id = "graph"
    title = "Task graph"

    def __init__(self, edges_provider=None):
        self.edges_provider = edges_provider
        self._layouts = {}

    def structure(self, model, session):
        return session.structure if session is not None else -1

    def _layout(self, model, session):
        key = (session.id, session.structure)
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        provided = None
        if self.edges_provider is not None:
            try:
                provided = self.edges_provider(session.id, session.n_tasks <= GRAPH_TASK_LIMIT)
            except Exception:
                provided = None
        if provided is not None and provided.get("mode") == "tasks":
            nodes = provided["nodes"]         # [(task id, group)]
            edges = provided["edges"]         # [(task id, task id)]
            mode = "tasks"
            members = None
        else:
            names = sorted(set(session.summary) | set(session.groups), key=natural_key)
            # A closed session (or post mortem): the edges its close event recorded.
            name_edges = provided["edges"] if provided is not None else session.group_edges
            members = collapse_names(names, GRAPH_NODE_LIMIT)
            node_of = {name: node for node, group in members.items() for name in group}
            nodes = [(node, node) for node in members]
            edges = sorted({(node_of[a], node_of[b]) for a, b in name_edges
                            if a in node_of and b in node_of and node_of[a] != node_of[b]})
            mode = "groups"
        positions = layered_layout([n for n, _ in nodes], edges)
        xs, ys = [], []
        for a, b in edges:
            pa, pb = positions.get(a), positions.get(b)
            if pa is not None and pb is not None:
                xs.append([pa[0], pb[0]])
                ys.append([pa[1], pb[1]])
        height = graph_height(positions.values())
        if mode == "tasks":
            texts = [short_name(group) for _, group in nodes]
            priority = range(len(nodes))
        else:
            totals = [sum(session.summary.get(n, 0) for n in members[node])
                      for node, _ in nodes]
            texts = [f"{short_name(node)} ({total}/{total})"
                     for (node, _), total in zip(nodes, totals)]
            priority = sorted(range(len(nodes)), key=lambda i: -totals[i])
        shown = place_labels([positions[n] for n, _ in nodes], texts, priority,
                             GRAPH_WIDTH_ESTIMATE, height)
        layout = {"mode": mode, "nodes": nodes, "positions": positions, "members": members,
                  "edges": {"xs": xs, "ys": ys}, "shown": shown, "height": height}
        for old in [k for k in self._layouts if k[0] == session.id]:
            del self._layouts[old]
        self._layouts[key] = layout
        return layout

    def data(self, model, session):
        layout = self._layout(model, session)
        cols = {k: [] for k in ("x", "y", "key", "label", "text", "state", "color", "size",
                                "tasks", "finished", "running", "failed")}
        positions = layout["positions"]
        shown = layout["shown"]
        if layout["mode"] == "tasks":
            tasks = session.tasks
            for index, (tid, group) in enumerate(layout["nodes"]):
                record = tasks.get(tid)
                state = STATE_NAMES[record[0]] if record else "waiting"
                x, y = positions[tid]
                cols["x"].append(x)
                cols["y"].append(y)
                cols["key"].append(str(tid))
                cols["label"].append(f"{tid} {group}")
                cols["text"].append(short_name(group) if index in shown else "")
                cols["state"].append(state)
                cols["color"].append(COLORS[state])
                cols["size"].append(14)
                cols["tasks"].append(1)
                cols["finished"].append(int(state == "finished"))
                cols["running"].append(int(state == "running"))
                cols["failed"].append(int(state == "failed"))
        else:
            for index, (key, _) in enumerate(layout["nodes"]):
                total = running = finished = failed = 0
                for name in layout["members"][key]:
                    count = session.summary.get(name, 0)
                    group = session.groups.get(name)
                    if group is not None:
                        running += group.running
                        finished += group.finished
                        failed += group.failed
                        count = max(count, group.seen)
                    total += count
                if failed:
                    state = "failed"
                elif running:
                    state = "running"
                elif total and finished >= total:
                    state = "finished"
                elif finished:
                    state = "partial"
                else:
                    state = "waiting"
                x, y = positions[key]
                cols["x"].append(x)
                cols["y"].append(y)
                cols["key"].append(str(key))
                cols["label"].append(f"{key} ({finished}/{total})")
                cols["text"].append(f"{short_name(key)} ({finished}/{total})"
                                    if index in shown else "")
                cols["state"].append(state)
                cols["color"].append(COLORS[state])
                cols["size"].append(12 + 6 * math.log10(total + 1))
                cols["tasks"].append(total)
                cols["finished"].append(finished)
                cols["running"].append(running)
                cols["failed"].append(failed)
        return {"sources": {"graph-nodes": {"data": cols}}}

    def build(self, model, session):
        layout = self._layout(model, session)
        nodes = _source("graph-nodes", {})
        edges = _source("graph-edges", layout["edges"])
        title = ("Task graph" if layout["mode"] == "tasks"
                 else "Task graph (one node per task name or name prefix)")
        fig = figure(title=title, height=layout["height"], sizing_mode="stretch_width",
                     tools="pan,wheel_zoom,reset,save", name="graph-figure")
        fig.multi_line("xs", "ys", source=edges, color="#999999", alpha=0.6)
        renderer = fig.scatter("x", "y", source=nodes, size="size", color="color",
                               line_color="#333333")
        fig.text("x", "y", text="text", source=nodes, x_offset=LABEL_OFFSET,
                 text_baseline="middle", text_font_size=f"{LABEL_FONT_PX}px")
        fig.add_tools(HoverTool(renderers=[renderer], tooltips=[
            ("node", "@label"), ("state", "@state"), ("tasks", "@tasks"),
            ("finished", "@finished"), ("running", "@running"), ("failed", "@failed")]))
        fig.axis.visible = False
        fig.grid.visible = False
        _pad_ranges(fig, layout["positions"].values())
        _apply({"graph-nodes": nodes}, self.data(model, session))
        return fig


def short_name(name):
    """The last part of a task name (the hover and the inspector show the whole)."""
    return str(name).rsplit("/", 1)[-1] or str(name)


def collapse_names(names, limit):
    """Task names to at most ``limit`` graph nodes: ``{node: [names]}``. Names are kept
    while there are few; else they merge into their longest common prefixes that keep
    within the limit (``a/b/c``, ``a/b/d`` -> ``a/b``); the smallest rest of a still too
    long list of first parts merges into one "(other names)" node."""
    if len(names) <= limit:
        return {name: [name] for name in names}
    depth = max(len(str(n).split("/")) for n in names)
    while True:
        depth = max(1, depth - 1)
        nodes = {}
        for name in names:
            nodes.setdefault("/".join(str(name).split("/")[:depth]), []).append(name)
        if len(nodes) <= limit or depth == 1:
            break
    if len(nodes) <= limit:
        return nodes
    ranked = sorted(nodes, key=lambda k: -len(nodes[k]))
    kept = {k: nodes[k] for k in sorted(ranked[:limit - 1], key=natural_key)}
    kept[OTHER_NAMES] = [n for k in ranked[limit - 1:] for n in nodes[k]]
    return kept


def graph_height(positions):
    """Room for the tallest layer (one label line per node), within bounds."""
    ys = [p[1] for p in positions]
    rows = (max(ys) - min(ys) + 1) if ys else 1
    return int(max(GRAPH_MIN_HEIGHT, min(GRAPH_MAX_HEIGHT, 60 + LABEL_ROW_PX * rows)))


def label_box(position, text, scale, origin):
    """A label's box in pixels (left, bottom, right, top) at the given scale."""
    x = (position[0] - origin[0]) * scale[0] + LABEL_OFFSET
    y = (position[1] - origin[1]) * scale[1]
    return (x, y - LABEL_FONT_PX / 2.0 - 1, x + LABEL_CHAR_PX * len(text),
            y + LABEL_FONT_PX / 2.0 + 1)


def place_labels(positions, texts, priority, width, height):
    """Indices of the labels to draw: in ``priority`` order, each that overlaps no label
    already placed, at the pixel scale of a ``width`` x ``height`` chart."""
    if not positions:
        return set()
    xs = [p[0] for p in positions]
    ys = [p[1] for p in positions]
    x0, x1 = min(xs) - 0.5, max(xs) + 1.5
    y0, y1 = min(ys) - 1, max(ys) + 1
    scale = (width / (x1 - x0), (height - 40) / (y1 - y0))
    placed, shown = [], set()
    for i in priority:
        box = label_box(positions[i], texts[i], scale, (x0, y0))
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
               for b in placed):
            continue
        placed.append(box)
        shown.add(i)
    return shown


def _pad_ranges(fig, positions):
    positions = list(positions)
    if not positions:
        fig.x_range = Range1d(-1, 1)
        fig.y_range = Range1d(-1, 1)
        return
    xs = [p[0] for p in positions]
    ys = [p[1] for p in positions]
    fig.x_range = Range1d(min(xs) - 0.5, max(xs) + 1.5)
    fig.y_range = Range1d(min(ys) - 1, max(ys) + 1)


def layered_layout(nodes, edges):
    """Positions by longest-path layer (x) and order within the layer (y)."""
    index = {n: i for i, n in enumerate(nodes)}
    indegree = [0] * len(nodes)
    out = [[] for _ in nodes]
    for a, b in edges:
        ia, ib = index.get(a), index.get(b)
        if ia is None or ib is None or ia == ib:
            continue
        out[ia].append(ib)
        indegree[ib] += 1
    layer = [0] * len(nodes)
    stack = [i for i, d in enumerate(indegree) if d == 0]
    seen = 0
    while stack:
        i = stack.pop()
        seen += 1
        for j in out[i]:
            if layer[i] + 1 > layer[j]:
                layer[j] = layer[i] + 1
            indegree[j] -= 1
            if indegree[j] == 0:
                stack.append(j)
    if not edges and len(nodes) > 12:
        cols = max(1, int(math.sqrt(len(nodes))))
        return {n: (i % cols * 2.0, -(i // cols)) for i, n in enumerate(nodes)}
    per_layer = {}
    for i in range(len(nodes)):
        per_layer.setdefault(layer[i], []).append(i)
    positions = {}
    for x, members in per_layer.items():
        offset = (len(members) - 1) / 2.0
        for rank, i in enumerate(members):
            positions[nodes[i]] = (float(x) * 2.0, offset - rank)
    return positions


class InspectorChart(SessionChart):
    id = "inspector"
    title = "Task inspector"

    def data(self, model, session):
        rows = model.group_tree(session, TABLE_ROWS)
        cols = _columns(
            ("group", "path", "level", "tasks", "waiting", "running", "finished", "failed",
             "progress", "mean_duration", "total_duration"),
            [("\u2003" * row["level"] + row["path"].rsplit("/", 1)[-1], row["path"],
              row["level"], row["tasks"], row["waiting"], row["running"], row["finished"],
              row["failed"], row["finished"] / row["tasks"] if row["tasks"] else 0.0,
              row["mean_duration"] if row["mean_duration"] is not None else float("nan"),
              row["total_duration"])
             for row in rows])
        return {"sources": {"groups": {"data": cols}}}

    def build(self, model, session):
        source = _source("groups", {})
        seconds = NumberFormatter(format="0.000")
        columns = [("group", "Task name group", 260), *_count_columns(),
                   ("mean_duration", "Mean duration (s)", 110, seconds),
                   ("total_duration", "Total duration (s)", 110, seconds)]
        return self._table(model, session, "groups", source, columns, 260,
                           "inspector-table")


class StreamChart(SessionChart):
    """Gantt of finished tasks, one row per governor CPU; times relative to the session.

    A delta carries at most ``ROWS_PER_UPDATE`` rows, the most recent ones: when tasks end
    faster than a viewer polls (thousands per second), the live stream shows a sample of
    them instead of costing the server and the browser per task; the page of a finished run
    (or the report) has the last ``STREAM_ROWS`` rows in full."""
    id = "stream"
    title = "Task stream"

    def structure(self, model, session):
        return "|".join(f"{g.id}:{g.cpus}" for g in model.governors.values())

    def _lanes(self, model):
        lanes = []
        for gov in model.governors.values():
            lanes.extend(f"{gov.id} #{i}" for i in range(gov.cpus))
        return lanes

    def _origin(self, session):
        return session.created or session.first_start or 0.0

    def _rows(self, model, session, start, limit):
        """Rows from ``start`` on, at most the last ``limit`` of them."""
        n = len(session.pending_rows)
        start = max(start, n - limit)
        rows = model.materialize(session, start)
        origin = self._origin(session)
        cols = {k: [] for k in ("start", "end", "lane", "task", "group", "duration", "color")}
        lanes = self._lane_set(model)
        for row in rows[start:n]:
            if row is None or row[2] not in lanes:
                continue
            begin, end, lane, tid, group, failed = row
            cols["start"].append(round(begin - origin, 5))
            cols["end"].append(round(max(end, begin + 1e-4) - origin, 5))
            cols["lane"].append(lane)
            cols["task"].append(tid)
            cols["group"].append(group)
            cols["duration"].append(round(end - begin, 6))
            cols["color"].append(COLORS["failed"] if failed else group_color(group))
        return cols, n

    def _lane_set(self, model):
        key = self.structure(model, None)
        if getattr(self, "_lane_key", None) != key:
            self._lane_key = key
            self._lane_cache = set(self._lanes(model))
        return self._lane_cache

    def build(self, model, session):
        lanes = self._lanes(model) or ["(no governor)"]
        data, _ = self._rows(model, session, 0, STREAM_ROWS)
        source = _source("stream", data)
        fig = figure(title="Task stream (finished tasks per governor CPU; seconds since the "
                           "session started)", y_range=FactorRange(*reversed(lanes)),
                     height=max(160, 40 + 26 * len(lanes)), sizing_mode="stretch_width",
                     tools="xpan,xwheel_zoom,box_zoom,reset,save", name="stream-figure")
        renderer = fig.hbar(y="lane", left="start", right="end", height=0.8, color="color",
                            source=source)
        fig.add_tools(HoverTool(renderers=[renderer], tooltips=[
            ("task", "@task"), ("name", "@group"), ("duration", "@duration{0.0000} s"),
            ("start", "@start{0.000} s"), ("lane", "@lane")]))
        fig.xaxis.axis_label = "seconds"
        return fig

    def initial_cursor(self, model, session):
        cursor = super().initial_cursor(model, session)
        cursor["n"] = len(session.pending_rows)
        return cursor

    def update(self, model, session, cursor):
        structure = self.structure(model, session)
        if not isinstance(cursor, dict) or cursor.get("s") != structure:
            return {"reload": True}, cursor
        have = cursor.get("n")
        if not isinstance(have, int) or have < 0:
            have = 0
        if len(session.pending_rows) == have:
            return {}, cursor
        data, n = self._rows(model, session, have, ROWS_PER_UPDATE)
        reply = {"sources": {"stream": {"stream": data, "rollover": STREAM_ROWS}}} \
            if data["start"] else {}
        return reply, dict(cursor, n=n)


def make_charts(edges_provider=None):
    charts = [SessionsChart(), GovernorsChart(), RecoveriesChart(), AllocationsChart(),
              CpuChart(), MemoryChart(), SummaryChart(),
              GraphChart(edges_provider), InspectorChart(), StreamChart()]
    return {chart.id: chart for chart in charts}


__all__ = ["make_charts", "Chart", "layered_layout", "COLORS", "FINISHED", "RUNNING"]
