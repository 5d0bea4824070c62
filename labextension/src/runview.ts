/**
 * What the file view shows of its runs: a bar with how the shown run stands (a run of the
 * view, or the run history's last run of the file) with Cancel and Clear, the output of
 * the selected node in the side panel, and the form of the flow's declared inputs that
 * Run and Schedule open in a dialog.
 */
import { Widget } from '@lumino/widgets';

import { runClass } from './graph';
import { fieldKind, fieldText, fieldValue, type DeclaredInput } from './inputs';
import { runLine, type FlowRuns, type NodeState } from './runs';

/** The run bar: hidden while no run is shown. */
export class RunBar extends Widget {
  constructor(runs: FlowRuns) {
    super();
    this._runs = runs;
    this.addClass('jp-FlowGraph-runbar');
    this._text = document.createElement('span');
    this._text.className = 'jp-FlowGraph-runText';
    this._cancel = button('Cancel', 'jp-FlowGraph-cancelRun', 'Stop the run', () => void runs.cancel());
    this._clear = button('Clear', 'jp-FlowGraph-clearRun', 'Take the run colours off the graph', () => runs.clear());
    this.node.append(this._text, this._cancel, this._clear);
    runs.changed.connect(this._render, this);
    this._render();
  }

  private _render(): void {
    const summary = this._runs.summary;
    this.setHidden(summary === null);
    this._text.textContent = runLine(summary);
    this.node.dataset.status = summary?.status ?? '';
    this.node.dataset.source = summary?.source ?? '';
    this._cancel.hidden = !this._runs.running;
    this._clear.hidden = this._runs.running || summary === null;
  }

  private _runs: FlowRuns;
  private _text: HTMLSpanElement;
  private _cancel: HTMLButtonElement;
  private _clear: HTMLButtonElement;
}

function button(label: string, className: string, title: string, click: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.className = `jp-Button jp-mod-styled jp-mod-reject ${className}`;
  b.textContent = label;
  b.title = title;
  b.addEventListener('click', click);
  return b;
}

/** The shown run's output of one node (the one selected), under its form. */
export class RunOutput extends Widget {
  constructor(runs: FlowRuns) {
    super();
    this._runs = runs;
    this.addClass('jp-FlowGraph-output');
    runs.changed.connect(this._render, this);
    this.hide();
  }

  /** Show the output of `node` (null: none). */
  showNode(node: string | null): void {
    this._node = node;
    this._render();
  }

  private _render(): void {
    const state = this._node ? this._runs.states.get(this._node) : undefined;
    this.setHidden(!state);
    if (!state) {
      return;
    }
    const head = document.createElement('div');
    head.className = 'jp-FlowGraph-outputTitle';
    const took = typeof state.duration_s === 'number' ? `, ${(state.duration_s * 1000).toFixed(0)} ms` : '';
    const source = this._runs.summary?.source === 'history' ? 'Last run' : 'Run';
    head.textContent = `${source}: ${state.node} ${runClass(state)}${took}`;
    this.node.dataset.status = runClass(state);
    const parts: HTMLElement[] = [head];
    if (state.error) {
      const error = document.createElement('pre');
      error.className = 'jp-FlowGraph-outputError';
      error.textContent = state.error;
      parts.push(error);
    }
    if (state.output !== undefined && state.output !== null) {
      const pre = document.createElement('pre');
      pre.className = 'jp-FlowGraph-outputValue';
      pre.textContent = outputText(state);
      parts.push(pre);
    }
    this.node.replaceChildren(...parts);
  }

  private _runs: FlowRuns;
  private _node: string | null = null;
}

/** A node's output as text: its JSON, indented; a cut one says how much is left out. */
export function outputText(state: NodeState): string {
  const output: unknown = state.output;
  const chars = state.output_chars ?? 0;
  if (typeof output === 'string' && chars > output.length) {
    return `${output}\u2026\n(the first ${output.length.toLocaleString()} of ${chars.toLocaleString()} characters of JSON)`;
  }
  return JSON.stringify(output, null, 2);
}

/** What the inputs dialog answers. */
export interface FormValue {
  inputs: Record<string, unknown>;
  /** Why an input's text cannot be read (null when all can). */
  error: string | null;
  options: Record<string, string | boolean>;
}

/** The dialog body of Run and Schedule: a field per declared input (its default filled
 * in), and the options `extra` adds. */
export class InputsForm extends Widget {
  constructor(inputs: readonly DeclaredInput[], intro: string) {
    super();
    this.addClass('jp-FlowGraph-inputsForm');
    this._inputs = inputs;
    const note = document.createElement('p');
    note.textContent = inputs.length > 0 ? intro : `${intro} The flow declares no inputs.`;
    this.node.append(note);
    for (const input of inputs) {
      const row = document.createElement('label');
      row.className = 'jp-FlowGraph-inputRow';
      const name = document.createElement('span');
      name.className = 'jp-FlowGraph-inputName';
      name.textContent = `${input.name}${input.required ? ' *' : ''}`;
      name.title = input.description ?? `${input.type} input`;
      const kind = fieldKind(input.type);
      let field: HTMLInputElement | HTMLTextAreaElement;
      if (kind === 'text' || kind === 'json') {
        field = document.createElement('textarea');
        field.rows = kind === 'json' ? 3 : 2;
      } else {
        field = document.createElement('input');
        field.type = kind === 'number' ? 'number' : kind === 'boolean' ? 'checkbox' : 'text';
      }
      if (field instanceof HTMLInputElement && field.type === 'checkbox') {
        field.checked = input.default === true;
      } else {
        field.value = fieldText(input);
        field.placeholder = input.type;
      }
      field.className = 'jp-mod-styled jp-FlowGraph-inputField';
      field.dataset.input = input.name;
      this._fields.set(input.name, field);
      const type = document.createElement('span');
      type.className = 'jp-FlowGraph-inputType';
      type.textContent = input.type;
      row.append(name, field, type);
      this.node.append(row);
    }
  }

  /** Add a checkbox option (`name`: how `options()` names it), with a line under it that
   * says why it is set as it is (`note`). */
  addCheckbox(name: string, label: string, checked: boolean, note = ''): void {
    const row = document.createElement('label');
    row.className = 'jp-FlowGraph-inputOption';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = checked;
    box.dataset.option = name;
    row.append(box, document.createTextNode(` ${label}`));
    this._options.set(name, box);
    this.node.append(row);
    if (note) {
      const line = document.createElement('div');
      line.className = 'jp-FlowGraph-inputNote';
      line.dataset.note = name;
      line.textContent = note;
      this.node.append(line);
    }
  }

  /** Add a line of text option. */
  addText(name: string, label: string, value: string, title = '', placeholder = ''): void {
    const row = document.createElement('label');
    row.className = 'jp-FlowGraph-inputRow';
    const head = document.createElement('span');
    head.className = 'jp-FlowGraph-inputName';
    head.textContent = label;
    head.title = title;
    const field = document.createElement('input');
    field.type = 'text';
    field.className = 'jp-mod-styled jp-FlowGraph-inputField';
    field.value = value;
    field.placeholder = placeholder;
    field.title = title;
    field.dataset.option = name;
    row.append(head, field);
    this._options.set(name, field);
    this.node.append(row);
  }

  /** The inputs given (empty fields left out: their defaults apply); throws an Error
   * naming the input whose text its type does not take. */
  values(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const input of this._inputs) {
      const field = this._fields.get(input.name)!;
      const raw = field instanceof HTMLInputElement && field.type === 'checkbox' ? field.checked : field.value;
      const value = fieldValue(input, raw);
      if (value !== undefined) {
        out[input.name] = value;
      }
    }
    return out;
  }

  /** What the dialog answers (`Dialog.IResult.value`): the inputs, or why they cannot be
   * read, and the options. */
  getValue(): FormValue {
    try {
      return { inputs: this.values(), error: null, options: this.options() };
    } catch (error) {
      return { inputs: {}, error: error instanceof Error ? error.message : String(error), options: this.options() };
    }
  }

  /** The options: a checkbox's state, a text's value. */
  options(): Record<string, string | boolean> {
    const out: Record<string, string | boolean> = {};
    for (const [name, field] of this._options) {
      out[name] = field.type === 'checkbox' ? field.checked : field.value;
    }
    return out;
  }

  private _inputs: readonly DeclaredInput[];
  private _fields = new Map<string, HTMLInputElement | HTMLTextAreaElement>();
  private _options = new Map<string, HTMLInputElement>();
}
