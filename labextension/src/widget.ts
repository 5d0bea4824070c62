/**
 * The document view of a flow file, where the flow is edited in place: a palette of node
 * kinds to drag onto the canvas, drag from a node's handle to another node to connect
 * them, Delete (or the context menu) to remove, drags kept in the file's `layout`, and a
 * side panel with the selected element's form. Every edit goes to the server's editor
 * (the one the notebook workbench uses), which answers with the document's new text;
 * the text goes into the JupyterLab document, so the document shows unsaved changes and
 * saves, undoes and reverts like any file.
 */
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';
import edgehandles from 'cytoscape-edgehandles';
import { parse as parseYaml } from 'yaml';

import { FlowApiError, editFlow, fetchSchema, validateFlow, type EditReply, type FlowEdit, type ValidateReply } from './api';
import { FlowParseError, START, formatOf, parseFlow, type FlowModel, type Position } from './flowfile';
import { EMPTY_PALETTE, MIN_LABEL_PX, NODE_FONT_PX, START_ID, kindColour, toElements, type Palette } from './graph';
import { SidePanel, type PanelSubject } from './panel';
import { problemText, problemsByElement, uniqueProblems, type Problem } from './problems';

let registered = false;
function registerExtensions(): void {
  if (!registered) {
    cytoscape.use(dagre);
    cytoscape.use(edgehandles);
    registered = true;
  }
}

/** The widget factory's name ("Open With" lists it). */
export const FACTORY = 'Flow graph';

const REDRAW_DELAY_MS = 150;
/** The zoom below which node labels would be drawn under MIN_LABEL_PX on screen. */
export const MIN_ZOOM = MIN_LABEL_PX / NODE_FONT_PX;
/** The MIME type of a node kind dragged from the palette. */
const KIND_MIME = 'application/x-jupyter-flow-kind';

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
      'font-size': NODE_FONT_PX,
      color: '#1a1a1a',
      width: 'data(width)',
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
  // the selection is drawn as a halo outside the node, so a problem border stays visible
  {
    selector: 'node:selected',
    style: { 'underlay-color': '#1f3b73', 'underlay-opacity': 0.35, 'underlay-padding': 7, 'underlay-shape': 'round-rectangle' }
  },
  { selector: 'edge:selected', style: { width: 4, 'underlay-color': '#1f3b73', 'underlay-opacity': 0.3, 'underlay-padding': 4 } },
  {
    selector: 'edge',
    style: {
      'curve-style': 'bezier',
      'target-arrow-shape': 'triangle',
      width: 2,
      'line-color': '#8a8a8a',
      'target-arrow-color': '#8a8a8a',
      label: 'data(label)',
      'font-size': 11,
      color: '#1a1a1a',
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.95,
      'text-background-padding': '3px',
      'text-background-shape': 'roundrectangle',
      'text-border-width': 1,
      'text-border-color': '#d0d0d0',
      'text-border-opacity': 1,
      'text-wrap': 'wrap',
      'text-max-width': '200px',
      // beside the edge, not over it
      'text-rotation': 'autorotate',
      'text-margin-y': -12
    }
  },
  { selector: '.eh-ghost-edge, edge.eh-preview', style: { 'line-color': '#1f3b73', 'target-arrow-color': '#1f3b73', 'line-style': 'dashed' } },
  { selector: '.eh-ghost-node', style: { opacity: 0, label: '' } },
  { selector: 'edge.conditional', style: { 'line-style': 'dashed', 'line-color': '#b58900', 'target-arrow-color': '#b58900' } },
  { selector: 'edge.error-edge', style: { 'line-color': '#d64541', 'target-arrow-color': '#d64541' } },
  { selector: 'edge.problem', style: { 'line-color': '#e00000', 'target-arrow-color': '#e00000', width: 4 } },
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
    style.push({ selector: ':selected', style: { 'underlay-color': palette.selected } });
  }
  return style;
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
    registerExtensions();
    this.context = context;
    this._options = options;
    this.addClass('jp-FlowGraph');
    this._header = document.createElement('div');
    this._header.className = 'jp-FlowGraph-header';
    this._title = document.createElement('span');
    this._title.className = 'jp-FlowGraph-title';
    this._feedback = document.createElement('span');
    this._feedback.className = 'jp-FlowGraph-feedback';
    const fit = document.createElement('button');
    fit.className = 'jp-Button jp-mod-styled jp-FlowGraph-fit';
    fit.textContent = 'Fit';
    fit.title = 'Show the whole flow';
    fit.addEventListener('click', () => this.fit());
    this._header.append(this._title, fit, this._feedback);

    this._kinds = document.createElement('div');
    this._kinds.className = 'jp-FlowGraph-kinds';
    this._canvas = document.createElement('div');
    this._canvas.className = 'jp-FlowGraph-canvas';
    this._canvas.tabIndex = 0;
    this._handle = document.createElement('div');
    this._handle.className = 'jp-FlowGraph-handle';
    this._handle.title = 'Drag to another node to connect';
    this._handle.hidden = true;
    this._menu = document.createElement('div');
    this._menu.className = 'jp-FlowGraph-menu';
    this._menu.hidden = true;
    this._side = document.createElement('div');
    this._side.className = 'jp-FlowGraph-side';
    const body = document.createElement('div');
    body.className = 'jp-FlowGraph-body';
    const stage = document.createElement('div');
    stage.className = 'jp-FlowGraph-stage';
    stage.append(this._canvas, this._handle, this._menu);
    body.append(this._kinds, stage, this._side);
    this._problemList = document.createElement('ul');
    this._problemList.className = 'jp-FlowGraph-problems';
    this._tooltip = document.createElement('div');
    this._tooltip.className = 'jp-FlowGraph-tooltip';
    this._tooltip.hidden = true;
    this.node.append(this._header, body, this._problemList, this._tooltip);
    this._problemList.addEventListener('click', this._onProblemClick);
    this._canvas.addEventListener('keydown', this._onKey);
    this._canvas.addEventListener('dragover', event => {
      if (event.dataTransfer?.types.includes(KIND_MIME)) {
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
      }
    });
    this._canvas.addEventListener('drop', this._onDrop);
    this._handle.addEventListener('mousedown', this._onHandleDown);
    this._panel = new SidePanel({
      applyForm: (subject, data) => this._applyForm(subject, data),
      applyYaml: (subject, text) => this._applyYaml(subject, text)
    });
    // the side panel takes room only while something is selected
    this._side.hidden = true;
    this._panel.subjectChanged = subject => {
      const hidden = subject === null;
      if (this._side.hidden !== hidden) {
        this._side.hidden = hidden;
        // the canvas changed size: refit when a node fell out of view
        if (this._cy) {
          this._cy.resize();
          if (!this._inView(this._cy.nodes())) {
            this.fit();
          }
        }
      }
    };

    context.model.contentChanged.connect(this._scheduleRedraw, this);
    context.fileChanged.connect(this._onFileChanged, this);
    context.saveState.connect((_context, state) => {
      // the last edit's note says "(unsaved)" until the document is saved
      const text = this._feedback.textContent ?? '';
      if (state === 'completed' && text.endsWith(' (unsaved)')) {
        this._say(`${text.slice(0, -' (unsaved)'.length)} (saved)`);
      }
    }, this);
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
      this._renderKinds();
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

  /** The problems shown now, in the header count and in the list alike. */
  get shownProblems(): readonly Problem[] {
    return this._shown;
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

  /** Apply one edit with the server's editor and put the new text into the document.
   * Returns the server's answer, or null when the edit was refused (the reason shows
   * next to the header's controls). */
  async edit(edit: FlowEdit): Promise<EditReply | null> {
    const text = this.context.model.toString();
    try {
      const reply = await editFlow(this.context.path, text, edit);
      if (reply.text !== text) {
        this.context.model.fromString(reply.text);
        this.context.model.dirty = true;
      }
      this._say(`${reply.what} (unsaved)`);
      this.setProblems(reply.problems);
      return reply;
    } catch (error) {
      this._say(this._errorText(error), true);
      return null;
    }
  }

  /** Show the whole flow, never with labels smaller than MIN_LABEL_PX on screen. */
  fit(): void {
    const cy = this._cy;
    if (!cy || cy.elements().length === 0) {
      return;
    }
    cy.resize();
    if (this._canvas.clientWidth === 0 || this._canvas.clientHeight === 0) {
      return;
    }
    cy.fit(undefined, 30);
    if (cy.zoom() > 1.5) {
      cy.zoom(1.5);
      cy.center();
    }
    if (cy.zoom() <= MIN_ZOOM + 1e-6) {
      // too big to show whole at a legible size: start from the top left
      const box = cy.elements().boundingBox();
      cy.zoom(MIN_ZOOM);
      cy.pan({ x: 30 - box.x1 * MIN_ZOOM, y: 30 - box.y1 * MIN_ZOOM });
    }
    this._fitted = true;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._redrawTimer);
    this._eh?.destroy();
    this._cy?.destroy();
    this._cy = null;
    this._panel.dispose();
    super.dispose();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (!this._panel.isAttached) {
      Widget.attach(this._panel, this._side);
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._cy?.resize();
    if (!this._fitted) {
      this.fit();
    }
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    // refit whenever the pane changes size, so every node stays in view
    window.cancelAnimationFrame(this._resizeFrame);
    this._resizeFrame = window.requestAnimationFrame(() => this.fit());
  }

  private _say(text: string, error = false): void {
    this._feedback.textContent = text;
    this._feedback.classList.toggle('jp-mod-error', error);
  }

  private _errorText(error: unknown): string {
    if (error instanceof FlowApiError && error.problems.length > 0) {
      return `Not applied: ${error.problems.map(problemText).join('; ')}`;
    }
    return `Not applied: ${error instanceof Error ? error.message : String(error)}`;
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

  private _renderKinds(): void {
    this._kinds.replaceChildren();
    const head = document.createElement('div');
    head.className = 'jp-FlowGraph-kindsTitle';
    head.textContent = 'Drag a node';
    this._kinds.append(head);
    for (const kind of [...this._palette.kinds.keys()].sort()) {
      const item = document.createElement('div');
      item.className = 'jp-FlowGraph-kind';
      item.draggable = true;
      item.dataset.kind = kind;
      item.textContent = kind;
      item.style.borderLeftColor = kindColour(kind, this._palette);
      item.title = `Drag onto the graph to add a ${kind} node (or double-click)`;
      item.addEventListener('dragstart', event => {
        event.dataTransfer?.setData(KIND_MIME, kind);
        event.dataTransfer?.setData('text/plain', kind);
      });
      item.addEventListener('dblclick', () => void this._addNode(kind, null));
      this._kinds.append(item);
    }
  }

  private _onDrop = (event: DragEvent): void => {
    const kind = event.dataTransfer?.getData(KIND_MIME);
    if (!kind || !this._cy) {
      return;
    }
    event.preventDefault();
    const box = this._canvas.getBoundingClientRect();
    const pan = this._cy.pan();
    const zoom = this._cy.zoom();
    const at = { x: (event.clientX - box.left - pan.x) / zoom, y: (event.clientY - box.top - pan.y) / zoom };
    void this._addNode(kind, at);
  };

  /** Add a node of `kind` at `at` (model coordinates), or beside the selected node. */
  private async _addNode(kind: string, at: Position | null): Promise<void> {
    let position = at;
    if (position === null) {
      const selected = this._cy?.nodes(':selected').first();
      const anchor = selected && selected.nonempty() ? selected : this._cy?.nodes().last();
      const p = anchor && anchor.nonempty() ? anchor.position() : { x: 0, y: 0 };
      position = { x: p.x + 220, y: p.y };
    }
    const reply = await this.edit({
      op: 'add_node',
      kind,
      position: { x: Math.round(position.x), y: Math.round(position.y) }
    });
    if (reply && typeof reply.made === 'string') {
      this._select(reply.made);
    }
  }

  private _select(id: string): void {
    const cy = this._cy;
    if (!cy) {
      return;
    }
    cy.elements().unselect();
    const element = cy.getElementById(id);
    if (element.nonempty()) {
      element.select();
      void this._showPanel(element);
    }
  }

  private _onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Delete' || event.key === 'Backspace') {
      event.preventDefault();
      event.stopPropagation();
      void this.deleteSelected();
    }
  };

  /** Remove the selected nodes and edges (what Delete and the context menu do). */
  async deleteSelected(): Promise<void> {
    const cy = this._cy;
    if (!cy) {
      return;
    }
    const nodes = cy.nodes(':selected').map(n => n.id()).filter(id => id !== START_ID);
    const edges = cy.edges(':selected').map(e => e.data('index') as number);
    if (nodes.length === 0 && edges.length === 0) {
      this._say('Select a node or an edge to delete.', true);
      return;
    }
    if (await this.edit({ op: 'remove', nodes, edges })) {
      this._panel.showSubject(null);
    }
  }

  private _onHandleDown = (event: MouseEvent): void => {
    const node = this._handleNode;
    if (!node || !this._eh) {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    this._handle.classList.add('jp-mod-active');
    this._handle.style.pointerEvents = 'none';
    this._eh.start(node);
    // the gesture began on the handle, not on the canvas, so cytoscape does not end it
    const up = () => {
      this._eh?.stop();
      this._handle.classList.remove('jp-mod-active');
      this._handle.style.pointerEvents = '';
      this._handle.hidden = true;
      window.removeEventListener('mouseup', up, true);
    };
    window.addEventListener('mouseup', up, true);
  };

  private _placeHandle(node: cytoscape.NodeSingular): void {
    const box = node.renderedBoundingBox({ includeLabels: false });
    this._handleNode = node;
    this._handle.style.left = `${this._canvas.offsetLeft + box.x2 - 7}px`;
    this._handle.style.top = `${this._canvas.offsetTop + (box.y1 + box.y2) / 2 - 7}px`;
    this._handle.hidden = false;
  }

  private _bindEditing(cy: cytoscape.Core): void {
    this._eh = (cy as any).edgehandles({
      canConnect: (source: cytoscape.NodeSingular, target: cytoscape.NodeSingular) =>
        !source.same(target) && target.id() !== START_ID,
      edgeParams: () => ({ data: { label: '' } }),
      hoverDelay: 100,
      snap: true,
      snapThreshold: 30,
      snapFrequency: 15,
      noEdgeEventsInDraw: true,
      disableBrowserGestures: true
    });
    cy.on('ehcomplete', (_event: unknown, source: any, target: any, added: any) => {
      added.remove();
      void this.edit({ op: 'add_edge', from: source.id() === START_ID ? START : source.id(), to: target.id() });
    });
    cy.on('mouseover', 'node', event => this._placeHandle(event.target));
    cy.on('pan zoom position', () => {
      if (this._handleNode && !this._handle.classList.contains('jp-mod-active')) {
        this._handle.hidden = true;
      }
    });
    cy.on('dragfree', 'node', event => {
      const node = event.target as cytoscape.NodeSingular;
      if (node.id() === START_ID) {
        return;
      }
      const moved: Record<string, Position> = {};
      for (const n of node.selected() ? cy.nodes(':selected').toArray() : [node]) {
        if (n.id() !== START_ID) {
          const p = n.position();
          moved[n.id()] = { x: Math.round(p.x), y: Math.round(p.y) };
        }
      }
      void this.edit({ op: 'move', positions: moved });
    });
    cy.on('tap', 'node, edge', event => {
      this._menu.hidden = true;
      this._canvas.focus();
      void this._showPanel(event.target);
    });
    cy.on('tap', event => {
      this._menu.hidden = true;
      if (event.target === cy) {
        this._panel.showSubject(null);
      }
    });
    cy.on('cxttap', 'node, edge', event => {
      const target = event.target as cytoscape.SingularElementArgument;
      if (!target.selected()) {
        cy.elements().unselect();
        target.select();
      }
      const pos = event.renderedPosition ?? { x: 0, y: 0 };
      this._menu.replaceChildren();
      const remove = document.createElement('button');
      remove.className = 'jp-FlowGraph-menuItem';
      remove.textContent = 'Delete';
      remove.addEventListener('click', () => {
        this._menu.hidden = true;
        void this.deleteSelected();
      });
      this._menu.append(remove);
      this._menu.style.left = `${this._canvas.offsetLeft + pos.x}px`;
      this._menu.style.top = `${this._canvas.offsetTop + pos.y}px`;
      this._menu.hidden = false;
    });
  }

  /** Open the side panel on a node or an edge: its form from the kind's schema. */
  private async _showPanel(element: cytoscape.SingularElementArgument): Promise<void> {
    const flow = this._flow;
    if (!flow || element.id() === START_ID) {
      this._panel.showSubject(null);
      return;
    }
    const text = this.context.model.toString();
    let raw: any = {};
    try {
      raw = formatOf(this.context.path) === 'json' ? JSON.parse(text) : parseYaml(text);
    } catch {
      raw = {};
    }
    if (element.isNode()) {
      const node = flow.nodes.find(n => n.id === element.id());
      if (!node) {
        return;
      }
      const body = (Array.isArray(raw?.nodes) ? raw.nodes : []).find((n: any) => n && n.id === node.id) ?? {
        id: node.id,
        type: node.type,
        config: node.config
      };
      const schema = await this._schema(node.type);
      this._panel.showSubject({
        kind: 'node',
        key: node.id,
        title: `Node ${node.id} (${node.type})`,
        schema,
        data: { ...node.config },
        body,
        problems: this._shown.filter(p => p.node === node.id && p.edge === null)
      });
    } else {
      const index = element.data('index') as number;
      const body = (Array.isArray(raw?.edges) ? raw.edges[index] : null) ?? {};
      const { from, to, ...settings } = body as Record<string, unknown>;
      const schema = await this._schema(null);
      this._panel.showSubject({
        kind: 'edge',
        key: index,
        title: `Edge ${String(from)} \u2192 ${String(to)}`,
        schema,
        data: settings,
        body: settings,
        problems: this._shown.filter(p => p.edge === index)
      });
    }
  }

  private async _schema(kind: string | null): Promise<Record<string, unknown> | null> {
    const key = kind ?? '';
    if (!this._schemas.has(key)) {
      try {
        this._schemas.set(key, (await fetchSchema(kind)).schema);
      } catch {
        this._schemas.set(key, null);
      }
    }
    return this._schemas.get(key) ?? null;
  }

  private async _applyForm(subject: PanelSubject, data: Record<string, unknown>): Promise<string | null> {
    const clean = Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined && v !== null && v !== ''));
    const edit: FlowEdit =
      subject.kind === 'node'
        ? { op: 'set_config', node: subject.key, config: clean }
        : { op: 'replace_edge', index: subject.key, body: clean };
    return this._applyPanelEdit(subject, edit);
  }

  private async _applyYaml(subject: PanelSubject, text: string): Promise<string | null> {
    const edit: FlowEdit =
      subject.kind === 'node'
        ? { op: 'replace_node', node: subject.key, body: text }
        : { op: 'replace_edge', index: subject.key, body: text };
    return this._applyPanelEdit(subject, edit);
  }

  private async _applyPanelEdit(subject: PanelSubject, edit: FlowEdit): Promise<string | null> {
    const reply = await this.edit(edit);
    if (reply === null) {
      return this._feedback.textContent ?? 'Not applied';
    }
    const id = subject.kind === 'node' && typeof reply.made === 'string' ? reply.made : String(subject.key);
    const element = subject.kind === 'node' ? this._cy?.getElementById(id) : this._cy?.getElementById(`edge-${subject.key}`);
    if (element && element.nonempty()) {
      await this._showPanel(element);
    }
    return null;
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
      this._shown = [];
      this._updateHeader();
      this._renderProblemList([], parseError);
      this.node.dataset.state = 'unreadable';
      return;
    }
    const shown = uniqueProblems([...this._serverProblems, ...flow.problems]);
    this._shown = shown;
    const byElement = problemsByElement(flow, shown);
    let elements = toElements(flow, byElement, this._palette, this._auto);
    const firstDraw = this._cy === null;
    if (this._cy === null) {
      this._cy = cytoscape({
        container: this._canvas,
        elements: elements as cytoscape.ElementDefinition[],
        style: styleOf(this._palette),
        layout: { name: 'preset' },
        minZoom: MIN_ZOOM,
        maxZoom: 3,
        selectionType: 'single'
      });
      this._bindTooltip(this._cy);
      this._bindEditing(this._cy);
      if (Object.keys(flow.layout).length === 0 && flow.nodes.length > 1) {
        this._autoLayout(flow);
        elements = toElements(flow, byElement, this._palette, this._auto);
        this._cy.batch(() => this._sync(elements));
      }
    } else {
      const cy = this._cy;
      const before = new Set(cy.nodes().map(n => n.id()));
      cy.batch(() => this._sync(elements));
      const added = cy.nodes().filter(n => !before.has(n.id()));
      if (added.nonempty() && !this._inView(added)) {
        this.fit();
      }
    }
    this._flow = flow;
    if (firstDraw) {
      this.fit();
    }
    this.node.dataset.state = this._validated ? (shown.length > 0 ? 'problems' : 'valid') : 'drawn';
    this._updateHeader();
    this._renderProblemList(shown, null);
  }

  /** Bring the drawing to `elements`: one diff, each element added once, the rest updated
   * in place (so the selection and the viewport stay). */
  private _sync(elements: ReturnType<typeof toElements>): void {
    const cy = this._cy!;
    const want = new Map(elements.map(e => [e.data.id, e]));
    cy.elements().forEach(el => {
      const next = want.get(el.id());
      const rewired =
        next !== undefined && el.isEdge() && (el.data('source') !== next.data.source || el.data('target') !== next.data.target);
      if (next === undefined || next.group !== el.group() || rewired) {
        el.remove();
      }
    });
    for (const e of elements.filter(e => e.group === 'nodes').concat(elements.filter(e => e.group === 'edges'))) {
      const el = cy.getElementById(e.data.id);
      if (el.empty()) {
        cy.add(e as cytoscape.ElementDefinition);
        continue;
      }
      el.data(e.data);
      el.classes(e.classes);
      if (e.position && el.isNode() && !el.grabbed()) {
        const p = el.position();
        if (Math.abs(p.x - e.position.x) > 0.5 || Math.abs(p.y - e.position.y) > 0.5) {
          el.position(e.position);
        }
      }
    }
  }

  /** A layered (dagre) placement for a flow whose file has no layout yet; kept for the
   * view's life, so that nodes stay put between edits until they are moved. */
  private _autoLayout(flow: FlowModel): void {
    const cy = this._cy!;
    const layout = cy.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 30, rankSep: 70, fit: false, animate: false } as any);
    layout.run();
    for (const node of flow.nodes) {
      const el = cy.getElementById(node.id);
      if (el.nonempty()) {
        const p = el.position();
        this._auto[node.id] = { x: Math.round(p.x), y: Math.round(p.y) };
      }
    }
  }

  private _inView(nodes: cytoscape.NodeCollection): boolean {
    const ext = this._cy!.extent();
    return nodes.every(n => {
      const b = n.boundingBox({});
      return b.x1 >= ext.x1 && b.x2 <= ext.x2 && b.y1 >= ext.y1 && b.y2 <= ext.y2;
    });
  }

  private _updateHeader(): void {
    const name = this.context.path.split('/').pop() ?? this.context.path;
    if (this._flow === null) {
      this._title.textContent = `${name}: cannot be drawn`;
      return;
    }
    const flow = this._flow;
    const count = this._shown.length;
    const status = !this._validated && count === 0
      ? ''
      : count === 0
        ? ' \u2014 valid'
        : ` \u2014 ${count} problem${count === 1 ? '' : 's'}`;
    this._title.textContent = `${flow.name}: ${flow.nodes.length} nodes, ${flow.edges.length} edges${status}`;
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
    this._say(`not validated: ${(err as Error).message}`, true);
  }

  private _options: IFlowViewOptions;
  private _header: HTMLDivElement;
  private _title: HTMLSpanElement;
  private _feedback: HTMLSpanElement;
  private _kinds: HTMLDivElement;
  private _canvas: HTMLDivElement;
  private _handle: HTMLDivElement;
  private _menu: HTMLDivElement;
  private _side: HTMLDivElement;
  private _panel: SidePanel;
  private _problemList: HTMLUListElement;
  private _tooltip: HTMLDivElement;
  private _cy: cytoscape.Core | null = null;
  private _eh: any = null;
  private _handleNode: cytoscape.NodeSingular | null = null;
  private _flow: FlowModel | null = null;
  private _serverProblems: Problem[] = [];
  private _shown: Problem[] = [];
  private _auto: Record<string, Position> = {};
  private _schemas = new Map<string, Record<string, unknown> | null>();
  private _palette: Palette = EMPTY_PALETTE;
  private _validated = false;
  private _fitted = false;
  private _redrawTimer = 0;
  private _resizeFrame = 0;
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
