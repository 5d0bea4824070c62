import { parseFlow } from '../flowfile';
import {
  EMPTY_PALETTE,
  START_ID,
  UNKNOWN_COLOUR,
  defaultPositions,
  edgeLabel,
  kindColour,
  readPalette,
  shorten,
  toElements
} from '../graph';
import { problemsByElement } from '../problems';

const FLOW = `
nodes:
  - {id: extract, type: pdf}
  - {id: clauses, type: transformers}
  - {id: risk, type: rules}
  - {id: escalate, type: http, config: {endpoint: x}}
  - {id: custom, type: my_plugin_kind}
edges:
  - {from: start, to: extract}
  - {from: extract, to: clauses}
  - {from: clauses, to: risk}
  - {from: risk, to: escalate, when: "{{ risk.output.level == 'high' }}"}
  - {from: risk, to: custom, on: error, label: fallback}
layout: {extract: {x: 500, y: 400}}
`;

// What GET jupyter-flow/api/palette answers: the colours jupyter_flow.palette computes.
const PALETTE_REPLY = {
  kinds: [
    { kind: 'http', colour: '#4e79a7', builtin: true },
    { kind: 'pdf', colour: '#9c755f', builtin: true },
    { kind: 'rules', colour: '#bab0ac', builtin: true },
    { kind: 'transformers', colour: '#ff9da7', builtin: true },
    { kind: 'my_plugin_kind', colour: '#123456', builtin: false }
  ],
  statuses: { ok: '#3aa655' },
  problem: '#e00000',
  selected: '#1f3b73'
};
const palette = readPalette(PALETTE_REPLY);

describe('toElements', () => {
  const flow = parseFlow(FLOW);
  const elements = toElements(flow, undefined, palette);
  const nodes = elements.filter(e => e.group === 'nodes');
  const edges = elements.filter(e => e.group === 'edges');

  it('draws every node plus the start node, and every edge', () => {
    expect(nodes.map(n => n.data.id)).toEqual(['extract', 'clauses', 'risk', 'escalate', 'custom', START_ID]);
    expect(edges).toHaveLength(5);
    expect(edges[0].data.source).toBe(START_ID);
  });

  it('colours nodes by kind from the palette and keeps positions from the layout', () => {
    const byId = new Map(nodes.map(n => [n.data.id, n]));
    expect(byId.get('extract')!.data.colour).toBe('#9c755f');
    expect(byId.get('escalate')!.data.colour).toBe('#4e79a7');
    expect(byId.get('extract')!.position).toEqual({ x: 500, y: 400 });
    expect(byId.get('extract')!.classes).toBe('kind-pdf');
  });

  it('labels conditional, branch and error edges, shortened past 24 characters', () => {
    expect(edges[3].data.fullLabel).toBe("if risk.output.level == 'high'");
    expect(edges[3].data.label).toBe("if risk.output.\u2026= 'high'");
    expect(edges[3].classes).toBe('conditional labelled');
    expect(edges[4].data.label).toBe('fallback | on error');
    expect(edges[4].data.fullLabel).toBe('fallback | on error');
    expect(edges[4].classes).toBe('error-edge labelled');
    expect(edges[1].classes).toBe('');
    expect(edgeLabel({ index: 0, source: 'a', target: 'b', branch: 'billing', on: 'success' })).toBe(
      'branch: billing'
    );
  });

  it('says a long condition whole, and draws it shortened around an ellipsis', () => {
    const when = `{{ ${'x'.repeat(60)} == 'yes' }}`;
    const full = edgeLabel({ index: 0, source: 'a', target: 'b', when, on: 'success' });
    expect(full).toBe(`if ${'x'.repeat(60)} == 'yes'`);
    expect(shorten(full)).toBe(`if ${'x'.repeat(12)}\u2026== 'yes'`);
    expect(shorten(full)).toHaveLength(24);
    expect(shorten('short')).toBe('short');
  });

  it('marks problems on the nodes and edges they name', () => {
    const problems = problemsByElement(flow, [
      { node: 'risk', edge: null, field: 'config.rules', message: 'no such file' },
      { node: null, edge: 3, field: 'when', message: 'bad condition' }
    ]);
    const marked = toElements(flow, problems, palette);
    const risk = marked.find(e => e.data.id === 'risk')!;
    expect(risk.classes).toBe('kind-rules problem');
    expect(risk.data.problems).toBe("node 'risk', field 'config.rules': no such file");
    expect(risk.data.label).toContain('\u26a0');
    const edge = marked.find(e => e.data.id === 'edge-3')!;
    expect(edge.classes).toBe('conditional problem labelled');
    expect(edge.data.problems).toBe("edges[3], field 'when': bad condition");
    expect(marked.find(e => e.data.id === 'clauses')!.classes).toBe('kind-transformers');
  });
});

describe('node colours', () => {
  it('gives a plug-in kind exactly the colour the palette says', () => {
    const flow = parseFlow('nodes: [{id: custom, type: my_plugin_kind}]');
    const [custom] = toElements(flow, undefined, palette);
    expect(custom.data.colour).toBe('#123456');
    expect(kindColour('my_plugin_kind', palette)).toBe('#123456');
  });

  it('draws a kind the palette does not name in one neutral grey', () => {
    const flow = parseFlow('nodes: [{id: a, type: not_installed}, {id: b, type: other}, {id: c, type: pdf}]');
    expect(toElements(flow, undefined, palette).map(e => e.data.colour)).toEqual([
      UNKNOWN_COLOUR,
      UNKNOWN_COLOUR,
      '#9c755f'
    ]);
    // before the palette arrived, every kind is grey
    expect(toElements(flow).map(e => e.data.colour)).toEqual([UNKNOWN_COLOUR, UNKNOWN_COLOUR, UNKNOWN_COLOUR]);
    expect(kindColour('pdf', EMPTY_PALETTE)).toBe(UNKNOWN_COLOUR);
  });

  it('reads the palette reply and refuses one without kinds', () => {
    expect(palette.problem).toBe('#e00000');
    expect(palette.selected).toBe('#1f3b73');
    expect(palette.kinds.size).toBe(5);
    expect(readPalette({ kinds: [{ kind: 'x' }, 'junk', { kind: 'y', colour: '#010203' }] }).kinds).toEqual(
      new Map([['y', '#010203']])
    );
    expect(() => readPalette({})).toThrow(/node kinds/);
    expect(() => readPalette(null)).toThrow(/node kinds/);
  });
});

describe('defaultPositions', () => {
  it('puts each node in the column of its depth, rows for siblings', () => {
    const flow = parseFlow('nodes: [{id: a, type: t}, {id: b, type: t}, {id: c, type: t}]\n' +
      'edges: [{from: a, to: b}, {from: a, to: c}]');
    expect(defaultPositions(flow)).toEqual({
      a: { x: 60, y: 60 },
      b: { x: 260, y: 60 },
      c: { x: 260, y: 160 }
    });
  });

  it('survives a cycle', () => {
    const flow = parseFlow('nodes: [{id: a, type: t}, {id: b, type: t}]\nedges: [{from: a, to: b}, {from: b, to: a}]');
    expect(Object.keys(defaultPositions(flow)).sort()).toEqual(['a', 'b']);
  });
});
