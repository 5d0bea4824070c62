/**
 * The document view of a flow file: the graph drawn with cytoscape.js, the flow's
 * problems marked on its nodes, redrawn whenever the text or the file changes.
 */
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import type { Contents } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import cytoscape from 'cytoscape';

import { validateFlow, type ValidateReply } from './api';
import { FlowParseError, formatOf, parseFlow, type FlowModel } from './flowfile';
import { EMPTY_PALETTE, toElements, type Palette } from './graph';
import { problemText, problemsByElement, uniqueProblems, type Problem } from './problems';

/** The widget factory's name ("Open With" lists it). */
export const FACTORY = 'Flow graph';

/** How often an open flow looks for changes written to its file by others (ms). */
const DISK_POLL_MS = 2000;
const REDRAW_DELAY_MS = 250;

const STYLE: cytoscape.StylesheetStyle[] = [
  {
    selector: 'node',
    style: {
      shape: 'round-rectangle',
      label: 'data(label)',
      'background-color': 'data(colour)',
      'border-width': 2,
      'border-color': '#4a4a4a',
      'text-wrap': 'wrap',
      'text-valign': 'center',
      'text-halign': 'center',
      'font-size': 11,
      color: '#1a1a1a',
      width: 130,
      height: 52
    }
  },
  {
    selector: 'node.start-node',
    style: { shape: 'ellipse', width: 56, height: 56, 'background-color': '#ffffff', 'border-style': 'double', 'border-width': 4 }
  },
  {
    selector: 'node.problem',
    style: { 'border-color': '#e00000', 'border-width': 5, 'border-style': 'dashed' }
  },
  {
    selector: 'edge',
    style: {
      'curve-style': 'bezier',
      'target-arrow-shape': 'triangle',
      width: 2,
      'line-color': '#8a8a8a',
      'target-arrow-color': '#8a8a8a',
      label: 'data(label)',
      'font-size': 10,
      color: '#1a1a1a',
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.9,
      'text-background-padding': '2px',
      'text-rotation': 'autorotate'
    }
  },
  { selector: 'edge.conditional', style: { 'line-style': 'dashed', 'line-color': '#b58900', 'target-arrow-color': '#b58900' } },
  { selector: 'edge.error-edge', style: { 'line-color': '#d64541', 'target-arrow-color': '#d64541' } },
  { selector: 'edge.problem', style: { 'line-color': '#e00000', 'target-arrow-color': '#e00000', width: 4 } },
  { selector: ':selected', style: { 'overlay-color': '#1f3b73', 'overlay-opacity': 0.2 } }
];

/** STYLE with the problem and selection colours of the server's palette. */
function styleOf(palette: Palette): cytoscape.StylesheetStyle[] {
  const style = [...STYLE];
  if (palette.problem) {
    const problem = palette.problem;
    style.push(
      { selector: 'node.problem', style: { 'border-color': problem } },
      { selector: 'edge.problem', style: { 'line-color': problem, 'target-arrow-color': problem } }
    );
  }
  if (palette.selected) {
    style.push({ selector: ':selected', style: { 'overlay-color': palette.selected } });
  }
  return style;
}

export interface IFlowViewOptions {
  /** The server's files, to notice when a flow file changed on disk. */
  contents: Contents.IManager;
  /** Ask the server for the flow's problems when it is opened and after each save. */
  validateOnSave: () => boolean;
  /** The colours of node kinds, fetched once from the server extension for every view;
   * until it arrives (or when it cannot be had) nodes are grey. */
  palette: Promise<Palette>;
}

/** The graph of one flow file. */
export class FlowGraphView extends Widget {
  constructor(context: DocumentRegistry.Context, options: IFlowViewOptions) {
    super();
    this.context = context;
    this._options = options;
    this.addClass('jp-FlowGraph');
    this._header = document.createElement('div');
    this._header.className = 'jp-FlowGraph-header';
    this._canvas = document.createElement('div');
    this._canvas.className = 'jp-FlowGraph-canvas';
    this._problemList = document.createElement('ul');
    this._problemList.className = 'jp-FlowGraph-problems';
    this._tooltip = document.createElement('div');
    this._tooltip.className = 'jp-FlowGraph-tooltip';
    this._tooltip.hidden = true;
    this.node.append(this._header, this._canvas, this._problemList, this._tooltip);
    this._problemList.addEventListener('click', this._onProblemClick);

    context.model.contentChanged.connect(this._scheduleRedraw, this);
    context.fileChanged.connect(this._onFileChanged, this);
    context.pathChanged.connect(() => this._updateHeader(), this);
    void context.ready.then(() => {
      this._redraw();
      if (this._options.validateOnSave()) {
        void this.validate().catch(err => this._showServerError(err));
      }
    });
    void options.palette.then(palette => {
      this._palette = palette;
      this._cy?.style(styleOf(palette));
      this._redraw();
    });
  }

  readonly context: DocumentRegistry.Context;

  /** The cytoscape instance (null until the view is first shown). */
  get cy(): cytoscape.Core | null {
    return this._cy;
  }

  /** What the graph shows now (null when the text is not a flow). */
  get flow(): FlowModel | null {
    return this._flow;
  }

  /** The problems the server reported for the text as it was when validated. */
  get problems(): readonly Problem[] {
    return this._serverProblems;
  }

  /** Ask the server for the problems of the current text and mark them on the graph. */
  async validate(): Promise<ValidateReply> {
    const text = this.context.model.toString();
    const reply = await validateFlow(this.context.path, text);
    this.setProblems(reply.problems);
    return reply;
  }

  /** Show `problems` (from the server) on the graph. */
  setProblems(problems: Problem[]): void {
    this._serverProblems = problems;
    this._validated = true;
    this._redraw();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._redrawTimer);
    window.clearInterval(this._pollTimer);
    this._cy?.destroy();
    this._cy = null;
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._pollTimer = window.setInterval(() => void this._checkDisk(), DISK_POLL_MS);
  }

  protected onBeforeDetach(msg: Message): void {
    window.clearInterval(this._pollTimer);
    super.onBeforeDetach(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._cy?.resize();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    if (this._cy) {
      this._cy.resize();
      if (!this._fitted) {
        this._fit();
      }
    }
  }

  private _scheduleRedraw(): void {
    window.clearTimeout(this._redrawTimer);
    this._redrawTimer = window.setTimeout(() => this._redraw(), REDRAW_DELAY_MS);
  }

  private _onFileChanged(): void {
    this._scheduleRedraw();
    if (this._options.validateOnSave() && this.context.isReady) {
      void this.validate().catch(err => this._showServerError(err));
    }
  }

  /** Reload the file when someone else (the notebook workbench, an editor outside
   * JupyterLab) wrote it, unless this document has unsaved changes of its own. */
  private async _checkDisk(): Promise<void> {
    const context = this.context;
    if (!context.isReady || context.model.dirty || !this.isVisible || this._checking) {
      return;
    }
    this._checking = true;
    try {
      const disk = await this._options.contents.get(context.path, { content: false });
      const known = context.contentsModel?.last_modified;
      if (known && disk.last_modified && new Date(disk.last_modified) > new Date(known)) {
        await context.revert();
      }
    } catch {
      // The file may be mid-rename or gone; the next poll tries again.
    } finally {
      this._checking = false;
    }
  }

  private _redraw(): void {
    if (this.isDisposed || !this.context.isReady) {
      return;
    }
    const text = this.context.model.toString();
    let flow: FlowModel | null = null;
    let parseError: string | null = null;
    try {
      flow = parseFlow(text, formatOf(this.context.path));
    } catch (err) {
      parseError = err instanceof FlowParseError ? err.message : String(err);
    }
    if (flow === null) {
      this._flow = null;
      this._updateHeader();
      this._renderProblemList([], parseError);
      this.node.dataset.state = 'unreadable';
      return;
    }
    const shown = uniqueProblems([...this._serverProblems, ...flow.problems]);
    const byElement = problemsByElement(flow, shown);
    const elements = toElements(flow, byElement, this._palette);
    const firstDraw = this._cy === null;
    if (this._cy === null) {
      this._cy = cytoscape({
        container: this._canvas,
        elements: elements as cytoscape.ElementDefinition[],
        style: styleOf(this._palette),
        layout: { name: 'preset' },
        minZoom: 0.2,
        maxZoom: 3
      });
      this._bindTooltip(this._cy);
    } else {
      const cy = this._cy;
      const previous = new Set(cy.nodes().map(n => n.id()));
      cy.batch(() => {
        cy.elements().remove();
        cy.add(elements as cytoscape.ElementDefinition[]);
      });
      const changed =
        cy.nodes().toArray().some(n => !previous.has(n.id())) || previous.size !== cy.nodes().length;
      if (changed) {
        this._fit();
      }
    }
    this._flow = flow;
    if (firstDraw) {
      this._fit();
    }
    this.node.dataset.state = this._validated ? (shown.length > 0 ? 'problems' : 'valid') : 'drawn';
    this._updateHeader();
    this._renderProblemList(shown, null);
  }

  private _fit(): void {
    const cy = this._cy;
    if (!cy || cy.elements().length === 0) {
      return;
    }
    cy.resize();
    if (this._canvas.clientWidth > 0 && this._canvas.clientHeight > 0) {
      cy.fit(undefined, 30);
      if (cy.zoom() > 1.5) {
        cy.zoom(1.5);
        cy.center();
      }
      this._fitted = true;
    }
  }

  private _updateHeader(): void {
    const name = this.context.path.split('/').pop() ?? this.context.path;
    if (this._flow === null) {
      this._header.textContent = `${name}: cannot be drawn`;
      return;
    }
    const flow = this._flow;
    const status = !this._validated
      ? ''
      : this._serverProblems.length === 0
        ? ' \u2014 valid'
        : ` \u2014 ${this._serverProblems.length} problem${this._serverProblems.length === 1 ? '' : 's'}`;
    this._header.textContent = `${flow.name}: ${flow.nodes.length} nodes, ${flow.edges.length} edges${status}`;
  }

  private _renderProblemList(problems: Problem[], parseError: string | null): void {
    this._problemList.replaceChildren();
    const lines: [string, string | null][] = parseError
      ? [[parseError, null]]
      : problems.map(p => [problemText(p), p.node]);
    for (const [text, node] of lines) {
      const item = document.createElement('li');
      item.textContent = text;
      if (node) {
        item.dataset.node = node;
      }
      this._problemList.append(item);
    }
    this._problemList.hidden = lines.length === 0;
  }

  private _onProblemClick = (event: MouseEvent): void => {
    const node = (event.target as HTMLElement).closest('li')?.dataset.node;
    const cy = this._cy;
    if (node && cy) {
      const element = cy.getElementById(node);
      if (element.nonempty()) {
        cy.elements().unselect();
        element.select();
        cy.animate({ center: { eles: element } }, { duration: 200 });
      }
    }
  };

  private _bindTooltip(cy: cytoscape.Core): void {
    cy.on('mouseover', 'node, edge', event => {
      const text = event.target.data('problems') as string;
      if (!text) {
        return;
      }
      const pos = event.renderedPosition ?? { x: 0, y: 0 };
      this._tooltip.textContent = text;
      this._tooltip.style.left = `${this._canvas.offsetLeft + pos.x + 12}px`;
      this._tooltip.style.top = `${this._canvas.offsetTop + pos.y + 12}px`;
      this._tooltip.hidden = false;
    });
    cy.on('mouseout', 'node, edge', () => {
      this._tooltip.hidden = true;
    });
  }

  private _showServerError(err: unknown): void {
    this._header.textContent = `${this._header.textContent} \u2014 not validated: ${(err as Error).message}`;
  }

  private _options: IFlowViewOptions;
  private _header: HTMLDivElement;
  private _canvas: HTMLDivElement;
  private _problemList: HTMLUListElement;
  private _tooltip: HTMLDivElement;
  private _cy: cytoscape.Core | null = null;
  private _flow: FlowModel | null = null;
  private _serverProblems: Problem[] = [];
  private _palette: Palette = EMPTY_PALETTE;
  private _validated = false;
  private _fitted = false;
  private _checking = false;
  private _redrawTimer = 0;
  private _pollTimer = 0;
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
