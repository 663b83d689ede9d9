import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  ICluster,
  IChart,
  IClusterList,
  ISession,
  listClusters,
  listServerPids,
  startCluster
} from './api';
import { rainIcon } from './icon';
import { PanePlace } from './panes';

/** What the sidebar's buttons do (the plugin supplies them). */
export interface ISidebarActions {
  openChart(cluster: ICluster, chart: IChart, place: PanePlace): void;
  insertClient(cluster: ICluster): void;
  stopCluster(cluster: ICluster): Promise<boolean>;
  startFailed(error: Error): void;
}

/** Polling: fast while something changes, slower and slower while nothing does. */
export const POLL_MIN = 1000;
export const POLL_MAX = 10000;
export const POLL_HIDDEN = 30000;
/** How often the (cheap) list of servers is checked, so a new one shows up at once. */
export const WATCH_INTERVAL = 1000;
const BACKOFF = 1.5;
const DEFAULT_CHART = 'sessions';

/** The parts of a cluster's entry that a refresh updates in place. */
interface IClusterView {
  cluster: ICluster;
  section: HTMLElement;
  state: HTMLElement;
  summary: HTMLElement;
  error: HTMLElement;
  governors: HTMLElement;
  sessions: HTMLElement;
  select: HTMLSelectElement;
  chartButtons: HTMLButtonElement[];
  keys: Map<string, string>;
}

/** The Rain sidebar: clusters of this machine, their governors and sessions.
 *
 * A refresh updates each cluster's entry in place, part by part and only where the
 * content changed: a control the user holds (an open chart list, a focused button)
 * stays as it is. */
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
    this._starter = this._renderStarter();
    this.node.append(header, this._status, this._list, this._starter);
  }

  /** The clusters of the last refresh. */
  get clusters(): ICluster[] {
    return this._clusters;
  }

  /** Start polling. */
  start(): void {
    this.refreshSoon();
    this._watch();
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
    this._pids = list.clusters.map(c => c.pid).sort((a, b) => a - b).join(',');
    const key = JSON.stringify(list.clusters.map(stableView));
    if (key !== this._key) {
      this._key = key;
      this._clusters = list.clusters;
      this._render();
      this._interval = POLL_MIN;
    } else {
      this._interval = Math.min(POLL_MAX, this._interval * BACKOFF);
    }
    const count = list.clusters.length;
    this._status.textContent =
      count === 0
        ? 'No Rain cluster is running on this machine. Start one here, with %rain start in a notebook, or with rain start in a terminal.'
        : `${count} cluster${count === 1 ? '' : 's'} · updated ${new Date().toLocaleTimeString()}`;
    this._starter.hidden = count > 0;
    this.node.dataset.clusters = String(count);
    this.node.dataset.refreshes = String(++this._refreshes);
    return this._clusters;
  }

  dispose(): void {
    for (const timer of [this._timer, this._watchTimer]) {
      if (timer !== null) {
        clearTimeout(timer);
      }
    }
    this._timer = this._watchTimer = null;
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

  /** Look at the list of servers every second: a new or gone one refreshes at once. */
  private _watch(): void {
    this._watchTimer = window.setTimeout(async () => {
      this._watchTimer = null;
      if (this.isDisposed) {
        return;
      }
      if (this.isVisible) {
        try {
          const { pids } = await listServerPids();
          if (pids.sort((a, b) => a - b).join(',') !== this._pids) {
            this._pids = pids.join(',');
            this.refreshSoon();
          }
        } catch {
          // the full refresh reports what is wrong
        }
      }
      if (!this.isDisposed) {
        this._watch();
      }
    }, WATCH_INTERVAL);
  }

  private _render(): void {
    const seen = new Set<number>();
    let previous: HTMLElement | null = null;
    for (const cluster of this._clusters) {
      seen.add(cluster.pid);
      let view = this._views.get(cluster.pid);
      if (!view) {
        view = this._createCluster(cluster);
        this._views.set(cluster.pid, view);
      }
      this._updateCluster(view, cluster);
      const wanted: ChildNode | null = previous ? previous.nextSibling : this._list.firstChild;
      if (wanted !== view.section) {
        this._list.insertBefore(view.section, wanted);
      }
      previous = view.section;
    }
    for (const [pid, view] of this._views) {
      if (!seen.has(pid)) {
        view.section.remove();
        this._views.delete(pid);
      }
    }
  }

  private _createCluster(cluster: ICluster): IClusterView {
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
    title.append(name, state);
    const summary = document.createElement('div');
    summary.className = 'rain-Cluster-summary';
    const error = document.createElement('div');
    error.className = 'rain-Cluster-error';
    const governors = document.createElement('div');
    governors.className = 'rain-Cluster-governors';
    const sessions = document.createElement('div');
    sessions.className = 'rain-Sessions';

    const view: IClusterView = {
      cluster,
      section,
      state,
      summary,
      error,
      governors,
      sessions,
      select: document.createElement('select'),
      chartButtons: [],
      keys: new Map()
    };

    const charts = document.createElement('div');
    charts.className = 'rain-Cluster-charts';
    const select = view.select;
    select.className = 'rain-Cluster-chartSelect';
    select.title = 'Dashboard charts of this cluster';
    select.addEventListener('change', () => this._chosen.set(view.cluster.pid, select.value));
    const open = (place: PanePlace) => () => {
      const chart = view.cluster.charts.find(c => c.id === select.value);
      if (chart) {
        this._actions.openChart(view.cluster, chart, place);
      }
    };
    const openButton = button('Open', 'rain-Cluster-openChart', open('tab'));
    openButton.title =
      'Open the chosen chart docked beside the notebook (as a tab next to the last chart)';
    const right = button('\u2192', 'rain-Cluster-openRight', open('split-right'));
    right.title = 'Open the chosen chart to the right of the last chart (tiled)';
    const below = button('\u2193', 'rain-Cluster-openBelow', open('split-bottom'));
    below.title = 'Open the chosen chart below the last chart (tiled)';
    view.chartButtons = [openButton, right, below];
    charts.append(select, openButton, right, below);

    const actions = document.createElement('div');
    actions.className = 'rain-Cluster-actions';
    const insert = button('Insert Client code', 'rain-Cluster-insert', () =>
      this._actions.insertClient(view.cluster)
    );
    insert.title = 'Insert code connecting to this cluster into the current notebook';
    const stop = button('Stop', 'rain-Cluster-stop rain-mod-warn', async () => {
      stop.disabled = true;
      try {
        if (await this._actions.stopCluster(view.cluster)) {
          section.classList.add('rain-mod-stopping');
        }
      } finally {
        stop.disabled = false;
        this.refreshSoon();
      }
    });
    stop.title = 'Stop this cluster (the server and its governors)';
    actions.append(insert, stop);
    section.append(title, summary, error, governors, sessions, charts, actions);
    return view;
  }

  /** Update the parts of an entry whose content changed, and only those. */
  private _updateCluster(view: IClusterView, cluster: ICluster): void {
    view.cluster = cluster;
    const changed = (part: string, value: unknown): boolean => {
      const key = JSON.stringify(value);
      if (view.keys.get(part) === key) {
        return false;
      }
      view.keys.set(part, key);
      return true;
    };
    if (changed('state', cluster.reachable)) {
      view.state.className = cluster.reachable
        ? 'rain-Badge rain-mod-ok'
        : 'rain-Badge rain-mod-error';
      view.state.textContent = cluster.reachable ? 'running' : 'not answering';
    }
    const cpus = cluster.governors.reduce((n, g) => n + (g.cpus || 0), 0);
    const n = cluster.governors.length;
    view.summary.textContent =
      `${n} governor${n === 1 ? '' : 's'}, ${cpus} CPUs · started by ${cluster.origin} ` +
      `${ago(cluster.started)} · pid ${cluster.pid}`;
    view.summary.title = view.summary.textContent;
    view.section.dataset.origin = cluster.origin;
    if (changed('error', cluster.error)) {
      view.error.textContent = cluster.error || '';
      view.error.hidden = !cluster.error;
    }
    if (changed('governors', stableView(cluster).governors)) {
      view.governors.replaceChildren(...renderGovernors(cluster));
    }
    if (changed('sessions', [cluster.sessions, cluster.session_count])) {
      view.sessions.replaceChildren(...renderSessions(cluster));
    }
    if (changed('charts', cluster.charts)) {
      const select = view.select;
      const keep = this._chosen.get(cluster.pid) ?? select.value;
      select.replaceChildren(
        ...cluster.charts.map(chart => {
          const option = document.createElement('option');
          option.value = chart.id;
          option.textContent = chart.title;
          return option;
        })
      );
      if (keep && cluster.charts.some(c => c.id === keep)) {
        select.value = keep;
      } else if (cluster.charts.some(c => c.id === DEFAULT_CHART)) {
        select.value = DEFAULT_CHART;
      }
      const none = !cluster.charts.length;
      select.disabled = none;
      view.chartButtons.forEach(b => (b.disabled = none));
      select.title = none
        ? 'This server has no dashboard (install rain-python[dashboard])'
        : 'Dashboard charts of this cluster';
    }
  }

  /** The form shown while no cluster runs: governors and CPUs, and a start button. */
  private _renderStarter(): HTMLElement {
    const form = document.createElement('form');
    form.className = 'rain-Starter';
    const heading = document.createElement('div');
    heading.className = 'rain-Starter-heading';
    heading.textContent = 'Start a local cluster';
    const field = (label: string, name: string, value: number, max: number) => {
      const wrap = document.createElement('label');
      wrap.textContent = label;
      const input = document.createElement('input');
      input.type = 'number';
      input.min = '1';
      input.max = String(max);
      input.value = String(value);
      input.name = name;
      input.className = `rain-Starter-${name}`;
      wrap.append(input);
      return [wrap, input] as const;
    };
    const cores = navigator.hardwareConcurrency || 2;
    const [gWrap, governors] = field('governors', 'governors', 1, 16);
    const [cWrap, cpus] = field('CPUs each', 'cpus', cores, cores);
    const submit = button('Start cluster', 'rain-Starter-start', () => undefined);
    submit.type = 'submit';
    const status = document.createElement('div');
    status.className = 'rain-Starter-status';
    form.append(heading, gWrap, cWrap, submit, status);
    form.addEventListener('submit', async event => {
      event.preventDefault();
      submit.disabled = true;
      status.textContent = 'starting...';
      try {
        await startCluster(Number(governors.value), Number(cpus.value));
        status.textContent = '';
      } catch (error) {
        status.textContent = '';
        this._actions.startFailed(error as Error);
      } finally {
        submit.disabled = false;
        this.refreshSoon();
      }
    });
    form.hidden = true;
    return form;
  }

  private _actions: ISidebarActions;
  private _status: HTMLElement;
  private _list: HTMLElement;
  private _starter: HTMLElement;
  private _clusters: ICluster[] = [];
  private _views = new Map<number, IClusterView>();
  private _key = '';
  private _pids = '';
  private _refreshes = 0;
  private _interval = POLL_MIN;
  private _timer: number | null = null;
  private _watchTimer: number | null = null;
  private _chosen = new Map<number, string>();
}

/** What is shown of a cluster (monitoring noise rounded, so an idle cluster backs off). */
function stableView(c: ICluster): ICluster {
  return {
    ...c,
    governors: c.governors.map(g => ({
      ...g,
      cpu_usage: g.cpu_usage === null ? null : Math.round(g.cpu_usage / 5),
      mem_usage: null
    }))
  };
}

function renderGovernors(cluster: ICluster): HTMLElement[] {
  if (!cluster.governors.length) {
    return [];
  }
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
  return [table];
}

function renderSessions(cluster: ICluster): HTMLElement[] {
  const running = cluster.sessions.filter(s => shownStatus(s) === 'running').length;
  const caption = document.createElement('div');
  caption.className = 'rain-Sessions-caption';
  caption.textContent = `Sessions: ${running} running, ${cluster.session_count} in all`;
  return [caption, ...cluster.sessions.map(renderSession)];
}

/** A session as the user thinks of it: "running" while it has work left, "done" once all
 * its tasks ended even if its client has not closed it yet, else closed or failed. */
export function shownStatus(s: ISession): string {
  if (s.status !== 'open') {
    return s.status;
  }
  const ended = (s.finished || 0) + (s.failed || 0);
  return s.tasks > 0 && ended >= s.tasks ? 'done' : 'running';
}

function renderSession(s: ISession): HTMLElement {
  const row = document.createElement('div');
  const shown = shownStatus(s);
  row.className = `rain-Session rain-mod-${s.status} rain-mod-shown-${shown}`;
  row.dataset.session = String(s.session);
  row.dataset.status = s.status;
  row.dataset.shown = shown;
  const label = document.createElement('div');
  label.className = 'rain-Session-label';
  const done = s.finished || 0;
  // An ended session runs nothing more: what it had left is cancelled, not waiting.
  const cancelled = s.status !== 'open' ? Math.max(0, s.tasks - done - (s.failed || 0)) : 0;
  row.dataset.cancelled = String(cancelled);
  label.textContent =
    `#${s.session}${s.name ? ' ' + s.name : ''} · ${shown} · ${done}/${s.tasks} tasks` +
    (s.running && s.status === 'open' ? `, ${s.running} running` : '') +
    (s.failed ? `, ${s.failed} failed` : '') +
    (cancelled ? `, ${cancelled} cancelled` : '');
  const progress = s.progress ?? (s.tasks ? done / s.tasks : 0);
  row.dataset.progress = String(progress);
  const shares: [string, number][] = [
    ['finished', done],
    ['failed', s.failed || 0],
    ['cancelled', cancelled]
  ];
  row.append(label, stackedMeter(shares, s.tasks));
  return row;
}

/** A meter with one coloured share per state (``rain-mod-<state>``). */
function stackedMeter(shares: [string, number][], total: number): HTMLElement {
  const outer = document.createElement('div');
  outer.className = 'rain-Meter';
  outer.title = shares
    .filter(([, count]) => count > 0)
    .map(([state, count]) => `${count} ${state}`)
    .join(', ');
  for (const [state, count] of shares) {
    if (count > 0 && total > 0) {
      const bar = document.createElement('div');
      bar.className = `rain-Meter-bar rain-mod-${state}`;
      bar.dataset.state = state;
      bar.style.width = `${Math.min(100, (100 * count) / total).toFixed(2)}%`;
      outer.append(bar);
    }
  }
  return outer;
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
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function ago(seconds: number): string {
  if (!seconds) {
    return '';
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
