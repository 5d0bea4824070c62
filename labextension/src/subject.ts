/**
 * What the side panel edits: the one selected node or edge of a flow, as the file holds it
 * (its whole body for the YAML tab, its config or settings for the form, its problems),
 * and the edit that Apply makes of the panel's form or YAML.
 *
 * Plain data only, so the unit tests check it directly.
 */
import { parse as parseYaml } from 'yaml';

import type { FlowEdit } from './api';
import { formatOf, type FlowModel } from './flowfile';
import type { PanelSubject } from './panel';
import type { Problem } from './problems';

/** The selected nodes (by id) and edges (by index in the file's `edges`). */
export interface Selection {
  readonly nodes: readonly string[];
  readonly edges: readonly number[];
}

export const NOTHING_SELECTED: Selection = { nodes: [], edges: [] };

/** A JSON schema for the panel's form (null: no form, the YAML tab only). */
export type FormSchema = Record<string, unknown> | null;

/** The form schemas of node kinds (and, for the kind null, of an edge's settings), each
 * asked of the server once; a failed answer is asked again next time (the server may have
 * been busy or restarting), and the form falls back to YAML meanwhile. */
export class FormSchemas {
  constructor(private _fetch: (kind: string | null) => Promise<Record<string, unknown>>) {}

  get(kind: string | null): Promise<FormSchema> {
    const key = kind ?? '';
    let schema = this._known.get(key);
    if (schema === undefined) {
      schema = this._fetch(kind).catch(() => {
        this._known.delete(key);
        return null;
      });
      this._known.set(key, schema);
    }
    return schema;
  }

  private _known = new Map<string, Promise<FormSchema>>();
}

/** Whether two selections hold the same elements. */
export function sameSelection(a: Selection, b: Selection): boolean {
  return (
    a.nodes.length === b.nodes.length &&
    a.edges.length === b.edges.length &&
    a.nodes.every(id => b.nodes.includes(id)) &&
    a.edges.every(index => b.edges.includes(index))
  );
}

/** The file's text as data; an unreadable text has no bodies to show. */
export function readDocument(text: string, path: string): any {
  try {
    return formatOf(path) === 'json' ? JSON.parse(text) : parseYaml(text);
  } catch {
    return {};
  }
}

/** What the panel shows for `selection` (null unless exactly one element is selected):
 * `text` is the document's text at `path`, `flow` the flow read from it, `problems` the
 * problems shown, and `schemaOf` gives the form's schema of a node kind (or, for null,
 * of an edge's settings). */
export async function subjectOf(
  selection: Selection,
  flow: FlowModel | null,
  text: string,
  path: string,
  problems: readonly Problem[],
  schemaOf: (kind: string | null) => Promise<FormSchema>
): Promise<PanelSubject | null> {
  if (!flow || selection.nodes.length + selection.edges.length !== 1) {
    return null;
  }
  const raw = readDocument(text, path);
  if (selection.nodes.length === 1) {
    const node = flow.nodes.find(n => n.id === selection.nodes[0]);
    if (!node) {
      return null;
    }
    const body = (Array.isArray(raw?.nodes) ? raw.nodes : []).find((n: any) => n && n.id === node.id) ?? {
      id: node.id,
      type: node.type,
      config: node.config
    };
    return {
      kind: 'node',
      key: node.id,
      title: `Node ${node.id} (${node.type})`,
      schema: await schemaOf(node.type),
      data: { ...node.config },
      body,
      problems: problems.filter(p => p.node === node.id && p.edge === null)
    };
  }
  const index = selection.edges[0];
  const body = (Array.isArray(raw?.edges) ? raw.edges[index] : null) ?? {};
  const { from, to, ...settings } = body as Record<string, unknown>;
  return {
    kind: 'edge',
    key: index,
    title: `Edge ${String(from)} \u2192 ${String(to)}`,
    schema: await schemaOf(null),
    data: settings,
    body: settings,
    problems: problems.filter(p => p.edge === index)
  };
}

/** The edit a side-panel Apply makes: a node's form sets its config, a node's YAML
 * replaces the node, an edge's form or YAML replaces the edge's settings. */
export function panelEdit(subject: PanelSubject, body: Record<string, unknown> | string): FlowEdit {
  if (subject.kind === 'edge') {
    return { op: 'replace_edge', index: Number(subject.key), body };
  }
  const node = String(subject.key);
  return typeof body === 'string' ? { op: 'replace_node', node, body } : { op: 'set_config', node, config: body };
}

/** A form's data without the fields left empty (the server fills in their defaults). */
export function filledFields(data: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(data).filter(([, v]) => v !== undefined && v !== null && v !== ''));
}
