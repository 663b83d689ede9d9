"""Static HTML (and plain text) of progress snapshots and graph layouts.

Used as the fallback of the live widgets (what a saved notebook shows without a kernel)
and by the rich displays. Only inline styles, no scripts: the HTML must render anywhere
(JupyterLab, nbconvert, GitHub) and be safe to embed.
"""
from html import escape

from .graph_view import COLORS

ORDER = ("finished", "running", "waiting", "failed", "cancelled")
BOX = ("font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; "
       "border: 1px solid #d0d4d9; border-radius: 4px; padding: 6px 10px; "
       "max-width: 860px; color: var(--jp-ui-font-color1, #222);")
STATUS_COLORS = {"finished": COLORS["finished"], "failed": COLORS["failed"],
                 "running": COLORS["running"], "waiting": "#8a8f96", "closed": "#8a8f96",
                 "empty": "#8a8f96"}


def badge(text, color):
    return (f'<span style="background:{color}; color:white; border-radius:3px; '
            f'padding:0 5px; font-size:11px;">{escape(str(text))}</span>')


def stacked_bar(counts, width="100%", height=10):
    total = counts["total"] or 1
    parts = []
    for state in ORDER:
        value = counts.get(state, 0)
        if value:
            parts.append(f'<div data-state="{state}" title="{state}: {value}" style="width:{100 * value / total:.2f}%;'
                         f' background:{COLORS[state]}; height:{height}px;"></div>')
    return (f'<div style="display:flex; width:{width}; background:#eef0f2; '
            f'height:{height}px; border-radius:2px; overflow:hidden;">{"".join(parts)}</div>')


def format_seconds(seconds):
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def session_title(snapshot):
    name = snapshot.get("name")
    sid = snapshot.get("session")
    return f"Session {sid}" + (f" “{name}”" if name else "")


def progress_header_html(snapshot):
    totals = snapshot["totals"]
    status = snapshot["status"]
    if snapshot.get("phase") and status == "empty":
        return (f"<b>{escape(session_title(snapshot))}</b> &nbsp; "
                f"{badge(snapshot['phase'], STATUS_COLORS['running'])} &nbsp; "
                f"{escape(snapshot['note'])} …")
    parts = [f"<b>{escape(session_title(snapshot))}</b>",
             badge(status, STATUS_COLORS.get(status, "#8a8f96")),
             f"{totals['finished']}/{totals['total']} finished"]
    if totals["running"]:
        parts.append(f"{totals['running']} running")
    if totals["failed"]:
        parts.append(f"<span style='color:{COLORS['failed']}'>{totals['failed']} failed</span>")
    if totals.get("cancelled"):
        parts.append(f"<span class='rain-cancelled' style='color:{COLORS['cancelled']}' "
                     f"title='will never run: the session ended before them'>"
                     f"{totals['cancelled']} cancelled</span>")
    recovery = snapshot.get("recovery") or {}
    if recovery.get("retried") or recovery.get("recomputed"):
        parts.append(f"<span title='governors lost: {recovery.get('governors_lost', 0)}'>"
                     f"{recovery.get('retried', 0)} retried, "
                     f"{recovery.get('recomputed', 0)} recomputed</span>")
    if snapshot.get("elapsed"):
        parts.append(f"<span class='rain-elapsed' title='from the first task event to the "
                     f"end of the work'>{format_seconds(snapshot['elapsed'])}</span>")
    html = " &nbsp; ".join(parts)
    failure = snapshot.get("failure")
    if failure:
        html += (f"<div style='color:{COLORS['failed']}; white-space:pre-wrap; "
                 f"margin-top:3px;'>{escape(_first_lines(failure.get('message', '')))}</div>")
    elif snapshot.get("warning"):
        html += (f"<div class='rain-warning' style='color:#a65f00; margin-top:3px;'>"
                 f"&#9888; {escape(snapshot['warning'])}</div>")
    return html


def _first_lines(text, lines=6, chars=600):
    text = str(text)
    cut = "\n".join(text.splitlines()[:lines])
    if len(cut) > chars:
        cut = cut[:chars]
    return cut + (" …" if cut != text else "")


def progress_top_html(snapshot):
    """Header and overall bar (above the per-group chart of a live page)."""
    return (f"{progress_header_html(snapshot)}<div style='margin:5px 0'>"
            f"{stacked_bar(snapshot['totals'], height=12)}</div>")


def progress_html(snapshot):
    """The progress view: header, overall bar, one row per name group."""
    rows = []
    for row in snapshot["rows"]:
        label = escape(row["group"]) + (" ▸" if row["folded"] else "")
        extra = ""
        if row["running"]:
            extra += f" · {row['running']} running"
        if row["failed"]:
            extra += f" · <span style='color:{COLORS['failed']}'>{row['failed']} failed</span>"
        if row.get("cancelled"):
            extra += (f" · <span style='color:{COLORS['cancelled']}'>{row['cancelled']} "
                      f"cancelled</span>")
        rows.append(
            f"<tr><td style='padding:1px 8px 1px 0; white-space:nowrap; text-align:left;'>"
            f"{label}</td><td style='width:55%; padding:1px 0;'>{stacked_bar(row)}</td>"
            f"<td style='padding:1px 0 1px 8px; white-space:nowrap; text-align:left;'>"
            f"{row['finished']}/{row['total']}{extra}</td></tr>")
    table = ""
    if rows:
        table = ("<table style='border-collapse:collapse; width:100%; margin-top:6px;'>"
                 + "".join(rows) + "</table>")
    legend = " ".join(f"<span style='color:{COLORS[s]}'>■</span> {s}" for s in ORDER)
    return (f"<div class='rain-progress' style='{BOX}'>{progress_header_html(snapshot)}"
            f"<div style='margin-top:5px'>{stacked_bar(snapshot['totals'], height=12)}</div>"
            f"{table}<div style='color:#8a8f96; margin-top:4px; font-size:11px;'>{legend}"
            f"</div></div>")


def progress_text(snapshot):
    totals = snapshot["totals"]
    lines = [f"{session_title(snapshot)}: {snapshot['status']}, {totals['finished']}/"
             f"{totals['total']} finished, {totals['running']} running, "
             f"{totals['failed']} failed"
             + (f", {totals['cancelled']} cancelled" if totals.get("cancelled") else "")]
    for row in snapshot["rows"]:
        notes = [f"{row[s]} {s}" for s in ("failed", "cancelled") if row.get(s)]
        lines.append(f"  {row['group']}: {row['finished']}/{row['total']}"
                     + (f" ({', '.join(notes)})" if notes else ""))
    if snapshot.get("failure"):
        lines.append("  failure: " + _first_lines(snapshot["failure"].get("message", ""), 3))
    return "\n".join(lines)


def graph_svg(layout, width=820, max_height=420):
    """The graph layout as an inline SVG (nodes coloured by state, edges as lines)."""
    nodes = layout["nodes"]
    if not nodes:
        return "<div style='color:#8a8f96'>(no tasks)</div>"
    xs = [n["x"] for n in nodes]
    ys = [n["y"] for n in nodes]
    span_x = max(xs) - min(xs) or 1
    span_y = max(ys) - min(ys) or 1
    height = min(max_height, max(80, int(28 * (span_y + 1))))
    pad = 18

    right = 70 if len(nodes) <= 40 else pad     # room for the labels of the last column

    def px(node):
        x = pad + (node["x"] - min(xs)) / span_x * (width - pad - right)
        y = pad + (max(ys) - node["y"]) / span_y * (height - 2 * pad)
        return x, y

    points = [px(n) for n in nodes]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" style="max-width:100%">']
    for source, target, _count in layout["edges"][:3000]:
        (x0, y0), (x1, y1) = points[source], points[target]
        parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" '
                     f'stroke="#b5bac1" stroke-width="1"/>')
    big = max(n["total"] for n in nodes)
    show_labels = len(nodes) <= 40
    for node, (x, y) in zip(nodes, points):
        radius = 5 if layout["mode"] == "tasks" else 5 + 7 * (node["total"] / big) ** 0.5
        title = (f"{node['label']}: {node['finished']}/{node['total']} finished, "
                 f"{node['running']} running, {node['failed']} failed"
                 + (f", {node['cancelled']} cancelled" if node.get("cancelled") else ""))
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" '
                     f'fill="{COLORS[node["state"]]}"><title>{escape(title)}</title></circle>')
        if show_labels:
            parts.append(f'<text x="{x + radius + 2:.1f}" y="{y + 4:.1f}" font-size="10" '
                         f'fill="#555">{escape(str(node["label"]))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def graph_html(layout, description=""):
    legend = " ".join(f"<span style='color:{COLORS[s]}'>●</span> {s}" for s in ORDER)
    return (f"<div class='rain-graph' style='{BOX}'><b>Task graph</b> &nbsp; "
            f"{escape(description)}<div>{graph_svg(layout)}</div>"
            f"<div style='color:#8a8f96; font-size:11px;'>{legend}</div></div>")


def graph_text(layout, description=""):
    counts = {s: 0 for s in ORDER}
    for node in layout["nodes"]:
        counts[node["state"]] += 1
    return (f"Task graph: {description}; nodes "
            + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
