/**
 * The state of one flow file's view, apart from its widgets: the flow read from the
 * document, the problems shown, what is selected and what the side panel edits, the edit
 * in flight and the note it left. The views draw this model and hand the user's actions
 * back to it (select, add a node, connect, move, delete, apply a form, paste, find); the
 * model sends each edit to the server's editor and puts the answer into the document,
 * and keeps the texts before and after each action so that it can undo and redo them.
 *
 * No DOM and no JupyterLab import at run time: the tests drive it with a document and a
 * server of their own.
 */
import { Signal, type ISignal } from '@lumino/signaling';

import type { EditReply, FlowEdit, ValidateReply } from './api';
import { FlowEditing, type Direction, type FlowDocument, type FlowServer } from './editing';
import { FlowParseError, formatOf, parseFlow, type FlowModel, type Position } from './flowfile';
import { EMPTY_PALETTE, type Palette } from './graph';
import type { HistoryStep } from './history';
import type { PanelSubject } from './panel';
import { problemText, uniqueProblems, type Problem } from './problems';
import { nextMatch, searchFlow, type SearchMatch } from './search';
import { pastePlan, snippetOf, type FlowSnippet } from './snippet';
import {
  FormSchemas,
  NOTHING_SELECTED,
  filledFields,
  panelEdit,
  readDocument,
  sameSelection,
  subjectOf,
  type FormSchema,
  type Selection
} from './subject';

export { NOTHING_SELECTED, type Selection } from './subject';
export type { FlowDocument, FlowServer } from './editing';

/** A note about the last thing done, shown next to the view's controls. */
export interface Note {
  text: string;
  error: boolean;
}

/** How the drawing stands: not a flow, drawn (not validated yet), valid, or with problems. */
export type ViewState = 'unreadable' | 'drawn' | 'valid' | 'problems';

/** Where pasted nodes go: moved by `offset` from where they were copied, or with their
 * top left at `at` (graph coordinates). */
export interface PastePlace {
  offset?: Position;
  at?: Position;
}

/** The match `findNext` selected, and where it stands among all matches. */
export interface FoundNode {
  match: SearchMatch;
  /** 1 for the first match. */
  index: number;
  count: number;
}

const UNSAVED = ' (unsaved)';

function errorText(error: unknown): string {
  const problems = (error as { problems?: unknown } | null)?.problems;
  if (Array.isArray(problems) && problems.length > 0) {
    return `Not applied: ${(problems as Problem[]).map(problemText).join('; ')}`;
  }
  return `Not applied: ${error instanceof Error ? error.message : String(error)}`;
}

/** One flow file's view state. */
export class FlowViewModel {
  constructor(document: FlowDocument, server: FlowServer) {
    this._document = document;
    this._server = server;
    this._editing = new FlowEditing(document, server, {
      applied: reply => this._applied(reply),
      refused: error => this._say(errorText(error), true),
      restored: (step, direction) => this._restored(step, direction),
      declined: why => this._say(why, true)
    });
    this._schemas = new FormSchemas(kind => server.schema(kind).then(reply => reply.schema));
  }

  /** The flow, its problems or its validation changed: redraw the graph and the header. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get selectionChanged(): ISignal<this, Selection> {
    return this._selectionChanged;
  }

  /** What the side panel shows changed (null: nothing, the panel closes). */
  get subjectChanged(): ISignal<this, PanelSubject | null> {
    return this._subjectChanged;
  }

  get noteChanged(): ISignal<this, Note | null> {
    return this._noteChanged;
  }

  get paletteChanged(): ISignal<this, Palette> {
    return this._paletteChanged;
  }

  /** The flow as last read from the document (null when the text is not a flow). */
  get flow(): FlowModel | null {
    return this._flow;
  }

  /** Why the text is not a flow, when it is not. */
  get parseError(): string | null {
    return this._parseError;
  }

  /** The problems the server reported for the text as it was when validated. */
  get problems(): readonly Problem[] {
    return this._serverProblems;
  }

  /** The problems shown: the server's and those the browser sees itself, each once. */
  get shownProblems(): readonly Problem[] {
    return this._shown;
  }

  get validated(): boolean {
    return this._validated;
  }

  get state(): ViewState {
    if (this._flow === null) {
      return 'unreadable';
    }
    if (!this._validated) {
      return 'drawn';
    }
    return this._shown.length > 0 ? 'problems' : 'valid';
  }

  /** The header's line: the flow's name, its size and how validation went. */
  get headline(): string {
    const flow = this._flow;
    if (flow === null) {
      return `${this._document.path.split('/').pop() ?? this._document.path}: cannot be drawn`;
    }
    const count = this._shown.length;
    const status =
      !this._validated && count === 0 ? '' : count === 0 ? ' \u2014 valid' : ` \u2014 ${count} problem${count === 1 ? '' : 's'}`;
    return `${flow.name}: ${flow.nodes.length} nodes, ${flow.edges.length} edges${status}`;
  }

  get selection(): Selection {
    return this._selection;
  }

  /** What the side panel shows: the one selected node or edge, with its form. */
  get subject(): PanelSubject | null {
    return this._subject;
  }

  get note(): Note | null {
    return this._note;
  }

  /** The edit sent to the server and not answered yet (edits go one at a time). */
  get pending(): FlowEdit | null {
    return this._editing.pending;
  }

  /** The colours of node kinds (grey until the server's palette arrives). */
  get palette(): Palette {
    return this._palette;
  }

  set palette(palette: Palette) {
    this._palette = palette;
    this._paletteChanged.emit(palette);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Read the document again (after it changed); nothing happens when its text is the same. */
  refresh(): void {
    if (this._disposed) {
      return;
    }
    const text = this._document.text;
    if (text === this._text) {
      return;
    }
    this._text = text;
    try {
      this._flow = parseFlow(text, formatOf(this._document.path));
      this._parseError = null;
    } catch (err) {
      this._flow = null;
      this._parseError = err instanceof FlowParseError ? err.message : String(err);
    }
    this._update();
    // what no longer exists is no longer selected
    this.select(this._selection);
  }

  /** Ask the server for the problems of the document's text, and show them. */
  async validate(): Promise<ValidateReply> {
    const text = this._document.text;
    const reply = await this._server.validate(this._document.path, text);
    // an answer about text that has changed since would mark the wrong elements
    if (!this._disposed && this._document.text === text) {
      this.setProblems(reply.problems);
    }
    return reply;
  }

  /** Validate, and say in the note when the server could not (as on opening and saving). */
  async revalidate(): Promise<void> {
    try {
      await this.validate();
    } catch (error) {
      this._say(`not validated: ${error instanceof Error ? error.message : String(error)}`, true);
    }
  }

  /** Show `problems` (from the server) as the flow's. */
  setProblems(problems: readonly Problem[]): void {
    if (this._disposed) {
      return;
    }
    this._serverProblems = [...problems];
    this._validated = true;
    this._update();
  }

  /** Apply one edit with the server's editor and put the new text into the document.
   * Edits go one after the other, each on the text the one before left. Returns the
   * server's answer, or null when the edit was refused (the note says why). */
  edit(edit: FlowEdit): Promise<EditReply | null> {
    return this._editing.edit(edit);
  }

  /** Whether there is an action to undo, or to redo. */
  get canUndo(): boolean {
    return this._editing.canUndo;
  }

  get canRedo(): boolean {
    return this._editing.canRedo;
  }

  /** Put back the document's text from before the last action (after the edits in
   * flight). False when there was nothing to undo, or the document has been changed
   * elsewhere since (the history is then forgotten: undoing would lose that change). */
  undo(): Promise<boolean> {
    return this._editing.undo();
  }

  /** Do the last undone action again. */
  redo(): Promise<boolean> {
    return this._editing.redo();
  }

  /** The selected nodes with the edges between them, for the clipboard (null when no
   * node is selected); `positions` are where the view draws the nodes. */
  copy(positions: Record<string, Position>): FlowSnippet | null {
    const flow = this._flow;
    const snippet = flow ? snippetOf(flow, readDocument(this._document.text, this._document.path), this._selection.nodes, positions) : null;
    if (!snippet) {
      this._say('Select the nodes to copy.', true);
    }
    return snippet;
  }

  /** Copy the selected nodes and remove them (one action to undo). */
  async cut(positions: Record<string, Position>): Promise<FlowSnippet | null> {
    const snippet = this.copy(positions);
    if (snippet && !(await this.deleteSelected())) {
      return null;
    }
    return snippet;
  }

  /** Add copied nodes and the edges between them, renamed where their ids are taken,
   * and select them. One action to undo, however many edits it takes. Returns the new
   * ids (fewer when the server refused an edit: the note says why). */
  async paste(snippet: FlowSnippet, place: PastePlace = {}): Promise<string[]> {
    let ids: string[] = [];
    const what = `paste ${snippet.nodes.length} node${snippet.nodes.length === 1 ? '' : 's'}`;
    const replies = await this._editing.group(() => {
      if (!this._flow) {
        return null;
      }
      const plan = pastePlan(snippet, this._flow.nodes.map(n => n.id), place);
      ids = [...plan.ids.values()];
      return { edits: plan.edits, what };
    });
    const made = ids.filter(id => this._flow?.nodes.some(n => n.id === id));
    if (replies.length > 0 && made.length === ids.length && !this._note?.error) {
      this._say(`${what}${UNSAVED}`);
    }
    this.select({ nodes: made, edges: [] });
    return made;
  }

  /** Paste the selected nodes again beside them. */
  async duplicate(positions: Record<string, Position>): Promise<string[]> {
    const snippet = this.copy(positions);
    return snippet ? this.paste(snippet, { offset: { x: 40, y: 40 } }) : [];
  }

  /** Select every node of the flow. */
  selectAll(): void {
    this.select({ nodes: this._flow?.nodes.map(n => n.id) ?? [], edges: [] });
  }

  /** The nodes `query` matches (id, kind, title or config text). */
  search(query: string): SearchMatch[] {
    return searchFlow(this._flow, query);
  }

  /** Select the match of `query` after the one selected (the first when none is);
   * null when nothing matches. */
  findNext(query: string): FoundNode | null {
    const matches = this.search(query);
    const { nodes } = this._selection;
    const match = nextMatch(matches, nodes.length === 1 ? nodes[0] : null);
    if (!match) {
      return null;
    }
    this.select({ nodes: [match.node], edges: [] });
    return { match, index: matches.indexOf(match) + 1, count: matches.length };
  }

  /** The document was saved: the last edit's note no longer says "(unsaved)". */
  saved(): void {
    const note = this._note;
    if (note && !note.error && note.text.endsWith(UNSAVED)) {
      this._say(`${note.text.slice(0, -UNSAVED.length)} (saved)`);
    }
  }

  /** Select nodes and edges of the flow (others are left out); the side panel shows the
   * one selected element. */
  select(selection: Selection): void {
    const flow = this._flow;
    const nodes = new Set(flow?.nodes.map(n => n.id));
    const edges = new Set(flow?.edges.map(e => e.index));
    const next = { nodes: selection.nodes.filter(id => nodes.has(id)), edges: selection.edges.filter(i => edges.has(i)) };
    if (this._disposed || sameSelection(next, this._selection)) {
      return;
    }
    this._selection = next;
    this._selectionChanged.emit(this._selection);
    void this._showSelected();
  }

  /** Add a node of `kind` at `position` (graph coordinates) and select it. */
  async addNode(kind: string, position: Position): Promise<EditReply | null> {
    const reply = await this.edit({ op: 'add_node', kind, position: { x: Math.round(position.x), y: Math.round(position.y) } });
    if (reply && typeof reply.made === 'string') {
      this.select({ nodes: [reply.made], edges: [] });
    }
    return reply;
  }

  /** Connect two nodes (`from` may be `start`, to mark an entry node). */
  connect(from: string, to: string): Promise<EditReply | null> {
    return this.edit({ op: 'add_edge', from, to });
  }

  /** Keep where nodes were moved to, in the file's `layout`. In a flow whose file has no
   * layout yet, `drawn` (where the view has placed every node) is kept too, so that the
   * file keeps the drawing the user moved a node in. */
  move(positions: Record<string, Position>, drawn: Record<string, Position> = {}): Promise<EditReply | null> {
    const first = this._flow !== null && Object.keys(this._flow.layout).length === 0;
    const rounded: Record<string, Position> = {};
    for (const [id, p] of Object.entries(first ? { ...drawn, ...positions } : positions)) {
      rounded[id] = { x: Math.round(p.x), y: Math.round(p.y) };
    }
    return this.edit({ op: 'move', positions: rounded });
  }

  /** Remove the selected nodes and edges (what Delete and the context menu do). */
  async deleteSelected(): Promise<EditReply | null> {
    const { nodes, edges } = this._selection;
    if (nodes.length === 0 && edges.length === 0) {
      this._say('Select a node or an edge to delete.', true);
      return null;
    }
    const reply = await this.edit({ op: 'remove', nodes: [...nodes], edges: [...edges] });
    if (reply) {
      this.select(NOTHING_SELECTED);
    }
    return reply;
  }

  /** Apply the side panel's form; null when applied, else why not. */
  applyForm(subject: PanelSubject, data: Record<string, unknown>): Promise<string | null> {
    return this._applyPanelEdit(subject, panelEdit(subject, filledFields(data)));
  }

  /** Apply the side panel's YAML; null when applied, else why not. */
  applyYaml(subject: PanelSubject, text: string): Promise<string | null> {
    return this._applyPanelEdit(subject, panelEdit(subject, text));
  }

  /** The JSON schema of a node kind's config (or of an edge's settings), asked once. */
  schemaOf(kind: string | null): Promise<FormSchema> {
    return this._schemas.get(kind);
  }

  /** The view is closed: no signal is sent and no edit reaches the document any more. */
  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._editing.close();
    Signal.clearData(this);
  }

  /** An edit's answer is in the document: show it, and the problems the server found. */
  private _applied(reply: EditReply): void {
    this._say(`${reply.what}${UNSAVED}`);
    this._serverProblems = [...reply.problems];
    this._validated = true;
    this._text = null;
    this.refresh();
  }

  /** Undo or redo put a text back: the problems shown were those of another text. */
  private _restored(step: HistoryStep, direction: Direction): void {
    this._say(`${direction} ${step.what}${UNSAVED}`);
    this._serverProblems = [];
    this._validated = false;
    this._text = null;
    this.refresh();
    void this._showSelected();
    void this.revalidate();
  }

  private async _applyPanelEdit(subject: PanelSubject, edit: FlowEdit): Promise<string | null> {
    const reply = await this.edit(edit);
    if (reply === null) {
      return this._note?.text ?? 'Not applied';
    }
    // a node's YAML may rename it: the panel follows the node
    if (subject.kind === 'node') {
      this.select({ nodes: [typeof reply.made === 'string' ? reply.made : String(subject.key)], edges: [] });
    } else {
      this.select({ nodes: [], edges: [Number(subject.key)] });
    }
    await this._showSelected();
    return null;
  }

  private _update(): void {
    this._shown = this._flow ? uniqueProblems([...this._serverProblems, ...this._flow.problems]) : [];
    this._changed.emit(undefined);
  }

  private _say(text: string, error = false): void {
    this._note = { text, error };
    this._noteChanged.emit(this._note);
  }

  /** Show the one selected element in the side panel (or nothing). */
  private async _showSelected(): Promise<void> {
    const ask = ++this._subjectAsked;
    const subject = await subjectOf(
      this._selection,
      this._flow,
      this._document.text,
      this._document.path,
      this._shown,
      kind => this.schemaOf(kind)
    );
    if (ask === this._subjectAsked && !this._disposed) {
      this._subject = subject;
      this._subjectChanged.emit(subject);
    }
  }

  private _document: FlowDocument;
  private _server: FlowServer;
  private _text: string | null = null;
  private _flow: FlowModel | null = null;
  private _parseError: string | null = null;
  private _serverProblems: Problem[] = [];
  private _shown: Problem[] = [];
  private _validated = false;
  private _selection: Selection = NOTHING_SELECTED;
  private _subject: PanelSubject | null = null;
  private _subjectAsked = 0;
  private _note: Note | null = null;
  private _editing: FlowEditing;
  private _schemas: FormSchemas;
  private _palette: Palette = EMPTY_PALETTE;
  private _disposed = false;
  private _changed = new Signal<this, void>(this);
  private _selectionChanged = new Signal<this, Selection>(this);
  private _subjectChanged = new Signal<this, PanelSubject | null>(this);
  private _noteChanged = new Signal<this, Note | null>(this);
  private _paletteChanged = new Signal<this, Palette>(this);
}
