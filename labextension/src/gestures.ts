/**
 * The gestures that edit the drawn graph, each handed to the view's model: select (a tap,
 * or shift-drag a box), connect (drag from the handle beside a node to another node), move
 * (drop dragged nodes); what a right click is on, for JupyterLab's context menu (whose
 * items are the view's commands); and, on hover, an element's problems and an edge's
 * whole label next to it.
 */
import cytoscape from 'cytoscape';
import edgehandles from 'cytoscape-edgehandles';

import { START, type Position } from './flowfile';
import { START_ID } from './graph';
import type { FlowViewModel } from './model';

let registered = false;
function registerEdgehandles(): void {
  if (!registered) {
    cytoscape.use(edgehandles);
    registered = true;
  }
}

/** The handle, context menu and tooltip over a graph's canvas, and what they do. */
export class GraphGestures {
  /** Put the gestures' elements into `stage`, over `canvas`. */
  constructor(stage: HTMLElement, canvas: HTMLElement, model: FlowViewModel) {
    registerEdgehandles();
    this._canvas = canvas;
    this._model = model;
    this._handle = document.createElement('div');
    this._handle.className = 'jp-FlowGraph-handle';
    this._handle.title = 'Drag to another node to connect';
    this._handle.hidden = true;
    this._tooltip = document.createElement('div');
    this._tooltip.className = 'jp-FlowGraph-tooltip';
    this._tooltip.hidden = true;
    stage.append(this._handle, this._tooltip);
    this._handle.addEventListener('mousedown', this._onHandleDown);
  }

  /** Where the last right click was, in graph coordinates. */
  get contextPosition(): Position | null {
    return this._contextPosition;
  }

  /** Listen to the gestures on `cy`. */
  bind(cy: cytoscape.Core): void {
    this._cy = cy;
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
      void this._model.connect(source.id() === START_ID ? START : source.id(), target.id());
    });
    cy.on('mouseover', 'node', event => this._placeHandle(event.target));
    // the handle follows its node when the view moves, and hides while nodes are dragged
    cy.on('pan zoom', () => {
      if (this._handleNode && !this._handle.hidden && !this._handle.classList.contains('jp-mod-active')) {
        this._placeHandle(this._handleNode);
      }
    });
    cy.on('position', () => {
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
          moved[n.id()] = n.position();
        }
      }
      const drawn: Record<string, Position> = {};
      cy.nodes().forEach(n => {
        if (n.id() !== START_ID) {
          drawn[n.id()] = n.position();
        }
      });
      void this._model.move(moved, drawn);
    });
    cy.on('select unselect', () => this._reportSelection());
    // the keys of the view's commands are bound to the canvas: a click anywhere on the
    // graph gives it the focus (after the browser has moved the focus for the click)
    cy.on('tap cxttap boxend', () => this._canvas.focus({ preventScroll: true }));
    // a right click comes before the browser's contextmenu event, which opens JupyterLab's
    // menu: the canvas says what the click is on, and the menu's items act on the selection
    cy.on('cxttapstart', event => {
      const target = event.target as cytoscape.Core | cytoscape.SingularElementArgument;
      this._contextPosition = event.position ? { ...event.position } : null;
      if (target === cy) {
        this._canvas.dataset.context = 'background';
        return;
      }
      const element = target as cytoscape.SingularElementArgument;
      this._canvas.dataset.context = element.id() === START_ID ? 'background' : element.isNode() ? 'node' : 'edge';
      if (element.id() !== START_ID && !element.selected()) {
        cy.elements().unselect();
        element.select();
      }
    });
    cy.on('mouseover', 'node, edge', event => this._showTooltip(event.target, event.renderedPosition));
    cy.on('mouseout', 'node, edge', () => {
      this._tooltip.hidden = true;
    });
  }

  /** Stop listening (before the graph is destroyed). */
  dispose(): void {
    this._eh?.destroy();
    this._eh = null;
    this._cy = null;
    this._handleNode = null;
  }

  /** Tell the model what is selected once a gesture's select and unselect events are over. */
  private _reportSelection(): void {
    if (this._reporting) {
      return;
    }
    this._reporting = true;
    queueMicrotask(() => {
      this._reporting = false;
      const cy = this._cy;
      if (cy) {
        this._model.select({
          nodes: cy.nodes(':selected').map(n => n.id()).filter(id => id !== START_ID),
          edges: cy.edges(':selected').map(e => e.data('index') as number)
        });
      }
    });
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

  /** An element's problems, a node's state in the run shown, and an edge's whole label
   * when it is drawn shortened. */
  private _showTooltip(element: cytoscape.SingularElementArgument, at: Position | undefined): void {
    const problems = (element.data('problems') as string) || '';
    const run = (element.data('run') as string) || '';
    const full = element.isEdge() ? ((element.data('fullLabel') as string) || '') : '';
    const label = full && full !== element.data('label') ? full : '';
    if (!problems && !label && !run) {
      return;
    }
    const pos = at ?? { x: 0, y: 0 };
    this._tooltip.textContent = [label, problems, run].filter(Boolean).join('\n');
    this._tooltip.classList.toggle('jp-mod-problem', problems !== '');
    this._tooltip.style.top = `${this._canvas.offsetTop + pos.y + 12}px`;
    this._tooltip.hidden = false;
    // kept inside the canvas: near its right edge the tip opens to the left of the pointer
    const room = this._canvas.clientWidth - this._tooltip.offsetWidth - 4;
    this._tooltip.style.left = `${this._canvas.offsetLeft + Math.max(0, Math.min(pos.x + 12, room))}px`;
  }

  private _canvas: HTMLElement;
  private _model: FlowViewModel;
  private _handle: HTMLDivElement;
  private _tooltip: HTMLDivElement;
  private _cy: cytoscape.Core | null = null;
  private _eh: any = null;
  private _handleNode: cytoscape.NodeSingular | null = null;
  private _reporting = false;
  private _contextPosition: Position | null = null;
}
