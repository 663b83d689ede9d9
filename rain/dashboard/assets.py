"""The dashboard's page template, script and style (kept in Python: nothing to package)."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header { background: #1f3a5f; color: white; padding: 8px 16px; display: flex;
         align-items: baseline; gap: 24px; }
header a { color: #dfe9f5; text-decoration: none; }
header a:hover { text-decoration: underline; }
header .brand { font-weight: bold; font-size: 1.1em; color: white; }
main { padding: 12px 16px; }
section.rain-panel { background: white; border: 1px solid #ddd; border-radius: 6px;
                     padding: 8px 12px; margin-bottom: 14px; }
section.rain-panel h2 { font-size: 1em; margin: 2px 0 8px 0; color: #1f3a5f; }
.rain-chart[data-state="loading"]::before { content: "loading..."; color: #888; }
.rain-chart[data-state="error"] { color: #b00; }
.rain-status-open { color: #1f77b4; font-weight: bold; }
.rain-status-closed { color: #2ca02c; font-weight: bold; }
.rain-status-failed { color: #d62728; font-weight: bold; }
.rain-error pre { white-space: pre-wrap; color: #b00; max-height: 12em; overflow: auto; }
.rain-note { color: #666; font-size: 0.9em; }
body.rain-fill { height: 100vh; overflow: hidden; background: white; }
body.rain-fill main { height: 100%; padding: 4px; box-sizing: border-box; }
body.rain-fill .rain-chart, body.rain-fill .rain-chart > div { width: 100%; height: 100%; }
.rain-banner { display: none; }
body[data-connection="lost"] .rain-banner { display: block; position: fixed; top: 0;
  left: 0; right: 0; z-index: 10; padding: 6px 12px; background: #555; color: white;
  font-weight: bold; }
body[data-connection="lost"] main { filter: grayscale(1); opacity: 0.45; }
"""

# One poll per page every INTERVAL ms at most, and never two at once: the server answers
# each chart with what changed since the cursor the page holds.
SCRIPT = r"""
(function () {
  "use strict";
  const BASE = document.body.dataset.base || "/dashboard";
  const INTERVAL = 1000;
  // While the server does not answer: poll less and less often, up to this.
  const MAX_INTERVAL = 30000;
  const state = {charts: [], errors: [], polls: 0, updates: 0, failures: 0};
  let interval = INTERVAL;
  window.rainDashboard = state;
  window.addEventListener("error", (e) => state.errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => state.errors.push(String(e.reason)));

  function query(chart) {
    const args = [];
    if (chart.session != null) args.push("session=" + encodeURIComponent(chart.session));
    if (chart.fill) args.push("fill=1");
    return args.length ? "?" + args.join("&") : "";
  }

  // "disconnected": the page greys out and says so; polling backs off; one line in
  // the console per loss, not one per failed poll.
  function connection(ok, why) {
    const lost = document.body.dataset.connection === "lost";
    if (ok) {
      interval = INTERVAL;
      if (lost) {
        document.body.dataset.connection = "live";
        console.info("rain dashboard: the server answers again");
      }
      return;
    }
    state.failures += 1;
    interval = Math.min(MAX_INTERVAL, interval * 2);
    const banner = document.querySelector(".rain-banner");
    if (banner) {
      banner.textContent = "Disconnected: the Rain server does not answer (" + why +
        "); it may have stopped. Trying again every " + Math.round(interval / 1000) + " s.";
    }
    if (!lost) {
      document.body.dataset.connection = "lost";
      console.warn("rain dashboard: disconnected from the server: " + why);
    }
  }

  function countRows(chart) {
    let rows = 0;
    for (const name of chart.sources || []) {
      const model = chart.doc && chart.doc.get_model_by_name(name);
      if (model && model.get_length) rows += model.get_length() || 0;
    }
    chart.el.dataset.rows = String(rows);
    return rows;
  }

  async function mount(chart) {
    chart.busy = true;
    try {
      const response = await fetch(BASE + "/api/item/" + chart.chart + query(chart));
      const body = await response.json();
      if (!response.ok) {
        chart.el.dataset.state = "error";
        chart.el.textContent = body.error || ("HTTP " + response.status);
        chart.cursor = null;
        return;
      }
      const old = chart.doc;
      chart.generation = (chart.generation || 0) + 1;
      const target = document.createElement("div");
      target.id = chart.el.id + "-g" + chart.generation;
      chart.el.replaceChildren(target);
      await Bokeh.embed.embed_item(body.item, target.id);
      chart.doc = Bokeh.documents.find((d) => d.get_model_by_id(body.item.root_id) != null);
      if (old) {
        const i = Bokeh.documents.indexOf(old);
        if (i >= 0) Bokeh.documents.splice(i, 1);
      }
      chart.cursor = body.cursor;
      chart.sources = body.sources;
      chart.el.dataset.state = "ready";
      chart.el.dataset.mounts = String(chart.generation);
      countRows(chart);
    } finally {
      chart.busy = false;
    }
  }

  async function apply(chart, reply) {
    if (reply.reload) {
      await mount(chart);
      return;
    }
    if (reply.error) {
      state.errors.push(reply.error);
      return;
    }
    chart.cursor = reply.cursor;
    const doc = chart.doc;
    if (!doc) return;
    let changed = false;
    for (const [name, update] of Object.entries(reply.sources || {})) {
      const model = doc.get_model_by_name(name);
      if (!model) continue;
      if (update.stream) model.stream(update.stream, update.rollover);
      else if (update.data) model.data = update.data;
      changed = true;
    }
    for (const [name, props] of Object.entries(reply.props || {})) {
      const model = doc.get_model_by_name(name);
      if (model) { model.setv(props); changed = true; }
    }
    if (changed) {
      // A DataTable re-renders on a change of its CDSView, which a same-length data
      // replacement does not always signal.
      for (const model of doc.all_models) {
        if (model.columns !== undefined && model.view && model.view.change) {
          model.view.change.emit();
        }
      }
      state.updates += 1;
      chart.el.dataset.updates = String((Number(chart.el.dataset.updates) || 0) + 1);
      countRows(chart);
    }
  }

  async function poll() {
    const began = performance.now();
    const live = state.charts.filter((c) => c.cursor != null && !c.busy);
    if (live.length) {
      let response = null;
      try {
        response = await fetch(BASE + "/api/update", {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({charts: live.map((c) => ({
            chart: c.chart, session: c.session, cursor: c.cursor}))}),
        });
      } catch (err) {
        connection(false, "no connection");
      }
      if (response && !response.ok) connection(false, "HTTP " + response.status);
      if (response && response.ok) {
        connection(true);
        try {
          const body = await response.json();
          state.polls += 1;
          document.body.dataset.polls = String(state.polls);
          for (let i = 0; i < live.length; i++) await apply(live[i], body.charts[i] || {});
          if (body.final) return;
        } catch (err) {
          state.errors.push(String(err));
          console.error("rain dashboard: cannot apply an update", err);
        }
      }
    }
    // At most one poll a second; slower when fetching and drawing take long, so a busy
    // machine spends at most a fifth of its time on this page.
    const spent = performance.now() - began;
    setTimeout(poll, Math.max(interval, 4 * spent));
  }

  async function start() {
    for (const el of document.querySelectorAll(".rain-chart")) {
      el.dataset.state = "loading";
      const session = el.dataset.session;
      const chart = {el, chart: el.dataset.chart, fill: el.dataset.fill === "1",
                     session: !session ? null : (session === "latest" ? session
                                                                        : Number(session))};
      state.charts.push(chart);
    }
    await Promise.all(state.charts.map((c) => mount(c).catch((err) => {
      c.el.dataset.state = "error";
      state.errors.push(String(err));
      console.error("rain dashboard: cannot show chart " + c.chart, err);
    })));
    document.body.dataset.ready = "1";
    setTimeout(poll, INTERVAL);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{style}</style>
{bokeh_scripts}
</head>
<body data-base="{base}" class="{body_class}">
<div class="rain-banner" role="status"></div>
{header}
<main>
{body}
</main>
<script src="{base}/static/rain-dashboard.js"></script>
</body>
</html>
"""

HEADER = """<header><span class="brand">Rain dashboard</span>
<a href="{base}/">Sessions</a>
<a href="{base}/governors">Governors</a>
<a href="/charts.json">Charts (JSON)</a>
<a href="/api">REST API</a>
<span class="rain-note">{note}</span></header>"""
