"""Progress and graph models, and the widgets on their traits, HTML snapshots and message
traffic. No cluster: events are fed the way the client's event thread delivers them."""
import threading
import time

import pytest

from rain.client import blob, tasks
from rain.client.session import Session
from rain_jupyter.graph_view import GraphModel
from rain_jupyter.progress import FINISHED, RUNNING, ProgressModel
from rain_jupyter.tracker import SessionTracker


def events_for(task_ids, session=1, name="t", kind="TaskFinished"):
    return [{"type": kind, "session": session, "task": t, "governor": "g:1", "name": name,
             "info": {"duration": 0.01}} for t in task_ids]


# -- ProgressModel -------------------------------------------------------------------------------
def test_progress_counts_and_folding():
    model = ProgressModel(1, "demo")
    names = {10: "load/a", 11: "load/b", 12: "load/b", 13: "fit/x/y", 14: "report"}
    model.apply([{"type": "ClientSubmit", "session": 1, "tasks": list(names),
                  "dataobjs": [], "task_names": {}}])
    assert model.totals[0] == 5
    model.apply([{"type": "TaskStarted", "session": 1, "task": t, "name": n}
                 for t, n in names.items()])
    model.apply(events_for([10, 11], name=None) + [
        {"type": "TaskFinished", "session": 1, "task": 13, "name": "fit/x/y"},
        {"type": "TaskStarted", "session": 2, "task": 14, "name": "other session"}])
    snap = model.snapshot(max_rows=12)
    assert snap["totals"] == {"total": 5, "waiting": 0, "running": 2, "finished": 3,
                              "failed": 0, "cancelled": 0}
    rows = {r["group"]: r for r in snap["rows"]}
    # the deepest level that fits: every name group in full
    assert set(rows) == {"load/a", "load/b", "fit/x/y", "report"}
    assert rows["load/b"]["total"] == 2 and rows["load/b"]["finished"] == 1
    top = {r["group"]: r for r in model.snapshot(depth=1)["rows"]}
    assert set(top) == {"load", "fit", "report"}
    assert top["load"]["total"] == 3 and top["load"]["folded"]
    assert top["load"]["finished"] == 2 and top["load"]["running"] == 1
    # too many rows for the deepest level: fold to the top level
    assert {r["group"] for r in model.snapshot(max_rows=3)["rows"]} == \
        {"load", "fit", "report"}


def test_tasks_left_in_a_failed_session_are_cancelled():
    model = ProgressModel(4)
    model.apply([{"type": "ClientSubmit", "session": 4, "tasks": [1, 2, 3, 4, 5],
                  "dataobjs": [], "task_names": {"step": 5}}])
    model.apply(events_for([1], 4, "step") + events_for([2, 3], 4, "step", "TaskStarted"))
    assert model.snapshot()["totals"]["cancelled"] == 0
    model.apply([{"type": "TaskFailed", "session": 4, "task": 2, "name": "step",
                  "info": {"error": "boom"}},
                 {"type": "SessionFailed", "session": 4, "message": "boom", "task": 2}])
    snap = model.snapshot()
    # task 3 was running and 4, 5 waiting: none of them will ever run
    assert snap["totals"] == {"total": 5, "waiting": 0, "running": 0, "finished": 1,
                              "failed": 1, "cancelled": 3}
    assert snap["rows"][0]["cancelled"] == 3 and snap["status"] == "failed"
    graph = GraphModel()
    graph.add_tasks([(t, "step", []) for t in range(1, 6)], model.state_of)
    assert graph.layout(ended=True)["nodes"][3]["state"] == "cancelled"
    assert graph.layout()["nodes"][3]["state"] == "waiting"


def test_elapsed_stops_when_the_work_ends_not_at_close(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("rain_jupyter.progress.time.time", lambda: clock[0])
    model = ProgressModel(5)
    model.apply([{"type": "ClientSubmit", "session": 5, "tasks": [1, 2], "dataobjs": [],
                  "task_names": {"t": 2}}])
    clock[0] = 101.5
    model.apply(events_for([1, 2], 5))
    assert model.snapshot()["elapsed"] == 1.5
    # more tasks in the same session: the clock runs again until they are done
    clock[0] = 110.0
    model.apply([{"type": "ClientSubmit", "session": 5, "tasks": [3], "dataobjs": [],
                  "task_names": {"t": 1}}])
    assert model.done_at is None
    clock[0] = 112.0
    model.apply(events_for([3], 5))
    clock[0] = 130.0            # the session is closed much later
    model.apply([{"type": "SessionClosed", "session": 5, "reason": "ClientClose"}])
    assert model.snapshot()["elapsed"] == 12.0


def test_progress_failure_and_more_groups_row():
    model = ProgressModel(3)
    model.apply([{"type": "ClientSubmit", "session": 3, "tasks": list(range(40)),
                  "dataobjs": [], "task_names": {}}])
    model.apply([{"type": "TaskStarted", "session": 3, "task": i, "name": f"g{i}"}
                 for i in range(40)])
    model.apply([{"type": "TaskFailed", "session": 3, "task": 7, "name": "g7",
                  "info": {"error": "boom"}},
                 {"type": "SessionFailed", "session": 3, "message": "boom", "task": 7}])
    snap = model.snapshot(max_rows=5)
    assert snap["status"] == "failed"
    assert len(snap["rows"]) == 5 and snap["rows"][-1]["group"] == "(36 more groups)"
    assert snap["rows"][-1]["total"] == 36
    assert model.task_info[7][2] == "boom"
    # nothing changes a failed task any more
    model.apply(events_for([7], session=3, name="g7"))
    assert model.state_of(7) == 3


def test_progress_register_beats_provisional_groups():
    model = ProgressModel(1)
    model.apply([{"type": "ClientSubmit", "session": 1, "tasks": [10, 11], "dataobjs": [],
                  "task_names": {"a": 1, "buildin/concat": 1}}])
    model.register([(10, "a", 0), (11, "buildin/concat", 0)])
    model.apply([{"type": "TaskStarted", "session": 1, "task": 11, "name": ""}])
    rows = {r["group"]: r for r in model.snapshot()["rows"]}
    assert set(rows) == {"a", "buildin/concat"}
    assert rows["buildin/concat"]["running"] == 1


# -- GraphModel ---------------------------------------------------------------------------------
def chain_entries(count, groups):
    entries = []
    for i in range(count):
        producers = [i - groups] if i >= groups else []
        entries.append((i, f"stage{i % groups}/t", producers))
    return entries


def test_graph_small_is_per_task():
    model = GraphModel(max_nodes=50)
    model.add_tasks(chain_entries(12, 3), lambda t: 0)
    layout = model.layout()
    assert layout["mode"] == "tasks" and len(layout["nodes"]) == 12
    assert len(layout["edges"]) == 9
    model.on_transition(0, 0, RUNNING)
    model.on_transition(0, RUNNING, FINISHED)
    assert model.layout()["nodes"][0]["state"] == "finished"


def test_graph_aggregates_by_group_then_by_level():
    model = GraphModel(max_nodes=50)
    model.add_tasks(chain_entries(1000, 10), lambda t: FINISHED if t < 500 else 0)
    layout = model.layout()
    assert layout["mode"] == "groups" and len(layout["nodes"]) == 10
    assert sum(n["total"] for n in layout["nodes"]) == 1000
    assert sum(n["finished"] for n in layout["nodes"]) == 500
    # every name distinct and more levels than nodes: ranges of levels
    model = GraphModel(max_nodes=50)
    model.add_tasks([(i, f"task-{i}", [i - 1] if i else []) for i in range(1000)],
                    lambda t: 0)
    layout = model.layout()
    assert layout["mode"] == "levels" and len(layout["nodes"]) <= 50
    assert sum(n["total"] for n in layout["nodes"]) == 1000


# -- widgets --------------------------------------------------------------------------------------
def graph_only_session(session_id, count, groups=10, chain=False):
    """A session without a server holding ``count`` Sleep tasks named stage{i%groups}/t."""
    session = Session(None, session_id)
    with session.bind_only():
        source = blob(b"x")
        made = []
        for i in range(count):
            parent = made[i - groups] if chain and i >= groups else source
            made.append(tasks.Sleep(parent, 0, name=f"stage{i % groups}/t"))
    return session, made


def submit_locally(tracker, session, made):
    objects = list(session._dataobjs)
    session._tasks, session._dataobjs = [], []
    tracker.on_submit(session, made, objects)
    tracker._on_events([{"type": "ClientSubmit", "session": session.session_id,
                         "tasks": [t.id[1] for t in made], "dataobjs": [],
                         "task_names": {}}])


def feed(tracker, session_id, task_ids, batch=50, pause=0.0):
    """Deliver started/finished events in batches from another thread (as the client's
    I/O thread does)."""
    def run():
        for start in range(0, len(task_ids), batch):
            chunk = task_ids[start:start + batch]
            tracker._on_events(events_for(chunk, session_id, name=None, kind="TaskStarted")
                               + events_for(chunk, session_id, name=None))
            if pause:
                time.sleep(pause)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_session_widget_traits_and_snapshot(comm_messages):
    from rain_jupyter.widgets import GraphWidget, ProgressWidget, SessionWidget
    session, made = graph_only_session(5, 40, groups=4, chain=True)
    tracker = SessionTracker(session)
    widget = SessionWidget(tracker)
    assert isinstance(widget.progress, ProgressWidget)
    assert isinstance(widget.graph, GraphWidget)
    submit_locally(tracker, session, made)
    assert wait_for(lambda: widget.progress.total == 40)
    assert widget.progress.status == "waiting"
    feed(tracker, 5, [t.id[1] for t in made[:30]], batch=7).join()
    assert wait_for(lambda: widget.progress.finished == 30
                    and widget.graph.finished_nodes == 30)
    assert widget.progress.bar.finished == 30 and widget.progress.bar.total == 40
    assert widget.graph.mode == "tasks" and widget.graph.nodes == 40
    assert widget.graph.finished_nodes == 30
    feed(tracker, 5, [t.id[1] for t in made[30:]]).join()
    tracker._on_events([{"type": "SessionClosed", "session": 5, "reason": "ClientClose",
                         "message": ""}])
    assert wait_for(lambda: widget.progress.status == "finished"
                    and widget.graph.finished_nodes == 40)
    assert widget.progress.bar.bar_style == "success"
    assert widget.graph.finished_nodes == 40
    assert not tracker.attached
    # the chart data are the group rows
    assert list(widget.progress.source.data["group"]) == [f"stage{i}/t" for i in
                                                          (3, 2, 1, 0)]
    assert sum(widget.progress.source.data["finished"]) == 40
    # static snapshot: final state without any script
    bundle = widget._repr_mimebundle_()
    html = bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "40/40 finished" in html and "stage3/t" in html and "<svg" in html
    assert "<script" not in html
    assert "finished, 40/40 finished" in bundle["text/plain"]
    # closed: no more updates
    flushes = widget.flushes
    tracker._on_events(events_for([made[0].id[1]], 5))
    time.sleep(0.3)
    assert widget.flushes == flushes
    assert comm_messages.messages > 0


def test_failed_session_widget():
    from rain_jupyter.widgets import SessionWidget
    session, made = graph_only_session(6, 5, groups=1)
    tracker = SessionTracker(session)
    submit_locally(tracker, session, made)
    widget = SessionWidget(tracker)
    tracker._on_events([
        {"type": "TaskFailed", "session": 6, "task": made[2].id[1], "name": "stage0/t",
         "info": {"error": "Program 'x' <exited>"}},
        {"type": "SessionFailed", "session": 6, "message": "Program 'x' <exited>",
         "task": made[2].id[1]}])
    assert wait_for(lambda: widget.progress.status == "failed")
    assert widget.progress.failed == 1 and widget.progress.bar.bar_style == "danger"
    html = widget.snapshot_html()
    assert "Program &#x27;x&#x27; &lt;exited&gt;" in html


def test_updates_are_throttled(comm_messages):
    from rain_jupyter.widgets import SessionWidget
    session, made = graph_only_session(8, 2000, groups=10)
    tracker = SessionTracker(session)
    submit_locally(tracker, session, made)
    widget = SessionWidget(tracker)
    comm_messages.reset()
    started = time.monotonic()
    feed(tracker, 8, [t.id[1] for t in made], batch=10, pause=0.002).join()
    assert wait_for(lambda: widget.progress.finished == 2000)
    elapsed = time.monotonic() - started
    # at most ~2 redraws per second, however many event batches arrived
    assert widget.interval == 0.5
    assert widget.flushes <= elapsed / widget.interval + 3
    per_flush = comm_messages.messages / max(1, widget.flushes)
    assert per_flush < 20


@pytest.mark.timeout(600)     # building 100,000 tasks takes minutes on a loaded machine
def test_100k_tasks_bounded_messages(comm_messages):
    """100,000 tasks: the graph view aggregates, and the message count depends on the
    run time (<= 2 redraws/s), not on the number of tasks or events."""
    from rain_jupyter.widgets import SessionWidget
    count = 100_000
    session, made = graph_only_session(9, count, groups=10, chain=True)
    tracker = SessionTracker(session)
    submit_locally(tracker, session, made)
    widget = SessionWidget(tracker)
    assert widget.graph.mode == "groups" and widget.graph.nodes == 10
    comm_messages.reset()
    started = time.monotonic()
    ids = [t.id[1] for t in made]
    feed(tracker, 9, ids, batch=200, pause=0.003).join()
    assert wait_for(lambda: widget.progress.finished == count
                    and widget.graph.fraction_finished == 1.0, timeout=400)
    elapsed = time.monotonic() - started
    assert widget.flushes <= elapsed / widget.interval + 3
    # the bound: a handful of messages per redraw, whatever the task count
    assert comm_messages.messages <= 12 * (elapsed / widget.interval + 3)
    assert comm_messages.bytes / max(1, comm_messages.messages) < 20_000
    assert widget.graph.fraction_finished == 1.0
    assert len(widget.snapshot_html()) < 100_000
    stats = widget.latency_stats
    assert stats["count"] > 0      # redraws were timed (how fast: a benchmark's business)


def test_group_rows_follow_task_creation_order_even_when_events_come_first():
    """Events of later tasks may reach the model before the submit registers the graph;
    the rows still come in the order the tasks were created."""
    model = ProgressModel(session_id=5)
    model.apply([{"type": "TaskStarted", "session": 5, "task": 13, "name": "stage3/part"},
                 {"type": "TaskStarted", "session": 5, "task": 11, "name": "stage1/part"}])
    model.register([(10, "stage0/part", 0), (11, "stage1/part", 0), (12, "stage2/part", 0),
                    (13, "stage3/part", 0), (14, "join", 0)])
    assert [r["group"] for r in model.snapshot()["rows"]] == [
        "stage0/part", "stage1/part", "stage2/part", "stage3/part", "join"]


def test_graph_labels_do_not_overlap_at_100k_tasks():
    from rain.dashboard.charts import GRAPH_WIDTH_ESTIMATE, label_box
    from rain_jupyter.widgets import graph_frame, graph_labels
    graph = GraphModel()
    # 100,000 tasks: 70 groups of maps, each reduced by one task of a group of its own
    entries = []
    for group in range(70):
        maps = [group * 10_000 + i for i in range(1400)]
        entries += [(t, f"map/{group}", []) for t in maps]
        entries.append((group * 10_000 + 9999, f"reduce/{group}", maps[:3]))
    entries += [(10 ** 6 + i, "extra", []) for i in range(100_000 - len(entries))]
    graph.add_tasks(entries, lambda task_id: 0)
    layout = graph.layout()
    assert layout["tasks"] == 100_000 and layout["mode"] == "groups"
    labels = graph_labels(layout, 320)
    assert 10 <= len(labels["text"]) < len(layout["nodes"])
    # the chosen labels do not overlap at the chart's scale
    (x0, x1), (y0, y1) = graph_frame(layout)
    scale = (GRAPH_WIDTH_ESTIMATE / (x1 - x0), (320 - 40) / (y1 - y0))
    boxes = [label_box((x, y), text, scale, (x0, y0))
             for x, y, text in zip(labels["x"], labels["y"], labels["text"])]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_live_graph_widget_draws_labels():
    from rain_jupyter.widgets import GraphWidget
    session, made = graph_only_session(7, 30, groups=3, chain=True)
    tracker = SessionTracker(session)
    widget = GraphWidget(tracker)
    submit_locally(tracker, session, made)
    assert wait_for(lambda: widget.nodes == 30)
    assert wait_for(lambda: widget.labels > 0)
    assert set(widget.label_source.data["text"]) <= {n["label"] for n in
                                                     widget._layout["nodes"]}
