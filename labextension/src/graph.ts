/**
 * A flow model to cytoscape elements: one node per flow node coloured by kind (with the
 * colours the server extension hands out), the `start` pseudo-node when edges use it,
 * edges labelled with their condition or branch, and the validation problems marked on
 * the elements they name.
 *
 * Plain data only (no cytoscape instance), so it is checked by unit tests.
 */
import type { FlowEdge, FlowModel, FlowNode, Position } from './flowfile';
import { START } from './flowfile';
import { problemText, type ProblemMap } from './problems';

/** The id of the drawn `start` pseudo-node. */
export const START_ID = '__start__';

export const X_STEP = 200;
export const Y_STEP = 100;
export const MARGIN = 60;
/** How far left of the first column the start node sits. */
export const START_GAP = 150;
/** The font size of node labels; the view never zooms out so far that they are drawn
 * smaller than MIN_LABEL_PX on screen. */
export const NODE_FONT_PX = 13;
export const MIN_LABEL_PX = 11;
/** The font size of edge labels, and the most characters an edge label shows (the rest
 * is in its tooltip). */
export const EDGE_FONT_PX = 11;
export const EDGE_LABEL_CHARS = 24;

/** A node's width from its label: wide enough for its longest line. */
export function nodeWidth(label: string): number {
  const longest = Math.max(...label.split('\n').map(line => line.length));
  return Math.max(110, Math.round(longest * NODE_FONT_PX * 0.62 + 28));
}

/** A node kind and its colour, as the server extension's palette route lists it. */
export interface KindColour {
  kind: string;
  colour: string;
  /** Whether jupyter-flow itself provides the kind (else a plug-in does). */
  builtin: boolean;
}

/** A node's state in a run, as the graph colours it (`replies.NodeState`'s fields). */
export interface RunState {
  status: string;
  cached?: boolean;
  duration_s?: number | null;
  error?: string | null;
}

/** The class a node's run state draws it with: its status, or `cached` for a result taken
 * from the node cache. */
export function runClass(state: RunState): string {
  return state.status === 'ok' && state.cached ? 'cached' : state.status;
}

/** A node's run state in words, for its tooltip. */
export function runText(state: RunState): string {
  const took = typeof state.duration_s === 'number' ? ` in ${(state.duration_s * 1000).toFixed(0)} ms` : '';
  return `run: ${runClass(state)}${took}${state.error ? `: ${state.error}` : ''}`;
}

/** The colours the server extension hands out. They are computed once, in Python
 * (`jupyter_flow.palette`), so a kind looks the same here as in the notebook workbench. */
export interface Palette {
  /** Colour by node kind: every kind the server's registry knows, plug-ins included. */
  kinds: ReadonlyMap<string, string>;
  /** The colour of problem marks, and of the selection. */
  problem?: string;
  selected?: string;
  /** The colour of each run status (running, ok, error, ...), as the workbench draws it. */
  statuses?: ReadonlyMap<string, string>;
}

/** The colour of a kind the palette does not name (not fetched yet, or unknown). */
export const UNKNOWN_COLOUR = '#b8b8b8';

/** The palette before (or without) the server's answer: every kind is grey. */
export const EMPTY_PALETTE: Palette = { kinds: new Map() };

/** Check the shape of the server's palette (`{kinds: [{kind, colour, builtin}], ...}`). */
export function readPalette(payload: unknown): Palette {
  const data = (typeof payload === 'object' && payload !== null ? payload : {}) as Record<string, unknown>;
  if (!Array.isArray(data.kinds)) {
    throw new Error('the server answered without a list of node kinds');
  }
  const kinds = new Map<string, string>();
  for (const item of data.kinds as unknown[]) {
    const entry = (typeof item === 'object' && item !== null ? item : {}) as Partial<KindColour>;
    if (typeof entry.kind === 'string' && typeof entry.colour === 'string') {
      kinds.set(entry.kind, entry.colour);
    }
  }
  const colour = (value: unknown) => (typeof value === 'string' && value ? value : undefined);
  const statuses = new Map<string, string>();
  if (typeof data.statuses === 'object' && data.statuses !== null) {
    for (const [status, value] of Object.entries(data.statuses as Record<string, unknown>)) {
      if (typeof value === 'string' && value) {
        statuses.set(status, value);
      }
    }
  }
  return { kinds, problem: colour(data.problem), selected: colour(data.selected), statuses };
}

/** The colour of a node kind: what the palette says, or grey for a kind it does not name. */
export function kindColour(kind: string, palette: Palette = EMPTY_PALETTE): string {
  return palette.kinds.get(kind) ?? UNKNOWN_COLOUR;
}

/** What an edge says in full: its label, branch, condition, or that it is an error edge
 * (the tooltip shows this; the drawing shows `shorten(edgeLabel(edge))`). */
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
    parts.push(`if ${when}`);
  }
  if (edge.on === 'error') {
    parts.push('on error');
  }
  return parts.join(' | ');
}

/** `text`, or its start and end around an ellipsis when it is longer than `most`
 * characters (the end often tells edges apart: `== 'high'`, `== 'low'`). */
export function shorten(text: string, most: number = EDGE_LABEL_CHARS): string {
  if (text.length <= most) {
    return text;
  }
  const tail = Math.floor(most / 3);
  return `${text.slice(0, most - tail - 1)}\u2026${text.slice(text.length - tail)}`;
}

/** About how wide an edge label is drawn, in graph units (EDGE_FONT_PX, with its padding). */
export function edgeLabelWidth(label: string): number {
  return label ? Math.round(label.length * EDGE_FONT_PX * 0.6 + 14) : 0;
}

/** A node's label: its title (when it has one), its id with a warning sign when it has
 * problems, and its kind. */
export function nodeLabel(node: FlowNode, problem: boolean): string {
  const title = node.title ? `${node.title}\n` : '';
  return `${title}${node.id}${problem ? ' \u26a0' : ''}\n${node.type}`;
}

/** Each node's depth: the longest path to it from a node without parents (a cycle
 * counts once); edges from `start` and to nodes the flow lacks are left out. */
export function nodeDepths(flow: FlowModel): Map<string, number> {
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
  for (const node of flow.nodes) {
    level(node.id, new Set());
  }
  return depth;
}

/** Positions for nodes the file's `layout` does not place: a column per depth. */
export function defaultPositions(flow: FlowModel): Record<string, Position> {
  const depth = nodeDepths(flow);
  const taken = new Set<string>();
  for (const pos of Object.values(flow.layout)) {
    taken.add(`${Math.round((pos.x - MARGIN) / X_STEP)},${Math.round((pos.y - MARGIN) / Y_STEP)}`);
  }
  const out: Record<string, Position> = {};
  for (const node of flow.nodes) {
    if (flow.layout[node.id]) {
      continue;
    }
    const col = depth.get(node.id) ?? 0;
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

/** The cytoscape elements of `flow`, with `problems` marked on the elements they name and
 * nodes coloured by kind from `palette`; nodes the file's `layout` does not place go where
 * `auto` (a layered layout of the drawing) says, else in a column per depth. */
export function toElements(
  flow: FlowModel,
  problems?: ProblemMap,
  palette: Palette = EMPTY_PALETTE,
  auto: Record<string, Position> = {},
  runs: ReadonlyMap<string, RunState> = new Map()
): GraphElement[] {
  const guessed = defaultPositions(flow);
  const elements: GraphElement[] = [];
  for (const node of flow.nodes) {
    const mine = problems?.nodes.get(node.id) ?? [];
    const classes = [`kind-${node.type}`];
    if (mine.length > 0) {
      classes.push('problem');
    }
    const run = runs.get(node.id);
    if (run) {
      classes.push('run', `run-${runClass(run)}`);
    }
    const label = nodeLabel(node, mine.length > 0);
    elements.push({
      group: 'nodes',
      data: {
        id: node.id,
        label,
        width: nodeWidth(label),
        kind: node.type,
        colour: kindColour(node.type, palette),
        problems: mine.map(problemText).join('\n'),
        run: run ? runText(run) : ''
      },
      classes: classes.join(' '),
      position: { ...(flow.layout[node.id] ?? auto[node.id] ?? guessed[node.id]) }
    });
  }
  const ids = new Set(flow.nodes.map(n => n.id));
  if (flow.edges.some(e => e.source === START) && !ids.has(START_ID)) {
    const ys = elements.map(e => e.position!.y);
    elements.push({
      group: 'nodes',
      data: { id: START_ID, label: 'start', width: 56, kind: 'start', colour: '#ffffff', problems: '' },
      classes: 'start-node',
      position: auto[START_ID]
        ? { ...auto[START_ID] }
        : {
            x: Math.min(...elements.map(e => e.position!.x), MARGIN) - START_GAP,
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
    const full = edgeLabel(edge);
    if (full) {
      classes.push('labelled');
    }
    elements.push({
      group: 'edges',
      data: {
        id: `edge-${edge.index}`,
        source: edge.source === START ? START_ID : edge.source,
        target: edge.target,
        label: shorten(full),
        fullLabel: full,
        index: edge.index,
        problems: mine.map(problemText).join('\n')
      },
      classes: classes.join(' ')
    });
  }
  return elements;
}
