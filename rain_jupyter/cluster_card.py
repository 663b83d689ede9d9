"""The cluster card: governors, CPUs and the dashboard link of the connected cluster."""
import json
import logging
import urllib.request
from html import escape

from . import allocation_card
from .rendering import BOX, badge

logger = logging.getLogger(__name__)

INFO_TIMEOUT = 5.0


def shown_status(session):
    """A session as the user thinks of it (the sidebar's rule too): "running" while it
    is open and has work left, "done" once all its tasks ended even if it is still open,
    else its end ("closed", "failed")."""
    if session.get("status") != "open":
        return session.get("status")
    tasks = session.get("tasks") or 0
    ended = (session.get("finished") or 0) + (session.get("failed") or 0)
    return "done" if tasks and ended >= tasks else "running"


def cluster_sessions(cluster, timeout=INFO_TIMEOUT):
    """The cluster's sessions as its REST API lists them (what the sidebar shows), or
    None when the server does not answer."""
    try:
        request = urllib.request.Request(cluster.http_url + "api/sessions",
                                         headers=cluster.http_headers)
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except Exception:
        logger.debug("cannot list the sessions of %s", cluster.http_url, exc_info=True)
        return None


def client_sessions(client):
    """This client's sessions, summarized like the REST API's (from their trackers)."""
    from .tracker import tracker_for
    summaries = []
    for session in list(getattr(client, "_sessions", ())):
        summary = {"status": "closed" if session.closed else "open",
                   "tasks": len(session._submitted_tasks)}
        tracker = tracker_for(session, create=False)
        if tracker is not None:
            snapshot = tracker.snapshot()
            totals = snapshot["totals"]
            summary.update(tasks=totals["total"], finished=totals["finished"],
                           failed=totals["failed"])
            if snapshot["failure"] is not None:
                summary["status"] = "failed"
        summaries.append(summary)
    return summaries


def session_counts(client, cluster=None, timeout=INFO_TIMEOUT):
    """``{"running", "total", "scope"}``: sessions with work left, and all sessions, of
    the cluster (when this kernel started it) or else of this client."""
    sessions = cluster_sessions(cluster, timeout) if cluster is not None else None
    scope = "cluster"
    if sessions is None:
        sessions, scope = client_sessions(client), "client"
    running = sum(1 for s in sessions if shown_status(s) == "running")
    return {"running": running, "total": len(sessions), "scope": scope}


def server_info(client, timeout=INFO_TIMEOUT):
    """``client.get_server_info()`` that gives up after ``timeout`` seconds (a display
    must not hang on a server that stopped answering)."""
    connection = getattr(client, "_connection", None)
    if connection is None or connection.closed:
        return None

    def fill(msg):
        msg.serverInfo = None

    try:
        return connection.request(fill, timeout)
    except Exception:
        return None


def cluster_info(client, cluster=None, timeout=INFO_TIMEOUT, allocations=None):
    """Plain data of the card. ``cluster`` is the ``NotebookCluster`` when this kernel
    started it; ``allocations`` what ``%rain alloc`` runs (``allocation_card.info``)."""
    info = {"address": f"{client.address}:{client.port}", "connected": client.connected,
            "governors": [], "cpus": 0, "dashboard": None, "started_here": False,
            "allocations": allocations,
            "sessions": None}
    if cluster is not None:
        info["started_here"] = True
        info["dashboard"] = getattr(cluster, "dashboard_link", cluster.dashboard_url)
        info["http_port"] = getattr(cluster, "http_port", None)
        info["workdir"] = cluster.workdir
    elif getattr(client, "_rain_dashboard_url", None):
        info["dashboard"] = client._rain_dashboard_url
    reply = server_info(client, timeout) if info["connected"] else None
    if reply is None:
        info["reachable"] = False
        return info
    info["reachable"] = True
    info["sessions"] = session_counts(client, cluster, timeout)
    for governor in reply.get("governors", ()):
        cpus = (governor.get("resources") or {}).get("cpus", 0)
        info["governors"].append({"id": governor.get("governor_id"), "cpus": cpus,
                                  "tasks": len(governor.get("tasks", ())),
                                  "objects": len(governor.get("objects", ()))})
        info["cpus"] += cpus
    return info


def card_text(info):
    if not info["connected"]:
        return f"Rain cluster at {info['address']}: not connected"
    lines = [f"Rain cluster at {info['address']}"
             + (" (started by this kernel)" if info["started_here"] else "")
             + f": {len(info['governors'])} governors, {info['cpus']} CPUs"]
    if not info.get("reachable", True):
        lines[0] += " (server not answering)"
    if info.get("sessions"):
        lines.append(f"  {sessions_text(info['sessions'])}")
    for governor in info["governors"]:
        lines.append(f"  {governor['id']}: {governor['cpus']} CPUs, "
                     f"{governor['tasks']} tasks, {governor['objects']} objects")
    lines += allocation_card.card_lines(info.get("allocations"))
    if info.get("dashboard"):
        lines.append(f"  dashboard: {info['dashboard']}")
    return "\n".join(lines)


def card_html(info):
    if not info["connected"]:
        return (f"<div class='rain-cluster' style='{BOX}'><b>Rain cluster</b> "
                f"{escape(info['address'])} &nbsp; {badge('disconnected', '#8a8f96')}</div>")
    state = badge("connected", "#4caf50") if info.get("reachable", True) else \
        badge("not answering", "#e0443e")
    origin = " &nbsp; <span style='color:#8a8f96'>started by this kernel</span>" \
        if info["started_here"] else ""
    rows = "".join(
        f"<tr><td style='padding:0 10px 0 0; text-align:left;'>{escape(str(g['id']))}</td>"
        f"<td style='padding:0 10px 0 0; text-align:right;'>{g['cpus']}</td>"
        f"<td style='padding:0 10px 0 0; text-align:right;'>{g['tasks']}</td>"
        f"<td style='text-align:right;'>{g['objects']}</td></tr>"
        for g in info["governors"])
    table = ("<table style='border-collapse:collapse; margin-top:4px;'><tr style='color:#8a8f96'>"
             "<th style='text-align:left; padding-right:10px;'>governor</th>"
             "<th style='padding-right:10px;'>CPUs</th><th style='padding-right:10px;'>tasks"
             "</th><th>objects</th></tr>" + rows + "</table>") if rows else ""
    dashboard = ""
    if info.get("dashboard"):
        url = escape(info["dashboard"], quote=True)
        dashboard = (f"<div style='margin-top:4px;'>Dashboard: <a href='{url}' "
                     f"target='_blank'>{url}</a>{open_in_lab_link(info)}</div>")
    return (f"<div class='rain-cluster' style='{BOX}'><b>Rain cluster</b> "
            f"{escape(info['address'])} &nbsp; {state}{origin}"
            f"<div>{len(info['governors'])} governors, {info['cpus']} CPUs</div>"
            f"<div class='rain-cluster-sessions'>{escape(sessions_text(info['sessions']))}"
            f"</div>{table}{allocation_card.card_html(info.get('allocations'))}"
            f"{dashboard}</div>")


def sessions_text(counts):
    """The sidebar's wording: "Sessions: 1 running, 3 in all"."""
    if not counts:
        return ""
    return (f"Sessions: {counts['running']} running, {counts['total']} in all"
            + (" (of this client)" if counts["scope"] == "client" else ""))


def open_in_lab_link(info):
    """The card's "Open in JupyterLab" button. The JupyterLab extension (``labextension/``)
    catches clicks on ``[data-rain-open-in-lab]`` and opens the dashboard panes docked
    beside the notebook; without it, the link opens the dashboard in a browser tab."""
    url = info.get("dashboard")
    if not url:
        return ""
    http_port = info.get("http_port")
    if not http_port:
        try:
            http_port = int(url.rstrip("/").rsplit(":", 1)[1].split("/", 1)[0])
        except (IndexError, ValueError):
            http_port = ""
    return (f" &nbsp; <a class='rain-open-in-lab' href='{escape(url, quote=True)}' "
            f"target='_blank' data-rain-open-in-lab='{escape(info['address'], quote=True)}' "
            f"data-rain-http-port='{http_port}' title='Open the dashboard as panes docked "
            "beside this notebook (JupyterLab)' style='border:1px solid #8a8f96; "
            "border-radius:3px; padding:0 6px; text-decoration:none;'>"
            "Open in JupyterLab</a>")


class ClusterCard:
    """A displayable card (HTML and text) of a client's cluster, read when created."""

    def __init__(self, client, cluster=None, allocations=None):
        self.info = cluster_info(client, cluster, allocations=allocations)

    def _repr_html_(self):
        return card_html(self.info)

    def __repr__(self):
        return card_text(self.info)
