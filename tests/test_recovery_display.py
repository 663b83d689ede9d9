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
