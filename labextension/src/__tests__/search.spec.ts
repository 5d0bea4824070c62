// Finding nodes: by id, kind, title or any text of the config, in the file's order.
import { parseFlow } from '../flowfile';
import { nextMatch, searchFlow } from '../search';

const FLOW = parseFlow(`
nodes:
  - {id: extract, type: pdf, config: {path: contracts/lease.pdf}}
  - {id: clean, type: python, title: Tidy the text, config: {function: "tools:normalise"}}
  - {id: classify, type: http, config: {endpoint: "http://models/cls", headers: {X-Tenant: acme}}}
  - {id: summary, type: template, config: {template: "{{ clean.output.text }}"}}
edges: []
`);

describe('searchFlow', () => {
  it('matches ids, kinds, titles and config keys and values, whatever the case', () => {
    expect(searchFlow(FLOW, 'CL')).toEqual([
      { node: 'clean', where: 'id' },
      { node: 'classify', where: 'id' },
      { node: 'summary', where: 'config' }
    ]);
    expect(searchFlow(FLOW, 'http')).toEqual([{ node: 'classify', where: 'kind' }]);
    expect(searchFlow(FLOW, 'tidy')).toEqual([{ node: 'clean', where: 'title' }]);
    expect(searchFlow(FLOW, 'lease')).toEqual([{ node: 'extract', where: 'config' }]);
    expect(searchFlow(FLOW, 'x-tenant')).toEqual([{ node: 'classify', where: 'config' }]);
    expect(searchFlow(FLOW, 'acme').map(m => m.node)).toEqual(['classify']);
  });

  it('finds nothing for a blank query, or in a text that is not a flow', () => {
    expect(searchFlow(FLOW, '   ')).toEqual([]);
    expect(searchFlow(null, 'clean')).toEqual([]);
  });

  it('goes from one match to the next and round to the first', () => {
    const matches = searchFlow(FLOW, 'cl');
    expect(nextMatch(matches, null)?.node).toBe('clean');
    expect(nextMatch(matches, 'clean')?.node).toBe('classify');
    expect(nextMatch(matches, 'summary')?.node).toBe('clean');
    // a selected node that does not match: start from the first
    expect(nextMatch(matches, 'extract')?.node).toBe('clean');
    expect(nextMatch([], 'clean')).toBeNull();
  });
});
