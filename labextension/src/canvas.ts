/**
 * The flow's graph, drawn with cytoscape from the view's model: nodes and edges with their
 * problems marked, the model's selection, placed where the file's `layout` says (or in
 * layers, for a flow without one) and always at a legible size. Node kinds dropped from
 * the palette and the Delete key go to the model; the other gestures are in gestures.ts.
 * The graph changes when the model says the flow did.
 */
import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';

import type { FlowModel, Position } from './flowfile';
import { GraphGestures } from './gestures';
import { MIN_LABEL_PX, NODE_FONT_PX, START_ID, toElements, type GraphElement } from './graph';
import { styleOf } from './graphstyle';
import type { FlowViewModel } from './model';
import { problemsByElement } from './problems';

let registered = false;
function registerExtensions(): void {
  if (!registered) {
    cytoscape.use(dagre);
    registered = true;
  }
}

/** The zoom below which node labels would be drawn under MIN_LABEL_PX on screen. */
export const MIN_ZOOM = MIN_LABEL_PX / NODE_FONT_PX;
/** The MIME type of a node kind dragged from the palette. */
export const KIND_MIME = 'application/x-jupyter-flow-kind';

/** The graph of the flow, and the gestures that edit it. */
export class GraphCanvas extends Widget {
  constructor(model: FlowViewModel) {
    super();
    registerExtensions();
    this._model = model;
    this.addClass('jp-FlowGraph-stage');
    this._canvas = document.createElement('div');
    this._canvas.className = 'jp-FlowGraph-canvas';
    this._canvas.tabIndex = 0;
    this.node.append(this._canvas);
    this._gestures = new GraphGestures(this.node, this._canvas, model);

    this._canvas.addEventListener('keydown', this._onKey);
    this._canvas.addEventListener('dragover', event => {
      if (event.dataTransfer?.types.includes(KIND_MIME)) {
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
      }
    });
    this._canvas.addEventListener('drop', this._onDrop);
    model.changed.connect(this._draw, this);
    model.selectionChanged.connect(this._showSelection, this);
    model.paletteChanged.connect(() => {
      this._cy?.style(styleOf(model.palette));
      this._draw();
    }, this);
  }

  /** The cytoscape instance (null until the flow is first drawn). */
  get cy(): cytoscape.Core | null {
    return this._cy;
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

  /** The canvas changed size without a resize message (the side panel opened or closed):
   * refit when a node fell out of view. */
  resized(): void {
    if (this._cy) {
      this._cy.resize();
      if (!this._inView(this._cy.nodes())) {
        this.fit();
      }
    }
  }

  /** Bring an element into the middle of the view. */
  reveal(id: string): void {
    const element = this._cy?.getElementById(id);
    if (element && element.nonempty()) {
      this._cy!.animate({ center: { eles: element } }, { duration: 200 });
    }
  }

  /** Where a new node goes when none is dropped: right of the selected node, or of the last. */
  besideSelection(): Position {
    const cy = this._cy;
    const selected = cy?.nodes(':selected').first();
    const anchor = selected && selected.nonempty() ? selected : cy?.nodes().last();
    const p = anchor && anchor.nonempty() ? anchor.position() : { x: 0, y: 0 };
    return { x: p.x + 220, y: p.y };
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.cancelAnimationFrame(this._resizeFrame);
    this._gestures.dispose();
    this._cy?.destroy();
    this._cy = null;
    super.dispose();
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

  /** Draw the model's flow (a text that is not a flow leaves the last drawing). */
  private _draw(): void {
    const flow = this._model.flow;
    if (this.isDisposed || flow === null) {
      return;
    }
    const byElement = problemsByElement(flow, this._model.shownProblems);
    const palette = this._model.palette;
    let elements = toElements(flow, byElement, palette, this._auto);
    if (this._cy === null) {
      this._cy = cytoscape({
        container: this._canvas,
        elements: elements as cytoscape.ElementDefinition[],
        style: styleOf(palette),
        layout: { name: 'preset' },
        minZoom: MIN_ZOOM,
        maxZoom: 3,
        selectionType: 'single'
      });
      this._gestures.bind(this._cy);
      if (Object.keys(flow.layout).length === 0 && flow.nodes.length > 1) {
        this._autoLayout(flow);
        elements = toElements(flow, byElement, palette, this._auto);
        this._cy.batch(() => this._sync(elements));
      }
      this.fit();
    } else {
      const cy = this._cy;
      const before = new Set(cy.nodes().map(n => n.id()));
      cy.batch(() => this._sync(elements));
      const added = cy.nodes().filter(n => !before.has(n.id()));
      if (added.nonempty() && !this._inView(added)) {
        this.fit();
      }
    }
    this._showSelection();
  }

  /** Bring the drawing to `elements`: one diff, each element added once, the rest updated
   * in place (so the viewport stays). */
  private _sync(elements: GraphElement[]): void {
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

  /** Select in the drawing what the model has selected (the start node is left alone:
   * it is no element of the file). */
  private _showSelection(): void {
    const cy = this._cy;
    if (!cy) {
      return;
    }
    const { nodes, edges } = this._model.selection;
    const want = new Set([...nodes, ...edges.map(index => `edge-${index}`)]);
    cy.elements().forEach(el => {
      const on = want.has(el.id());
      if (el.id() !== START_ID && on !== el.selected()) {
        if (on) {
          el.select();
        } else {
          el.unselect();
        }
      }
    });
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

  private _onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Delete' || event.key === 'Backspace') {
      event.preventDefault();
      event.stopPropagation();
      void this._model.deleteSelected();
    }
  };

  private _onDrop = (event: DragEvent): void => {
    const kind = event.dataTransfer?.getData(KIND_MIME);
    if (!kind || !this._cy) {
      return;
    }
    event.preventDefault();
    const box = this._canvas.getBoundingClientRect();
    const pan = this._cy.pan();
    const zoom = this._cy.zoom();
    void this._model.addNode(kind, { x: (event.clientX - box.left - pan.x) / zoom, y: (event.clientY - box.top - pan.y) / zoom });
  };

  private _model: FlowViewModel;
  private _canvas: HTMLDivElement;
  private _gestures: GraphGestures;
  private _cy: cytoscape.Core | null = null;
  private _auto: Record<string, Position> = {};
  private _fitted = false;
  private _resizeFrame = 0;
}
