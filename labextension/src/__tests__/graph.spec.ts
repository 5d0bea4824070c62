import { parseFlow } from '../flowfile';
import { START_ID, defaultPositions, edgeLabel, kindColour, toElements } from '../graph';
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

describe('toElements', () => {
  const flow = parseFlow(FLOW);
  const elements = toElements(flow);
  const nodes = elements.filter(e => e.group === 'nodes');
  const edges = elements.filter(e => e.group === 'edges');

  it('draws every node plus the start node, and every edge', () => {
    expect(nodes.map(n => n.data.id)).toEqual(['extract', 'clauses', 'risk', 'escalate', 'custom', START_ID]);
    expect(edges).toHaveLength(5);
    expect(edges[0].data.source).toBe(START_ID);
  });

  it('colours nodes by kind and keeps positions from the layout', () => {
    const byId = new Map(nodes.map(n => [n.data.id, n]));
    expect(byId.get('extract')!.data.colour).toBe('#9c755f');
    expect(byId.get('escalate')!.data.colour).toBe('#4e79a7');
    expect(byId.get('custom')!.data.colour).toBe(kindColour('my_plugin_kind'));
    expect(byId.get('extract')!.position).toEqual({ x: 500, y: 400 });
    expect(byId.get('extract')!.classes).toBe('kind-pdf');
  });

  it('labels conditional, branch and error edges', () => {
    expect(edges[3].data.label).toBe("if risk.output.level == 'high'");
    expect(edges[3].classes).toBe('conditional');
    expect(edges[4].data.label).toBe('fallback | on error');
    expect(edges[4].classes).toBe('error-edge');
    expect(edgeLabel({ index: 0, source: 'a', target: 'b', branch: 'billing', on: 'success' })).toBe(
      'branch: billing'
    );
  });

  it('shortens long conditions', () => {
    const when = `{{ ${'x'.repeat(60)} }}`;
    expect(edgeLabel({ index: 0, source: 'a', target: 'b', when, on: 'success' })).toBe(
      `if ${'x'.repeat(40)}...`
    );
  });

  it('marks problems on the nodes and edges they name', () => {
    const problems = problemsByElement(flow, [
      { node: 'risk', field: 'config.rules', message: 'no such file' },
      { node: null, field: 'edges[3] (risk -> escalate).when', message: 'bad condition' }
    ]);
    const marked = toElements(flow, problems);
    const risk = marked.find(e => e.data.id === 'risk')!;
    expect(risk.classes).toBe('kind-rules problem');
    expect(risk.data.problems).toBe("node 'risk', field 'config.rules': no such file");
    expect(risk.data.label).toContain('\u26a0');
    const edge = marked.find(e => e.data.id === 'edge-3')!;
    expect(edge.classes).toBe('conditional problem');
    expect(marked.find(e => e.data.id === 'clauses')!.classes).toBe('kind-transformers');
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
