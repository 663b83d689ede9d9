"""The allocations part of the cluster card: what ``%rain alloc`` runs in this kernel
(plain data from the ``Autoscaler``, then text and HTML)."""
from html import escape

from .rendering import badge

STATE_COLORS = {"queued": "#8a8f96", "running": "#4caf50", "draining": "#ff9f1c"}


def info(scaler):
    """Plain data of the card's allocation part (None: no autoscaler here)."""
    if scaler is None:
        return None
    return {"scheduler": scaler.jobs.name, "running": scaler.running,
            "max_nodes": scaler.policy.max_nodes, "jobs": scaler.status(),
            "error": scaler.last_error}


def _plural(count, word):
    return f"{count} {word}" + ("" if count == 1 else "s")


def _headline(alloc):
    state = "active" if alloc["running"] else "stopped"
    return (f"{alloc['scheduler']} allocations, {state} (at most "
            f"{_plural(alloc['max_nodes'], 'node')}): {_plural(len(alloc['jobs']), 'job')}")


def card_lines(alloc):
    if alloc is None:
        return []
    lines = [f"  {_headline(alloc)}"]
    for job in alloc["jobs"]:
        lines.append(f"    job {job['allocation']}: {job['state']}"
                     + (f" on {job['node']}" if job.get("node") else ""))
    if alloc.get("error"):
        lines.append(f"    last error: {alloc['error']}")
    return lines


def card_html(alloc):
    if alloc is None:
        return ""
    jobs = " ".join(
        f"<span class='rain-allocation'>job {escape(str(job['allocation']))} "
        f"{badge(job['state'], STATE_COLORS.get(job['state'], '#8a8f96'))}"
        + (f" {escape(str(job['node']))}" if job.get("node") else "") + "</span>"
        for job in alloc["jobs"])
    error = (f"<div style='color:#e0443e'>last error: {escape(alloc['error'])}</div>"
             if alloc.get("error") else "")
    return (f"<div class='rain-allocations' style='margin-top:4px;'>"
            f"{escape(_headline(alloc))} {jobs}{error}</div>")
