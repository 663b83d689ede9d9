import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { ICluster, IChart, IClusterList, ISession, listClusters } from './api';
import { rainIcon } from './icon';

/** What the sidebar's buttons do (the plugin supplies them). */
export interface ISidebarActions {
  openChart(cluster: ICluster, chart: IChart): void;
  insertClient(cluster: ICluster): void;
  stopCluster(cluster: ICluster): Promise<boolean>;
  clustersChanged(clusters: ICluster[]): void;
}

/** Polling: fast while something changes, slower and slower while nothing does. */
export const POLL_MIN = 1000;
export const POLL_MAX = 10000;
export const POLL_HIDDEN = 30000;
const BACKOFF = 1.5;
const DEFAULT_CHART = 'sessions';

/** The Rain sidebar: clusters of this machine, their governors and sessions. */
export class RainSidebar extends Widget {
  constructor(actions: ISidebarActions) {
    super();
    this._actions = actions;
    this.id = 'rain-sidebar';
    this.title.icon = rainIcon;
    this.title.caption = 'Rain clusters';
    this.addClass('rain-Sidebar');

    const header = document.createElement('header');
    header.className = 'rain-Sidebar-header';
    const heading = document.createElement('h2');
    heading.textContent = 'Rain clusters';
    const refresh = button('Refresh', 'rain-Sidebar-refresh', () => this.refreshSoon());
    refresh.title = 'Refresh the list now';
    header.append(heading, refresh);
    this._status = document.createElement('div');
    this._status.className = 'rain-Sidebar-status';
    this._list = document.createElement('div');
    this._list.className = 'rain-Sidebar-list';
    this.node.append(header, this._status, this._list);
  }

  /** The clusters of the last refresh. */
  get clusters(): ICluster[] {
    return this._clusters;
  }

  /** Start polling. */
  start(): void {
    this.refreshSoon();
  }

  /** Refresh now and poll fast again (after an action, or a change seen elsewhere). */
  refreshSoon(): void {
    this._interval = POLL_MIN;
    this._schedule(0);
  }

  /** Fetch the list once (returns it; used by commands too). */
  async refresh(): Promise<ICluster[]> {
    let list: IClusterList;
    try {
      list = await listClusters();
    } catch (error) {
      this._status.textContent = `Cannot list clusters: ${(error as Error).message}`;
      this._status.classList.add('rain-mod-error');
      this._interval = Math.min(POLL_MAX, this._interval * BACKOFF);
      return this._clusters;
    }
    this._status.classList.remove('rain-mod-error');
    const key = JSON.stringify(list.clusters.map(stableView));
    if (key !== this._key) {
      this._key = key;
      this._clusters = list.clusters;
      this._render();
      this._actions.clustersChanged(this._clusters);
      this._interval = POLL_MIN;
    } else {
      this._interval = Math.min(POLL_MAX, this._interval * BACKOFF);
    }
    const count = list.clusters.length;
    this._status.textContent =
      count === 0
        ? 'No Rain cluster is running on this machine. Start one with %rain start in a notebook or rain start in a terminal.'
        : `${count} cluster${count === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString()}`;
    this.node.dataset.clusters = String(count);
    return this._clusters;
  }

  dispose(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.refreshSoon();
  }

  private _schedule(delay: number): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      if (this.isDisposed) {
        return;
      }
      if (this.isVisible) {
        await this.refresh();
      }
      if (!this.isDisposed && this._timer === null) {
        this._schedule(this.isVisible ? this._interval : POLL_HIDDEN);
      }
    }, delay);
  }

  private _render(): void {
    const sections = this._clusters.map(c => this._renderCluster(c));
    this._list.replaceChildren(...sections);
  }

  private _renderCluster(cluster: ICluster): HTMLElement {
    const section = document.createElement('section');
    section.className = 'rain-Cluster';
    section.dataset.pid = String(cluster.pid);
    section.dataset.address = cluster.address;
    section.dataset.httpPort = String(cluster.http_port);

    const title = document.createElement('div');
    title.className = 'rain-Cluster-title';
    const name = document.createElement('span');
    name.className = 'rain-Cluster-address';
    name.textContent = cluster.address;
    const state = document.createElement('span');
    state.className = cluster.reachable
      ? 'rain-Badge rain-mod-ok'
      : 'rain-Badge rain-mod-error';
    state.textContent = cluster.reachable ? 'running' : 'not answering';
    title.append(name, state);

    const cpus = cluster.governors.reduce((n, g) => n + (g.cpus || 0), 0);
    const summary = document.createElement('div');
    summary.className = 'rain-Cluster-summary';
    summary.textContent =
      `${cluster.governors.length} governor${cluster.governors.length === 1 ? '' : 's'}, ` +
      `${cpus} CPUs · ${cluster.origin}, pid ${cluster.pid} · started ${ago(cluster.started)}`;
    section.append(title, summary);
    if (cluster.error) {
      const error = document.createElement('div');
      error.className = 'rain-Cluster-error';
      error.textContent = cluster.error;
      section.append(error);
    }

    if (cluster.governors.length) {
      const table = document.createElement('table');
      table.className = 'rain-Governors';
      const head = table.createTHead().insertRow();
      for (const label of ['governor', 'CPUs', 'load', 'tasks']) {
        const th = document.createElement('th');
        th.textContent = label;
        head.append(th);
      }
      const body = table.createTBody();
      for (const g of cluster.governors) {
        const row = body.insertRow();
        row.className = 'rain-Governor';
        cell(row, g.id).title = g.id;
        cell(row, g.cpus === null ? '?' : String(g.cpus));
        const load = row.insertCell();
        load.append(meter(g.cpu_usage === null ? null : g.cpu_usage / 100));
        cell(row, g.running === null ? '' : String(g.running));
      }
      section.append(table);
    }

    const sessions = document.createElement('div');
    sessions.className = 'rain-Sessions';
    const open = cluster.sessions.filter(s => s.status === 'open').length;
    const caption = document.createElement('div');
    caption.className = 'rain-Sessions-caption';
    caption.textContent = `Sessions: ${open} open, ${cluster.session_count} in all`;
    sessions.append(caption);
    for (const s of cluster.sessions) {
      sessions.append(renderSession(s));
    }
    section.append(sessions);

    const charts = document.createElement('div');
    charts.className = 'rain-Cluster-charts';
    const select = document.createElement('select');
    select.className = 'rain-Cluster-chartSelect';
    select.title = 'Dashboard charts of this cluster';
    for (const chart of cluster.charts) {
      const option = document.createElement('option');
      option.value = chart.id;
      option.textContent = chart.title;
      select.append(option);
    }
    const chosen = this._chosen.get(cluster.pid);
    if (chosen && cluster.charts.some(c => c.id === chosen)) {
      select.value = chosen;
    } else if (cluster.charts.some(c => c.id === DEFAULT_CHART)) {
      select.value = DEFAULT_CHART;
    }
    select.addEventListener('change', () => this._chosen.set(cluster.pid, select.value));
    const openButton = button('Open pane', 'rain-Cluster-openChart', () => {
      const chart = cluster.charts.find(c => c.id === select.value);
      if (chart) {
        this._actions.openChart(cluster, chart);
      }
    });
    openButton.title = 'Open the chosen dashboard chart docked beside the notebook';
    if (!cluster.charts.length) {
      select.disabled = true;
      openButton.disabled = true;
      select.title = 'This server has no dashboard (install rain-python[dashboard])';
    }
    charts.append(select, openButton);
    section.append(charts);

    const actions = document.createElement('div');
    actions.className = 'rain-Cluster-actions';
    const insert = button('Insert Client code', 'rain-Cluster-insert', () =>
      this._actions.insertClient(cluster)
    );
    insert.title = 'Insert code connecting to this cluster into the current notebook';
    const stop = button('Stop', 'rain-Cluster-stop rain-mod-warn', async () => {
      stop.disabled = true;
      try {
        if (await this._actions.stopCluster(cluster)) {
          section.classList.add('rain-mod-stopping');
        }
      } finally {
        stop.disabled = false;
        this.refreshSoon();
      }
    });
    stop.title = 'Stop this cluster (the server and its governors)';
    actions.append(insert, stop);
    section.append(actions);
    return section;
  }

  private _actions: ISidebarActions;
  private _status: HTMLElement;
  private _list: HTMLElement;
  private _clusters: ICluster[] = [];
  private _key = '';
  private _interval = POLL_MIN;
  private _timer: number | null = null;
  private _chosen = new Map<number, string>();
}

/** What is shown of a cluster (monitoring noise rounded, so an idle cluster backs off). */
function stableView(c: ICluster): unknown {
  return {
    ...c,
    governors: c.governors.map(g => ({
      ...g,
      cpu_usage: g.cpu_usage === null ? null : Math.round(g.cpu_usage / 5),
      mem_usage: null
    }))
  };
}

function renderSession(s: ISession): HTMLElement {
  const row = document.createElement('div');
  row.className = `rain-Session rain-mod-${s.status}`;
  row.dataset.session = String(s.session);
  row.dataset.status = s.status;
  const label = document.createElement('div');
  label.className = 'rain-Session-label';
  const done = s.finished || 0;
  label.textContent =
    `#${s.session}${s.name ? ' ' + s.name : ''} · ${s.status} · ${done}/${s.tasks} tasks` +
    (s.running ? `, ${s.running} running` : '') +
    (s.failed ? `, ${s.failed} failed` : '');
  const progress = s.progress ?? (s.tasks ? done / s.tasks : 0);
  row.dataset.progress = String(progress);
  row.append(label, meter(progress));
  return row;
}

function meter(fraction: number | null): HTMLElement {
  const outer = document.createElement('div');
  outer.className = 'rain-Meter';
  const inner = document.createElement('div');
  inner.className = 'rain-Meter-bar';
  const value = fraction === null ? 0 : Math.max(0, Math.min(1, fraction));
  inner.style.width = `${Math.round(value * 100)}%`;
  outer.title = fraction === null ? 'unknown' : `${Math.round(value * 100)}%`;
  outer.append(inner);
  return outer;
}

function cell(row: HTMLTableRowElement, text: string): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  return td;
}

function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.className = `jp-Button rain-Button ${className}`;
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function ago(seconds: number): string {
  if (!seconds) {
    return '?';
  }
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) {
    return `${Math.round(s)} s ago`;
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min ago`;
  }
  return `${(s / 3600).toFixed(1)} h ago`;
}
