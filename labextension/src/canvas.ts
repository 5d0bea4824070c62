/**
 * The flow's graph, drawn with cytoscape from the view's model: nodes and edges with their
 * problems marked, the model's selection, placed where the file's `layout` says (or in
 * layered bands, for a flow without one), in the colours of JupyterLab's theme, with a
 * minimap of the whole flow in a corner. It opens with the whole flow in view when that
 * is legible, else at a legible size from the top left; Fit shows the whole flow however
 * small. Node kinds dropped from the palette go to the model; the other gestures are in
 * gestures.ts, the keys and menus are JupyterLab commands (commands.ts).
 */
import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import cytoscape from 'cytoscape';
import navigator from 'cytoscape-navigator';

import type { FlowModel, Position } from './flowfile';
import { GraphGestures } from './gestures';
import { MIN_LABEL_PX, NODE_FONT_PX, START_ID, toElements, type GraphElement } from './graph';
import { styleOf } from './graphstyle';
import { NODE_HEIGHT, layeredPositions, type Frame } from './layout';
import type { FlowViewModel } from './model';
import type { FlowRuns } from './runs';
import { problemsByElement } from './problems';
import { readTheme } from './theme';

let registered = false;
function registerExtensions(): void {
  if (!registered) {
    cytoscape.use(navigator);
    registered = true;
  }
}

/** The zoom below which node labels would be drawn under MIN_LABEL_PX on screen: the view
 * opens no smaller, and a flow without a layout is wrapped to fit the pane at it. */
export const LEGIBLE_ZOOM = MIN_LABEL_PX / NODE_FONT_PX;
/** How far out the user (and Fit) may zoom: far enough to see any flow whole. */
export const MIN_ZOOM = 0.05;
export const MAX_ZOOM = 3;
/** The largest zoom Fit picks for a small flow. */
const FIT_ZOOM = 1.5;
const FIT_PADDING = 30;
/** The minimap's distance from the canvas's edges (style/base.css), and room around it. */
const MAP_MARGIN = 16;
/** The room between the drawing and nodes pasted under it. */
const PASTE_GAP = 50;
/** The MIME type of a node kind dragged from the palette. */
export const KIND_MIME = 'application/x-jupyter-flow-kind';

let maps = 0;

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
    this._map = document.createElement('div');
    this._map.className = 'jp-FlowGraph-map';
    this._map.id = `jp-FlowGraph-map-${++maps}`;
    this._map.title = 'The whole flow: drag the frame to move the view';
    this.node.append(this._canvas, this._map);
    this._gestures = new GraphGestures(this.node, this._canvas, model);

    // a right click gives the view the focus before JupyterLab's context menu opens, so
    // that the menu's commands act on this view
    this._canvas.addEventListener('mousedown', () => this._canvas.focus({ preventScroll: true }), true);
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
      this.restyle();
      this._draw();
    }, this);
  }

  /** The cytoscape instance (null until the flow is first drawn). */
  get cy(): cytoscape.Core | null {
    return this._cy;
  }

  /** The element the keys of the view's commands are bound to. */
  get canvas(): HTMLElement {
    return this._canvas;
  }

  /** Where the last right click was, in graph coordinates (for "add node here", "paste"). */
  get contextPosition(): Position | null {
    return this._gestures.contextPosition;
  }

  /** Show the whole flow, however small that draws it (the Fit button and command). */
  fit(): void {
    this._whole = true;
    this._frame();
  }

  /** Colour the nodes by their state in the runs' shown run, from now on. */
  showRuns(runs: FlowRuns): void {
    this._runs = runs;
    runs.changed.connect(this._draw, this);
    this._draw();
  }

  /** Draw again in the theme's colours (the theme changed). */
  restyle(): void {
    this._cy?.style(styleOf(this._model.palette, readTheme(this.node)));
  }

  /** The canvas changed size without a resize message (the side panel opened or closed):
   * what was in the middle stays there; then a node a search brought to the middle stays
   * in view, and otherwise the flow is framed again when a node fell out of view. */
  resized(): void {
    const cy = this._cy;
    if (!cy) {
      return;
    }
    // the extent before cytoscape reads the new size
    const before = cy.extent();
    cy.resize();
    const zoom = cy.zoom();
    cy.pan({ x: cy.width() / 2 - ((before.x1 + before.x2) / 2) * zoom, y: cy.height() / 2 - ((before.y1 + before.y2) / 2) * zoom });
    if (this._centred === null) {
      if (!this._inView(cy.nodes())) {
        this._frame();
      }
      return;
    }
    const selected = cy.nodes(':selected');
    if (selected.nonempty() && !this._inView(selected)) {
      cy.center(selected);
    }
  }

  /** Bring a node to the middle of the view (it stays there when the side panel opens). */
  reveal(id: string): void {
    const cy = this._cy;
    const element = cy?.getElementById(id);
    if (cy && element && element.nonempty()) {
      cy.stop();
      cy.center(element);
      this._centred = id;
    }
  }

  /** Mark the nodes a search matches (none: no marks). */
  mark(ids: readonly string[]): void {
    const wanted = new Set(ids);
    this._cy?.nodes().forEach(n => {
      n.toggleClass('search-match', wanted.has(n.id()));
    });
  }

  /** Where each node of the flow is drawn (the start node left out). */
  positions(): Record<string, Position> {
    const out: Record<string, Position> = {};
    this._cy?.nodes().forEach(n => {
      if (n.id() !== START_ID) {
        out[n.id()] = { ...n.position() };
      }
    });
    return out;
  }

  /** A place under the whole drawing, for pasted nodes to cover nothing: the left of
   * its nodes, and a row below its lowest node. */
  below(): Position {
    const nodes = this._cy?.nodes().filter(n => n.id() !== START_ID);
    if (!nodes || nodes.empty()) {
      return { x: 0, y: 0 };
    }
    const box = nodes.boundingBox({ includeLabels: false });
    return { x: Math.min(...nodes.map(n => (n as cytoscape.NodeSingular).position().x)), y: box.y2 + PASTE_GAP + NODE_HEIGHT / 2 };
  }

  /** Where a new node goes when none is dropped: right of the selected node, or of the last. */
  besideSelection(): Position {
    const cy = this._cy;
    const selected = cy?.nodes(':selected').first();
    const anchor = selected && selected.nonempty() ? selected : cy?.nodes().last();
    const p = anchor && anchor.nonempty() ? anchor.position() : { x: 0, y: 0 };
    return { x: p.x + 220, y: p.y };
  }

  /** The layered placement of the whole flow for the pane as it is (the Layout command
   * saves it in the file). */
  arranged(): Record<string, Position> {
    const flow = this._model.flow;
    const at = flow ? layeredPositions(flow, this._paneFrame()) : {};
    delete at[START_ID];
    return at;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.cancelAnimationFrame(this._resizeFrame);
    this._closeMap();
    this._gestures.dispose();
    this._cy?.destroy();
    this._cy = null;
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._cy?.resize();
    this._openMap();
    if (!this._framed) {
      this._frame();
    }
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    // frame again whenever the pane changes size, so the flow stays in view
    window.cancelAnimationFrame(this._resizeFrame);
    this._resizeFrame = window.requestAnimationFrame(() => {
      this._openMap();
      this._frame();
    });
  }

  /** Frame the flow: whole after Fit; else whole when that is legible, or at the legible
   * zoom from the top left when it is not. A whole flow is framed beside or above the
   * minimap, whichever shows it larger, so that the minimap hides none of it. */
  private _frame(): void {
    const cy = this._cy;
    if (!cy || cy.elements().length === 0) {
      return;
    }
    cy.resize();
    const width = cy.width();
    const height = cy.height();
    if (this._canvas.clientWidth === 0 || this._canvas.clientHeight === 0) {
      return;
    }
    this._centred = null;
    const box = cy.elements().boundingBox();
    const map = this._mapRoom();
    const room = [
      { w: width, h: height - map.h },
      { w: width - map.w, h: height }
    ].map(r => ({ ...r, zoom: Math.min((r.w - 2 * FIT_PADDING) / Math.max(box.w, 1), (r.h - 2 * FIT_PADDING) / Math.max(box.h, 1)) }));
    const best = room[0].zoom >= room[1].zoom ? room[0] : room[1];
    const zoom = Math.max(MIN_ZOOM, Math.min(FIT_ZOOM, best.zoom));
    if (!this._whole && zoom < LEGIBLE_ZOOM - 1e-6) {
      cy.zoom(LEGIBLE_ZOOM);
      cy.pan({ x: FIT_PADDING - box.x1 * LEGIBLE_ZOOM, y: FIT_PADDING - box.y1 * LEGIBLE_ZOOM });
    } else {
      cy.zoom(zoom);
      cy.pan({ x: (best.w - box.w * zoom) / 2 - box.x1 * zoom, y: (best.h - box.h * zoom) / 2 - box.y1 * zoom });
    }
    this._framed = true;
  }

  /** The room the minimap takes from the canvas's right and bottom edges. */
  private _mapRoom(): { w: number; h: number } {
    const map = this._map;
    return map.isConnected && map.offsetWidth > 0 ? { w: map.offsetWidth + MAP_MARGIN, h: map.offsetHeight + MAP_MARGIN } : { w: 0, h: 0 };
  }

  /** The graph units the pane shows above the minimap at the legible zoom (a default
   * before it has a size). */
  private _paneFrame(): Frame | undefined {
    const { clientWidth: w, clientHeight: h } = this._canvas;
    const height = h - this._mapRoom().h;
    return w > 0 && height > 0
      ? { width: (w - 2 * FIT_PADDING) / LEGIBLE_ZOOM, height: (height - 2 * FIT_PADDING) / LEGIBLE_ZOOM }
      : undefined;
  }

  /** Draw the model's flow (a text that is not a flow leaves the last drawing). */
  private _draw(): void {
    const flow = this._model.flow;
    if (this.isDisposed || flow === null) {
      return;
    }
    const byElement = problemsByElement(flow, this._model.shownProblems);
    const palette = this._model.palette;
    if (this._cy === null) {
      this._autoLayout(flow);
      this._cy = cytoscape({
        container: this._canvas,
        elements: toElements(flow, byElement, palette, this._auto, this._runs?.states) as cytoscape.ElementDefinition[],
        style: styleOf(palette, readTheme(this.node)),
        layout: { name: 'preset' },
        minZoom: MIN_ZOOM,
        maxZoom: MAX_ZOOM,
        // shift-drag on the background selects the nodes in a box; a drag pans
        boxSelectionEnabled: true,
        selectionType: 'single'
      });
      this._gestures.bind(this._cy);
      // a node brought to the middle stays there until the user moves the view
      this._cy.on('dragpan scrollzoom pinchzoom', () => {
        this._centred = null;
      });
      this._frame();
    } else {
      const cy = this._cy;
      const before = new Set(cy.nodes().map(n => n.id()));
      cy.batch(() => this._sync(toElements(flow, byElement, palette, this._auto, this._runs?.states)));
      const added = cy.nodes().filter(n => !before.has(n.id()));
      if (added.nonempty() && !this._inView(added)) {
        this._frame();
      }
    }
    this._openMap();
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
      // the marks of a search stay on the nodes that keep matching
      el.classes(el.hasClass('search-match') ? `${e.classes} search-match` : e.classes);
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

  /** The layered placement, in bands that fit the pane, for a flow whose file has no
   * layout yet; kept for the view's life, so that nodes stay put between edits until they
   * are moved. */
  private _autoLayout(flow: FlowModel): void {
    if (Object.keys(flow.layout).length === 0 && flow.nodes.length > 1) {
      this._auto = layeredPositions(flow, this._paneFrame());
    }
  }

  /** The minimap, once the canvas has a size and the graph a node (it draws the graph's
   * bounding box, which an empty graph lacks). */
  private _openMap(): void {
    const cy = this._cy;
    if (!cy || this._navigator || !this._map.isConnected || this._map.clientWidth === 0 || cy.nodes().empty()) {
      return;
    }
    this._navigator = (cy as any).navigator({
      container: `#${this._map.id}`,
      viewLiveFramerate: 0,
      thumbnailEventFramerate: 10,
      thumbnailLiveFramerate: false,
      dblClickDelay: 200,
      removeCustomContainer: false,
      rerenderDelay: 150
    });
  }

  private _closeMap(): void {
    // the minimap redraws its thumbnail on a throttled timer, which its destroy leaves set:
    // cancelled first, or it fires on the destroyed graph ("reading 'png' of null")
    this._navigator?._onRenderHandler?.cancel?.();
    this._navigator?.destroy();
    this._navigator = null;
  }

  private _inView(nodes: cytoscape.NodeCollection): boolean {
    const ext = this._cy!.extent();
    return nodes.every(n => {
      const b = n.boundingBox({});
      return b.x1 >= ext.x1 && b.x2 <= ext.x2 && b.y1 >= ext.y1 && b.y2 <= ext.y2;
    });
  }

  private _onDrop = (event: DragEvent): void => {
    const kind = event.dataTransfer?.getData(KIND_MIME);
    if (!kind || !this._cy) {
      return;
    }
    event.preventDefault();
    void this._model.addNode(kind, this.graphPoint(event.clientX, event.clientY));
  };

  /** The graph coordinates of a point of the page. */
  graphPoint(clientX: number, clientY: number): Position {
    const box = this._canvas.getBoundingClientRect();
    const pan = this._cy?.pan() ?? { x: 0, y: 0 };
    const zoom = this._cy?.zoom() ?? 1;
    return { x: (clientX - box.left - pan.x) / zoom, y: (clientY - box.top - pan.y) / zoom };
  }

  private _model: FlowViewModel;
  private _runs: FlowRuns | null = null;
  private _canvas: HTMLDivElement;
  private _map: HTMLDivElement;
  private _navigator: { destroy(): void; _onRenderHandler?: { cancel?: () => void } } | null = null;
  private _gestures: GraphGestures;
  private _cy: cytoscape.Core | null = null;
  private _auto: Record<string, Position> = {};
  private _framed = false;
  private _whole = false;
  private _centred: string | null = null;
  private _resizeFrame = 0;
}
