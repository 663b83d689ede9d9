"""Allocations as the server knows them: reports of an autoscaler's batch jobs become
events, the run model folds them (with the governors each job brought), the REST API lists
them and refuses bad reports, and the dashboard's allocations chart shows them."""
import pytest
import requests

from rain.dashboard.charts import make_charts
from rain.server.allocations import Reports, parse_report
from rain.server.errors import RequestError
from rain.server.run_model import RunModel


def report(job, state, **extra):
    return parse_report({"allocation": job, "scheduler": "slurm", "state": state, **extra})


def test_reports_become_events_of_the_transitions_only():
    reports = Reports()
    assert [e["type"] for e in reports.events(report("7", "queued"))] == \
        ["AllocationSubmitted"]
    assert reports.events(report("7", "queued")) == []
    started = reports.events(report("7", "running", nodes=["node1"], addresses=["10.1.0.2"]))
    assert started == [{"type": "AllocationStarted", "allocation": "7", "scheduler": "slurm",
                        "nodes": ["node1"], "addresses": ["10.1.0.2"]}]
    ended = reports.events(report("7", "ended", reason="idle"))
    assert [(e["type"], e["reason"]) for e in ended] == [("AllocationEnded", "idle")]
    # An ended job stays ended; a job first seen running was submitted too.
    assert reports.events(report("7", "running")) == []
    assert [e["type"] for e in reports.events(report("8", "running"))] == \
        ["AllocationSubmitted", "AllocationStarted"]


@pytest.mark.parametrize("body, message", [
    ([], "JSON object"),
    ({"allocation": "1", "state": "done"}, "'state' must be one of"),
    ({"state": "queued"}, "'allocation' must be"),
    ({"allocation": "1", "state": "queued", "nodes": "node1"}, "'nodes' must be a list"),
    ({"allocation": "1", "state": "queued", "color": 1}, "unknown field(s): color"),
])
def test_bad_reports_are_refused_with_the_reason(body, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_report(body)


def test_model_knows_the_governors_each_allocation_brought():
    model = RunModel()
    model.feed({"type": "GovernorNew", "governor": "10.1.0.1:9000", "cpus": 2}, 100.0)
    reports = Reports()
    for event in reports.events(report("7", "queued")):
        model.feed(event, 101.0)
    # The governor registers before the start is seen by the autoscaler...
    model.feed({"type": "GovernorNew", "governor": "10.1.0.2:9001", "cpus": 1}, 102.0)
    for event in reports.events(report("7", "running", nodes=["node1"],
                                       addresses=["10.1.0.2"])):
        model.feed(event, 103.0)
    # ...or after it.
    for event in reports.events(report("8", "running", nodes=["node2"],
                                       addresses=["10.1.0.3"])):
        model.feed(event, 104.0)
    model.feed({"type": "GovernorNew", "governor": "10.1.0.3:9002", "cpus": 1}, 105.0)
    for event in reports.events(report("7", "ended", reason="idle")):
        model.feed(event, 110.0)
    listed = {a["allocation"]: a for a in model.allocations.to_json()}
    assert listed["7"]["state"] == "ended" and listed["7"]["since"] == 110.0
    assert listed["7"]["governors"] == ["10.1.0.2:9001"]
    assert listed["7"]["submitted"] == 101.0 and listed["7"]["started"] == 103.0
    assert listed["8"]["state"] == "running" and listed["8"]["nodes"] == ["node2"]
    assert listed["8"]["governors"] == ["10.1.0.3:9002"]
    assert model.allocations.counts() == {"queued": 0, "running": 1, "ended": 1}

    chart = make_charts()["allocations"]
    data = chart.data(model, None)
    rows = data["sources"]["allocations"]["data"]
    assert rows["allocation"] == ["8", "7"] and rows["state"] == ["running", "ended"]
    assert rows["governors"] == ["10.1.0.3:9002", "10.1.0.2:9001"]
    assert data["props"]["allocations-summary"]["text"].startswith(
        "2 allocations: 0 queued, 1 running, 1 ended")


def test_rest_lists_reported_allocations_and_refuses_bad_reports(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}/api"
    headers = cluster.http_headers

    def post(body):
        return requests.post(base + "/allocations", json=body, headers=headers, timeout=30)

    assert requests.get(base + "/allocations", headers=headers, timeout=30).json() == []
    assert post({"allocation": "41", "scheduler": "slurm", "state": "queued"}).ok
    r = post({"allocation": "41", "scheduler": "slurm", "state": "running",
              "nodes": ["node1"], "addresses": ["10.9.0.2"]})
    assert r.status_code == 200, r.text
    r = post({"allocation": "41", "state": "sleeping"})
    assert r.status_code == 400 and "'state' must be one of" in r.json()["error"]
    r = requests.post(base + "/allocations", json={"allocation": "41", "state": "queued"},
                      timeout=30)
    assert r.status_code in (401, 403)
    listed = requests.get(base + "/allocations", headers=headers, timeout=30).json()
    assert [(a["allocation"], a["state"], a["nodes"]) for a in listed] == \
        [("41", "running", ["node1"])]
    events = requests.get(base + "/events", headers=headers, timeout=30,
                          params={"type": "AllocationStarted"}).json()
    assert events and "10.9.0.2" in str(events)
