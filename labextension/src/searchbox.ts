/**
 * The view's search box (Ctrl+F in the graph): as the query is typed the matching nodes
 * are marked; Enter selects the next match and brings it to the middle; Escape closes the
 * box and gives the focus back to the graph.
 */
import { Widget } from '@lumino/widgets';

import type { FlowViewModel } from './model';

/** What the box asks of the graph. */
export interface SearchTarget {
  /** Mark the matching nodes (none: no marks). */
  mark(ids: readonly string[]): void;
  /** Bring a node to the middle of the view. */
  reveal(id: string): void;
  /** Give the focus back to the graph. */
  focus(): void;
}

export class SearchBox extends Widget {
  constructor(model: FlowViewModel, target: SearchTarget) {
    super();
    this._model = model;
    this._target = target;
    this.addClass('jp-FlowGraph-search');
    this._input = document.createElement('input');
    this._input.type = 'search';
    this._input.className = 'jp-FlowGraph-searchInput';
    this._input.placeholder = 'Find a node: id, kind or config';
    this._input.setAttribute('aria-label', 'Find a node');
    this._count = document.createElement('span');
    this._count.className = 'jp-FlowGraph-searchCount';
    const close = document.createElement('button');
    close.className = 'jp-FlowGraph-searchClose';
    close.textContent = '\u00d7';
    close.title = 'Close (Escape)';
    close.addEventListener('click', () => this.close());
    this.node.append(this._input, this._count, close);
    this._input.addEventListener('input', () => this._update());
    this._input.addEventListener('keydown', this._onKey);
    model.changed.connect(() => {
      if (this.isVisible) {
        this._update();
      }
    }, this);
    this.hide();
  }

  /** Show the box with its query selected, ready for typing. */
  open(): void {
    this.show();
    this._input.focus();
    this._input.select();
    this._update();
  }

  close(): void {
    this.hide();
    this._target.mark([]);
    this._target.focus();
  }

  private _update(): void {
    const query = this._input.value;
    const matches = this._model.search(query);
    this._target.mark(matches.map(m => m.node));
    this._count.textContent = query.trim() ? `${matches.length} match${matches.length === 1 ? '' : 'es'}` : '';
    this._count.classList.toggle('jp-mod-error', query.trim() !== '' && matches.length === 0);
  }

  private _onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Enter') {
      event.preventDefault();
      const found = this._model.findNext(this._input.value);
      if (found) {
        this._target.reveal(found.match.node);
        this._count.textContent = `${found.index} of ${found.count}`;
      }
    } else if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      this.close();
    }
  };

  private _model: FlowViewModel;
  private _target: SearchTarget;
  private _input: HTMLInputElement;
  private _count: HTMLSpanElement;
}
