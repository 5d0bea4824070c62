/**
 * What the file view says about the flow: a header with its name, size and validation
 * status, a Fit button and the note of the last edit; and the list of problems under the
 * graph, where a click brings the node in question forward.
 */
import { Widget } from '@lumino/widgets';

import type { FlowViewModel, Note } from './model';
import { problemText } from './problems';

/** The header line: title, Fit, and the last edit's note. */
export class FlowHeader extends Widget {
  constructor(model: FlowViewModel, fit: () => void) {
    super();
    this._model = model;
    this.addClass('jp-FlowGraph-header');
    this._title = document.createElement('span');
    this._title.className = 'jp-FlowGraph-title';
    this._feedback = document.createElement('span');
    this._feedback.className = 'jp-FlowGraph-feedback';
    const button = document.createElement('button');
    button.className = 'jp-Button jp-mod-styled jp-FlowGraph-fit';
    button.textContent = 'Fit';
    button.title = 'Show the whole flow';
    button.addEventListener('click', () => fit());
    this.node.append(this._title, button, this._feedback);
    model.changed.connect(this.showTitle, this);
    model.noteChanged.connect((_, note) => this._showNote(note), this);
  }

  /** Write the title again (the flow changed, or the file was renamed). */
  showTitle(): void {
    this._title.textContent = this._model.headline;
  }

  private _showNote(note: Note | null): void {
    this._feedback.textContent = note?.text ?? '';
    this._feedback.classList.toggle('jp-mod-error', note?.error ?? false);
  }

  private _model: FlowViewModel;
  private _title: HTMLSpanElement;
  private _feedback: HTMLSpanElement;
}

/** The problems shown, or why the text is not a flow; hidden when there is none. */
export class ProblemList extends Widget {
  constructor(model: FlowViewModel, pick: (node: string) => void) {
    super({ node: document.createElement('ul') });
    this._model = model;
    this.addClass('jp-FlowGraph-problems');
    this.hide();
    this.node.addEventListener('click', event => {
      const node = (event.target as HTMLElement).closest('li')?.dataset.node;
      if (node) {
        pick(node);
      }
    });
    model.changed.connect(this._render, this);
  }

  private _render(): void {
    const model = this._model;
    const lines: [string, string | null][] =
      model.parseError !== null ? [[model.parseError, null]] : model.shownProblems.map(p => [problemText(p), p.node]);
    this.node.replaceChildren();
    for (const [text, node] of lines) {
      const item = document.createElement('li');
      item.textContent = text;
      if (node) {
        item.dataset.node = node;
      }
      this.node.append(item);
    }
    this.setHidden(lines.length === 0);
  }

  private _model: FlowViewModel;
}
