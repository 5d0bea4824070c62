import { FlowParseError, flowStem, formatOf, isFlowPath, parseFlow } from '../flowfile';

const INTENT = `
spec_version: 1
name: intent
nodes:
  - id: cleaner
    type: http
    config: {endpoint: "\${CLEANER_URL}/clean"}
  - id: route
    type: switch
    config: {cases: {billing: "{{ x }}"}, default: general}
  - id: reply
    type: template
    config: {template: hi}
edges:
  - {from: start, to: cleaner}
  - {from: cleaner, to: route}
  - {from: route, to: reply, branch: billing}
layout: {cleaner: {x: 10, y: 20}}
`;

describe('parseFlow', () => {
  it('reads nodes, edges, layout and name from YAML', () => {
    const flow = parseFlow(INTENT);
    expect(flow.name).toBe('intent');
    expect(flow.nodes.map(n => [n.id, n.type])).toEqual([
      ['cleaner', 'http'],
      ['route', 'switch'],
      ['reply', 'template']
    ]);
    expect(flow.edges.map(e => [e.index, e.source, e.target, e.branch])).toEqual([
      [0, 'start', 'cleaner', undefined],
      [1, 'cleaner', 'route', undefined],
      [2, 'route', 'reply', 'billing']
    ]);
    expect(flow.layout).toEqual({ cleaner: { x: 10, y: 20 } });
    expect(flow.problems).toEqual([]);
  });

  it('accepts the seed format: an endpoint without type is an http node', () => {
    const seed = JSON.stringify({
      nodes: [
        { id: 'cleaner', config: { endpoint: 'http://c/clean', output_key: 'cleaned_text' } },
        { id: 'intent', config: { endpoint: 'http://i/predict' } }
      ],
      edges: [
        { from: 'start', to: 'cleaner' },
        { from: 'cleaner', to: 'intent' }
      ]
    });
    const flow = parseFlow(seed, 'json');
    expect(flow.nodes.map(n => n.type)).toEqual(['http', 'http']);
    expect(flow.name).toBe('flow');
    expect(flow.problems).toEqual([]);
  });

  it('reports a node with neither type nor endpoint, and one without id', () => {
    const flow = parseFlow('nodes:\n  - id: a\n    config: {}\n  - type: python\n');
    expect(flow.nodes.map(n => [n.id, n.type])).toEqual([
      ['a', '?'],
      ['#2', 'python']
    ]);
    expect(flow.problems.map(p => [p.node, p.field])).toEqual([
      ['a', 'type'],
      ['#2', 'id']
    ]);
  });

  it('keeps the first of duplicate ids and skips edges to missing nodes', () => {
    const flow = parseFlow(
      'nodes: [{id: a, type: python}, {id: a, type: http}]\nedges: [{from: a, to: ghost}, {from: start, to: a}]'
    );
    expect(flow.nodes).toHaveLength(1);
    expect(flow.edges.map(e => e.index)).toEqual([1]);
    expect(flow.problems.map(p => [p.node, p.edge, p.field])).toEqual([
      ['a', null, 'id'],
      [null, 0, 'to']
    ]);
    expect(flow.problems[1].message).toContain("'ghost'");
  });

  it('names edge problems by edge index, with a field of the edge', () => {
    const flow = parseFlow(
      'nodes: [{id: a, type: python}]\n' +
        'edges: [{from: ghost, to: a}, {from: x, to: y}, {from: a}, oops, {from: start, to: a}]'
    );
    expect(flow.edges.map(e => e.index)).toEqual([4]);
    expect(flow.problems.map(p => [p.node, p.edge, p.field])).toEqual([
      [null, 0, 'from'],
      [null, 1, null],
      [null, 2, 'to'],
      [null, 3, null]
    ]);
    expect(flow.problems[1].message).toBe("no node 'x' or 'y': the edge is not drawn");
    expect(flow.problems.every(p => !p.field?.startsWith('edges['))).toBe(true);
  });

  it('names line and column of a YAML syntax error', () => {
    let error: unknown;
    try {
      parseFlow('nodes:\n  - id: a\n   type: [unclosed\n');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FlowParseError);
    expect((error as FlowParseError).line).toBeGreaterThanOrEqual(2);
    expect((error as FlowParseError).message).toMatch(/^line \d+, column \d+: /);
  });

  it('rejects JSON that does not parse and documents that are not mappings', () => {
    expect(() => parseFlow('{"nodes": [', 'json')).toThrow(/not valid JSON/);
    expect(() => parseFlow('- a\n- b\n')).toThrow(/got a list/);
    expect(() => parseFlow('')).toThrow(/empty/);
  });
});

describe('flow paths', () => {
  it('recognises flow files and their format', () => {
    expect(isFlowPath('a/b.flow.yaml')).toBe(true);
    expect(isFlowPath('b.flow.yml')).toBe(true);
    expect(isFlowPath('b.flow.json')).toBe(true);
    expect(isFlowPath('b.yaml')).toBe(false);
    expect(formatOf('b.flow.json')).toBe('json');
    expect(formatOf('b.flow.yaml')).toBe('yaml');
    expect(flowStem('dir/contract.flow.yaml')).toBe('contract');
  });
});
