/**
 * The palette of node kinds beside the graph: every kind the server knows, in its colour,
 * to drag onto the canvas (or double-click) to add a node of that kind.
 */
import { Widget } from '@lumino/widgets';

import { KIND_MIME } from './canvas';
import { kindColour } from './graph';
import type { FlowViewModel } from './model';

export class KindList extends Widget {
  /** `add` adds a node of a double-clicked kind. */
  constructor(model: FlowViewModel, add: (kind: string) => void) {
    super();
    this._model = model;
    this._add = add;
    this.addClass('jp-FlowGraph-kinds');
    model.paletteChanged.connect(this._render, this);
    this._render();
  }

  private _render(): void {
    const palette = this._model.palette;
    const head = document.createElement('div');
    head.className = 'jp-FlowGraph-kindsTitle';
    head.textContent = 'Drag a node';
    this.node.replaceChildren(head);
    for (const kind of [...palette.kinds.keys()].sort()) {
      const item = document.createElement('div');
      item.className = 'jp-FlowGraph-kind';
      item.draggable = true;
      item.dataset.kind = kind;
      item.textContent = kind;
      item.style.borderLeftColor = kindColour(kind, palette);
      item.title = `Drag onto the graph to add a ${kind} node (or double-click)`;
      item.addEventListener('dragstart', event => {
        event.dataTransfer?.setData(KIND_MIME, kind);
        event.dataTransfer?.setData('text/plain', kind);
      });
      item.addEventListener('dblclick', () => this._add(kind));
      this.node.append(item);
    }
  }

  private _model: FlowViewModel;
  private _add: (kind: string) => void;
}
