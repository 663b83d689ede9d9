"""The REST API against a real server: inspection, a graph run end to end (also by curl),
and clear 4xx errors for bad requests."""
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from rain.client import blob, tasks

HELLO = {
    "objects": [{"id": 10, "data": "Hello "}, {"id": 11, "data": "world!"}],
    "tasks": [{"id": 12, "type": "buildin/concat", "inputs": [10, 11], "name": "hello/concat",
               "outputs": [{"id": 13, "label": "greeting", "keep": True,
                            "content_type": "text"}]}],
}


@pytest.fixture
def api(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}/api"
    auth = cluster.http_headers

    class Api:
        url = base
        headers = auth

        def get(self, path, **kw):
            return requests.get(base + path, timeout=30, headers=auth, **kw)

        def post(self, path, body=None, **kw):
            return requests.post(base + path, json=body, timeout=30, headers=auth, **kw)

        def delete(self, path):
            return requests.delete(base + path, timeout=30, headers=auth)

    return Api()


def new_session(api, name="rest test"):
    r = api.post("/sessions", {"name": name})
    assert r.status_code == 201, r.text
    return r.json()["session"]


def test_hello_world_through_rest(api):
    sid = new_session(api)
    r = api.post(f"/sessions/{sid}/submit", HELLO)
    assert r.status_code == 200, r.text
    assert r.json() == {"session": sid, "tasks": [12], "objects": [10, 11, 13]}
    r = api.post(f"/sessions/{sid}/wait", {})
    assert r.status_code == 200 and r.json()["finished"] is True
    r = api.get(f"/sessions/{sid}/objects/13/data")
    assert r.status_code == 200 and r.content == b"Hello world!"
    assert r.headers["X-Rain-Content-Type"] == "text"
    assert r.headers["Content-Type"].startswith("text/plain")
    # a constant is served by the server itself
    r = api.get(f"/sessions/{sid}/objects/10/data")
    assert r.status_code == 400 and "not kept" in r.json()["error"]
    task = api.get(f"/sessions/{sid}/tasks/12").json()
    assert task["state"] == "finished" and task["task_type"] == "buildin/concat"
    assert task["inputs"] == [{"id": 10, "label": None}, {"id": 11, "label": None}]
    assert task["governor"] and task["duration"] >= 0
    obj = api.get(f"/sessions/{sid}/objects/13").json()
    assert obj["state"] == "finished" and obj["size"] == 12 and obj["producer"] == 12
    assert {o["id"] for o in api.get(f"/sessions/{sid}/objects").json()} >= {13}
    graph = api.get(f"/sessions/{sid}/graph").json()
    assert graph["nodes"][0]["id"] == 12 and graph["edges"] == []
    session = api.get(f"/sessions/{sid}").json()
    assert session["finished"] == 1 and session["rest"] is True
    assert session["groups"][0]["path"] == "hello"
    r = api.delete(f"/sessions/{sid}")
    assert r.status_code == 200 and r.json()["closed"] is True
    assert api.get(f"/sessions/{sid}").json()["status"] == "closed"
    r = api.post(f"/sessions/{sid}/wait", {})
    assert r.status_code == 409 and "closed" in r.json()["error"]


def test_curl_runs_the_hello_world_pipeline(api):
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("the docs' curl example needs curl (.ci/run installs it)")
        pytest.skip("no curl")

    def curl(*args):
        auth = [item for name, value in api.headers.items()
                for item in ("-H", f"{name}: {value}")]
        out = subprocess.run(["curl", "-sS", "--fail-with-body", *auth, *args],
                             capture_output=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    sid = json.loads(curl("-X", "POST", "-H", "Content-Type: application/json",
                          "-d", '{"name": "curl"}', f"{api.url}/sessions"))["session"]
    curl("-X", "POST", "-d", json.dumps(HELLO), f"{api.url}/sessions/{sid}/submit")
    curl("-X", "POST", f"{api.url}/sessions/{sid}/wait")
    assert curl(f"{api.url}/sessions/{sid}/objects/13/data") == b"Hello world!"
    assert json.loads(curl("-X", "DELETE", f"{api.url}/sessions/{sid}"))["closed"] is True


def test_executor_tasks_labels_base64_json_and_wait_subsets(api):
    sid = new_session(api)
    graph = {
        "objects": [{"id": 10, "data": {"base64": "AAEC"}, "label": "raw"},
                    {"id": 11, "data": {"json": {"a": 1}}}],
        "tasks": [
            {"id": 20, "type": "buildin/sleep", "config": {"seconds": 0.2},
             "inputs": [{"id": 10, "label": "in"}], "outputs": [{"id": 21, "keep": True}]},
            {"id": 22, "type": "buildin/concat", "inputs": [21, 11],
             "outputs": [{"id": 23, "keep": True}], "name": "join"},
        ],
    }
    assert api.post(f"/sessions/{sid}/submit", graph).status_code == 200
    r = api.post(f"/sessions/{sid}/wait", {"tasks": [20]})
    assert r.status_code == 200
    assert api.get(f"/sessions/{sid}/objects/21/data").content == b"\x00\x01\x02"
    r = api.post(f"/sessions/{sid}/wait", {"objects": [23]})
    assert r.status_code == 200
    assert api.get(f"/sessions/{sid}/objects/23/data").content == b'\x00\x01\x02{"a": 1}'
    graph = api.get(f"/sessions/{sid}/graph").json()
    assert {"from": 20, "to": 22, "object": 21} in graph["edges"]
    listed = api.get(f"/sessions/{sid}/tasks", params={"state": "finished"}).json()
    assert {t["task"] for t in listed} == {20, 22}
    assert [t["task"] for t in api.get(f"/sessions/{sid}/tasks",
                                       params={"name": "join"}).json()] == [22]
    r = api.post(f"/sessions/{sid}/unkeep", {"objects": [21]})
    assert r.status_code == 200
    # A later submit may use kept objects of an earlier one.
    more = {"objects": [], "tasks": [{"id": 30, "type": "buildin/concat", "inputs": [23, 23],
                                      "outputs": [{"id": 31, "keep": True}]}]}
    assert api.post(f"/sessions/{sid}/submit", more).status_code == 200
    assert api.get(f"/sessions/{sid}/objects/31/data").content == b'\x00\x01\x02{"a": 1}' * 2


def test_wait_timeout_and_failed_session(api):
    sid = new_session(api)
    slow = {"objects": [{"id": 10, "data": "x"}],
            "tasks": [{"id": 11, "type": "buildin/sleep", "config": {"seconds": 60},
                       "inputs": [10], "outputs": [{"id": 12, "keep": True}]}]}
    assert api.post(f"/sessions/{sid}/submit", slow).status_code == 200
    r = api.post(f"/sessions/{sid}/wait?timeout=0.2", {})      # answered long before 60 s
    assert r.status_code == 408 and "not finished" in r.json()["error"]
    r = api.post(f"/sessions/{sid}/wait?timeout=abc", {})
    assert r.status_code == 400
    sid2 = new_session(api, "failing")
    bad = {"tasks": [{"id": 10, "type": "buildin/open", "config": {"path": "/nonexistent/rain"},
                      "outputs": [{"id": 11, "keep": True}], "name": "load"}]}
    assert api.post(f"/sessions/{sid2}/submit", bad).status_code == 200
    r = api.post(f"/sessions/{sid2}/wait", {})
    assert r.status_code == 409
    assert "session failed" in r.json()["error"] and r.json()["task"] == 10
    r = api.get(f"/sessions/{sid2}/objects/11/data")
    assert r.status_code == 409
    session = api.get(f"/sessions/{sid2}").json()
    assert session["status"] == "failed" and session["failed"] == 1
    assert api.delete(f"/sessions/{sid2}").status_code == 200


def test_inspection_of_a_python_client_run(cluster, api):
    client = cluster.client()
    with client.new_session("python client") as session:
        ts = [tasks.Concat([blob(b"a"), blob(b"b")], name=f"grp/t{i % 2}") for i in range(6)]
        session.submit()
        session.wait_all()
        sid = session.session_id
        sessions = {s["session"]: s for s in api.get("/sessions").json()}
        assert sessions[sid]["name"] == "python client"
        assert sessions[sid]["finished"] == 6 and sessions[sid]["rest"] is False
        groups = {g["path"]: g for g in api.get(f"/sessions/{sid}/groups").json()}
        assert groups["grp"]["tasks"] == 6 and groups["grp/t0"]["finished"] == 3
        tasks_ = api.get(f"/sessions/{sid}/tasks", params={"limit": 2, "offset": 1}).json()
        assert [t["task"] for t in tasks_] == [ts[1].id[1], ts[2].id[1]]
        # Another client's session can be looked at, not changed.
        r = api.post(f"/sessions/{sid}/submit", HELLO)
        assert r.status_code == 403 and "REST" in r.json()["error"]
        assert api.delete(f"/sessions/{sid}").status_code == 403
    governors = api.get("/governors").json()
    assert len(governors) == 1 and governors[0]["cpus"] == 2 and governors[0]["alive"]
    gid = governors[0]["governor"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = api.get(f"/governors/{gid}").json()
        if detail["monitoring"]["time"]:
            break
        time.sleep(0.3)
    assert detail["monitoring"]["cpu_usage"] and detail["finished"] == 6
    events = api.get("/events", params={"type": ["SessionNew", "SessionClosed"],
                                        "session": sid}).json()
    assert [e["event"]["type"] for e in events] == ["SessionNew", "SessionClosed"]
    after = api.get("/events", params={"after": events[0]["id"], "limit": 1}).json()
    assert len(after) == 1 and after[0]["id"] > events[0]["id"]


@pytest.mark.parametrize("method,path,body,status,message", [
    ("get", "/sessions/999", None, 404, "no session 999"),
    ("get", "/sessions/999/tasks", None, 404, "no session"),
    ("get", "/governors/1.2.3.4:5", None, 404, "no governor"),
    ("get", "/nothing/here", None, 404, "no such endpoint"),
    ("put", "/sessions", None, 405, "not allowed"),
    ("delete", "/governors", None, 405, "not allowed"),
    ("post", "/sessions", b"{not json", 400, "invalid JSON"),
    ("post", "/sessions", [1, 2], 400, "JSON object"),
    ("post", "/sessions", {"name": 5}, 400, "'name'"),
    ("post", "/sessions", {"nme": "x"}, 400, "unknown field"),
    ("get", "/events?limit=x", None, 400, "'limit'"),
])
def test_bad_requests_get_clear_4xx(api, method, path, body, status, message):
    kwargs = {}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    r = requests.request(method.upper(), api.url + path, timeout=30, headers=api.headers,
                         **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize("graph,message", [
    ({"tasks": "x"}, "must be lists"),
    ({"stuff": []}, "unknown field"),
    ({"tasks": [{"id": 10}]}, "missing task type"),
    ({"tasks": [{"id": "ten", "type": "buildin/concat"}]}, "tasks[0].id: expected an integer"),
    ({"tasks": [{"id": 10, "type": "buildin/concat", "inputs": [99]}]}, "unknown input"),
    ({"tasks": [{"id": 10, "type": "buildin/concat", "inputs": [{"id": 5, "x": 1}]}]},
     "unknown field"),
    ({"objects": [{"id": 3, "data": "x"}]}, "ids start at 10"),
    ({"objects": [{"id": 10, "data": {"base64": "!!"}}]}, "invalid base64"),
    ({"objects": [{"id": 10, "data": 5}]}, "objects[0].data"),
    ({"objects": [{"id": 10}]}, "no data and no task produces it"),
    ({"objects": [{"id": 10, "data": "x"}, {"id": 10, "data": "y"}]}, "Duplicate id"),
    ({"tasks": [{"id": 10, "type": "buildin/concat", "inputs": [13], "outputs": [{"id": 11}]},
                {"id": 12, "type": "buildin/concat", "inputs": [11], "outputs": [{"id": 13}]}]},
     "cycle"),
    ({"tasks": [{"id": 10, "type": "t", "outputs": [{"id": 11, "data": "x"}]}]},
     "cannot have data"),
    ({"tasks": [{"id": 10, "type": "t", "resources": {"gpu": -1}}]}, "resources"),
])
def test_bad_graphs_are_rejected_with_the_reason(api, graph, message):
    sid = new_session(api)
    r = api.post(f"/sessions/{sid}/submit", graph)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    # nothing of a rejected submit was applied: a good one still works
    assert api.post(f"/sessions/{sid}/submit", HELLO).status_code == 200
    assert api.post(f"/sessions/{sid}/wait", {}).status_code == 200


def test_unknown_ids_in_an_open_session(api):
    sid = new_session(api)
    assert api.post(f"/sessions/{sid}/submit", HELLO).status_code == 200
    r = api.post(f"/sessions/{sid}/wait", {"tasks": [77]})
    assert r.status_code == 404 and "Unknown task 77" in r.json()["error"]
    r = api.get(f"/sessions/{sid}/objects/77/data")
    assert r.status_code == 404
    assert api.get(f"/sessions/{sid}/objects/77").status_code == 404
    assert api.get(f"/sessions/{sid}/tasks/77").status_code == 404
    r = api.post(f"/sessions/{sid}/wait", {"tasks": ["a"]})
    assert r.status_code == 400 and "tasks[0]" in r.json()["error"]
    r = api.get(f"/sessions/{sid}/tasks", params={"state": "sleeping"})
    assert r.status_code == 400
    r = api.post(f"/sessions/{sid}/submit", None)
    assert r.status_code == 400 and "JSON object body" in r.json()["error"]
