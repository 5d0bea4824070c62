/**
 * Where the nodes of a flow without a saved layout go: in layers, one column per depth,
 * left to right, as the notebook workbench places them; columns far enough apart for
 * the edge labels between them; and a long flow wrapped into bands, one under the other
 * as lines of text wrap, so that it comes out about as wide as the pane it is shown in
 * rather than as one thin line.
 *
 * Plain data only, so the unit tests check it directly.
 */
import type { FlowModel, Position } from './flowfile';
import { START } from './flowfile';
import { START_ID, edgeLabel, edgeLabelWidth, nodeDepths, nodeLabel, nodeWidth, shorten } from './graph';

export const NODE_HEIGHT = 52;
/** The least room between two columns, between two nodes of a column, and between bands. */
export const LAYER_GAP = 80;
export const ROW_GAP = 34;
export const BAND_GAP = 70;
export const MARGIN = 60;
export const START_SIZE = 56;
/** The room between the start node and the first column. */
export const START_ROOM = 70;
/** Room on each side of an edge label between two columns. */
const LABEL_ROOM = 24;

/** The part of the graph a pane shows (in graph units, at the zoom the view opens at). */
export interface Frame {
  width: number;
  height: number;
}

/** What a pane shows when its size is not known yet. */
export const DEFAULT_FRAME: Frame = { width: 1100, height: 800 };

interface Column {
  nodes: string[];
  width: number;
  /** The room after this column: enough for the labels of the edges that leave it. */
  gap: number;
}

/** In each column, in the order `columns` gives, place each node at the row it wants or,
 * when a node before it is in the way, just below that node. */
function settle(columns: string[][], row: Map<string, number>, wanted: (id: string) => number): void {
  for (const column of columns) {
    const want = new Map(column.map(id => [id, wanted(id)]));
    const order = [...column].sort((a, b) => want.get(a)! - want.get(b)! || column.indexOf(a) - column.indexOf(b));
    let next = 0;
    for (const id of order) {
      const w = want.get(id)!;
      const at = Math.max(w === Infinity ? next : w, next);
      row.set(id, at);
      next = at + 1;
    }
  }
}

function mean(values: number[]): number {
  return values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : Infinity;
}

/** Each column's nodes and their rows: first, left to right, a node sits level with the
 * mean row of its parents; then, right to left, a parent moves level with the mean row of
 * its children (a node that feeds two sits between them), never onto another node. */
function rows(flow: FlowModel, depth: Map<string, number>): { columns: string[][]; row: Map<string, number> } {
  const parents = new Map<string, string[]>(flow.nodes.map(n => [n.id, []]));
  for (const edge of flow.edges) {
    const list = parents.get(edge.target);
    if (list && parents.has(edge.source) && !list.includes(edge.source)) {
      list.push(edge.source);
    }
  }
  const columns: string[][] = [];
  for (const node of flow.nodes) {
    const d = depth.get(node.id) ?? 0;
    while (columns.length <= d) {
      columns.push([]);
    }
    columns[d].push(node.id);
  }
  const children = new Map<string, string[]>(flow.nodes.map(n => [n.id, []]));
  for (const [id, list] of parents) {
    list.forEach(p => children.get(p)!.push(id));
  }
  const row = new Map<string, number>();
  settle(columns, row, id => mean((parents.get(id) ?? []).filter(p => row.has(p)).map(p => row.get(p)!)));
  const placed = new Map(row);
  settle([...columns].reverse(), row, id => {
    const below = (children.get(id) ?? []).filter(c => (depth.get(c) ?? 0) > (depth.get(id) ?? 0));
    return below.length > 0 ? mean(below.map(c => row.get(c)!)) : placed.get(id)!;
  });
  return { columns, row };
}

/** Split columns into bands: a new band starts when the band would pass `limit`. */
function wrap(columns: Column[], left: number, limit: number): number[][] {
  const bands: number[][] = [[]];
  let used = left;
  columns.forEach((column, index) => {
    const band = bands[bands.length - 1];
    const room = band.length > 0 ? columns[index - 1].gap : 0;
    if (band.length > 0 && used + room + column.width > limit) {
      bands.push([index]);
      used = left + column.width;
    } else {
      band.push(index);
      used += room + column.width;
    }
  });
  return bands;
}

/** Place the columns band by band; returns the positions and the drawing's size. */
function place(
  columns: Column[],
  row: Map<string, number>,
  bands: number[][],
  left: number
): { at: Record<string, Position>; width: number; height: number } {
  const pitch = NODE_HEIGHT + ROW_GAP;
  const at: Record<string, Position> = {};
  let top = MARGIN;
  let right = left;
  for (const band of bands) {
    const members = band.flatMap(index => columns[index].nodes);
    const first = Math.min(...members.map(id => row.get(id)!));
    const last = Math.max(...members.map(id => row.get(id)!));
    let x = left;
    band.forEach((index, i) => {
      const column = columns[index];
      for (const id of column.nodes) {
        at[id] = { x: Math.round(x + column.width / 2), y: Math.round(top + (row.get(id)! - first) * pitch + NODE_HEIGHT / 2) };
      }
      x += column.width + (i < band.length - 1 ? column.gap : 0);
    });
    right = Math.max(right, x);
    top += (last - first) * pitch + NODE_HEIGHT + BAND_GAP;
  }
  return { at, width: right + MARGIN, height: top - BAND_GAP + MARGIN };
}

/** Positions for every node of `flow` (and for the start node, under START_ID, when an
 * edge starts there): layered, and wrapped into the bands that let the whole drawing be
 * shown largest in `frame`. */
export function layeredPositions(flow: FlowModel, frame: Frame = DEFAULT_FRAME): Record<string, Position> {
  if (flow.nodes.length === 0) {
    return {};
  }
  const depth = nodeDepths(flow);
  const { columns: ids, row } = rows(flow, depth);
  const widths = new Map(flow.nodes.map(n => [n.id, nodeWidth(nodeLabel(n, true))]));
  const columns: Column[] = ids.map((nodes, index) => {
    const labels = flow.edges
      .filter(e => depth.get(e.source) === index && e.source !== START)
      .map(e => edgeLabelWidth(shorten(edgeLabel(e))));
    return {
      nodes,
      width: Math.max(...nodes.map(id => widths.get(id)!), 0),
      gap: Math.max(LAYER_GAP, ...labels.map(w => w + 2 * LABEL_ROOM))
    };
  });
  const starts = flow.edges.filter(e => e.source === START).map(e => e.target);
  const left = MARGIN + (starts.length > 0 ? START_SIZE + START_ROOM : 0);

  // every place a band could end is a candidate width; the one that shows the drawing
  // largest in the frame wins, the fewest bands on a tie (and every wrap that fits the
  // frame whole ties: a flow that fits is not wrapped)
  let best: ReturnType<typeof place> | null = null;
  let bestScale = -1;
  let limit = left;
  const limits: number[] = [];
  columns.forEach((column, index) => {
    limit += column.width + (index > 0 ? columns[index - 1].gap : 0);
    limits.push(limit);
  });
  for (const candidate of limits.reverse()) {
    const placed = place(columns, row, wrap(columns, left, candidate), left);
    const scale = Math.min(1, frame.width / placed.width, frame.height / placed.height);
    if (scale > bestScale + 1e-9) {
      best = placed;
      bestScale = scale;
    }
  }
  const at = best!.at;
  const entries = starts.filter(id => at[id]);
  if (entries.length > 0) {
    at[START_ID] = {
      x: MARGIN + START_SIZE / 2,
      y: Math.round(entries.reduce((sum, id) => sum + at[id].y, 0) / entries.length)
    };
  }
  return at;
}
