/**
 * The document view of a flow file, where the flow is edited in place: a palette of node
 * kinds to drag onto the canvas, drag from a node's handle to another node to connect
 * them, Delete (or the context menu) to remove, drags kept in the file's `layout`, a side
 * panel with the selected element's form, undo and redo, copy and paste of nodes, and a
 * search box. Every edit goes to the server's editor (the one the notebook workbench
 * uses), which answers with the document's new text; the text goes into the JupyterLab
 * document, so the document shows unsaved changes and saves and reverts like any file.
 * The keys and menus that act on the view are JupyterLab commands (commands.ts), which
 * call the actions below.
 *
 * The view's state is a `FlowViewModel` (model.ts); the widgets here only draw it and hand
 * the user's actions back to it. Each part is a child widget of the view, so closing the
 * tab detaches and disposes every part once, through Lumino's layouts.
 */
import { Clipboard } from '@jupyterlab/apputils';
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import type { ISignal } from '@lumino/signaling';
import { Panel, PanelLayout, Widget } from '@lumino/widgets';

import { cancelRun, editFlow, fetchLastRun, fetchSchema, pollRun, startRun, validateFlow } from './api';
import { GraphCanvas } from './canvas';
import type { Palette } from './graph';
import { FlowHeader, ProblemList } from './header';
import { KindList } from './kinds';
import type { Position } from './flowfile';
import { FlowViewModel, type FlowDocument, type FlowServer } from './model';
import { SidePanel, type PanelSubject } from './panel';
import { FlowRuns, type RunServer } from './runs';
import { RunBar, RunOutput } from './runview';
import { SearchBox } from './searchbox';
import { SNIPPET_MIME, readSnippet, type FlowSnippet } from './snippet';

/** The widget factory's name ("Open With" lists it). */
export const FACTORY = 'Flow graph';

/** How long the view waits after a change of the text before reading it again (typing in
 * another editor of the same file changes it at every key). */
const REFRESH_DELAY_MS = 150;

/** The server extension, as the model asks it. */
const SERVER: FlowServer = {
  validate: validateFlow,
  edit: editFlow,
  schema: fetchSchema
};

/** The server extension's runs, as the view's runs ask them. */
const RUNS: RunServer = {
  start: startRun,
  poll: pollRun,
  cancel: cancelRun,
  lastRun: fetchLastRun
};

/** The model's view of a JupyterLab document. */
function documentOf(context: DocumentRegistry.Context): FlowDocument {
  return {
    get path() {
      return context.path;
    },
    get text() {
      return context.model.toString();
    },
    setText(text: string) {
      context.model.fromString(text);
      context.model.dirty = true;
    }
  };
}

export interface IFlowViewOptions {
  /** Ask the server for the flow's problems when it is opened and after each save. */
  validateOnSave: () => boolean;
  /** The colours of node kinds, fetched once from the server extension for every view;
   * until it arrives (or when it cannot be had) nodes are grey. */
  palette: Promise<Palette>;
  /** JupyterLab's theme changed: the graph is drawn again in its colours. */
  themeChanged?: ISignal<unknown, unknown>;
}


/** The graph of one flow file, edited in place. */
export class FlowGraphView extends Widget {
  constructor(context: DocumentRegistry.Context, options: IFlowViewOptions) {
    super();
    this.context = context;
    this._options = options;
    const model = (this.model = new FlowViewModel(documentOf(context), SERVER));
    this.addClass('jp-FlowGraph');

    this.runs = new FlowRuns(RUNS, () => context.path);
    this._canvas = new GraphCanvas(model);
    this._canvas.showRuns(this.runs);
    this._header = new FlowHeader(model, () => this._canvas.fit());
    this._output = new RunOutput(this.runs);
    const kinds = new KindList(model, kind => void model.addNode(kind, this._canvas.besideSelection()));
    this._panel = new SidePanel({
      applyForm: (subject, data) => model.applyForm(subject, data),
      applyYaml: (subject, text) => model.applyYaml(subject, text)
    });
    // the side panel takes room only while something is selected
    this._side = new Panel();
    this._side.addClass('jp-FlowGraph-side');
    this._side.addWidget(this._panel);
    this._side.addWidget(this._output);
    this._side.hide();
    this._search = new SearchBox(model, {
      mark: ids => this._canvas.mark(ids),
      reveal: id => this._canvas.reveal(id),
      focus: () => this._canvas.canvas.focus()
    });
    const centre = new Panel();
    centre.addClass('jp-FlowGraph-centre');
    centre.addWidget(this._canvas);
    centre.addWidget(this._search);
    const body = new Panel();
    body.addClass('jp-FlowGraph-body');
    body.addWidget(kinds);
    body.addWidget(centre);
    body.addWidget(this._side);
    const problems = new ProblemList(model, node => {
      model.select({ nodes: [node], edges: [] });
      this._canvas.reveal(node);
    });
    const layout = new PanelLayout();
    layout.addWidget(this._header);
    layout.addWidget(new RunBar(this.runs));
    layout.addWidget(body);
    layout.addWidget(problems);
    this.layout = layout;

    model.changed.connect(() => {
      this.node.dataset.state = model.state;
    }, this);
    model.subjectChanged.connect((_, subject) => this._showSubject(subject), this);
    context.model.contentChanged.connect(this._scheduleRefresh, this);
    context.fileChanged.connect(this._onFileChanged, this);
    context.saveState.connect((_, state) => {
      if (state === 'completed') {
        model.saved();
      }
    }, this);
    context.pathChanged.connect(() => this._header.showTitle(), this);
    void context.ready.then(() => {
      if (this.isDisposed) {
        return;
      }
      model.refresh();
      if (this._options.validateOnSave()) {
        void model.revalidate();
      }
      // the run history's last run of the file, in colours on the graph
      this.runs.loadLast().catch(error => console.warn('jupyter-flow: the last run could not be read', error));
    });
    // after a theme change, once its CSS is in
    options.themeChanged?.connect(() => requestAnimationFrame(() => this._canvas.restyle()), this);
    void options.palette.then(palette => {
      if (!this.isDisposed) {
        model.palette = palette;
      }
    });
  }

  readonly context: DocumentRegistry.Context;

  /** The state this view draws, and the actions it takes. */
  readonly model: FlowViewModel;

  /** The runs of the flow, and the last run the run history keeps of it. */
  readonly runs: FlowRuns;

  /** Undo the last action in the view (after the edits in flight). */
  undo(): Promise<boolean> {
    return this.model.undo();
  }

  redo(): Promise<boolean> {
    return this.model.redo();
  }

  /** Copy the selected nodes (and the edges between them) to JupyterLab's clipboard. */
  copy(): boolean {
    const snippet = this.model.copy(this._canvas.positions());
    if (snippet) {
      Clipboard.getInstance().setData(SNIPPET_MIME, JSON.stringify(snippet));
    }
    return snippet !== null;
  }

  async cut(): Promise<boolean> {
    const snippet = await this.model.cut(this._canvas.positions());
    if (snippet) {
      Clipboard.getInstance().setData(SNIPPET_MIME, JSON.stringify(snippet));
    }
    return snippet !== null;
  }

  /** Whether the clipboard holds copied nodes. */
  static canPaste(): boolean {
    return Clipboard.getInstance().hasData(SNIPPET_MIME);
  }

  /** Paste copied nodes with their top left at `at` (graph coordinates), else under the
   * drawing, level with where they were copied. */
  paste(at?: Position): Promise<string[]> {
    const snippet = readSnippet(Clipboard.getInstance().getData(SNIPPET_MIME));
    return snippet ? this.model.paste(snippet, { at: at ?? this._below(snippet) }) : Promise.resolve([]);
  }

  /** Paste where the context menu was opened (or as `paste` does). */
  pasteHere(): Promise<string[]> {
    return this.paste(this._canvas.contextPosition ?? undefined);
  }

  /** Paste the selected nodes again, under the drawing. */
  duplicate(): Promise<string[]> {
    const snippet = this.model.copy(this._canvas.positions());
    return snippet ? this.model.paste(snippet, { at: this._below(snippet) }) : Promise.resolve([]);
  }

  /** Add a node of `kind` where the context menu was opened (or beside the selection). */
  addNodeHere(kind: string): void {
    void this.model.addNode(kind, this._canvas.contextPosition ?? this._canvas.besideSelection());
  }

  /** Open the side panel's form of the one selected node. */
  openForm(): void {
    const node = this.model.selection.nodes[0];
    if (node) {
      this.model.select({ nodes: [node], edges: [] });
    }
  }

  /** Open the search box. */
  find(): void {
    this._search.open();
  }

  /** Show the whole flow. */
  fit(): void {
    this._canvas.fit();
  }

  /** Place every node in layered bands that fit the pane, and keep that in the file. */
  arrange(): void {
    void this.model.move(this._canvas.arranged()).then(() => this._canvas.fit());
  }

  /** Under the drawing, level with where `snippet` was copied from. */
  private _below(snippet: FlowSnippet): Position {
    const below = this._canvas.below();
    const xs = snippet.nodes.flatMap(n => (n.position ? [n.position.x] : []));
    return { x: xs.length > 0 ? Math.min(...xs) : below.x, y: below.y };
  }

  /** The view's parts are its children: Lumino detaches and disposes each of them once. */
  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._refreshTimer);
    // a run going on goes on (within its time bound) and is kept in the run history
    this.runs.dispose();
    this.model.dispose();
    super.dispose();
  }

  private _showSubject(subject: PanelSubject | null): void {
    this._panel.showSubject(subject);
    this._output.showNode(subject?.kind === 'node' ? String(subject.key) : null);
    const hidden = subject === null;
    if (this._side.isHidden !== hidden) {
      this._side.setHidden(hidden);
      // the canvas changed size: refit when a node fell out of view
      this._canvas.resized();
    }
  }

  private _scheduleRefresh(): void {
    window.clearTimeout(this._refreshTimer);
    this._refreshTimer = window.setTimeout(() => {
      if (!this.isDisposed && this.context.isReady) {
        this.model.refresh();
      }
    }, REFRESH_DELAY_MS);
  }

  private _onFileChanged(): void {
    this._scheduleRefresh();
    if (this._options.validateOnSave() && this.context.isReady) {
      void this.model.revalidate();
    }
  }

  private _options: IFlowViewOptions;
  private _header: FlowHeader;
  private _canvas: GraphCanvas;
  private _search: SearchBox;

  private _panel: SidePanel;
  private _output: RunOutput;
  private _side: Panel;
  private _refreshTimer = 0;
}

export type FlowDocumentWidget = DocumentWidget<FlowGraphView>;

/** Makes graph views of flow files; `decorate` adds the toolbar buttons. */
export class FlowGraphFactory extends ABCWidgetFactory<FlowDocumentWidget> {
  constructor(
    options: DocumentRegistry.IWidgetFactoryOptions<FlowDocumentWidget>,
    private _viewOptions: IFlowViewOptions,
    private _decorate: (widget: FlowDocumentWidget) => void
  ) {
    super(options);
  }

  protected createNewWidget(context: DocumentRegistry.Context): FlowDocumentWidget {
    const content = new FlowGraphView(context, this._viewOptions);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('jp-FlowGraphDocument');
    this._decorate(widget);
    return widget;
  }
}
