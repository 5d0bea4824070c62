// The placement of a flow without a saved layout: layers left to right, room for edge
// labels, and a long flow wrapped into bands that fit the pane's shape.
import { parseFlow, type FlowModel } from '../flowfile';
import { START_ID, edgeLabelWidth, nodeLabel, nodeWidth, shorten } from '../graph';
import { NODE_HEIGHT, layeredPositions } from '../layout';

function chain(n: number): FlowModel {
  const nodes = Array.from({ length: n }, (_, i) => `  - {id: step_${String(i).padStart(2, '0')}, type: template}`);
  const edges = ['  - {from: start, to: step_00}'];
  for (let i = 1; i < n; i++) {
    edges.push(`  - {from: step_${String(i - 1).padStart(2, '0')}, to: step_${String(i).padStart(2, '0')}}`);
  }
  return parseFlow(`nodes:\n${nodes.join('\n')}\nedges:\n${edges.join('\n')}\n`);
}

interface Box {
  x1: number;
  x2: number;
  y1: number;
  y2: number;
}

function boxes(flow: FlowModel, at: Record<string, { x: number; y: number }>): Box[] {
  return flow.nodes.map(n => {
    const w = nodeWidth(nodeLabel(n, false));
    const p = at[n.id];
    return { x1: p.x - w / 2, x2: p.x + w / 2, y1: p.y - NODE_HEIGHT / 2, y2: p.y + NODE_HEIGHT / 2 };
  });
}

function overlaps(all: Box[]): boolean {
  return all.some((a, i) => all.slice(i + 1).some(b => a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2));
}

describe('layeredPositions', () => {
  it('keeps a short flow in one row, left to right, the start node before it', () => {
    const flow = chain(3);
    const at = layeredPositions(flow, { width: 1100, height: 800 });
    expect(new Set(flow.nodes.map(n => at[n.id].y)).size).toBe(1);
    expect(at.step_00.x).toBeLessThan(at.step_01.x);
    expect(at.step_01.x).toBeLessThan(at.step_02.x);
    expect(at[START_ID].x).toBeLessThan(at.step_00.x - 60);
    expect(at[START_ID].y).toBe(at.step_00.y);
  });

  it('wraps a long chain into bands shaped like the pane, without overlaps', () => {
    const flow = chain(30);
    const frame = { width: 1100, height: 800 };
    const at = layeredPositions(flow, frame);
    const all = boxes(flow, at);
    const width = Math.max(...all.map(b => b.x2)) - Math.min(...all.map(b => b.x1));
    const height = Math.max(...all.map(b => b.y2)) - Math.min(...all.map(b => b.y1));
    const bands = new Set(flow.nodes.map(n => at[n.id].y)).size;
    expect(bands).toBeGreaterThan(3);
    // the whole drawing fits the frame (one thin row would be 30 columns wide)
    expect(width).toBeLessThanOrEqual(frame.width);
    expect(height).toBeLessThanOrEqual(frame.height);
    expect(overlaps(all)).toBe(false);
    // read like text: left to right in a band, then the next band below
    for (let i = 1; i < 30; i++) {
      const [a, b] = [at[flow.nodes[i - 1].id], at[flow.nodes[i].id]];
      expect(b.y > a.y || (b.y === a.y && b.x > a.x)).toBe(true);
    }
    // a tall pane gets narrower bands than a wide one
    const tall = layeredPositions(flow, { width: 500, height: 1400 });
    expect(new Set(flow.nodes.map(n => tall[n.id].y)).size).toBeGreaterThan(bands);
  });

  it('leaves room between columns for the label of the edge between them', () => {
    const flow = parseFlow(
      'nodes: [{id: a, type: t}, {id: b, type: t}, {id: c, type: t}]\n' +
        'edges: [{from: a, to: b, label: "a label long enough to be cut short"}, {from: b, to: c}]'
    );
    const at = layeredPositions(flow);
    const half = (id: string) => nodeWidth(nodeLabel(flow.nodes.find(n => n.id === id)!, true)) / 2;
    const labelled = at.b.x - half('b') - (at.a.x + half('a'));
    const plain = at.c.x - half('c') - (at.b.x + half('b'));
    expect(labelled).toBeGreaterThanOrEqual(edgeLabelWidth(shorten('a label long enough to be cut short')));
    expect(plain).toBeLessThan(labelled);
  });

  it('places a branching flow without overlaps, siblings in rows', () => {
    const nodes = Array.from({ length: 30 }, (_, i) => `{id: n${i}, type: t}`);
    const edges = Array.from({ length: 29 }, (_, i) => `{from: n${Math.floor(i / 2)}, to: n${i + 1}}`);
    const flow = parseFlow(`nodes: [${nodes.join(', ')}]\nedges: [${edges.join(', ')}]`);
    const at = layeredPositions(flow);
    expect(Object.keys(at)).toHaveLength(30);
    expect(overlaps(boxes(flow, at))).toBe(false);
    // a node that feeds two sits level between them
    expect(Math.abs(at.n1.y - (at.n3.y + at.n4.y) / 2)).toBeLessThanOrEqual(1);
    expect(Math.abs(at.n0.y - (at.n1.y + at.n2.y) / 2)).toBeLessThanOrEqual(1);
  });

  it('survives a cycle and an empty flow', () => {
    const flow = parseFlow('nodes: [{id: a, type: t}, {id: b, type: t}]\nedges: [{from: a, to: b}, {from: b, to: a}]');
    expect(Object.keys(layeredPositions(flow)).sort()).toEqual(['a', 'b']);
    expect(layeredPositions(parseFlow('nodes: []'))).toEqual({});
  });
});
