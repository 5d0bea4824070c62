/**
 * Reading a flow file (`*.flow.yaml`, `*.flow.json`) into a small model of nodes and edges.
 *
 * Plain TypeScript with no JupyterLab dependency: the document widget draws what this
 * returns, and the unit tests check it directly. The rules follow the Python loader:
 * the seed format's nodes without `type` whose `config` has `endpoint` are `http` nodes,
 * and an edge from `start` marks an entry node.
 */
import { LineCounter, parseDocument } from 'yaml';

import { declaredInputs, type DeclaredInput } from './inputs';

/** The pseudo-node an edge starts from to mark an entry node. */
export const START = 'start';

export type FlowFormat = 'yaml' | 'json';

export interface FlowNode {
  /** The node id; a node without a usable id gets `#N` (1-based), as the server names it. */
  id: string;
  type: string;
  title?: string;
  config: Record<string, unknown>;
}

export interface FlowEdge {
  /** Position of the edge in the file's `edges` list (problems name edges by it). */
  index: number;
  source: string;
  target: string;
  when?: string;
  branch?: string;
  on: 'success' | 'error';
  label?: string;
}

export interface Position {
  x: number;
  y: number;
}

/** Something the browser can tell about the file without the server (the server's
 * problem shape: an edge problem names the edge by index, and its field is `from`/`to`). */
export interface LocalProblem {
  node: string | null;
  edge: number | null;
  field: string | null;
  message: string;
}

export interface FlowModel {
  name: string;
  nodes: FlowNode[];
  edges: FlowEdge[];
  layout: Record<string, Position>;
  /** Problems that keep part of the file from being drawn. */
  problems: LocalProblem[];
  /** The inputs the flow declares (`inputs:`), in file order. */
  inputs?: DeclaredInput[];
}

/** The file cannot be read as a flow at all (not YAML/JSON, or not a mapping). */
export class FlowParseError extends Error {
  readonly line: number | null;
  readonly column: number | null;

  constructor(message: string, line: number | null = null, column: number | null = null) {
    super(line !== null ? `line ${line}, column ${column}: ${message}` : message);
    this.name = 'FlowParseError';
    this.line = line;
    this.column = column;
  }
}

/** The format of a flow file from its name: `.json` is JSON, everything else YAML. */
export function formatOf(path: string): FlowFormat {
  return path.toLowerCase().endsWith('.json') ? 'json' : 'yaml';
}

/** Whether a path names a flow file. */
export function isFlowPath(path: string): boolean {
  return /\.flow\.(ya?ml|json)$/i.test(path);
}

/** The name shared by a flow file and the notebooks made for it (`a/b.flow.yaml` -> `b`). */
export function flowStem(path: string): string {
  const base = path.split('/').pop() ?? path;
  return base.replace(/\.flow\.(ya?ml|json)$/i, '');
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseText(text: string, format: FlowFormat): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new FlowParseError(`not valid JSON: ${(err as Error).message}`);
    }
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const first = doc.errors[0];
    const pos = lineCounter.linePos(first.pos[0]);
    const message = first.message.split('\n')[0];
    throw new FlowParseError(message, pos.line, pos.col);
  }
  return doc.toJS();
}

/** The kind of a node as the server infers it (seed format: `endpoint` makes `http`). */
export function nodeKind(raw: Record<string, unknown>): string | null {
  if (typeof raw.type === 'string' && raw.type) {
    return raw.type;
  }
  if (isMapping(raw.config) && 'endpoint' in raw.config) {
    return 'http';
  }
  return null;
}

/** Parse flow text; throws FlowParseError when the text is not a flow-shaped document. */
export function parseFlow(text: string, format: FlowFormat = 'yaml'): FlowModel {
  const data = parseText(text, format);
  if (data === null || data === undefined) {
    throw new FlowParseError("the file is empty: a flow needs 'nodes' (and usually 'edges')");
  }
  if (!isMapping(data)) {
    throw new FlowParseError(
      `a flow must be a mapping with 'nodes' and 'edges', got ${Array.isArray(data) ? 'a list' : typeof data}`
    );
  }
  const problems: LocalProblem[] = [];
  const nodes: FlowNode[] = [];
  const seen = new Set<string>();
  const rawNodes = data.nodes;
  if (rawNodes !== undefined && !Array.isArray(rawNodes)) {
    problems.push({ node: null, edge: null, field: 'nodes', message: 'must be a list of nodes' });
  }
  (Array.isArray(rawNodes) ? rawNodes : []).forEach((raw: unknown, i: number) => {
    if (!isMapping(raw)) {
      problems.push({ node: `#${i + 1}`, edge: null, field: null, message: 'a node must be a mapping' });
      return;
    }
    const id = typeof raw.id === 'string' && raw.id ? raw.id : `#${i + 1}`;
    if (id !== raw.id) {
      problems.push({ node: id, edge: null, field: 'id', message: 'the node has no id' });
    }
    if (seen.has(id)) {
      problems.push({ node: id, edge: null, field: 'id', message: 'duplicate node id: only the first is drawn' });
      return;
    }
    seen.add(id);
    const kind = nodeKind(raw);
    if (kind === null) {
      problems.push({
        node: id,
        edge: null,
        field: 'type',
        message: "has no 'type' (and no 'config.endpoint' to make it an http node)"
      });
    }
    nodes.push({
      id,
      type: kind ?? '?',
      title: typeof raw.title === 'string' ? raw.title : undefined,
      config: isMapping(raw.config) ? raw.config : {}
    });
  });

  const edges: FlowEdge[] = [];
  const rawEdges = data.edges;
  if (rawEdges !== undefined && rawEdges !== null && !Array.isArray(rawEdges)) {
    problems.push({ node: null, edge: null, field: 'edges', message: 'must be a list of edges' });
  }
  (Array.isArray(rawEdges) ? rawEdges : []).forEach((raw: unknown, index: number) => {
    if (!isMapping(raw) || typeof raw.from !== 'string' || typeof raw.to !== 'string') {
      const field = !isMapping(raw) ? null : typeof raw.from !== 'string' ? 'from' : 'to';
      problems.push({ node: null, edge: index, field, message: "an edge needs 'from' and 'to'" });
      return;
    }
    const ends: ['from' | 'to', string][] = [
      ['from', raw.from],
      ['to', raw.to]
    ];
    const missing = ends.filter(([end, id]) => !seen.has(id) && !(end === 'from' && id === START));
    if (missing.length > 0) {
      problems.push({
        node: null,
        edge: index,
        field: missing.length === 1 ? missing[0][0] : null,
        message: `no node ${missing.map(([, id]) => `'${id}'`).join(' or ')}: the edge is not drawn`
      });
      return;
    }
    edges.push({
      index,
      source: raw.from,
      target: raw.to,
      when: typeof raw.when === 'string' ? raw.when : undefined,
      branch: raw.branch === undefined || raw.branch === null ? undefined : String(raw.branch),
      on: raw.on === 'error' ? 'error' : 'success',
      label: typeof raw.label === 'string' ? raw.label : undefined
    });
  });

  const layout: Record<string, Position> = {};
  if (isMapping(data.layout)) {
    for (const [id, pos] of Object.entries(data.layout)) {
      if (isMapping(pos) && typeof pos.x === 'number' && typeof pos.y === 'number') {
        layout[id] = { x: pos.x, y: pos.y };
      }
    }
  }
  const name = typeof data.name === 'string' && data.name ? data.name : 'flow';
  return { name, nodes, edges, layout, problems, inputs: declaredInputs(data.inputs) };
}
