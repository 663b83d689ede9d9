import { JupyterFrontEnd } from '@jupyterlab/application';
import { Widget } from '@lumino/widgets';

/* Notebooks are reached through the shell and the notebook's shared model (the types
 * below are the few members used), so the extension needs no build-time dependency on
 * the notebook package. */

interface ISharedNotebook {
  insertCell(index: number, cell: { cell_type: string; source: string }): unknown;
}

interface INotebookContent extends Widget {
  activeCellIndex: number;
  model: { sharedModel: ISharedNotebook } | null;
  mode: string;
}

export interface INotebookLike extends Widget {
  content: INotebookContent;
}

export function isNotebook(widget: Widget | null | undefined): widget is INotebookLike {
  const content = (widget as any)?.content;
  return (
    !!widget &&
    widget.hasClass('jp-NotebookPanel') &&
    !!content &&
    typeof content.activeCellIndex === 'number' &&
    !!content.model?.sharedModel
  );
}

let lastNotebook: INotebookLike | null = null;

/** Remember the last notebook that had focus (a click in the sidebar moves the focus). */
export function trackNotebooks(app: JupyterFrontEnd): void {
  const shell = app.shell as any;
  const update = () => {
    const widget = app.shell.currentWidget;
    if (isNotebook(widget)) {
      lastNotebook = widget;
    }
  };
  if (shell.currentChanged) {
    shell.currentChanged.connect(update);
  }
  update();
}

export function currentNotebook(app: JupyterFrontEnd): INotebookLike | null {
  const widget = app.shell.currentWidget;
  if (isNotebook(widget)) {
    return widget;
  }
  if (lastNotebook && !lastNotebook.isDisposed && lastNotebook.isAttached) {
    return lastNotebook;
  }
  for (const w of app.shell.widgets('main')) {
    if (isNotebook(w)) {
      return w;
    }
  }
  return null;
}

/** Insert a code cell with `source` below the active cell of the current notebook. */
export function insertCode(app: JupyterFrontEnd, source: string): boolean {
  const notebook = currentNotebook(app);
  if (!notebook || !notebook.content.model) {
    return false;
  }
  const content = notebook.content;
  const index = Math.max(0, content.activeCellIndex + 1);
  content.model!.sharedModel.insertCell(index, { cell_type: 'code', source });
  content.activeCellIndex = index;
  app.shell.activateById(notebook.id);
  return true;
}

export function clientCode(address: string): string {
  const [host, port] = splitAddress(address);
  return [
    'from rain.client import Client',
    '',
    `client = Client(${JSON.stringify(host)}, ${port})`,
    'client'
  ].join('\n');
}

function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), Number(address.slice(i + 1))];
}
