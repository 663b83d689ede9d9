import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IFrame } from '@jupyterlab/ui-components';
import { DockLayout, Widget } from '@lumino/widgets';

import { ICluster, IChart, proxyUrl } from './api';
import { rainIcon } from './icon';
import { currentNotebook } from './notebook';

/** A dashboard chart of one cluster, in an iframe, in JupyterLab's main area. */
export class DashboardPane extends MainAreaWidget<IFrame> {
  constructor(cluster: ICluster, chart: IChart) {
    const content = new IFrame({
      sandbox: ['allow-scripts', 'allow-same-origin', 'allow-popups']
    });
    content.url = proxyUrl(cluster.http_port, chart.url);
    content.addClass('rain-DashboardPane-frame');
    super({ content });
    this.id = paneId(cluster, chart);
    this.title.label = `${chart.title} · ${cluster.address}`;
    this.title.caption = `Rain dashboard: ${chart.title} (server ${cluster.address})`;
    this.title.icon = rainIcon;
    this.title.closable = true;
    this.addClass('rain-DashboardPane');
    this.node.dataset.rainChart = chart.id;
    this.node.dataset.rainHttpPort = String(cluster.http_port);
  }
}

export function paneId(cluster: ICluster, chart: IChart): string {
  return `rain-chart-${cluster.http_port}-${chart.id.replace(/[^\w-]/g, '_')}`;
}

/** Where a pane opens: as a tab beside the last pane, or splitting it. */
export type PanePlace = 'tab' | 'split-right' | 'split-bottom';

/** Opens panes docked beside the notebook: the first one splits the main area to the
 * right of the current notebook; later ones open as a tab next to the last pane, or tile
 * it (split right or below), as asked. */
export class PaneOpener {
  constructor(app: JupyterFrontEnd) {
    this._app = app;
  }

  open(cluster: ICluster, chart: IChart, place: PanePlace = 'tab'): DashboardPane {
    const shell = this._app.shell;
    const id = paneId(cluster, chart);
    for (const widget of shell.widgets('main')) {
      if (widget.id === id && widget instanceof DashboardPane) {
        shell.activateById(id);
        return widget;
      }
    }
    const pane = new DashboardPane(cluster, chart);
    const last = this._lastPane;
    let options: IDockOptions;
    if (last && !last.isDisposed && last.isAttached) {
      options = { ref: last.id, mode: place === 'tab' ? 'tab-after' : place };
    } else {
      const notebook = currentNotebook(this._app);
      options = notebook
        ? { ref: notebook.id, mode: 'split-right' }
        : { mode: 'split-right' };
    }
    shell.add(pane, 'main', options);
    shell.activateById(pane.id);
    this._lastPane = pane;
    return pane;
  }

  /** Close the panes of the cluster with this HTTP port. */
  closeFor(httpPort: number): void {
    for (const pane of this._panes()) {
      if (Number(pane.node.dataset.rainHttpPort) === httpPort) {
        pane.dispose();
      }
    }
  }

  private _panes(): DashboardPane[] {
    const panes: DashboardPane[] = [];
    for (const widget of this._app.shell.widgets('main')) {
      if (widget instanceof DashboardPane) {
        panes.push(widget);
      }
    }
    return panes;
  }

  private _app: JupyterFrontEnd;
  private _lastPane: Widget | null = null;
}

interface IDockOptions {
  ref?: string;
  mode?: DockLayout.InsertMode;
}
