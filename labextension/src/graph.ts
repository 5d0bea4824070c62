/**
 * A flow model to cytoscape elements: one node per flow node coloured by kind, the `start`
 * pseudo-node when edges use it, edges labelled with their condition or branch, and the
 * validation problems marked on the elements they name.
 *
 * Plain data only (no cytoscape instance), so it is checked by unit tests.
 */
import type { FlowEdge, FlowModel, Position } from './flowfile';
import { START } from './flowfile';
import { problemText, type ProblemMap } from './problems';

/** The id of the drawn `start` pseudo-node. */
export const START_ID = '__start__';

export const X_STEP = 200;
export const Y_STEP = 100;
export const MARGIN = 60;

/** The same colours as the notebook workbench, so a kind looks the same everywhere. */
export const KIND_COLOURS: Readonly<Record<string, string>> = {
  http: '#4e79a7',
  python: '#59a14f',
  template: '#76b7b2',
  switch: '#edc948',
  vote: '#b07aa1',
  torch: '#f28e2b',
  transformers: '#ff9da7',
  pdf: '#9c755f',
  rules: '#bab0ac',
  report: '#8cd17d'
};
const SPARE_COLOURS = ['#86bcb6', '#d37295', '#a0cbe8', '#ffbe7d', '#d4a6c8', '#b6992d'];

/** The colour of a node kind; kinds from plug-ins get a stable colour of their own. */
export function kindColour(kind: string): string {
  if (Object.prototype.hasOwnProperty.call(KIND_COLOURS, kind)) {
    return KIND_COLOURS[kind];
  }
  let hash = 2166136261;
  for (let i = 0; i < kind.length; i++) {
    hash = Math.imul(hash ^ kind.charCodeAt(i), 16777619) >>> 0;
  }
  return SPARE_COLOURS[hash % SPARE_COLOURS.length];
}

/** What an edge shows: its label, branch, condition, or that it is an error edge. */
export function edgeLabel(edge: FlowEdge): string {
  const parts: string[] = [];
  if (edge.label) {
    parts.push(edge.label);
  }
  if (edge.branch !== undefined) {
    parts.push(`branch: ${edge.branch}`);
  }
  if (edge.when) {
    const when = edge.when.replace(/\{\{|\}\}/g, '').split(/\s+/).filter(Boolean).join(' ');
    parts.push(`if ${when.slice(0, 40)}${when.length > 40 ? '...' : ''}`);
  }
  if (edge.on === 'error') {
    parts.push('on error');
  }
  return parts.join(' | ');
}

/** Positions for nodes the file's `layout` does not place: a column per depth. */
export function defaultPositions(flow: FlowModel): Record<string, Position> {
  const parents = new Map<string, Set<string>>(flow.nodes.map(n => [n.id, new Set<string>()]));
  for (const edge of flow.edges) {
    if (parents.has(edge.source) && parents.has(edge.target)) {
      parents.get(edge.target)!.add(edge.source);
    }
  }
  const depth = new Map<string, number>();
  const level = (node: string, seen: Set<string>): number => {
    const known = depth.get(node);
    if (known !== undefined) {
      return known;
    }
    if (seen.has(node)) {
      return 0; // a cycle: no sensible depth
    }
    const inner = new Set(seen).add(node);
    let value = 0;
    for (const parent of parents.get(node) ?? []) {
      value = Math.max(value, level(parent, inner) + 1);
    }
    depth.set(node, value);
    return value;
  };
  const taken = new Set<string>();
  for (const pos of Object.values(flow.layout)) {
    taken.add(`${Math.round((pos.x - MARGIN) / X_STEP)},${Math.round((pos.y - MARGIN) / Y_STEP)}`);
  }
  const out: Record<string, Position> = {};
  for (const node of flow.nodes) {
    if (flow.layout[node.id]) {
      continue;
    }
    const col = level(node.id, new Set());
    let row = 0;
    while (taken.has(`${col},${row}`)) {
      row++;
    }
    taken.add(`${col},${row}`);
    out[node.id] = { x: MARGIN + col * X_STEP, y: MARGIN + row * Y_STEP };
  }
  return out;
}

/** A cytoscape element definition, as plain data. */
export interface GraphElement {
  group: 'nodes' | 'edges';
  data: Record<string, unknown> & { id: string };
  classes: string;
  position?: Position;
}

/** The cytoscape elements of `flow`, with `problems` marked on the elements they name. */
export function toElements(flow: FlowModel, problems?: ProblemMap): GraphElement[] {
  const guessed = defaultPositions(flow);
  const elements: GraphElement[] = [];
  for (const node of flow.nodes) {
    const mine = problems?.nodes.get(node.id) ?? [];
    const classes = [`kind-${node.type}`];
    if (mine.length > 0) {
      classes.push('problem');
    }
    const title = node.title ? `${node.title}\n` : '';
    elements.push({
      group: 'nodes',
      data: {
        id: node.id,
        label: `${title}${node.id}${mine.length > 0 ? ' \u26a0' : ''}\n${node.type}`,
        kind: node.type,
        colour: kindColour(node.type),
        problems: mine.map(problemText).join('\n')
      },
      classes: classes.join(' '),
      position: { ...(flow.layout[node.id] ?? guessed[node.id]) }
    });
  }
  const ids = new Set(flow.nodes.map(n => n.id));
  if (flow.edges.some(e => e.source === START) && !ids.has(START_ID)) {
    const ys = elements.map(e => e.position!.y);
    elements.push({
      group: 'nodes',
      data: { id: START_ID, label: 'start', kind: 'start', colour: '#ffffff', problems: '' },
      classes: 'start-node',
      position: {
        x: Math.min(...elements.map(e => e.position!.x), MARGIN) - X_STEP / 2,
        y: ys.length > 0 ? ys.reduce((a, b) => a + b, 0) / ys.length : MARGIN
      }
    });
  }
  for (const edge of flow.edges) {
    const mine = problems?.edges.get(edge.index) ?? [];
    const classes: string[] = [];
    if (edge.when || edge.branch !== undefined) {
      classes.push('conditional');
    }
    if (edge.on === 'error') {
      classes.push('error-edge');
    }
    if (mine.length > 0) {
      classes.push('problem');
    }
    elements.push({
      group: 'edges',
      data: {
        id: `edge-${edge.index}`,
        source: edge.source === START ? START_ID : edge.source,
        target: edge.target,
        label: edgeLabel(edge),
        index: edge.index,
        problems: mine.map(problemText).join('\n')
      },
      classes: classes.join(' ')
    });
  }
  return elements;
}
