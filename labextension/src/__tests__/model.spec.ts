// The file view's state, driven as the view drives it, with no widget and no DOM: a
// document whose text the model reads and writes, and a server that answers validations,
// edits and schemas as the server extension does (it applies the edits to the YAML).
import { parse, stringify } from 'yaml';

import type { EditReply, FlowEdit, SchemaReply, ValidateReply } from '../api';
import { FlowViewModel, NOTHING_SELECTED, type FlowDocument, type FlowServer } from '../model';
import type { Problem } from '../problems';

const GREET = `# kept under version control
name: greet
nodes:
  - {id: shout, type: template, config: {template: "{{ text | upper }}"}}
  - {id: reply, type: template, config: {template: "{{ shout.output.text }}"}}
edges:
  - {from: start, to: shout}
  - {from: shout, to: reply}
`;

const SCHEMA = { type: 'object', properties: { template: { type: 'string' } } };

class Document implements FlowDocument {
  constructor(
    public text: string,
    readonly path = 'flows/greet.flow.yaml'
  ) {}

  writes = 0;
  dirty = false;

  setText(text: string): void {
    this.text = text;
    this.writes++;
    this.dirty = true;
  }
}

/** The server extension as the model meets it; `hold` keeps the next edits unanswered
 * until `release`. */
class Server implements FlowServer {
  edits: { text: string; edit: FlowEdit }[] = [];
  schemaAsks: (string | null)[] = [];
  problems: Problem[] = [];
  refuse: Error | null = null;
  schemaFails = 0;
  private _held: (() => void)[] = [];
  hold = false;

  async validate(path: string, text: string): Promise<ValidateReply> {
    const flow = parse(text);
    return { path, valid: this.problems.length === 0, nodes: flow.nodes.length, edges: flow.edges.length, problems: this.problems };
  }

  async edit(path: string, text: string, edit: FlowEdit): Promise<EditReply> {
    this.edits.push({ text, edit });
    if (this.hold) {
      await new Promise<void>(resolve => this._held.push(resolve));
    }
    if (this.refuse) {
      throw this.refuse;
    }
    const flow = parse(text);
    const e = edit as any;
    let made: string | number | null = null;
    if (e.op === 'add_node') {
      const id: string = e.id ?? `${e.kind}_1`;
      if (flow.nodes.some((n: any) => n.id === id)) {
        throw new Error(`a node '${id}' exists already: pick another id`);
      }
      flow.nodes.push(e.config ? { id, type: e.kind, config: e.config } : { id, type: e.kind });
      flow.layout = { ...flow.layout, [id]: e.position };
      made = id;
    } else if (e.op === 'add_edge') {
      const { op: _op, ...edge } = e;
      made = flow.edges.push(edge) - 1;
    } else if (e.op === 'remove') {
      flow.nodes = flow.nodes.filter((n: any) => !e.nodes.includes(n.id));
      flow.edges = flow.edges.filter((x: any, i: number) => !e.edges.includes(i) && !e.nodes.includes(x.from) && !e.nodes.includes(x.to));
    } else if (e.op === 'move') {
      flow.layout = { ...flow.layout, ...e.positions };
    } else if (e.op === 'set_config') {
      flow.nodes.find((n: any) => n.id === e.node).config = e.config;
    } else if (e.op === 'replace_node') {
      const body = typeof e.body === 'string' ? parse(e.body) : e.body;
      flow.nodes = flow.nodes.map((n: any) => (n.id === e.node ? body : n));
      made = body.id;
    }
    const after = stringify(flow);
    return { applied: true, path, text: after, what: `${e.op}`, made, nodes: flow.nodes.length, edges: flow.edges.length, problems: this.problems };
  }

  async schema(kind: string | null): Promise<SchemaReply> {
    this.schemaAsks.push(kind);
    if (this.schemaFails > 0) {
      this.schemaFails--;
      throw new Error('the server is restarting');
    }
    return { kind, schema: SCHEMA, config: {} };
  }

  release(): void {
    this.hold = false;
    this._held.splice(0).forEach(go => go());
  }
}

/** Let the model's awaits run. */
const settle = () => new Promise(resolve => setTimeout(resolve, 0));

function open(text = GREET): { model: FlowViewModel; doc: Document; server: Server } {
  const doc = new Document(text);
  const server = new Server();
  const model = new FlowViewModel(doc, server);
  model.refresh();
  return { model, doc, server };
}

describe('FlowViewModel', () => {
  it('reads the flow and tells the header how validation went', async () => {
    const { model, server } = open();
    expect(model.headline).toBe('greet: 2 nodes, 2 edges');
    expect(model.state).toBe('drawn');

    server.problems = [{ node: 'reply', edge: null, field: 'config.template', message: 'reads a node that is not upstream' }];
    await model.revalidate();
    expect(model.headline).toBe('greet: 2 nodes, 2 edges \u2014 1 problem');
    expect(model.state).toBe('problems');
    expect(model.shownProblems).toEqual(server.problems);

    server.problems = [];
    await model.validate();
    expect(model.headline).toBe('greet: 2 nodes, 2 edges \u2014 valid');
    expect(model.state).toBe('valid');
  });

  it('says why a text that is not a flow cannot be drawn', () => {
    const { model } = open('nodes: [unclosed');
    expect(model.flow).toBeNull();
    expect(model.state).toBe('unreadable');
    expect(model.headline).toBe('greet.flow.yaml: cannot be drawn');
    expect(model.parseError).toMatch(/line 1/);
  });

  it('shows the one selected node in the side panel, with its form and its problems', async () => {
    const { model, server } = open();
    server.problems = [{ node: 'reply', edge: null, field: 'config.template', message: 'bad' }];
    await model.validate();
    const subjects: (string | null)[] = [];
    model.subjectChanged.connect((_, subject) => subjects.push(subject ? subject.title : null));

    model.select({ nodes: ['reply'], edges: [] });
    await settle();
    expect(model.subject).toMatchObject({
      kind: 'node',
      key: 'reply',
      title: 'Node reply (template)',
      schema: SCHEMA,
      data: { template: '{{ shout.output.text }}' },
      body: { id: 'reply', type: 'template', config: { template: '{{ shout.output.text }}' } }
    });
    expect(model.subject!.problems.map(p => p.message)).toEqual(['bad']);

    model.select({ nodes: [], edges: [1] });
    await settle();
    expect(model.subject).toMatchObject({ kind: 'edge', key: 1, title: 'Edge shout \u2192 reply', data: {} });

    // two elements, or nothing, close the panel; a node the flow lacks is not selected
    model.select({ nodes: ['shout', 'reply'], edges: [] });
    await settle();
    expect(model.subject).toBeNull();
    model.select({ nodes: ['ghost'], edges: [] });
    expect(model.selection).toEqual({ nodes: [], edges: [] });
    expect(subjects).toEqual(['Node reply (template)', 'Edge shout \u2192 reply', null]);
    // the schema of a kind is asked once
    expect(server.schemaAsks).toEqual(['template', null]);
  });

  it('puts an edit into the document, selects what it made, and notes it until saved', async () => {
    const { model, doc, server } = open();
    const reply = await model.addNode('pdf', { x: 100.4, y: 39.6 });
    expect(reply?.made).toBe('pdf_1');
    expect(server.edits.map(e => e.edit)).toEqual([{ op: 'add_node', kind: 'pdf', position: { x: 100, y: 40 } }]);
    expect(doc.dirty).toBe(true);
    expect(model.flow!.nodes.map(n => n.id)).toEqual(['shout', 'reply', 'pdf_1']);
    expect(model.selection).toEqual({ nodes: ['pdf_1'], edges: [] });
    await settle();
    expect(model.subject?.title).toBe('Node pdf_1 (pdf)');
    expect(model.note).toEqual({ text: 'add_node (unsaved)', error: false });
    model.saved();
    expect(model.note).toEqual({ text: 'add_node (saved)', error: false });
  });

  it('sends edits one at a time, each on the text the one before left', async () => {
    const { model, doc, server } = open();
    server.hold = true;
    const first = model.connect('reply', 'shout');
    const second = model.move({ shout: { x: 10.2, y: 20.7 } });
    await settle();
    expect(server.edits).toHaveLength(1);
    expect(model.pending).toEqual({ op: 'add_edge', from: 'reply', to: 'shout' });
    server.release();
    await first;
    server.release();
    await second;
    expect(model.pending).toBeNull();
    expect(server.edits[1].text).toContain('from: reply');
    const saved = parse(doc.text);
    expect(saved.edges).toContainEqual({ from: 'reply', to: 'shout' });
    expect(saved.layout).toEqual({ shout: { x: 10, y: 21 } });
  });

  it('leaves the document alone when the server refuses an edit, and says why', async () => {
    const { model, doc, server } = open();
    server.refuse = Object.assign(new Error('not applied'), {
      problems: [{ node: 'shout', edge: null, field: 'config.template', message: 'unknown filter' }]
    });
    const notes: string[] = [];
    model.noteChanged.connect((_, note) => notes.push(note!.text));
    expect(await model.connect('shout', 'reply')).toBeNull();
    expect(doc.writes).toBe(0);
    expect(model.note).toEqual({ text: "Not applied: node 'shout', field 'config.template': unknown filter", error: true });
    expect(notes).toHaveLength(1);
  });

  it('deletes the selection, or asks for one', async () => {
    const { model, server } = open();
    expect(await model.deleteSelected()).toBeNull();
    expect(model.note).toEqual({ text: 'Select a node or an edge to delete.', error: true });
    expect(server.edits).toHaveLength(0);

    model.select({ nodes: ['reply'], edges: [] });
    await settle();
    await model.deleteSelected();
    expect(server.edits[0].edit).toEqual({ op: 'remove', nodes: ['reply'], edges: [] });
    expect(model.flow!.nodes.map(n => n.id)).toEqual(['shout']);
    expect(model.selection).toEqual({ nodes: [], edges: [] });
    await settle();
    expect(model.subject).toBeNull();
  });

  it('applies the side panel: the form sets the filled fields, the YAML replaces the node and follows a rename', async () => {
    const { model, server } = open();
    model.select({ nodes: ['shout'], edges: [] });
    await settle();
    expect(await model.applyForm(model.subject!, { template: 'HI', note: '', other: null })).toBeNull();
    expect(server.edits[0].edit).toEqual({ op: 'set_config', node: 'shout', config: { template: 'HI' } });
    expect(model.subject!.data).toEqual({ template: 'HI' });

    const yaml = 'id: loud\ntype: template\nconfig: {template: HI}\n';
    expect(await model.applyYaml(model.subject!, yaml)).toBeNull();
    expect(server.edits[1].edit).toEqual({ op: 'replace_node', node: 'shout', body: yaml });
    expect(model.selection.nodes).toEqual(['loud']);
    expect(model.subject!.title).toBe('Node loud (template)');

    server.refuse = new Error('the node needs a type');
    expect(await model.applyYaml(model.subject!, 'id: loud\n')).toBe('Not applied: the node needs a type');
  });

  it('shows the YAML alone while a schema cannot be had, and asks again later', async () => {
    const { model, server } = open();
    server.schemaFails = 1;
    model.select({ nodes: ['shout'], edges: [] });
    await settle();
    expect(model.subject!.schema).toBeNull();
    model.select({ nodes: [], edges: [] });
    model.select({ nodes: ['shout'], edges: [] });
    await settle();
    expect(model.subject!.schema).toEqual(SCHEMA);
  });

  it('ignores an answer about text that has changed since it was asked', async () => {
    const { model, doc, server } = open();
    server.problems = [{ node: 'shout', edge: null, field: null, message: 'stale' }];
    const asked = model.validate();
    doc.text = GREET.replace('greet', 'greeting');
    await asked;
    expect(model.problems).toEqual([]);
    expect(model.validated).toBe(false);
  });

  it('writes nothing into a closed view', async () => {
    const { model, doc, server } = open();
    let signals = 0;
    model.changed.connect(() => signals++);
    server.hold = true;
    const inFlight = model.connect('shout', 'reply');
    await settle();
    model.dispose();
    model.dispose();
    server.release();
    expect(await inFlight).toBeNull();
    expect(await model.connect('reply', 'shout')).toBeNull();
    expect(doc.writes).toBe(0);
    expect(signals).toBe(0);
    expect(model.isDisposed).toBe(true);
  });
  it('undoes and redoes each edit, putting the text back exactly as it was, comments and all', async () => {
    const { model, doc } = open();
    const texts = [doc.text];
    await model.addNode('pdf', { x: 100, y: 40 });
    texts.push(doc.text);
    await model.connect('reply', 'pdf_1');
    texts.push(doc.text);
    await model.move({ shout: { x: 10, y: 20 } });
    texts.push(doc.text);
    model.select({ nodes: ['reply'], edges: [] });
    await model.deleteSelected();
    texts.push(doc.text);
    expect(model.canUndo).toBe(true);
    expect(model.canRedo).toBe(false);

    for (let i = texts.length - 2; i >= 0; i--) {
      expect(await model.undo()).toBe(true);
      expect(doc.text).toBe(texts[i]);
    }
    expect(doc.text).toContain('# kept under version control');
    expect(model.flow!.nodes.map(n => n.id)).toEqual(['shout', 'reply']);
    expect(model.canUndo).toBe(false);
    expect(await model.undo()).toBe(false);
    expect(model.note).toEqual({ text: 'Nothing to undo.', error: true });

    expect(await model.redo()).toBe(true);
    expect(await model.redo()).toBe(true);
    expect(doc.text).toBe(texts[2]);
    expect(model.flow!.edges).toContainEqual(expect.objectContaining({ source: 'reply', target: 'pdf_1' }));
    expect(model.note).toEqual({ text: 'redo add_edge (unsaved)', error: false });

    // a new edit drops what was undone
    await model.undo();
    await model.move({ reply: { x: 5, y: 5 } });
    expect(model.canRedo).toBe(false);
    expect(await model.redo()).toBe(false);
  });

  it('revalidates after an undo: the problems shown belong to the text put back', async () => {
    const { model, server } = open();
    server.problems = [{ node: 'pdf_1', edge: null, field: null, message: 'no input' }];
    await model.addNode('pdf', { x: 1, y: 2 });
    expect(model.shownProblems).toHaveLength(1);
    server.problems = [];
    await model.undo();
    await settle();
    expect(model.validated).toBe(true);
    expect(model.shownProblems).toEqual([]);
  });

  it('undoes an action queued behind an edit in flight only once that edit is in', async () => {
    const { model, doc, server } = open();
    server.hold = true;
    const added = model.addNode('pdf', { x: 1, y: 2 });
    const undone = model.undo();
    await settle();
    server.release();
    await added;
    expect(await undone).toBe(true);
    expect(doc.text).toBe(GREET);
  });

  it('forgets its history when the document was changed elsewhere', async () => {
    const { model, doc } = open();
    await model.addNode('pdf', { x: 1, y: 2 });
    doc.text = `${doc.text}# typed in the text editor\n`;
    expect(await model.undo()).toBe(false);
    expect(doc.text).toContain('# typed in the text editor');
    expect(model.note?.text).toMatch(/changed outside the flow view/);
    expect(model.canUndo).toBe(false);
  });

  it('pastes copied nodes with the edge between them, renamed where taken, as one action', async () => {
    const { model, doc, server } = open();
    model.select({ nodes: ['shout', 'reply'], edges: [] });
    const snippet = model.copy({ shout: { x: 100, y: 50 }, reply: { x: 300, y: 50 } })!;
    expect(snippet.nodes.map(n => n.id)).toEqual(['shout', 'reply']);
    expect(snippet.edges).toEqual([{ from: 'shout', to: 'reply' }]);

    const before = doc.text;
    const made = await model.paste(snippet, { offset: { x: 40, y: 40 } });
    expect(made).toEqual(['shout_2', 'reply_2']);
    expect(model.selection.nodes).toEqual(['shout_2', 'reply_2']);
    const flow = parse(doc.text);
    expect(flow.nodes.find((n: any) => n.id === 'reply_2').config).toEqual({ template: '{{ shout_2.output.text }}' });
    expect(flow.edges).toContainEqual({ from: 'shout_2', to: 'reply_2' });
    expect(flow.layout.shout_2).toEqual({ x: 140, y: 90 });
    expect(server.edits.map(e => e.edit.op)).toEqual(['add_node', 'add_node', 'add_edge']);
    expect(model.note).toEqual({ text: 'paste 2 nodes (unsaved)', error: false });

    // pasted again: the next free ids
    expect(await model.paste(snippet, { at: { x: 0, y: 300 } })).toEqual(['shout_3', 'reply_3']);
    expect(parse(doc.text).layout.reply_3).toEqual({ x: 200, y: 300 });

    await model.undo();
    await model.undo();
    expect(doc.text).toBe(before);
  });

  it('cuts as one action, and duplicates beside the original', async () => {
    const { model, doc } = open();
    model.select({ nodes: ['reply'], edges: [] });
    const snippet = await model.cut({ reply: { x: 300, y: 50 } });
    expect(snippet!.nodes.map(n => n.id)).toEqual(['reply']);
    expect(model.flow!.nodes.map(n => n.id)).toEqual(['shout']);
    // pasted where the id is free again, the node keeps it
    expect(await model.paste(snippet!)).toEqual(['reply']);
    model.select({ nodes: ['shout'], edges: [] });
    expect(await model.duplicate({ shout: { x: 10, y: 10 } })).toEqual(['shout_2']);
    expect(parse(doc.text).layout.shout_2).toEqual({ x: 50, y: 50 });
    model.select(NOTHING_SELECTED);
    expect(model.copy({})).toBeNull();
    expect(model.note).toEqual({ text: 'Select the nodes to copy.', error: true });
  });

  it('keeps the whole drawing in the file at the first move in a flow without a layout', async () => {
    const { model, doc } = open();
    await model.move({ shout: { x: 10.4, y: 20 } }, { shout: { x: 0, y: 0 }, reply: { x: 200.2, y: 0 } });
    expect(parse(doc.text).layout).toEqual({ shout: { x: 10, y: 20 }, reply: { x: 200, y: 0 } });
    // later moves keep only what moved
    await model.move({ reply: { x: 5, y: 5 } }, { shout: { x: 99, y: 99 }, reply: { x: 5, y: 5 } });
    expect(parse(doc.text).layout).toEqual({ shout: { x: 10, y: 20 }, reply: { x: 5, y: 5 } });
  });

  it('finds nodes by id, kind or config text, selecting the next match each time', () => {
    const { model } = open();
    expect(model.search('TEXT').map(m => m.node)).toEqual(['shout', 'reply']);
    expect(model.findNext('text')).toMatchObject({ match: { node: 'shout', where: 'config' }, index: 1, count: 2 });
    expect(model.selection.nodes).toEqual(['shout']);
    expect(model.findNext('text')).toMatchObject({ match: { node: 'reply' }, index: 2 });
    expect(model.findNext('text')!.match.node).toBe('shout');
    expect(model.findNext('REPL')).toMatchObject({ match: { node: 'reply', where: 'id' }, count: 1 });
    expect(model.findNext('nothing like it')).toBeNull();
    expect(model.selection.nodes).toEqual(['reply']);
  });
});
