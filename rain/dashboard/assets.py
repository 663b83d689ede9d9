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
"""

# One poll per page every INTERVAL ms at most, and never two at once: the server answers
# each chart with what changed since the cursor the page holds.
SCRIPT = r"""
(function () {
  "use strict";
  const BASE = document.body.dataset.base || "/dashboard";
  const INTERVAL = 1000;
  const state = {charts: [], errors: [], polls: 0, updates: 0};
  window.rainDashboard = state;
  window.addEventListener("error", (e) => state.errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => state.errors.push(String(e.reason)));

  function query(chart) {
    return chart.session != null ? "?session=" + encodeURIComponent(chart.session) : "";
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
    try {
      if (live.length) {
        const response = await fetch(BASE + "/api/update", {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({charts: live.map((c) => ({
            chart: c.chart, session: c.session, cursor: c.cursor}))}),
        });
        if (response.ok) {
          const body = await response.json();
          state.polls += 1;
          document.body.dataset.polls = String(state.polls);
          for (let i = 0; i < live.length; i++) await apply(live[i], body.charts[i] || {});
          if (body.final) return;
        }
      }
    } catch (err) {
      console.warn("rain dashboard: update failed", err);
    }
    // At most one poll a second; slower when fetching and drawing take long, so a busy
    // machine spends at most a fifth of its time on this page.
    const spent = performance.now() - began;
    setTimeout(poll, Math.max(INTERVAL, 4 * spent));
  }

  async function start() {
    for (const el of document.querySelectorAll(".rain-chart")) {
      el.dataset.state = "loading";
      const chart = {el, chart: el.dataset.chart,
                     session: el.dataset.session ? Number(el.dataset.session) : null};
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
<body data-base="{base}">
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
