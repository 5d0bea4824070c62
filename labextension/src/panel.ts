/**
 * The side panel of the flow view: the selected node's or edge's settings as a form made
 * from the server's JSON schema (JupyterLab's own form component), a YAML tab for what a
 * form cannot say, the problems of the element in the fields they concern, and the
 * outcome of Apply right next to the button.
 */
import { FormComponent, ReactWidget } from '@jupyterlab/ui-components';
import validator from '@rjsf/validator-ajv8';
import * as React from 'react';
import { stringify } from 'yaml';

import type { Problem } from './problems';

/** What the panel shows: a node or an edge of the flow, or nothing. */
export interface PanelSubject {
  /** `node` (key: its id) or `edge` (key: its index in the file's edges). */
  kind: 'node' | 'edge';
  key: string | number;
  title: string;
  schema: Record<string, unknown> | null;
  /** The form's data: a node's config, an edge's settings. */
  data: Record<string, unknown>;
  /** The whole element as YAML shows it (a node with id, type, config, ...). */
  body: Record<string, unknown>;
  problems: Problem[];
}

export interface PanelActions {
  applyForm(subject: PanelSubject, data: Record<string, unknown>): Promise<string | null>;
  applyYaml(subject: PanelSubject, text: string): Promise<string | null>;
}

/** rjsf's extra errors from problems: a node problem's field `config.template` goes on the
 * form's `template` field, an edge problem's `when` on `when`. */
export function fieldErrors(problems: readonly Problem[], prefix: string): Record<string, { __errors: string[] }> {
  const out: Record<string, { __errors: string[] }> = {};
  for (const problem of problems) {
    const field = problem.field ?? '';
    const name = prefix && field.startsWith(prefix) ? field.slice(prefix.length) : prefix ? '' : field;
    const top = name.split(/[.[]/)[0];
    if (top) {
      (out[top] = out[top] ?? { __errors: [] }).__errors.push(problem.message);
    }
  }
  return out;
}

export class SidePanel extends ReactWidget {
  constructor(private _actions: PanelActions) {
    super();
    this.addClass('jp-FlowGraph-panel');
  }

  /** Called with what the panel shows, whenever that changes. */
  subjectChanged: (subject: PanelSubject | null) => void = () => undefined;

  get subject(): PanelSubject | null {
    return this._subject;
  }

  showSubject(subject: PanelSubject | null): void {
    const same =
      subject !== null && this._subject !== null && subject.kind === this._subject.kind && subject.key === this._subject.key;
    const yaml = subject ? stringify(subject.body) : '';
    this._subject = subject;
    this._formData = subject ? { ...subject.data } : {};
    if (!same) {
      this._message = null;
    }
    // the element changed, or its settings did (an undo): the form starts again from them
    if (!same || yaml !== this._yaml) {
      this._version++;
    }
    this._yaml = yaml;
    this.subjectChanged(subject);
    this.update();
  }

  protected render(): React.ReactElement {
    const subject = this._subject;
    const e = React.createElement;
    if (subject === null) {
      return e('div', { className: 'jp-FlowGraph-panelEmpty' }, 'Click a node or an edge to edit it.');
    }
    const message = this._message
      ? e('span', { className: `jp-FlowGraph-feedback${this._message.error ? ' jp-mod-error' : ''}` }, this._message.text)
      : null;
    const tabs = e(
      'div',
      { className: 'jp-FlowGraph-tabs' },
      (['form', 'yaml'] as const).map(tab =>
        e(
          'button',
          {
            key: tab,
            className: `jp-FlowGraph-tab${this._tab === tab ? ' jp-mod-active' : ''}`,
            onClick: () => {
              this._tab = tab;
              this.update();
            }
          },
          tab === 'form' ? 'Form' : 'YAML'
        )
      )
    );
    const prefix = subject.kind === 'node' ? 'config.' : '';
    const general = subject.problems.filter(p => Object.keys(fieldErrors([p], prefix)).length === 0);
    const body =
      this._tab === 'form' && subject.schema
        ? e(FormComponent as any, {
            key: `form-${this._version}`,
            schema: subject.schema,
            formData: this._formData,
            validator,
            liveValidate: false,
            showErrorList: false,
            extraErrors: fieldErrors(subject.problems, prefix),
            idPrefix: 'jp-FlowForm',
            onChange: (event: { formData: Record<string, unknown> }) => {
              this._formData = event.formData;
            }
          })
        : e('textarea', {
            key: `yaml-${this._version}`,
            className: 'jp-FlowGraph-yaml',
            spellCheck: false,
            defaultValue: this._yaml,
            onChange: (event: React.ChangeEvent<HTMLTextAreaElement>) => {
              this._yaml = event.target.value;
            }
          });
    return e(
      'div',
      { className: 'jp-FlowGraph-panelBody' },
      e('div', { className: 'jp-FlowGraph-panelTitle' }, subject.title),
      tabs,
      general.length > 0
        ? e('ul', { className: 'jp-FlowGraph-panelProblems' }, general.map((p, i) => e('li', { key: i }, p.message)))
        : null,
      body,
      e(
        'div',
        { className: 'jp-FlowGraph-applyRow' },
        e('button', { className: 'jp-Button jp-mod-styled jp-mod-accept jp-FlowGraph-apply', onClick: () => void this._apply() }, 'Apply'),
        message
      )
    );
  }

  private async _apply(): Promise<void> {
    const subject = this._subject;
    if (!subject) {
      return;
    }
    const error =
      this._tab === 'form' && subject.schema
        ? await this._actions.applyForm(subject, this._formData)
        : await this._actions.applyYaml(subject, this._yaml);
    this._message = error === null ? { text: 'Applied (unsaved)', error: false } : { text: error, error: true };
    this.update();
  }

  private _subject: PanelSubject | null = null;
  private _formData: Record<string, unknown> = {};
  private _yaml = '';
  private _tab: 'form' | 'yaml' = 'form';
  private _version = 0;
  private _message: { text: string; error: boolean } | null = null;
}
