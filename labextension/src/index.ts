import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog, showErrorMessage } from '@jupyterlab/apputils';

import { IChart, stopCluster } from './api';
import { clientCode, insertCode, trackNotebooks } from './notebook';
import { PaneOpener } from './panes';
import { RainSidebar } from './sidebar';

namespace CommandIDs {
  export const showSidebar = 'rain:show-sidebar';
  export const refresh = 'rain:refresh';
  export const openInLab = 'rain:open-in-lab';
}

/** Charts opened by "Open in JupyterLab", when the server has them. */
const DEFAULT_PANES = ['sessions', 'governors'];

/** The attribute of the cluster card's "Open in JupyterLab" link. */
const CARD_ATTRIBUTE = 'data-rain-open-in-lab';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'rain-jupyter:plugin',
  description: 'Rain clusters in JupyterLab: a sidebar, docked dashboard panes and a proxy.',
  autoStart: true,
  optional: [ILabShell, ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    const panes = new PaneOpener(app);
    trackNotebooks(app);

    const sidebar = new RainSidebar({
      openChart: (cluster, chart, place) => {
        panes.open(cluster, chart, place);
      },
      startFailed: error => {
        void showErrorMessage('Cannot start a Rain cluster', error);
      },
      insertClient: cluster => {
        if (!insertCode(app, clientCode(cluster.address))) {
          void showErrorMessage(
            'No notebook',
            'Open a notebook to insert the code connecting to this cluster.'
          );
        }
      },
      stopCluster: async cluster => {
        const result = await showDialog({
          title: 'Stop Rain cluster',
          body:
            `Stop the Rain cluster at ${cluster.address} (pid ${cluster.pid}) and its ` +
            `${cluster.governors.length} governor(s)? Sessions still running on it fail.`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
        });
        if (!result.button.accept) {
          return false;
        }
        panes.closeFor(cluster.http_port);
        try {
          await stopCluster(cluster.pid);
        } catch (error) {
          void showErrorMessage('Cannot stop the Rain cluster', error as Error);
          return false;
        }
        return true;
      }
    });
    app.shell.add(sidebar, 'left', { rank: 900 });
    if (restorer) {
      restorer.add(sidebar, 'rain-sidebar');
    }
    sidebar.start();

    /** Open the default panes of the cluster with this server address or HTTP port. */
    const openInLab = async (address?: string, httpPort?: number): Promise<boolean> => {
      app.shell.activateById(sidebar.id);
      const clusters = await sidebar.refresh();
      const cluster = clusters.find(
        c =>
          (address && sameAddress(c.address, address)) ||
          (httpPort && c.http_port === httpPort)
      );
      if (!cluster) {
        return false;
      }
      const charts: IChart[] = DEFAULT_PANES.map(id =>
        cluster.charts.find(c => c.id === id)
      ).filter((c): c is IChart => !!c);
      if (!charts.length && cluster.charts.length) {
        charts.push(cluster.charts[0]);
      }
      for (const chart of charts) {
        panes.open(cluster, chart);
      }
      return charts.length > 0;
    };

    app.commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Rain Clusters',
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Rain Clusters',
      execute: () => sidebar.refreshSoon()
    });
    app.commands.addCommand(CommandIDs.openInLab, {
      label: 'Open Rain Dashboard Panes',
      execute: args =>
        openInLab(
          args.address as string | undefined,
          args.httpPort === undefined ? undefined : Number(args.httpPort)
        )
    });
    if (palette) {
      for (const command of [CommandIDs.showSidebar, CommandIDs.refresh]) {
        palette.addItem({ command, category: 'Rain' });
      }
    }

    // The "Open in JupyterLab" link of the cluster card in notebook outputs: handled here
    // (the link itself opens the plain dashboard where this extension is not installed).
    document.addEventListener(
      'click',
      event => {
        const target = (event.target as Element | null)?.closest?.(`[${CARD_ATTRIBUTE}]`);
        if (!target) {
          return;
        }
        event.preventDefault();
        event.stopPropagation();
        const address = target.getAttribute(CARD_ATTRIBUTE) || undefined;
        const port = Number(target.getAttribute('data-rain-http-port')) || undefined;
        const href = target.getAttribute('href');
        void openInLab(address, port).then(opened => {
          if (!opened) {
            void showErrorMessage(
              'Rain cluster not found',
              `No Rain server at ${address ?? port} runs on the Jupyter server's machine, ` +
                'so its dashboard cannot be shown here' +
                (href ? `; it may be reachable directly at ${href}` : '') +
                '.'
            );
          }
        });
      },
      true
    );

    if (labShell) {
      // Coming back to a notebook is a good moment to look again.
      labShell.currentChanged.connect(() => sidebar.refreshSoon());
    }
  }
};

function sameAddress(a: string, b: string): boolean {
  const norm = (x: string) => x.replace(/^localhost:/, '127.0.0.1:');
  return norm(a) === norm(b);
}

export default plugin;
