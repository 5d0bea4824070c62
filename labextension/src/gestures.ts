/**
 * The gestures that edit the drawn graph, each handed to the view's model: select (a tap),
 * connect (drag from the handle beside a node to another node), move (drop a dragged node),
 * delete (the context menu); and the problems of an element shown next to it on hover.
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
    this._menu = document.createElement('div');
    this._menu.className = 'jp-FlowGraph-menu';
    this._menu.hidden = true;
    this._tooltip = document.createElement('div');
    this._tooltip.className = 'jp-FlowGraph-tooltip';
    this._tooltip.hidden = true;
    stage.append(this._handle, this._menu, this._tooltip);
    this._handle.addEventListener('mousedown', this._onHandleDown);
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
          moved[n.id()] = n.position();
        }
      }
      void this._model.move(moved);
    });
    cy.on('select unselect', () => this._reportSelection());
    cy.on('tap', event => {
      this._menu.hidden = true;
      if (event.target !== cy) {
        this._canvas.focus();
      }
    });
    cy.on('cxttap', 'node, edge', event => {
      const target = event.target as cytoscape.SingularElementArgument;
      if (!target.selected()) {
        cy.elements().unselect();
        target.select();
      }
      this._showMenu(event.renderedPosition ?? { x: 0, y: 0 });
    });
    cy.on('mouseover', 'node, edge', event => this._showProblems(event.target, event.renderedPosition));
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

  private _showMenu(at: Position): void {
    const remove = document.createElement('button');
    remove.className = 'jp-FlowGraph-menuItem';
    remove.textContent = 'Delete';
    remove.addEventListener('click', () => {
      this._menu.hidden = true;
      void this._model.deleteSelected();
    });
    this._menu.replaceChildren(remove);
    this._menu.style.left = `${this._canvas.offsetLeft + at.x}px`;
    this._menu.style.top = `${this._canvas.offsetTop + at.y}px`;
    this._menu.hidden = false;
  }

  private _showProblems(element: cytoscape.SingularElementArgument, at: Position | undefined): void {
    const text = element.data('problems') as string;
    if (!text) {
      return;
    }
    const pos = at ?? { x: 0, y: 0 };
    this._tooltip.textContent = text;
    this._tooltip.style.left = `${this._canvas.offsetLeft + pos.x + 12}px`;
    this._tooltip.style.top = `${this._canvas.offsetTop + pos.y + 12}px`;
    this._tooltip.hidden = false;
  }

  private _canvas: HTMLElement;
  private _model: FlowViewModel;
  private _handle: HTMLDivElement;
  private _menu: HTMLDivElement;
  private _tooltip: HTMLDivElement;
  private _cy: cytoscape.Core | null = null;
  private _eh: any = null;
  private _handleNode: cytoscape.NodeSingular | null = null;
  private _reporting = false;
}
