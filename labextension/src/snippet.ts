/**
 * Copy and paste of nodes: the selected nodes as the file holds them (every setting, and
 * where they are drawn) with the edges between them, and the edits that paste them into
 * a flow. A pasted node keeps its id when the flow has none like it, else takes the next
 * free one (`clean` -> `clean_2`); references between the pasted nodes, in their templates
 * and in the pasted edges' conditions, follow the new ids.
 *
 * Plain data only, so the unit tests check it directly.
 */
import type { FlowEdit } from './api';
import type { FlowModel, Position } from './flowfile';

/** The clipboard's MIME type for copied nodes. */
export const SNIPPET_MIME = 'application/x-jupyter-flow-nodes';

export interface SnippetNode {
  id: string;
  kind: string;
  /** The node as the file holds it: id, type, config and any other setting. */
  body: Record<string, unknown>;
  position: Position | null;
}

export interface SnippetEdge {
  from: string;
  to: string;
  when?: string;
  branch?: string;
  on?: 'success' | 'error';
  label?: string;
}

/** Copied nodes and the edges between them. */
export interface FlowSnippet {
  nodes: SnippetNode[];
  edges: SnippetEdge[];
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The nodes `ids` of `flow` and the edges between them; `data` is the document read as
 * data (for each node's whole body), `positions` where each node is drawn. Null when no
 * node of the flow is named. */
export function snippetOf(
  flow: FlowModel,
  data: unknown,
  ids: readonly string[],
  positions: Record<string, Position>
): FlowSnippet | null {
  const wanted = new Set(ids);
  const raw = isMapping(data) && Array.isArray(data.nodes) ? data.nodes : [];
  const nodes: SnippetNode[] = flow.nodes
    .filter(node => wanted.has(node.id))
    .map(node => {
      const body = raw.find((n: unknown) => isMapping(n) && n.id === node.id);
      const p = positions[node.id] ?? flow.layout[node.id];
      return {
        id: node.id,
        kind: node.type,
        body: isMapping(body) ? structuredClone(body) : { id: node.id, type: node.type, config: structuredClone(node.config) },
        position: p ? { x: p.x, y: p.y } : null
      };
    });
  if (nodes.length === 0) {
    return null;
  }
  const edges: SnippetEdge[] = flow.edges
    .filter(e => wanted.has(e.source) && wanted.has(e.target))
    .map(e => {
      const edge: SnippetEdge = { from: e.source, to: e.target };
      if (e.when) {
        edge.when = e.when;
      }
      if (e.branch !== undefined) {
        edge.branch = e.branch;
      }
      if (e.on === 'error') {
        edge.on = 'error';
      }
      if (e.label) {
        edge.label = e.label;
      }
      return edge;
    });
  return { nodes, edges };
}

/** A snippet read back from the clipboard, or null when `value` is not one. */
export function readSnippet(value: unknown): FlowSnippet | null {
  if (typeof value === 'string') {
    try {
      return readSnippet(JSON.parse(value));
    } catch {
      return null;
    }
  }
  if (!isMapping(value) || !Array.isArray(value.nodes) || !Array.isArray(value.edges)) {
    return null;
  }
  const nodes = value.nodes.filter(
    (n: unknown): n is SnippetNode => isMapping(n) && typeof n.id === 'string' && typeof n.kind === 'string' && isMapping(n.body)
  );
  const ids = new Set(nodes.map(n => n.id));
  const edges = value.edges.filter(
    (e: unknown): e is SnippetEdge => isMapping(e) && typeof e.from === 'string' && typeof e.to === 'string' && ids.has(e.from) && ids.has(e.to)
  );
  return nodes.length > 0 ? { nodes, edges } : null;
}

/** `id`, or when it is taken the first free `base_N` (N from 2; `clean_2` counts on from
 * `clean`). */
export function freeId(id: string, taken: ReadonlySet<string>): string {
  if (!taken.has(id)) {
    return id;
  }
  const numbered = /^(.*)_(\d+)$/.exec(id);
  const base = numbered ? numbered[1] : id;
  let n = numbered ? Number(numbered[2]) + 1 : 2;
  while (taken.has(`${base}_${n}`)) {
    n++;
  }
  return `${base}_${n}`;
}

/** A quoted string, or a name that is not an attribute (`x` in `x.output`, not `output`). */
const TOKEN = /('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?<![\w.])([A-Za-z_]\w*)(?!\w)/g;

function renameNames(expression: string, renames: ReadonlyMap<string, string>): string {
  return expression.replace(TOKEN, (whole: string, quoted: string | undefined, name: string | undefined) =>
    quoted === undefined && name !== undefined ? renames.get(name) ?? whole : whole
  );
}

/** `text` with the node names of `renames` renamed inside its `{{ }}` and `{% %}` parts;
 * a `bare` text (an edge's condition without braces) is one expression as a whole.
 * Quoted strings and attribute names are left alone. */
export function renameReferences(text: string, renames: ReadonlyMap<string, string>, bare = false): string {
  if (renames.size === 0) {
    return text;
  }
  if (bare && !text.includes('{{') && !text.includes('{%')) {
    return renameNames(text, renames);
  }
  return text.replace(/\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}/g, part => renameNames(part, renames));
}

function renameDeep(value: unknown, renames: ReadonlyMap<string, string>): unknown {
  if (typeof value === 'string') {
    return renameReferences(value, renames);
  }
  if (Array.isArray(value)) {
    return value.map(item => renameDeep(item, renames));
  }
  if (isMapping(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renameDeep(v, renames)]));
  }
  return value;
}

/** What pasting makes: the edits, in order, and the ids the pasted nodes get. */
export interface PastePlan {
  edits: FlowEdit[];
  /** The new id of each pasted node, by its id in the snippet. */
  ids: Map<string, string>;
}

/** The edits that add `snippet` to a flow whose node ids are `taken`: a node each (moved
 * by `offset`, or with the snippet's top left at `at`), its other settings when it has
 * any beyond a config, then the edges between the pasted nodes. */
export function pastePlan(
  snippet: FlowSnippet,
  taken: Iterable<string>,
  place: { offset?: Position; at?: Position } = {}
): PastePlan {
  const used = new Set(taken);
  const ids = new Map<string, string>();
  for (const node of snippet.nodes) {
    const id = freeId(node.id, used);
    used.add(id);
    ids.set(node.id, id);
  }
  const renames = new Map([...ids].filter(([from, to]) => from !== to));
  const placed = snippet.nodes.map(n => n.position).filter((p): p is Position => p !== null);
  let dx = place.offset?.x ?? 0;
  let dy = place.offset?.y ?? 0;
  if (place.at && placed.length > 0) {
    dx = place.at.x - Math.min(...placed.map(p => p.x));
    dy = place.at.y - Math.min(...placed.map(p => p.y));
  }
  const edits: FlowEdit[] = [];
  const settings: FlowEdit[] = [];
  for (const node of snippet.nodes) {
    const id = ids.get(node.id)!;
    const body = renameDeep(node.body, renames) as Record<string, unknown>;
    const { id: _id, type: _type, config, ...rest } = body;
    const position = node.position
      ? { x: Math.round(node.position.x + dx), y: Math.round(node.position.y + dy) }
      : place.at
        ? { x: Math.round(place.at.x), y: Math.round(place.at.y) }
        : null;
    edits.push({
      op: 'add_node',
      kind: node.kind,
      id,
      config: isMapping(config) ? config : {},
      ...(position ? { position } : {})
    });
    if (Object.keys(rest).length > 0) {
      settings.push({ op: 'replace_node', node: id, body: { ...body, id } });
    }
  }
  edits.push(...settings);
  for (const edge of snippet.edges) {
    const add: FlowEdit = { op: 'add_edge', from: ids.get(edge.from)!, to: ids.get(edge.to)! };
    if (edge.when) {
      add.when = renameReferences(edge.when, renames, true);
    }
    if (edge.branch !== undefined) {
      add.branch = edge.branch;
    }
    if (edge.on === 'error') {
      add.on = 'error';
    }
    if (edge.label) {
      add.label = edge.label;
    }
    edits.push(add);
  }
  return { edits, ids };
}
