"""Rich displays of ``rain.client`` objects, registered as IPython formatters.

``rain.client`` itself imports nothing of Jupyter: this module adds HTML formatters for
its classes to the running shell, and a handler that shows a ``TaskException`` with the
remote error readable (the task's own traceback, where it was created) instead of the
client-side frames.
"""
import io
import json
import tarfile
from html import escape

from rain.client import Client, DataObject, Task
from rain.client.session import Session
from rain.common import DataInstance
from rain.common.ids import DataType
from rain.common.errors import TaskException

from . import rendering
from .cell_frames import point_at_cell, point_at_cells
from .cluster_card import card_html, card_text, cluster_info
from .graph_view import COLORS
from .tracker import tracker_for

PREVIEW_BYTES = 2048
_STATE_COLORS = {"finished": COLORS["finished"], "failed": COLORS["failed"],
                 "running": COLORS["running"], "assigned": COLORS["running"]}

# set by the magics when this kernel started the cluster of a client
cluster_of_client = {}


def _table(rows):
    cells = "".join(
        f"<tr><td style='color:#8a8f96; padding:0 12px 0 0; text-align:left; "
        f"vertical-align:top;'>{escape(key)}</td><td style='text-align:left;'>{value}</td></tr>"
        for key, value in rows if value not in (None, ""))
    return f"<table style='border-collapse:collapse;'>{cells}</table>"


def _box(title, body):
    return f"<div style='{rendering.BOX}'><b>{title}</b>{body}</div>"


# -- Client ------------------------------------------------------------------------------------
def client_html(client):
    return card_html(cluster_info(client, cluster_of_client.get(id(client))))


def client_text(client, p, cycle):
    p.text(card_text(cluster_info(client, cluster_of_client.get(id(client)))))


# -- Session -----------------------------------------------------------------------------------
def _session_snapshot(session):
    tracker = tracker_for(session, create=False)
    if tracker is not None:
        return tracker.snapshot(), "live"
    from .progress import ProgressModel
    from .tracker import _STATE
    model = ProgressModel(session.session_id, session.name)
    model.register((t.id[1], t.name or t.task_type, _STATE.get(t._state, 0))
                   for t in session._submitted_tasks.values())
    model.closed = session.closed
    if session._failure is not None:
        model.failure = {"message": str(session._failure), "task": None}
    return model.snapshot(), "as last known by the client"


def session_html(session):
    snapshot, source = _session_snapshot(session)
    extra = ""
    if session.task_count or session.dataobj_count:
        extra = (f"<div style='color:#8a8f96'>not yet submitted: {session.task_count} tasks, "
                 f"{session.dataobj_count} objects</div>")
    note = f"<div style='color:#8a8f96; font-size:11px;'>states {source}</div>"
    html = rendering.progress_html(snapshot)
    # inside the box, below everything else in it
    return html[:-len("</div>")] + f"{extra}{note}</div>" if html.endswith("</div>") \
        else html + extra + note


def session_text(session, p, cycle):
    snapshot, _source = _session_snapshot(session)
    text = rendering.progress_text(snapshot)
    if session.task_count:
        text += f"\n  not yet submitted: {session.task_count} tasks"
    p.text(text)


# -- Task --------------------------------------------------------------------------------------
def _task_details(task):
    state = task.state.name if task.state is not None else "not submitted"
    info = task.info
    governor = duration = error = None
    if info is not None:
        governor, duration, error = info.governor, info.duration, info.error
    tracker = tracker_for(task.session, create=False) if task.state is not None else None
    if tracker is not None:
        live_state, live_info = tracker.task_state(task.id[1])
        names = {1: "running", 2: "finished", 3: "failed"}
        if live_state in names and (task.state is None or task.state.name not in
                                    ("finished", "failed")):
            state = names[live_state]
        if live_info is not None:
            governor = governor or live_info[0]
            duration = duration if duration is not None else live_info[1]
            error = error or live_info[2]
    return state, governor, duration, error


def task_html(task):
    state, governor, duration, error = _task_details(task)
    color = _STATE_COLORS.get(state, "#8a8f96")
    title = (f"Task {task.id[0]}/{task.id[1]} {escape(task.name or '')} "
             f"{rendering.badge(state, color)}")
    rows = [("type", escape(task.task_type)),
            ("inputs", str(len(task.inputs))), ("outputs", str(len(task.outputs))),
            ("governor", escape(governor) if governor else None),
            ("duration", rendering.format_seconds(duration) if duration is not None else None),
            ("error", f"<pre style='color:{COLORS['failed']}; margin:0; white-space:pre-wrap;'>"
                      f"{escape(error)}</pre>" if error else None)]
    return _box(title, _table(rows))


def task_text(task, p, cycle):
    state, governor, duration, error = _task_details(task)
    text = f"<Task {task.id[0]}/{task.id[1]} {task.task_type}"
    if task.name:
        text += f" {task.name!r}"
    text += f" {state}"
    if governor:
        text += f" on {governor}"
    if duration is not None:
        text += f" in {rendering.format_seconds(duration)}"
    text += ">"
    if error:
        text += "\n" + error
    p.text(text)


# -- DataObject ----------------------------------------------------------------------------------
def dataobject_html(obj):
    state = obj.state.name if obj.state is not None else "not submitted"
    info = obj.info
    rows = [("label", escape(obj.label) if obj.label else None),
            ("type", obj.data_type.to_str() if hasattr(obj.data_type, "to_str")
             else str(obj.data_type)),
            ("content type", escape(obj.content_type) if obj.content_type else None),
            ("size", _size(info.size) if info is not None and info.size is not None else None),
            ("kept", "yes" if obj.is_kept() else "no"),
            ("error", escape(info.error) if info is not None and info.error else None)]
    title = (f"DataObject {obj.id[0]}/{obj.id[1]} "
             f"{rendering.badge(state, _STATE_COLORS.get(state, '#8a8f96'))}")
    return _box(title, _table(rows))


def _size(size):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


# -- DataInstance --------------------------------------------------------------------------------
def preview(instance, limit=PREVIEW_BYTES):
    """``(kind, text)``: a safe preview. Nothing is unpickled or executed; text is cut
    to ``limit`` bytes."""
    content_type = instance.content_type or ""
    try:
        if instance.data_type == DataType.DIRECTORY:
            with tarfile.open(fileobj=io.BytesIO(instance.get_bytes()), mode="r:") as tar:
                names = tar.getnames()
            shown = names[:50]
            more = f"\n… {len(names) - 50} more" if len(names) > 50 else ""
            return "directory", "\n".join(shown) + more
        data = instance.get_bytes()
    except Exception as exc:
        return "error", f"cannot read the data: {exc}"
    head = data[:limit]
    cut = " …" if len(data) > limit else ""
    if content_type == "json" and len(data) <= 64 * 1024:
        try:
            return "json", json.dumps(json.loads(data), indent=2)[:limit] + cut
        except ValueError:
            pass
    if content_type.startswith("pickle") or content_type in ("cbor", "arrow"):
        return "binary", (f"{content_type} data, not decoded in the preview; "
                          f"use .load()\n" + _hex(head[:64]))
    try:
        return "text", head.decode("utf-8") + cut
    except UnicodeDecodeError:
        return "binary", _hex(head[:64]) + (" …" if len(data) > 64 else "")


def _hex(data):
    return " ".join(f"{b:02x}" for b in data)


def _instance_size(instance):
    try:
        return instance.size
    except Exception:
        try:
            return len(instance.get_bytes())
        except Exception:
            return None


def datainstance_html(instance):
    kind, text = preview(instance)
    size = _instance_size(instance)
    rows = [("content type", escape(instance.content_type or "none")),
            ("size", _size(size) if size is not None else None)]
    body = _table(rows) + (f"<pre style='margin:4px 0 0 0; max-height:240px; overflow:auto; "
                           f"background:#f6f7f8; padding:4px; white-space:pre-wrap;'>"
                           f"{escape(text)}</pre>")
    label = instance.spec.label if getattr(instance, "spec", None) is not None else None
    title = "DataInstance" + (f" {escape(label)}" if label else "") + \
        f" <span style='color:#8a8f96'>({kind})</span>"
    return _box(title, body)


def datainstance_text(instance, p, cycle):
    kind, text = preview(instance, 400)
    size = _instance_size(instance)
    p.text(f"<DataInstance {instance.content_type or 'no content type'}, "
           f"{_size(size) if size is not None else '? B'}>\n{text}")


# -- TaskException -------------------------------------------------------------------------------
def task_exception_parts(exc):
    """Split a TaskException message into a title, the remote error and the client
    location where the task was created."""
    lines = str(exc).splitlines() or ["Task failed"]
    title, body = lines[0], lines[1:]
    created = None
    if body and body[-1].startswith("The task was created at "):
        created = body.pop()[len("The task was created at "):]
    return title, "\n".join(body), created


def task_exception_html(title, body, created, kind="TaskException"):
    where = f"<div style='color:#8a8f96; margin-top:4px;'>created at {escape(created)}</div>" \
        if created else ""
    return (f"<div style='{rendering.BOX} border-color:{COLORS['failed']};'>"
            f"<b style='color:{COLORS['failed']}'>{kind}</b>: {escape(title)}"
            f"<pre style='margin:4px 0 0 0; white-space:pre-wrap; background:#fdf1f0; "
            f"padding:4px;'>{escape(body)}</pre>{where}</div>")


def show_task_exception(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: the remote error as HTML (plain text elsewhere),
    then a one-line error so the cell still counts as failed."""
    from IPython.display import display
    title, body, created = task_exception_parts(value)
    body = point_at_cells(shell, body)
    created = point_at_cell(shell, created)
    text = f"{etype.__name__}: {title}\n{body}" + (f"\n(created at {created})" if created
                                                   else "")
    display({"text/plain": text, "text/html": task_exception_html(title, body, created,
                                                                  etype.__name__)}, raw=True)
    stb = [f"{etype.__name__}: {title} (remote error above; %tb shows the client frames)"]
    shell._showtraceback(etype, value, stb)
    return stb


# -- registration ----------------------------------------------------------------------------------
_HTML = {Client: client_html, Session: session_html, Task: task_html,
         DataObject: dataobject_html, DataInstance: datainstance_html}
_TEXT = {Client: client_text, Session: session_text, Task: task_text,
         DataInstance: datainstance_text}


def register(shell):
    formatters = shell.display_formatter.formatters
    for cls, function in _HTML.items():
        formatters["text/html"].for_type(cls, function)
    for cls, function in _TEXT.items():
        formatters["text/plain"].for_type(cls, function)
    shell.set_custom_exc((TaskException,), show_task_exception)


def unregister(shell):
    formatters = shell.display_formatter.formatters
    for cls in _HTML:
        formatters["text/html"].pop(cls, None)
    for cls in _TEXT:
        formatters["text/plain"].pop(cls, None)
    if TaskException in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((), None)
