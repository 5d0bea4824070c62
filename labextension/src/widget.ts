/**
 * The document view of a flow file, where the flow is edited in place: a palette of node
 * kinds to drag onto the canvas, drag from a node's handle to another node to connect
 * them, Delete (or the context menu) to remove, drags kept in the file's `layout`, and a
 * side panel with the selected element's form. Every edit goes to the server's editor
 * (the one the notebook workbench uses), which answers with the document's new text;
 * the text goes into the JupyterLab document, so the document shows unsaved changes and
 * saves, undoes and reverts like any file.
 *
 * The view's state is a `FlowViewModel` (model.ts); the widgets here only draw it and hand
 * the user's actions back to it. Each part is a child widget of the view, so closing the
 * tab detaches and disposes every part once, through Lumino's layouts.
 */
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { Panel, PanelLayout, Widget } from '@lumino/widgets';

import { editFlow, fetchSchema, validateFlow } from './api';
import { GraphCanvas } from './canvas';
import type { Palette } from './graph';
import { FlowHeader, ProblemList } from './header';
import { KindList } from './kinds';
import { FlowViewModel, type FlowDocument, type FlowServer } from './model';
import { SidePanel, type PanelSubject } from './panel';

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
}

/** The graph of one flow file, edited in place. */
export class FlowGraphView extends Widget {
  constructor(context: DocumentRegistry.Context, options: IFlowViewOptions) {
    super();
    this.context = context;
    this._options = options;
    const model = (this.model = new FlowViewModel(documentOf(context), SERVER));
    this.addClass('jp-FlowGraph');

    this._canvas = new GraphCanvas(model);
    this._header = new FlowHeader(model, () => this._canvas.fit());
    const kinds = new KindList(model, kind => void model.addNode(kind, this._canvas.besideSelection()));
    this._panel = new SidePanel({
      applyForm: (subject, data) => model.applyForm(subject, data),
      applyYaml: (subject, text) => model.applyYaml(subject, text)
    });
    // the side panel takes room only while something is selected
    this._side = new Panel();
    this._side.addClass('jp-FlowGraph-side');
    this._side.addWidget(this._panel);
    this._side.hide();
    const body = new Panel();
    body.addClass('jp-FlowGraph-body');
    body.addWidget(kinds);
    body.addWidget(this._canvas);
    body.addWidget(this._side);
    const problems = new ProblemList(model, node => {
      model.select({ nodes: [node], edges: [] });
      this._canvas.reveal(node);
    });
    const layout = new PanelLayout();
    layout.addWidget(this._header);
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
    });
    void options.palette.then(palette => {
      if (!this.isDisposed) {
        model.palette = palette;
      }
    });
  }

  readonly context: DocumentRegistry.Context;

  /** The state this view draws, and the actions it takes. */
  readonly model: FlowViewModel;

  /** The view's parts are its children: Lumino detaches and disposes each of them once. */
  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._refreshTimer);
    this.model.dispose();
    super.dispose();
  }

  private _showSubject(subject: PanelSubject | null): void {
    this._panel.showSubject(subject);
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
  private _panel: SidePanel;
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
