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

try:
    import playwright.sync_api as playwright_api
except ImportError:
    if os.environ.get("CI"):
        raise           # CI installs the browser tests' tools: never skip them there
    playwright_api = None

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "test-artifacts")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Outside CI a machine without Chromium skips the browser tests; in CI they fail instead.
needs_chromium = pytest.mark.skipif(
    (playwright_api is None or not os.path.exists(CHROMIUM)) and not os.environ.get("CI"),
    reason="Debian chromium or playwright is not installed")

#: Pixels of colour (not white, grey or black; or the grey of waiting tasks) in the
#: canvases under an element, through Bokeh's shadow roots: axes, grids and texts are
#: grey, what a chart draws of its data is coloured.
CANVAS_INK = """(el) => {
  const canvases = [];
  const walk = (node) => {
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.children || []) {
      if (child.tagName === "CANVAS") canvases.push(child); else walk(child);
    }
  };
  walk(el);
  let ink = 0;
  for (const canvas of canvases) {
    if (!canvas.width || !canvas.height) continue;
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
      const waiting = Math.abs(r - 189) + Math.abs(g - 189) + Math.abs(b - 189) < 12;
      if (a > 128 && (Math.max(r, g, b) - Math.min(r, g, b) > 60 || waiting)) ink += 1;
    }
  }
  return ink;
}"""


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
        # ERR_NETWORK_CHANGED: other tests made or removed a network namespace meanwhile.
        page.on("console", lambda msg: self.errors.append(f"{url}: console: {msg.text}")
                if msg.type == "error" and "ERR_NETWORK_CHANGED" not in msg.text else None)
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


#: Coloured pixels a chart with data has at least (its legend alone has fewer), and the
#: rows of data it needs for that (monitoring lines: a few samples per governor).
MIN_INK = {"summary": 1500, "graph": 20, "stream": 20, "cpu": 300, "memory": 300}
MIN_ROWS = {"cpu": 6, "memory": 6}


def check_rendered(page):
    """Bokeh drew the data: tables have rows, and each figure's canvas has at least
    ``MIN_INK`` coloured pixels (a chart with axes and a legend but no data has fewer)."""
    page.bring_to_front()       # background tabs get no animation frames: no drawing
    for chart in page.query_selector_all(".rain-chart"):
        kind = chart.get_attribute("data-chart")
        if kind == "recoveries":       # empty in a run without failures
            page.wait_for_function("(el) => el.querySelector('.bk-DataTable') != null",
                                   arg=chart, timeout=10000)
        elif kind in ("sessions", "governors", "inspector"):
            page.wait_for_function(
                "(el) => { const t = el.querySelector('.bk-DataTable');"
                " return t && (t.shadowRoot || t).querySelectorAll('.slick-row').length > 0 }",
                arg=chart, timeout=10000)
        else:
            page.wait_for_function(
                "(el) => el.querySelector('.bk-Figure, .bk-Column') != null", arg=chart,
                timeout=10000)
            if int(chart.get_attribute("data-rows") or 0) < MIN_ROWS.get(kind, 1):
                continue        # no data yet (a task stream before any task ended)
            min_ink = MIN_INK[kind]
            try:
                page.wait_for_function(f"(el) => ({CANVAS_INK})(el) >= {min_ink}",
                                       arg=chart, timeout=10000)
            except playwright_api.TimeoutError:
                ink = page.evaluate(f"(el) => ({CANVAS_INK})(el)", chart)
                raise AssertionError(f"chart {kind} has data but drew {ink} coloured pixels "
                                     f"(at least {min_ink} expected)") from None
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
@pytest.mark.timeout(300)
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
@pytest.mark.timeout(300)
def test_dashboard_shows_a_failed_session(make_cluster, browser):
    cluster = make_cluster([1])
    client = cluster.client()
    base = f"http://127.0.0.1:{cluster.http_port}"
    sign_in(browser, base, cluster.token)
    with client.new_session("failing") as session:
        bad = tasks.Load("/nonexistent/rain/path", name="load/bad")
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


@needs_chromium
@pytest.mark.timeout(300)
def test_dashboard_lists_failures_and_recoveries_over_time(make_cluster, browser, tmp_path):
    import signal
    cluster = make_cluster([1, 1])
    client = cluster.client()
    base = f"http://127.0.0.1:{cluster.http_port}"
    sign_in(browser, base, cluster.token)
    page = browser.open(f"{base}/dashboard/")
    wait_charts(page)           # (no session yet: the sessions table is empty)
    assert "task retried" not in chart_text(page, "recoveries")
    import cloudpickle

    from rain.client import remote

    @remote(name="fragile")
    def die_once(ctx, marker):
        import os
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)              # the executor dies under the task, once
        return b"ok"

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with client.new_session("recovering") as session:
        task = die_once(str(tmp_path / "died"))
        task.output.keep()
        session.submit()
        assert task.output.fetch().get_bytes() == b"ok"
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    victim = cluster.governor_processes[1]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    wait_text(page, "recoveries", "task retried", timeout=30000)
    wait_text(page, "recoveries", "governor lost", timeout=30000)
    text = chart_text(page, "recoveries")
    assert "fragile" in text and "executor" in text
    check_rendered(page)
    screenshot(page, "recoveries")
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
@pytest.mark.timeout(300)
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


def test_governor_monitor_measures_its_own_process_tree():
    """A governor's sample covers its own processes (a busy child counts), not the
    machine: a monitor of an idle process tree reads near zero meanwhile."""
    from rain.governor.monitoring import Monitor
    import psutil

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen(["sleep", "60"])   # (a Python's start-up alone would count)
    try:
        mine, other = Monitor(cpus=1), Monitor(cpus=1, pid=idle.pid)
        mine.sample(), other.sample()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1.0)
            sample, idle_sample = mine.sample(), other.sample()
            if sample["cpu_usage"] > 5:
                break
        assert sample["cpu_usage"] > 5, sample
        assert sample["processes"] >= 3          # this process and its two children
        assert idle_sample["cpu_usage"] < 1 and idle_sample["processes"] == 1
        rss = sum(p.memory_info().rss for p in [psutil.Process()] +
                  psutil.Process().children(recursive=True))
        assert 0 < sample["mem_bytes"] <= 2 * rss
        assert sample["mem_usage"] < 100.0 * 2 * rss / psutil.virtual_memory().total
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()


def test_governor_monitor_walks_only_its_own_tree():
    """The tree is read from the kernel's children lists: a grandchild and a child
    started from another (still running) thread are found, every process found is
    below this one, and a former child that was adopted elsewhere is not found."""
    import threading
    import psutil
    from rain.governor.monitoring import Monitor, descendants

    if descendants(os.getpid()) is None:
        pytest.skip("this kernel keeps no /proc/<pid>/task/<tid>/children lists")
    # a process that was ours and left the tree (its parent ended; it was adopted)
    outside = int(subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
                                 capture_output=True, text=True, check=True).stdout)
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, time; "
                               "subprocess.Popen(['sleep', '60']); time.sleep(60)"])
    from_thread, started, done = [], threading.Event(), threading.Event()

    def start_and_stay():       # the kernel lists the child under this thread
        from_thread.append(subprocess.Popen(["sleep", "60"]))
        started.set()
        done.wait(60)

    thread = threading.Thread(target=start_and_stay)
    thread.start()
    started.wait(30)
    try:
        deadline = time.monotonic() + 30
        while len(psutil.Process(parent.pid).children()) < 1:
            assert time.monotonic() < deadline, "the grandchild did not start"
            time.sleep(0.05)
        walked = set(descendants(os.getpid()))
        grandchild = psutil.Process(parent.pid).children()[0].pid
        ours = {parent.pid, grandchild, from_thread[0].pid}
        assert ours <= walked
        assert psutil.pid_exists(outside)
        assert outside not in walked and os.getpid() not in walked
        for pid in walked:      # (other tests' processes may come and go meanwhile)
            try:
                assert os.getpid() in [p.pid for p in psutil.Process(pid).parents()]
            except psutil.NoSuchProcess:
                pass
        tree = {p.pid for p in Monitor(pid=os.getpid()).tree()}
        assert ours | {os.getpid()} <= tree and outside not in tree
    finally:
        done.set()
        thread.join()
        leftover = [outside] + [p.pid for p in psutil.Process(parent.pid).children()]
        for process in [parent] + from_thread:
            process.kill()
            process.wait()
        for pid in leftover:
            os.kill(pid, 9)


def test_inspector_sorts_numbers_in_names_by_value():
    from rain.server.run_model import RunModel
    model = RunModel(live=False)
    model.feed({"type": "SessionNew", "session": 1, "spec": {}})
    names = {f"step{i}": 1 for i in (10, 2, 1, 0)}
    names.update({"load/10": 1, "load/9": 1})
    model.feed({"type": "ClientSubmit", "session": 1, "tasks": list(range(6)),
                "task_names": names})
    paths = [row["path"] for row in model.group_tree(model.sessions[1])]
    assert paths == ["load", "load/9", "load/10", "step0", "step1", "step2", "step10"]


def test_task_stream_colours_by_name_group():
    from rain.dashboard.charts import group_color
    assert group_color("load/3") == group_color("load/4") == group_color("load")
    assert len({group_color(f"g{i}/x") for i in range(40)}) > 5


def test_graph_labels_never_overlap_and_many_names_collapse():
    from rain.dashboard.charts import (GRAPH_NODE_LIMIT, GRAPH_WIDTH_ESTIMATE, collapse_names,
                                       graph_height, label_box, layered_layout, place_labels)
    names = [f"pipeline/chain{c}/step{s}" for c in range(300) for s in range(3)]
    nodes = collapse_names(names, GRAPH_NODE_LIMIT)
    assert len(nodes) <= GRAPH_NODE_LIMIT
    assert sorted(n for group in nodes.values() for n in group) == sorted(names)
    keys = list(nodes)
    edges = [(keys[i], keys[-1]) for i in range(len(keys) - 1)]
    positions = layered_layout(keys, edges)
    points = [positions[k] for k in keys]
    texts = [f"{k} (100000/100000)" for k in keys]
    height = graph_height(points)
    shown = place_labels(points, texts, range(len(keys)), GRAPH_WIDTH_ESTIMATE, height)
    assert len(shown) >= len(keys) // 2
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs) - 0.5, max(xs) + 1.5, min(ys) - 1, max(ys) + 1
    scale = (GRAPH_WIDTH_ESTIMATE / (x1 - x0), (height - 40) / (y1 - y0))
    boxes = [label_box(points[i], texts[i], scale, (x0, y0)) for i in shown]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


@needs_chromium
@pytest.mark.timeout(300)
def test_dashboard_of_a_stopped_cluster_says_disconnected_and_backs_off(make_cluster,
                                                                          browser):
    cluster = make_cluster([1])
    base = f"http://127.0.0.1:{cluster.http_port}"
    sign_in(browser, base, cluster.token)
    page = browser.open(base + "/dashboard/governors")
    wait_charts(page)
    polls = []
    page.on("request", lambda r: polls.append(r.url) if "/api/update" in r.url else None)
    assert page.evaluate("document.body.dataset.connection || ''") != "lost"
    assert cluster.stop() == []
    page.wait_for_selector("body[data-connection='lost']", timeout=30000)
    banner = page.locator(".rain-banner")
    assert banner.is_visible() and "Disconnected" in banner.inner_text()
    assert "grayscale" in page.evaluate("getComputedStyle(document.querySelector('main'))"
                                        ".filter")
    screenshot(page, "disconnected")
    # Polling backs off (2 s, 4 s, 8 s, ...): a few polls in the next 8 s, not 8.
    seen = len(polls)
    time.sleep(8)
    assert len(polls) - seen <= 3, polls
