import { parseFlow } from '../flowfile';
import { problemText, problemsByElement, readProblems, uniqueProblems } from '../problems';

const flow = parseFlow('nodes: [{id: a, type: t}, {id: b, type: t}]\nedges: [{from: a, to: b}]');

describe('problemsByElement', () => {
  it('sorts problems onto nodes, edges, or the flow as a whole', () => {
    const map = problemsByElement(flow, [
      { node: 'a', edge: null, field: 'config.x', message: 'm1' },
      { node: 'a', edge: 0, field: 'to', message: 'self' },
      { node: 'ghost', edge: null, field: null, message: 'm2' },
      { node: null, edge: null, field: 'inputs.q', message: 'm3' },
      { node: null, edge: 7, field: 'from', message: 'm4' },
      // a field that looks like an edge is not read back: only `edge` places a problem
      { node: null, edge: null, field: 'edges[0] (a -> b)', message: 'm5' }
    ]);
    expect([...map.nodes.keys()]).toEqual(['a']);
    expect(map.nodes.get('a')!.map(p => p.message)).toEqual(['m1']);
    expect([...map.edges.keys()]).toEqual([0]);
    expect(map.edges.get(0)!.map(p => p.message)).toEqual(['self']);
    expect(map.general.map(p => p.message)).toEqual(['m2', 'm3', 'm4', 'm5']);
  });
});

describe('problem helpers', () => {
  it('prints a problem like the command line does', () => {
    expect(problemText({ node: 'a', edge: null, field: 'type', message: 'unknown kind' })).toBe(
      "node 'a', field 'type': unknown kind"
    );
    expect(problemText({ node: 'b', edge: 12, field: 'when', message: 'bad' })).toBe(
      "node 'b', edges[12], field 'when': bad"
    );
    expect(problemText({ node: null, edge: null, field: null, message: 'empty' })).toBe('empty');
  });

  it('checks the server payload', () => {
    expect(readProblems([{ node: 'a', field: null, message: 'x', extra: 1 }])).toEqual([
      { node: 'a', edge: null, field: null, message: 'x' }
    ]);
    expect(readProblems([{ node: null, edge: 12, field: 'when', message: 'y' }])).toEqual([
      { node: null, edge: 12, field: 'when', message: 'y' }
    ]);
    expect(readProblems([{ node: null, edge: '3', field: 'edges[3]', message: 'z' }])[0].edge).toBeNull();
    expect(readProblems([{ node: null, edge: 1.5, field: null, message: 'z' }])[0].edge).toBeNull();
    expect(() => readProblems({})).toThrow(/list of problems/);
    expect(() => readProblems([{ node: 'a' }])).toThrow(/#1/);
  });

  it('drops repeats', () => {
    const p = { node: 'a', edge: null, field: 'id', message: 'dup' };
    expect(uniqueProblems([p, { ...p }, { ...p, node: 'b' }])).toHaveLength(2);
  });
});
