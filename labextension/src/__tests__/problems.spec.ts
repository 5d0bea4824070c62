import { parseFlow } from '../flowfile';
import { edgeIndexOf, problemText, problemsByElement, readProblems, uniqueProblems } from '../problems';

const flow = parseFlow('nodes: [{id: a, type: t}, {id: b, type: t}]\nedges: [{from: a, to: b}]');

describe('problemsByElement', () => {
  it('sorts problems onto nodes, edges, or the flow as a whole', () => {
    const map = problemsByElement(flow, [
      { node: 'a', field: 'config.x', message: 'm1' },
      { node: 'a', field: 'edges[0] (a -> b)', message: 'self' },
      { node: 'ghost', field: null, message: 'm2' },
      { node: null, field: 'inputs.q', message: 'm3' },
      { node: null, field: 'edges[7] (x -> y)', message: 'm4' }
    ]);
    expect([...map.nodes.keys()]).toEqual(['a']);
    expect(map.nodes.get('a')!.map(p => p.message)).toEqual(['m1']);
    expect(map.edges.get(0)!.map(p => p.message)).toEqual(['self']);
    expect(map.general.map(p => p.message)).toEqual(['m2', 'm3', 'm4']);
  });
});

describe('problem helpers', () => {
  it('prints a problem like the command line does', () => {
    expect(problemText({ node: 'a', field: 'type', message: 'unknown kind' })).toBe(
      "node 'a', field 'type': unknown kind"
    );
    expect(problemText({ node: null, field: null, message: 'empty' })).toBe('empty');
  });

  it('reads edge indexes from fields', () => {
    expect(edgeIndexOf('edges[12] (a -> b).when')).toBe(12);
    expect(edgeIndexOf('edges')).toBeNull();
    expect(edgeIndexOf(null)).toBeNull();
  });

  it('checks the server payload', () => {
    expect(readProblems([{ node: 'a', field: null, message: 'x', extra: 1 }])).toEqual([
      { node: 'a', field: null, message: 'x' }
    ]);
    expect(() => readProblems({})).toThrow(/list of problems/);
    expect(() => readProblems([{ node: 'a' }])).toThrow(/#1/);
  });

  it('drops repeats', () => {
    const p = { node: 'a', field: 'id', message: 'dup' };
    expect(uniqueProblems([p, { ...p }, { ...p, node: 'b' }])).toHaveLength(2);
  });
});
