"""The dashboard in a real headless Chromium: live during a run, after it, and post mortem
from a copied events.db; plus the run model and the static report."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from rain.auth import with_token
from rain.client import blob, tasks

pytest.importorskip("bokeh")
playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "test-artifacts")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Debian chromium is not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A fresh Chromium profile; records console errors and page errors per page."""

    def __init__(self, tmp_path):
        self._pw = playwright_api.sync_playwright().start()
        self.context = self._pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 900})
        self.errors = []

    def open(self, url):
        page = self.context.new_page()
        page.on("console", lambda msg: self.errors.append(f"{url}: console: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"{url}: page error: {exc}"))
        page.goto(url)
        return page

    def close(self):
        self.context.close()
        self._pw.stop()


def sign_in(browser, base, token):
    """Open the dashboard as its link does (``?token=``): the server trades the token for
    a cookie and redirects to the page without it."""
    page = browser.open(with_token(base + "/dashboard/", token))
    assert "token=" not in page.url, page.url
    page.close()


def http_session(headers):
    session = requests.Session()
    session.headers.update(headers)
    return session


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path)
    yield b
    b.close()


def wait_charts(page, min_rows=None, timeout=20000):
    """Wait until every chart of the page rendered; returns {chart: rows}."""
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=timeout)
    page.wait_for_function(
        "[...document.querySelectorAll('.rain-chart')].every(e => e.dataset.state === 'ready')",
        timeout=timeout)
    if min_rows:
        for chart, rows in min_rows.items():
            page.wait_for_function(
                f"[...document.querySelectorAll('.rain-chart[data-chart=\"{chart}\"]')]"
                f".every(e => Number(e.dataset.rows) >= {rows})", timeout=timeout)
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.rain-chart')]"
        ".map(e => [e.dataset.chart, Number(e.dataset.rows)]))")


DEEP_TEXT = """(selector) => {
  const walk = (node) => {
    let text = "";
    if (node.shadowRoot) text += walk(node.shadowRoot);
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) text += child.textContent;
      else if (child.nodeType === Node.ELEMENT_NODE && child.tagName !== "STYLE")
        text += walk(child) + " ";
    }
    return text;
  };
  const el = document.querySelector(selector);
  return el ? walk(el) : "";
}"""


def chart_text(page, chart):
    """The text a chart shows (Bokeh renders inside shadow roots)."""
    page.bring_to_front()
    return page.evaluate(DEEP_TEXT, f'.rain-chart[data-chart="{chart}"]')


def wait_text(page, chart, text, timeout=15000):
    page.bring_to_front()       # background tabs get no animation frames: no re-render
    page.wait_for_function(f"(args) => ({DEEP_TEXT})(args[0]).includes(args[1])",
                           arg=[f'.rain-chart[data-chart="{chart}"]', text], timeout=timeout)


def check_rendered(page):
    """Bokeh drew something: figures have canvases, tables have rows."""
    for chart in page.query_selector_all(".rain-chart"):
        kind = chart.get_attribute("data-chart")
        if kind in ("sessions", "governors", "inspector"):
            page.wait_for_function(
                "(el) => { const t = el.querySelector('.bk-DataTable');"
                " return t && (t.shadowRoot || t).querySelectorAll('.slick-row').length > 0 }",
                arg=chart, timeout=10000)
        else:
            page.wait_for_function(
                "(el) => { const f = el.querySelector('.bk-Figure, .bk-Column');"
                " return f != null }", arg=chart, timeout=10000)
    assert page.evaluate("window.rainDashboard.errors") == []


def screenshot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def open_all_pages(browser, base, session_id, tag, min_rows=None, headers=None):
    pages = {}
    for name, path in [("sessions", "/dashboard/"), ("governors", "/dashboard/governors"),
                       ("session", f"/dashboard/session/{session_id}")]:
        page = browser.open(base + path)
        pages[name] = (page, wait_charts(page, (min_rows or {}).get(name)))
        check_rendered(page)
        screenshot(page, f"{tag}-{name}")
    manifest = requests.get(base + "/charts.json", timeout=10, headers=headers).json()
    for entry in manifest:
        if entry["session"] not in (None, session_id):
            continue
        page = browser.open(base + entry["url"])
        wait_charts(page)
        check_rendered(page)
        screenshot(page, f"{tag}-chart-{entry['id']}")
        page.close()
    return pages


@needs_chromium
def test_dashboard_live_during_and_after_a_run(make_cluster, browser):
    cluster = make_cluster([1, 1])
    client = cluster.client()
    base = f"http://127.0.0.1:{cluster.http_port}"
    sign_in(browser, base, cluster.token)
    with client.new_session("dashboard live") as session:
        data = blob(b"x" * 100)
        chains = []
        for i in range(12):
            prev = data
            for step in range(3):
                prev = tasks.Sleep(prev, 0.15, name=f"pipeline/chain{i % 3}/step{step}")
            chains.append(prev)
        final = tasks.Concat(chains, name="pipeline/join")
        final.output.keep()
        session.submit()
        pages = open_all_pages(browser, base, session.session_id, "live",
                               {"governors": {"cpu": 1}}, cluster.http_headers)
        page, _rows = pages["session"]
        # Incremental updates arrive while the graph runs: the stream gets rows.
        page.wait_for_function(
            "Number(document.querySelector('.rain-chart[data-chart=\"stream\"]')"
            ".dataset.rows) >= 10", timeout=30000)
        session.wait_all()
        assert final.output.fetch().get_bytes() == b"x" * 100 * 12
        # After the run: the open page converges to the final state without a reload.
        page.wait_for_function(
            "Number(document.querySelector('.rain-chart[data-chart=\"stream\"]')"
            ".dataset.rows) >= 37", timeout=15000)
        wait_text(page, "summary", "37 finished")
        inspector = chart_text(page, "inspector")
        assert "chain0" in inspector and "step2" in inspector
        screenshot(page, "live-session-finished")
    sessions_page = pages["sessions"][0]
    try:
        wait_text(sessions_page, "sessions", "closed")
    except Exception:
        print(sessions_page.evaluate("JSON.stringify({e: window.rainDashboard.errors, p: window.rainDashboard.polls, u: window.rainDashboard.updates})"))
        print(chart_text(sessions_page, "sessions"))
        raise
    open_all_pages(browser, base, session.session_id, "after", headers=cluster.http_headers)
    assert browser.errors == []


@needs_chromium
def test_dashboard_shows_a_failed_session(make_cluster, browser):
    cluster = make_cluster([1])
    client = cluster.client()
    base = f"http://127.0.0.1:{cluster.http_port}"
    sign_in(browser, base, cluster.token)
    with client.new_session("failing") as session:
        bad = tasks.Load("relative/path", name="load/bad")
        session.submit()
        with pytest.raises(Exception):
            session.wait_all()
        page = browser.open(f"{base}/dashboard/session/{session.session_id}")
        wait_charts(page)
        check_rendered(page)
        wait_text(page, "summary", "failed")
        text = chart_text(page, "summary")
        assert f"task {bad.id[1]}" in text
        screenshot(page, "failed-session")
    assert browser.errors == []


def run_small_pipeline(cluster):
    client = cluster.client()
    with client.new_session("post mortem") as session:
        parts = [tasks.Concat([blob(f"part {i} "), blob("!")], name=f"prep/p{i}")
                 for i in range(6)]
        joined = tasks.Concat(parts, name="join")
        tasks.Sleep(joined, 0.05)            # unnamed: grouped by its task type
        joined.output.keep()
        session.submit()
        session.wait_all()
        sid = session.session_id
    time.sleep(3)   # a monitoring sample or two, then the event log flushes
    return sid


@needs_chromium
def test_post_mortem_dashboard_from_copied_events_db(make_cluster, browser, tmp_path):
    cluster = make_cluster([1, 1])
    sid = run_small_pipeline(cluster)
    assert cluster.stop() == []
    copy = tmp_path / "copied-logs"
    copy.mkdir()
    shutil.copy(os.path.join(cluster.tmp, "server", "events.db"), copy / "events.db")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rain", "dashboard", "--logdir", str(copy),
                             "--http-listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = proc.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in line, line + proc.stdout.read().decode()
        link = line.split(" at ", 1)[1].split()[0]
        token = parse_qs(urlparse(link).query)["token"][0]
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"token {token}"}
        assert requests.get(base + "/charts.json", timeout=10).status_code == 403
        sessions = requests.get(base + "/charts.json", timeout=10, headers=headers).json()
        assert {"graph", "stream", "inspector", "summary"} <= {
            e["chart"] for e in sessions if e["session"] == sid}
        sign_in(browser, base, token)
        pages = open_all_pages(browser, base, sid, "postmortem",
                               {"session": {"stream": 8, "inspector": 4}}, headers)
        page = pages["session"][0]
        summary = chart_text(page, "summary")
        assert "8 finished" in summary and "closed" in summary
        inspector = chart_text(page, "inspector")
        assert "prep" in inspector and "buildin" in inspector and "sleep" in inspector
        assert browser.errors == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_report_is_one_self_contained_html_file(make_cluster, tmp_path):
    cluster = make_cluster([1])
    sid = run_small_pipeline(cluster)
    cluster.stop()
    out = tmp_path / "run.html"
    result = subprocess.run([sys.executable, "-m", "rain", "report", "--logdir",
                             os.path.join(cluster.tmp, "server"), "-o", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    page = out.read_text()
    assert f"session {sid}" in page
    assert "<script src=" not in page and "cdn.bokeh.org" not in page
    assert "Task stream" in page and "Task inspector" in page
    bad = subprocess.run([sys.executable, "-m", "rain", "report", "--logdir",
                          str(tmp_path / "nothing"), "-o", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no events database" in bad.stdout
    bad = subprocess.run([sys.executable, "-m", "rain", "report", "--logdir",
                          os.path.join(cluster.tmp, "server"), "-o", str(out),
                          "--session", "99"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no session 99" in bad.stdout


@needs_chromium
def test_report_renders_in_chromium(make_cluster, browser, tmp_path):
    cluster = make_cluster([1])
    run_small_pipeline(cluster)
    cluster.stop()
    out = tmp_path / "run.html"
    from rain.dashboard.postmortem import build_report
    out.write_text(build_report(os.path.join(cluster.tmp, "server")))
    page = browser.open(out.as_uri())
    page.wait_for_selector(".bk-Figure", timeout=15000)
    deadline = time.monotonic() + 15
    while page.locator(".bk-Figure").count() < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.locator(".bk-Figure").count() >= 5   # progress, graph, stream, cpu, memory
    assert page.locator(".bk-DataTable").count() >= 3
    screenshot(page, "report")
    assert browser.errors == []


def test_closed_session_keeps_the_edges_between_its_groups(make_cluster):
    """The close event records the graph between task-name groups, so the graph chart of
    a closed session, live or post mortem, still draws them."""
    from rain.dashboard.charts import GraphChart
    from rain.server.run_model import RunModel
    cluster = make_cluster([1])
    sid = run_small_pipeline(cluster)
    assert cluster.stop() == []
    model = RunModel.from_file(os.path.join(cluster.tmp, "server", "events.db"))
    session = model.sessions[sid]
    assert session.status == "closed"
    edges = set(session.group_edges)
    assert {(f"prep/p{i}", "join") for i in range(6)} | {("join", "buildin/sleep")} == edges
    layout = GraphChart()._layout(model, session)
    assert layout["mode"] == "groups" and len(layout["edges"]["xs"]) == len(edges)


# ------------------------------------------------------------------------------------------
# The run model and the deltas, without processes

def test_model_folds_events_and_deltas_are_incremental():
    from rain.dashboard.charts import make_charts
    from rain.server.run_model import RunModel

    model = RunModel()
    t0 = 1000.0
    feed = model.feed
    feed({"type": "GovernorNew", "governor": "g1", "cpus": 2}, t0)
    feed({"type": "SessionNew", "session": 1, "client": 1, "spec": {"name": "s"}}, t0)
    feed({"type": "ClientSubmit", "session": 1, "tasks": list(range(10, 20)),
          "dataobjs": [], "task_names": {"a/x": 5, "a/y": 4, "buildin/sleep": 1}}, t0)
    charts = make_charts()
    session = model.sessions[1]
    stream = charts["stream"]
    cursor = stream.initial_cursor(model, session)
    for i, tid in enumerate(range(10, 16)):
        name = "a/x" if tid < 15 else "a/y"
        feed({"type": "TaskStarted", "session": 1, "task": tid, "governor": "g1",
              "name": name}, t0 + i)
        feed({"type": "TaskFinished", "session": 1, "task": tid, "governor": "g1",
              "name": name, "info": {"start_time": t0 + i, "duration": 0.5}}, t0 + i + 0.5)
    feed({"type": "TaskStarted", "session": 1, "task": 19, "governor": "g1", "name": ""})
    feed({"type": "Monitoring", "governor": "g1", "cpu_usage": [10, 30], "mem_usage": 5},
         t0 + 2)
    assert (session.finished, session.running, session.waiting) == (6, 1, 3)
    assert session.groups["buildin/sleep"].running == 1      # the unnamed one, post mortem
    reply, cursor = stream.update(model, session, cursor)
    assert len(reply["sources"]["stream"]["stream"]["start"]) == 6
    assert set(reply["sources"]["stream"]["stream"]["lane"]) <= {"g1 #0", "g1 #1"}
    reply, cursor = stream.update(model, session, cursor)
    assert reply == {}                                          # nothing new: nothing sent
    tree = {row["path"]: row for row in model.group_tree(session)}
    assert tree["a"]["tasks"] == 9 and tree["a"]["finished"] == 6
    assert tree["a/x"]["mean_duration"] == pytest.approx(0.5)
    cpu = charts["cpu"]
    cursor = cpu.initial_cursor(model, None)
    reply, cursor = cpu.update(model, None, cursor)
    assert reply == {}
    feed({"type": "Monitoring", "governor": "g1", "cpu_usage": [50, 50], "mem_usage": 6},
         t0 + 4)
    reply, cursor = cpu.update(model, None, cursor)
    assert reply["sources"]["cpu:g1"]["stream"]["value"] == [50.0]
    feed({"type": "GovernorNew", "governor": "g2", "cpus": 1}, t0 + 5)
    assert cpu.update(model, None, cursor)[0] == {"reload": True}
    # Every chart builds and serializes with the model as it is.
    from bokeh.embed import json_item
    for chart in charts.values():
        target = session if chart.scope == "session" else None
        json.dumps(json_item(chart.build(model, target)))
    feed({"type": "SessionFailed", "session": 1, "message": "boom", "task": 19}, t0 + 6)
    feed({"type": "SessionClosed", "session": 1, "reason": "ClientClose", "message": ""})
    assert session.status == "failed" and session.message == "boom"
    feed({"type": "TaskFinished"})          # malformed events are ignored
    feed({"nothing": 1})


def test_live_model_is_built_on_first_look_from_the_log_then_follows_it(tmp_path,
                                                                        monkeypatch):
    """Nothing is folded until someone looks; the replay reads the log in chunks while
    events keep coming, and the model ends with every event exactly once."""
    import asyncio
    from types import SimpleNamespace

    from rain.server import live_model as live
    from rain.server.events import EventLog

    monkeypatch.setattr(live, "REPLAY_CHUNK", 7)

    def task_events(tid):
        base = {"session": 1, "task": tid, "governor": "g1", "name": "t"}
        return [dict(base, type="TaskStarted"),
                dict(base, type="TaskFinished", info={"start_time": 1.0, "duration": 0.5})]

    async def scenario():
        log = EventLog(str(tmp_path / "events.db"))
        server = SimpleNamespace(events=log, core=SimpleNamespace(sessions={}))
        added = 0

        def add(event):
            nonlocal added
            log.add(event)
            added += 1

        add({"type": "GovernorNew", "governor": "g1", "cpus": 1})
        add({"type": "SessionNew", "session": 1, "client": 1, "spec": {"name": "s"}})
        add({"type": "ClientSubmit", "session": 1, "tasks": list(range(10_000)),
             "task_names": {"t": 10_000}})
        for tid in range(40):
            for event in task_events(tid):
                add(event)
        log.flush_async().result()       # part of the run is on disk, part still pending
        for event in task_events(40):
            add(event)
        models = live.LiveModel(server)
        assert models.model is None and log.batch_listeners == []
        next_task = 41
        rows_after, newest_id = log.rows_after, log.newest_id

        def run_goes_on():
            """A task runs while the replay waits for the log's thread."""
            nonlocal next_task
            for event in task_events(next_task):
                add(event)
            next_task += 1

        async def rows_after_while_running(*args):
            rows = await rows_after(*args)
            run_goes_on()
            return rows

        async def newest_id_while_running():
            newest = await newest_id()
            run_goes_on()
            return newest

        log.rows_after, log.newest_id = rows_after_while_running, newest_id_while_running
        model, again = await asyncio.gather(models.get(), models.get())
        assert model is again is models.model
        assert log.batch_listeners == [models._fold_batch] and log.listeners == []
        assert next_task > 41 + 6        # several chunks were read while the run went on
        for _ in range(3):
            run_goes_on()
        log.flush_async().result()      # part of what follows goes by the writer's batch
        for _ in range(2):
            run_goes_on()
        assert await models.get() is model
        session = model.sessions[1]
        assert (session.finished, session.running) == (next_task, 0)
        assert model.events == added and model.governors["g1"].finished == next_task
        assert await models.get() is model
        log.close()

    asyncio.run(scenario())


def test_dashboard_http_errors(cluster):
    base = f"http://127.0.0.1:{cluster.http_port}"
    requests = http_session(cluster.http_headers)
    r = requests.get(base + "/dashboard/api/item/nope", timeout=10)
    assert r.status_code == 404 and "no such chart" in r.json()["error"]
    r = requests.get(base + "/dashboard/api/item/stream", timeout=10)
    assert r.status_code == 400 and "session" in r.json()["error"]
    r = requests.get(base + "/dashboard/api/item/stream?session=77", timeout=10)
    assert r.status_code == 404
    r = requests.get(base + "/dashboard/session/77", timeout=10)
    assert r.status_code == 404
    r = requests.post(base + "/dashboard/api/update", data=b"{", timeout=10)
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = requests.post(base + "/dashboard/api/update", json={"charts": [
        {"chart": "stream"}, 5, {"chart": "sessions", "cursor": None}]}, timeout=10)
    replies = r.json()["charts"]
    assert "error" in replies[0] and "error" in replies[1] and replies[2] == {"reload": True}
    r = requests.get(base + "/dashboard/static/bokeh/bokeh.min.js", timeout=10)
    assert r.status_code == 200 and len(r.content) > 100000
    r = requests.get(base + "/", timeout=10, allow_redirects=False)
    assert r.status_code in (301, 302) and r.headers["Location"] == "/dashboard/"
