"""Recovery events (a task run again, objects recomputed, a governor lost) as the live
widgets and the dashboard's model show them."""
from rain.server.run_model import RunModel
from rain_jupyter.progress import FINISHED, RUNNING, WAITING, ProgressModel
from rain_jupyter.rendering import progress_header_html


def events():
    return [
        {"type": "GovernorNew", "governor": "g1", "cpus": 1, "resources": {}},
        {"type": "SessionNew", "session": 1, "client": 1, "spec": {"name": "s"}},
        {"type": "ClientSubmit", "session": 1, "tasks": [10, 11], "dataobjs": [],
         "task_names": {"work": 2}},
        {"type": "TaskStarted", "session": 1, "task": 10, "governor": "g1", "name": "work"},
        {"type": "TaskFinished", "session": 1, "task": 10, "governor": "g1", "name": "work",
         "info": {"duration": 0.1}},
        {"type": "TaskStarted", "session": 1, "task": 11, "governor": "g1", "name": "work"},
        {"type": "GovernorRemoved", "governor": "g1", "reason": "connection lost"},
        {"type": "GovernorLost", "governor": "g1", "reason": "connection lost", "tasks": 1,
         "objects": 1},
        {"type": "ObjectsRecomputed", "session": 1, "reason": "governor g1 was lost",
         "objects": [20], "tasks": [10]},
        {"type": "TaskRetried", "session": 1, "task": 11, "name": "work", "attempt": 2,
         "reason": "governor: connection lost"},
    ]


def test_widget_shows_retried_and_recomputed_tasks_waiting_again():
    model = ProgressModel(session_id=1)
    model.apply(events()[:6])
    assert model.state_of(10) == FINISHED and model.state_of(11) == RUNNING
    model.apply(events()[6:])
    assert model.state_of(10) == WAITING and model.state_of(11) == WAITING
    snapshot = model.snapshot()
    assert snapshot["recovery"] == {"retried": 1, "recomputed": 1, "governors_lost": 1}
    assert "1 retried, 1 recomputed" in progress_header_html(snapshot)


def test_dashboard_model_counts_recoveries_per_session():
    model = RunModel()
    for event in events():
        model.feed(event)
    session = model.sessions[1].to_json()
    assert (session["retried"], session["recomputed"]) == (1, 1)
    assert model.governors["g1"].reason == "connection lost"


def test_widget_shows_tasks_no_governor_can_run_until_one_joins():
    model = ProgressModel(session_id=1)
    model.apply(events()[:3])
    model.apply([{"type": "TasksUnschedulable", "session": 1, "tasks": [10, 11],
                  "count": 2, "reason": "no governor is connected", "timeout": 60}])
    header = progress_header_html(model.snapshot())
    assert "2 task(s) cannot run now: no governor is connected" in header
    assert "within 60 s" in header
    model.apply([{"type": "TasksSchedulable", "session": 1}])
    assert "cannot run" not in progress_header_html(model.snapshot())


def test_dashboard_model_lists_recoveries_over_time():
    model = RunModel()
    for when, event in enumerate(events()):
        model.feed(event, 1000.0 + when)
    model.feed({"type": "TasksUnschedulable", "session": 1, "tasks": [12], "count": 1,
                "reason": "governor g1 was lost, and no governor is connected",
                "timeout": None}, 1010.0)
    rows = [(when, kind, sid) for when, kind, sid, _subject, _reason in model.recoveries]
    assert rows == [(1007.0, "governor lost", None), (1008.0, "objects recomputed", 1),
                    (1009.0, "task retried", 1), (1010.0, "tasks unschedulable", 1)]
    assert "task 11 (work), run 2" in model.recoveries[2][3]
    assert "waiting for a governor that can" in model.recoveries[3][4]
