/**
 * jupyter-flow in JupyterLab: flow files open as graphs, and four commands (palette,
 * file-browser context menu, launcher): new model flow, open in notebook workbench (the
 * companion notebook, its cell run), validate, export to a production notebook. The
 * commands that act inside a flow's view (undo, copy, find, ...) are in commands.ts.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, IThemeManager, Notification, ToolbarButton, WidgetTracker } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { FlowApiError, exportFlow, fetchPalette, newFlow, validateFlow, workbenchFor } from './api';
import { addViewCommands } from './commands';
import { RunCommandIDs, addRunCommands } from './runcommands';
import { isFlowPath } from './flowfile';
import { EMPTY_PALETTE } from './graph';
import { flowIcon } from './icons';
import { problemText, type Problem } from './problems';
import { FACTORY, FlowGraphFactory, type FlowDocumentWidget } from './widget';

const PLUGIN_ID = 'jupyter-flow:plugin';
const CATEGORY = 'Model flows';

namespace CommandIDs {
  export const newFlow = 'jupyter-flow:new';
  export const openWorkbench = 'jupyter-flow:open-workbench';
  export const validate = 'jupyter-flow:validate';
  export const exportNotebook = 'jupyter-flow:export';
}

const FILE_TYPES = ['flow-yaml', 'flow-json'];
/** Context-menu selectors (one each: a selector may not hold a comma) of flow files. */
const ON_FLOW_FILE = FILE_TYPES.map(t => `.jp-DirListing-item[data-file-type="${t}"]`);

/** What of an opened notebook panel the workbench command needs. */
interface RunnableDocument {
  id: string;
  context: { ready: Promise<void> };
  sessionContext?: { ready: Promise<void> };
}

interface Defaults {
  device: string;
  batchSize: number;
  validateOnSave: boolean;
}

function fileName(path: string): string {
  return path.split('/').pop() ?? path;
}

function summary(problems: readonly Problem[]): string {
  const first = problems[0] ? problemText(problems[0]) : '';
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  const text = `${first}${more}`;
  return text.length > 220 ? `${text.slice(0, 217)}...` : text;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Flow files as graphs; validate, export and open them in the workbench.',
  autoStart: true,
  requires: [ISettingRegistry],
  optional: [ICommandPalette, ILauncher, IDefaultFileBrowser, ILayoutRestorer, IMainMenu, IThemeManager],
  activate: async (
    app: JupyterFrontEnd,
    settingRegistry: ISettingRegistry,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    browser: IDefaultFileBrowser | null,
    restorer: ILayoutRestorer | null,
    mainMenu: IMainMenu | null,
    themes: IThemeManager | null
  ) => {
    const defaults: Defaults = { device: 'auto', batchSize: 8, validateOnSave: true };
    const { commands, docRegistry } = app;

    docRegistry.addFileType({
      name: 'flow-yaml',
      displayName: 'Model flow',
      extensions: ['.flow.yaml', '.flow.yml'],
      mimeTypes: ['text/x-yaml'],
      fileFormat: 'text',
      contentType: 'file',
      icon: flowIcon
    });
    docRegistry.addFileType({
      name: 'flow-json',
      displayName: 'Model flow (JSON)',
      extensions: ['.flow.json'],
      mimeTypes: ['application/json'],
      fileFormat: 'text',
      contentType: 'file',
      icon: flowIcon
    });

    // The node-kind colours, asked of the server once for every view; without them the
    // graph draws all nodes grey.
    const kindPalette = fetchPalette().catch(error => {
      console.warn('jupyter-flow: no palette from the server extension, nodes are drawn grey', error);
      return EMPTY_PALETTE;
    });

    const tracker = new WidgetTracker<FlowDocumentWidget>({ namespace: 'jupyter-flow' });
    const openFile = (path: string, mode?: string) =>
      commands.execute('docmanager:open', mode ? { path, options: { mode } } : { path });

    const factory = new FlowGraphFactory(
      {
        name: FACTORY,
        label: 'Flow graph',
        fileTypes: FILE_TYPES,
        defaultFor: FILE_TYPES,
        modelName: 'text'
      },
      {
        validateOnSave: () => defaults.validateOnSave,
        palette: kindPalette,
        themeChanged: themes?.themeChanged
      },
      widget => {
        const button = (name: string, label: string, command: string, tooltip: string) =>
          widget.toolbar.addItem(
            name,
            new ToolbarButton({
              label,
              tooltip,
              className: `jp-FlowGraph-${name}`,
              onClick: () => void commands.execute(command, { path: widget.context.path })
            })
          );
        button('run', 'Run', RunCommandIDs.run, 'Run the flow (asks for its inputs) and colour each node by its state');
        button('schedule', 'Schedule…', RunCommandIDs.schedule, 'Make a jupyter-scheduler job of the flow\'s production notebook');
        button('validate', 'Validate', CommandIDs.validate, 'Check the flow on the server');
        button('workbench', 'Notebook workbench', CommandIDs.openWorkbench, 'Open the flow in its workbench notebook and run it');
        button('export', 'Export', CommandIDs.exportNotebook, 'Write the production notebook');
      }
    );
    factory.widgetCreated.connect((_, widget) => {
      widget.title.icon = flowIcon;
      widget.context.pathChanged.connect(() => void tracker.save(widget));
      void tracker.add(widget);
    });
    docRegistry.addWidgetFactory(factory);
    addViewCommands(app, tracker, kindPalette, mainMenu);

    if (restorer) {
      void restorer.restore(tracker, {
        command: 'docmanager:open',
        args: widget => ({ path: widget.context.path, factory: FACTORY }),
        name: widget => widget.context.path
      });
    }

    /** The flow a command acts on: its `path` argument, the file right-clicked in the
     * file browser, the flow view in front, or the flow selected in the file browser. */
    const flowPath = (args: ReadonlyPartialJSONObject): string | null => {
      if (typeof args.path === 'string' && args.path) {
        return args.path;
      }
      const selected = browser ? Array.from(browser.selectedItems()).map(item => item.path) : [];
      if (app.contextMenuHitTest(node => node.classList.contains('jp-DirListing-item'))) {
        return selected.find(isFlowPath) ?? null;
      }
      const current = tracker.currentWidget;
      if (current && app.shell.currentWidget === current) {
        return current.context.path;
      }
      return selected.find(isFlowPath) ?? current?.context.path ?? null;
    };
    const viewOf = (path: string) => tracker.find(widget => widget.context.path === path);
    /** The view of a flow file, opened when it is not, in front. */
    const flowView = async (path: string): Promise<FlowDocumentWidget | null> => {
      const found = viewOf(path);
      if (found) {
        app.shell.activateById(found.id);
        await found.context.ready;
        return found;
      }
      await openFile(path);
      const opened = viewOf(path) ?? null;
      await opened?.context.ready;
      return opened;
    };
    addRunCommands(app, tracker, flowPath, flowView);

    // A flow's validation problems stay up until the flow is valid, validated again, or
    // another document comes to the front; they never hang over other files.
    const problemNotes = new Map<string, string>();
    const dismissNote = (path: string) => {
      const id = problemNotes.get(path);
      if (id !== undefined) {
        Notification.dismiss(id);
        problemNotes.delete(path);
      }
    };
    app.shell.currentChanged?.connect(() => {
      const current = tracker.currentWidget;
      const front = current && app.shell.currentWidget === current ? current.context.path : null;
      for (const path of [...problemNotes.keys()]) {
        if (path !== front) {
          dismissNote(path);
        }
      }
    });

    const fail = (what: string, error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      Notification.error(`${what}: ${message}`, { autoClose: false });
    };

    commands.addCommand(CommandIDs.newFlow, {
      label: args => (args.isLauncher ? 'Model Flow' : 'New model flow'),
      caption: 'Create a flow file and a workbench notebook bound to it',
      icon: args => (args.isPalette ? undefined : flowIcon),
      execute: async args => {
        const directory =
          typeof args.cwd === 'string' ? args.cwd : browser ? browser.model.path : '';
        try {
          const reply = await newFlow(directory, defaults.device, defaults.batchSize);
          await openFile(reply.notebook);
          await openFile(reply.flow, 'split-right');
          Notification.success(`Created ${fileName(reply.flow)} and ${fileName(reply.notebook)}`, {
            autoClose: 4000
          });
          return reply;
        } catch (error) {
          fail('New model flow', error);
        }
      }
    });

    /** A command on one flow file (see `flowPath`); disabled when there is none. */
    const addFlowCommand = (
      id: string,
      options: { label: string; caption: string; icon?: boolean },
      run: (path: string) => Promise<unknown>
    ) =>
      commands.addCommand(id, {
        label: options.label,
        caption: options.caption,
        icon: options.icon ? args => (args.isPalette ? undefined : flowIcon) : undefined,
        isEnabled: args => flowPath(args) !== null,
        execute: args => {
          const path = flowPath(args);
          return path ? run(path) : undefined;
        }
      });

    addFlowCommand(
      CommandIDs.openWorkbench,
      {
        label: 'Open in notebook workbench',
        caption: 'Open (or create) the notebook beside the flow file with a Workbench on it, and run it when it is the workbench made for this flow',
        icon: true
      },
      async path => {
        try {
          const reply = await workbenchFor(path);
          const notebook = (await openFile(reply.notebook)) as RunnableDocument | undefined;
          if (reply.runnable && notebook?.sessionContext) {
            // run its cell, so the workbench shows at once (only a notebook made as this
            // flow's workbench: any other notebook of that name is opened and left alone)
            await notebook.context.ready;
            await notebook.sessionContext.ready;
            app.shell.activateById(notebook.id);
            await commands.execute('notebook:run-all-cells');
          }
          return reply;
        } catch (error) {
          fail(`Open ${fileName(path)} in notebook workbench`, error);
        }
      }
    );

    addFlowCommand(
      CommandIDs.validate,
      { label: 'Validate flow', caption: 'Check the flow on the server and mark its problems on the graph' },
      async path => {
        try {
          const view = viewOf(path);
          const reply = view ? await view.content.model.validate() : await validateFlow(path);
          dismissNote(path);
          if (reply.valid) {
            Notification.success(`${fileName(path)} is valid (${reply.nodes} nodes, ${reply.edges} edges)`, {
              autoClose: 5000
            });
          } else {
            const count = `${reply.problems.length} problem${reply.problems.length === 1 ? '' : 's'}`;
            const id = Notification.error(`${fileName(path)}: ${count}. ${summary(reply.problems)}`, {
              autoClose: false,
              actions: view
                ? []
                : [{ label: 'Show graph', callback: () => void openFile(path) }]
            });
            problemNotes.set(path, id);
          }
          return reply;
        } catch (error) {
          fail(`Validate ${fileName(path)}`, error);
        }
      }
    );

    addFlowCommand(
      CommandIDs.exportNotebook,
      { label: 'Export to production notebook', caption: 'Write a papermill-ready notebook that runs this flow, and open it' },
      async path => {
        const view = viewOf(path);
        try {
          if (view?.context.model.dirty) {
            await view.context.save();
          }
          const reply = await exportFlow(path);
          await openFile(reply.notebook);
          Notification.success(`Exported ${fileName(path)} to ${fileName(reply.notebook)}`, { autoClose: 5000 });
          return reply;
        } catch (error) {
          if (error instanceof FlowApiError && error.problems.length > 0) {
            view?.content.model.setProblems(error.problems);
            Notification.error(`${error.message}. ${summary(error.problems)}`, { autoClose: false });
          } else {
            fail(`Export ${fileName(path)}`, error);
          }
        }
      }
    );

    for (const command of [...Object.values(CommandIDs), ...Object.values(RunCommandIDs)]) {
      palette?.addItem({ command, category: CATEGORY });
    }
    launcher?.add({ command: CommandIDs.newFlow, category: 'Other', rank: 10 });

    for (const selector of ON_FLOW_FILE) {
      app.contextMenu.addItem({ type: 'separator', selector, rank: 9 });
      app.contextMenu.addItem({ command: CommandIDs.validate, selector, rank: 9.1 });
      app.contextMenu.addItem({ command: CommandIDs.openWorkbench, selector, rank: 9.2 });
      app.contextMenu.addItem({ command: CommandIDs.exportNotebook, selector, rank: 9.3 });
      app.contextMenu.addItem({ command: RunCommandIDs.run, selector, rank: 9.4 });
      app.contextMenu.addItem({ command: RunCommandIDs.schedule, selector, rank: 9.5 });
    }
    app.contextMenu.addItem({ command: CommandIDs.newFlow, selector: '.jp-DirListing-content', rank: 60 });

    try {
      const settings = await settingRegistry.load(PLUGIN_ID);
      const read = () => {
        defaults.device = settings.get('device').composite as string;
        defaults.batchSize = settings.get('batchSize').composite as number;
        defaults.validateOnSave = settings.get('validateOnSave').composite as boolean;
      };
      read();
      settings.changed.connect(read);
    } catch (error) {
      console.warn('jupyter-flow: settings could not be loaded, using defaults', error);
    }
  }
};

export default plugin;
