/**
 * What a user does to the flow view in front, as JupyterLab commands: undo and redo (also
 * the Edit menu's), copy, cut, paste, duplicate, delete, select all, find, fit, layout,
 * add a node here and open a node's form. Their keys are bound to the view's graph in the
 * plugin's settings schema (`jupyter.lab.shortcuts`), so users can rebind them; the
 * graph's context menu is JupyterLab's, with one set of items for the background and one
 * for nodes and edges (the canvas says which was right-clicked).
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { WidgetTracker } from '@jupyterlab/apputils';
import type { IMainMenu } from '@jupyterlab/mainmenu';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Menu } from '@lumino/widgets';

import type { Palette } from './graph';
import { FlowGraphView, type FlowDocumentWidget } from './widget';

export namespace ViewCommandIDs {
  export const undo = 'jupyter-flow:undo';
  export const redo = 'jupyter-flow:redo';
  export const copy = 'jupyter-flow:copy';
  export const cut = 'jupyter-flow:cut';
  export const paste = 'jupyter-flow:paste';
  export const duplicate = 'jupyter-flow:duplicate';
  export const remove = 'jupyter-flow:delete';
  export const selectAll = 'jupyter-flow:select-all';
  export const find = 'jupyter-flow:find';
  export const fit = 'jupyter-flow:fit';
  export const arrange = 'jupyter-flow:layout';
  export const addNode = 'jupyter-flow:add-node';
  export const openForm = 'jupyter-flow:open-form';
}

/** The graph's canvas, and what its last right click was on. */
const CANVAS = '.jp-FlowGraph .jp-FlowGraph-canvas';
const ON_BACKGROUND = `${CANVAS}[data-context="background"]`;
const ON_NODE = `${CANVAS}[data-context="node"]`;
const ON_EDGE = `${CANVAS}[data-context="edge"]`;

/** Register the view's commands, their context menu items and the Edit menu's undoers;
 * `palette` gives the kinds "Add node here" offers. */
export function addViewCommands(
  app: JupyterFrontEnd,
  tracker: WidgetTracker<FlowDocumentWidget>,
  palette: Promise<Palette>,
  mainMenu: IMainMenu | null
): void {
  const { commands } = app;

  /** The flow view in front (a right click on a view focuses its graph first). */
  const current = (): FlowGraphView | null => {
    const widget = tracker.currentWidget;
    return widget && app.shell.currentWidget === widget ? widget.content : null;
  };
  /** A key pressed in the graph runs its command even when there is nothing to do: the
   * view's note then says so. Menus show the command disabled instead. */
  const byKey = (args: ReadonlyPartialJSONObject) => args._luminoEvent !== undefined;

  const add = (
    id: string,
    label: string,
    run: (view: FlowGraphView, args: ReadonlyPartialJSONObject) => unknown,
    enabled: (view: FlowGraphView) => boolean = () => true,
    caption?: string
  ) =>
    commands.addCommand(id, {
      label,
      caption: caption ?? label,
      isEnabled: args => {
        const view = current();
        return view !== null && (byKey(args) || enabled(view));
      },
      execute: args => {
        const view = current();
        return view ? run(view, args) : undefined;
      }
    });

  const selected = (view: FlowGraphView) => view.model.selection.nodes.length > 0;
  add(ViewCommandIDs.undo, 'Undo Flow Edit', view => view.undo(), view => view.model.canUndo, 'Undo the last edit of the flow');
  add(ViewCommandIDs.redo, 'Redo Flow Edit', view => view.redo(), view => view.model.canRedo, 'Redo the last undone edit of the flow');
  add(ViewCommandIDs.copy, 'Copy Nodes', view => view.copy(), selected, 'Copy the selected nodes and the edges between them');
  add(ViewCommandIDs.cut, 'Cut Nodes', view => view.cut(), selected, 'Cut the selected nodes and the edges between them');
  add(
    ViewCommandIDs.paste,
    'Paste Nodes',
    (view, args) => (args.here ? view.pasteHere() : view.paste()),
    () => FlowGraphView.canPaste(),
    'Paste copied nodes, renamed where their ids are taken'
  );
  add(ViewCommandIDs.duplicate, 'Duplicate', view => view.duplicate(), selected, 'Duplicate the selected nodes');
  add(
    ViewCommandIDs.remove,
    'Delete',
    view => view.model.deleteSelected(),
    view => view.model.selection.nodes.length + view.model.selection.edges.length > 0,
    'Delete the selected nodes and edges'
  );
  add(ViewCommandIDs.selectAll, 'Select All Nodes', view => view.model.selectAll());
  add(ViewCommandIDs.find, 'Find Node…', view => view.find(), undefined, 'Find nodes by id, kind or config');
  add(ViewCommandIDs.fit, 'Fit Whole Flow', view => view.fit(), undefined, 'Show the whole flow');
  add(ViewCommandIDs.arrange, 'Lay Out Flow', view => view.arrange(), undefined, 'Place every node in layers and keep the places');
  add(ViewCommandIDs.openForm, 'Open Form', view => view.openForm(), view => view.model.selection.nodes.length === 1);
  commands.addCommand(ViewCommandIDs.addNode, {
    label: args => (typeof args.kind === 'string' ? args.kind : 'Add Node'),
    caption: 'Add a node of this kind where the menu was opened',
    isEnabled: args => current() !== null && typeof args.kind === 'string',
    execute: args => current()?.addNodeHere(String(args.kind))
  });

  // the Edit menu's Undo and Redo act on the flow view in front
  if (mainMenu) {
    mainMenu.editMenu.undoers.undo.add({ id: ViewCommandIDs.undo, isEnabled: w => tracker.has(w) });
    mainMenu.editMenu.undoers.redo.add({ id: ViewCommandIDs.redo, isEnabled: w => tracker.has(w) });
  }

  // the graph's context menu: on the background, and on a node or an edge
  const kinds = new Menu({ commands });
  kinds.title.label = 'Add Node Here';
  void palette.then(p => {
    for (const kind of [...p.kinds.keys()].sort()) {
      kinds.addItem({ command: ViewCommandIDs.addNode, args: { kind } });
    }
  });
  const menu = app.contextMenu;
  menu.addItem({ type: 'submenu', submenu: kinds, selector: ON_BACKGROUND, rank: 1 });
  menu.addItem({ command: ViewCommandIDs.paste, args: { here: true }, selector: ON_BACKGROUND, rank: 2 });
  menu.addItem({ command: ViewCommandIDs.selectAll, selector: ON_BACKGROUND, rank: 3 });
  menu.addItem({ command: ViewCommandIDs.fit, selector: ON_BACKGROUND, rank: 4 });
  menu.addItem({ command: ViewCommandIDs.arrange, selector: ON_BACKGROUND, rank: 5 });
  menu.addItem({ command: ViewCommandIDs.openForm, selector: ON_NODE, rank: 1 });
  menu.addItem({ command: ViewCommandIDs.duplicate, selector: ON_NODE, rank: 2 });
  menu.addItem({ command: ViewCommandIDs.copy, selector: ON_NODE, rank: 3 });
  menu.addItem({ command: ViewCommandIDs.cut, selector: ON_NODE, rank: 4 });
  for (const selector of [ON_NODE, ON_EDGE]) {
    menu.addItem({ command: ViewCommandIDs.remove, selector, rank: 5 });
  }
}
