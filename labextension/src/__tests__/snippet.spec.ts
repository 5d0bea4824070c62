// Copy and paste as data: what a copy holds, the ids a paste takes, and the edits it makes.
import { parse } from 'yaml';

import { parseFlow } from '../flowfile';
import { freeId, pastePlan, readSnippet, renameReferences, snippetOf } from '../snippet';

const TEXT = `
nodes:
  - {id: clean, type: python, title: Tidy, retry: {max_attempts: 3}, config: {function: "tools:clean"}}
  - {id: summary, type: template, config: {template: "{{ clean.output.text }} and 'clean' {{ 'clean' }}"}}
  - {id: check, type: switch, config: {cases: {long: "{{ summary.output.text | length > 10 }}"}}}
  - {id: other, type: template}
edges:
  - {from: start, to: clean}
  - {from: clean, to: summary}
  - {from: summary, to: check, when: "clean.output.ok", label: when clean}
  - {from: check, to: other, branch: long}
  - {from: clean, to: other, on: error}
`;
const FLOW = parseFlow(TEXT);
const DATA = parse(TEXT);

describe('freeId', () => {
  it('keeps a free id, else counts on from the base', () => {
    expect(freeId('clean', new Set(['summary']))).toBe('clean');
    expect(freeId('clean', new Set(['clean']))).toBe('clean_2');
    expect(freeId('clean', new Set(['clean', 'clean_2', 'clean_3']))).toBe('clean_4');
    expect(freeId('clean_2', new Set(['clean', 'clean_2']))).toBe('clean_3');
    expect(freeId('step_09', new Set(['step_09']))).toBe('step_10');
  });
});

describe('renameReferences', () => {
  const renames = new Map([['clean', 'clean_2']]);

  it('renames node names inside templates, not strings, attributes or plain text', () => {
    expect(renameReferences("{{ clean.output.text }} and 'clean' {{ 'clean' }}", renames)).toBe(
      "{{ clean_2.output.text }} and 'clean' {{ 'clean' }}"
    );
    expect(renameReferences('{{ x.clean }} {{ cleaner }} {% if clean %}y{% endif %}', renames)).toBe(
      '{{ x.clean }} {{ cleaner }} {% if clean_2 %}y{% endif %}'
    );
    expect(renameReferences('clean the text', renames)).toBe('clean the text');
  });

  it('reads a bare condition as one expression', () => {
    expect(renameReferences('clean.output.ok and "clean"', renames, true)).toBe('clean_2.output.ok and "clean"');
  });
});

describe('snippetOf and pastePlan', () => {
  const snippet = snippetOf(FLOW, DATA, ['clean', 'summary', 'check'], { clean: { x: 100, y: 80 }, summary: { x: 300, y: 80 } })!;

  it('copies the nodes whole, with the edges between them only', () => {
    expect(snippet.nodes.map(n => [n.id, n.kind, n.position])).toEqual([
      ['clean', 'python', { x: 100, y: 80 }],
      ['summary', 'template', { x: 300, y: 80 }],
      ['check', 'switch', null]
    ]);
    expect(snippet.nodes[0].body).toEqual(DATA.nodes[0]);
    expect(snippet.edges).toEqual([
      { from: 'clean', to: 'summary' },
      { from: 'summary', to: 'check', when: 'clean.output.ok', label: 'when clean' }
    ]);
    expect(snippetOf(FLOW, DATA, ['nothing'], {})).toBeNull();
  });

  it('survives the clipboard as JSON, and refuses what is not a snippet', () => {
    expect(readSnippet(JSON.stringify(snippet))).toEqual(snippet);
    expect(readSnippet('not json')).toBeNull();
    expect(readSnippet({ nodes: [], edges: [] })).toBeNull();
    // an edge to a node the snippet lacks is left out
    const partial = readSnippet({ ...snippet, edges: [...snippet.edges, { from: 'clean', to: 'gone' }] });
    expect(partial!.edges).toHaveLength(2);
  });

  it('renames taken ids and the references between the pasted nodes', () => {
    const plan = pastePlan(snippet, FLOW.nodes.map(n => n.id), { offset: { x: 40, y: 40 } });
    expect([...plan.ids.values()]).toEqual(['clean_2', 'summary_2', 'check_2']);
    expect(plan.edits).toEqual([
      { op: 'add_node', kind: 'python', id: 'clean_2', config: { function: 'tools:clean' }, position: { x: 140, y: 120 } },
      {
        op: 'add_node',
        kind: 'template',
        id: 'summary_2',
        config: { template: "{{ clean_2.output.text }} and 'clean' {{ 'clean' }}" },
        position: { x: 340, y: 120 }
      },
      { op: 'add_node', kind: 'switch', id: 'check_2', config: { cases: { long: '{{ summary_2.output.text | length > 10 }}' } } },
      // the settings add_node does not take come with a replace of the whole node
      {
        op: 'replace_node',
        node: 'clean_2',
        body: { id: 'clean_2', type: 'python', title: 'Tidy', retry: { max_attempts: 3 }, config: { function: 'tools:clean' } }
      },
      { op: 'add_edge', from: 'clean_2', to: 'summary_2' },
      { op: 'add_edge', from: 'summary_2', to: 'check_2', when: 'clean_2.output.ok', label: 'when clean' }
    ]);
  });

  it('keeps free ids, and puts the top left at the place asked', () => {
    const plan = pastePlan(snippet, ['other'], { at: { x: 500, y: 500 } });
    expect([...plan.ids.values()]).toEqual(['clean', 'summary', 'check']);
    expect(plan.edits[0]).toMatchObject({ position: { x: 500, y: 500 } });
    expect(plan.edits[1]).toMatchObject({ position: { x: 700, y: 500 }, config: { template: "{{ clean.output.text }} and 'clean' {{ 'clean' }}" } });
    // a node that was never placed goes where the paste was asked
    expect(plan.edits[2]).toMatchObject({ position: { x: 500, y: 500 } });
  });
});
