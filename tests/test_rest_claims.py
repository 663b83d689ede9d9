"""What docs/rest-api.md promises, reply by reply, against a real server: the endpoint
list, directories as tar, timeouts, 405 with the allowed methods, removed governors,
truncated graphs, monitoring samples, external programs through REST, closing twice."""
import io
import os
import re
import signal
import tarfile

import pytest
import requests

from rain_cluster import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "rest-api.md")


class Api:
    def __init__(self, cluster):
        self.url = f"http://127.0.0.1:{cluster.http_port}/api"
        self.headers = cluster.http_headers

    def request(self, method, path, body=None, **kw):
        return requests.request(method, self.url + path, json=body, headers=self.headers,
                                timeout=60, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def session(self, graph=None):
        r = self.post("/sessions", {"name": "claims"})
        assert r.status_code == 201, r.text
        sid = r.json()["session"]
        if graph is not None:
            r = self.post(f"/sessions/{sid}/submit", graph)
            assert r.status_code == 200, r.text
        return sid


@pytest.fixture
def api(cluster):
    return Api(cluster)


def documented_endpoints():
    """``METHOD /api/...`` as the docs list them, query strings and options cut off."""
    with open(DOCS) as f:
        text = f.read()
    found = set()
    for method, path in re.findall(r"`(GET|POST|DELETE|PUT) (/api/[^`\s]*)", text):
        path = re.split(r"[?\[]", path)[0]
        found.add(f"{method} {path}")
    return found


def test_get_api_lists_every_documented_endpoint(api):
    r = api.get("")
    assert r.status_code == 200
    listed = set(r.json()["endpoints"])
    documented = documented_endpoints()
    assert len(documented) >= 15, documented
    assert documented <= listed, documented - listed
    assert r.json()["docs"] == "docs/rest-api.md"


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/sessions", ["GET", "POST"]),
    ("DELETE", "/governors", ["GET"]),
    ("POST", "/sessions/1", ["GET", "DELETE"]),
    ("GET", "/sessions/1/submit", ["POST"]),
])
def test_405_lists_the_allowed_methods(api, method, path, allowed):
    r = api.request(method, path)
    assert r.status_code == 405, r.text
    assert sorted(r.json()["allowed"]) == sorted(allowed)
    assert method in r.json()["error"]


def test_a_directory_comes_as_a_tar_archive_with_its_headers(api):
    graph = {
        "objects": [{"id": 10, "data": "first"}, {"id": 11, "data": {"base64": "AAEC"}}],
        "tasks": [{"id": 12, "type": "buildin/make_directory", "inputs": [10, 11],
                   "config": {"paths": ["a.txt", "sub/b.bin"]},
                   "outputs": [{"id": 13, "keep": True, "data_type": "directory"}]}],
    }
    sid = api.session(graph)
    r = api.get(f"/sessions/{sid}/objects/13/data")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/x-tar"
    assert r.headers["X-Rain-Data-Type"] == "directory"
    assert "X-Rain-Content-Type" in r.headers
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        files = {m.name.removeprefix("./"): tar.extractfile(m).read()
                 for m in tar.getmembers() if m.isfile()}
    assert files == {"a.txt": b"first", "sub/b.bin": b"\x00\x01\x02"}
    blob = api.get(f"/sessions/{sid}/objects/13")
    assert blob.json()["data_type"] == "directory"


def test_data_with_a_timeout_answers_408_and_the_work_goes_on(api):
    graph = {"objects": [{"id": 10, "data": "x"}],
             "tasks": [{"id": 11, "type": "buildin/sleep", "config": {"seconds": 120},
                        "inputs": [10], "outputs": [{"id": 12, "keep": True}]}]}
    sid = api.session(graph)
    wait_for("the sleeping task running",
             lambda: api.get(f"/sessions/{sid}/tasks/11").json()["state"] == "running")
    r = api.get(f"/sessions/{sid}/objects/12/data", params={"timeout": "0.3"})
    assert r.status_code == 408, r.text
    assert "not finished" in r.json()["error"]
    assert api.get(f"/sessions/{sid}/tasks/11").json()["state"] == "running"
    assert api.get(f"/sessions/{sid}").json()["status"] == "open"
    r = api.get(f"/sessions/{sid}/objects/12/data", params={"timeout": "soon"})
    assert r.status_code == 400 and "timeout" in r.json()["error"]
    assert api.request("DELETE", f"/sessions/{sid}").status_code == 200


def test_closing_a_session_twice_is_fine(api):
    sid = api.session({"objects": [{"id": 10, "data": "x"}],
                       "tasks": [{"id": 11, "type": "buildin/sleep",
                                  "config": {"seconds": 120}, "inputs": [10],
                                  "outputs": [{"id": 12}]}]})
    for _ in range(2):
        r = api.request("DELETE", f"/sessions/{sid}")
        assert r.status_code == 200, r.text
        assert r.json() == {"session": sid, "closed": True}
    assert api.get(f"/sessions/{sid}").json()["status"] == "closed"


def test_graph_limit_truncates(api):
    graph = {"objects": [{"id": 10, "data": "x"}],
             "tasks": [{"id": 20 + i, "type": "buildin/concat", "inputs": [10],
                        "outputs": [{"id": 40 + i}]} for i in range(5)]}
    sid = api.session(graph)
    whole = api.get(f"/sessions/{sid}/graph").json()
    assert len(whole["nodes"]) == 5 and whole["truncated"] is False
    cut = api.get(f"/sessions/{sid}/graph", params={"limit": 2}).json()
    assert len(cut["nodes"]) == 2 and cut["truncated"] is True
    exact = api.get(f"/sessions/{sid}/graph", params={"limit": 5}).json()
    assert len(exact["nodes"]) == 5 and exact["truncated"] is False


def test_buildin_run_through_rest(api):
    graph = {
        "objects": [{"id": 10, "data": "hello rest\n"}],
        "tasks": [{"id": 11, "type": "buildin/run", "inputs": [{"id": 10, "label": "in"}],
                   "config": {"args": ["sh", "-c", "tr a-z A-Z < in > out"],
                              "in_paths": [{"path": "in", "write": False}],
                              "out_paths": ["out"]},
                   "outputs": [{"id": 12, "keep": True, "content_type": "text"}]}],
    }
    sid = api.session(graph)
    assert api.post(f"/sessions/{sid}/wait").status_code == 200
    r = api.get(f"/sessions/{sid}/objects/12/data")
    assert r.status_code == 200 and r.content == b"HELLO REST\n"
    # Bad configs of buildin/run are refused at submit.
    bad = {"tasks": [{"id": 20, "type": "buildin/run", "config": {"args": []},
                      "outputs": [{"id": 21}]}]}
    r = api.post(f"/sessions/{sid}/submit", bad)
    assert r.status_code == 400 and "args" in r.json()["error"]


def test_samples_takes_the_last_n(api):
    gid = api.get("/governors").json()[0]["governor"]
    detail = wait_for("three monitoring samples", lambda: (
        lambda d: d if len(d["monitoring"]["time"]) >= 3 else None)(
            api.get(f"/governors/{gid}").json()))
    times = detail["monitoring"]["time"]
    assert len(detail["monitoring"]["cpu_usage"]) == len(times)
    two = api.get(f"/governors/{gid}", params={"samples": 2}).json()["monitoring"]
    assert len(two["time"]) == 2 and len(two["cpu_usage"]) == 2 and len(two["mem_usage"]) == 2
    assert two["time"] == sorted(two["time"]) and two["time"][0] >= times[-2]
    assert api.get(f"/governors/{gid}", params={"samples": 0}).json()["monitoring"] == {
        "time": [], "cpu_usage": [], "mem_usage": []}
    r = api.get(f"/governors/{gid}", params={"samples": "many"})
    assert r.status_code == 400 and "samples" in r.json()["error"]


def test_removed_governors_stay_listed_not_alive(make_cluster):
    cluster = make_cluster([1, 1])
    api = Api(cluster)
    governors = wait_for("two governors", lambda: (
        lambda gs: gs if len(gs) == 2 else None)(api.get("/governors").json()))
    assert all(g["alive"] for g in governors)
    before = {g["governor"] for g in governors}
    victim = cluster.governor_processes[1]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    gone = wait_for("a governor listed as not alive", lambda: [
        g for g in api.get("/governors").json() if not g["alive"]])
    listed = api.get("/governors").json()
    assert {g["governor"] for g in listed} == before
    assert len(gone) == 1 and gone[0]["removed"] and gone[0]["reason"]
    detail = api.get(f"/governors/{gone[0]['governor']}").json()
    assert detail["alive"] is False


def test_task_lists_default_to_1000_and_give_at_most_10000(api):
    count = 10_005
    graph = {"objects": [{"id": 10, "data": "x"}],
             "tasks": [{"id": 11 + 2 * i, "type": "buildin/concat", "inputs": [10],
                        "outputs": [{"id": 12 + 2 * i}]} for i in range(count)]}
    sid = api.session(graph)
    listed = api.get(f"/sessions/{sid}/tasks").json()
    assert len(listed) == 1000 and listed[0]["task"] == 11
    assert len(api.get(f"/sessions/{sid}/tasks", params={"limit": 50000}).json()) == 10_000
    rest = api.get(f"/sessions/{sid}/tasks", params={"offset": 10_000, "limit": 50000}).json()
    assert [t["task"] for t in rest] == [11 + 2 * i for i in range(10_000, count)]
    assert len(api.get(f"/sessions/{sid}/objects").json()) == 1000
    assert len(api.get(f"/sessions/{sid}/objects", params={"limit": 50000}).json()) == 10_000
