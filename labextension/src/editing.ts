/**
 * How a flow view changes its document: each edit goes to the server's editor, one at a
 * time and each on the text the one before left, and the answer goes into the document;
 * each action (one edit, or several made as one, as a paste is) is kept as the texts
 * before and after it, so that undo and redo put a whole text back.
 *
 * No DOM and no JupyterLab import at run time: the tests drive it with a document and a
 * server of their own.
 */
import type { EditReply, FlowEdit, SchemaReply, ValidateReply } from './api';
import { EditHistory, type HistoryStep } from './history';

/** The document a view edits (JupyterLab's document context, in the lab). */
export interface FlowDocument {
  /** The file's path; its name says the format (`.json` or YAML). */
  readonly path: string;
  /** The document's text now, saved or not. */
  readonly text: string;
  /** Put an edit's result into the document (which then shows unsaved changes). */
  setText(text: string): void;
}

/** What the model asks of the server extension (`api.ts` in the lab). A refused edit
 * rejects with an Error, whose `problems` say why when the flow would be invalid. */
export interface FlowServer {
  validate(path: string, text: string): Promise<ValidateReply>;
  edit(path: string, text: string, edit: FlowEdit): Promise<EditReply>;
  schema(kind: string | null): Promise<SchemaReply>;
}

/** What the view's model hears of the edits. */
export interface EditHooks {
  /** An edit's answer is in the document. */
  applied(reply: EditReply): void;
  /** The server refused an edit (the document is as it was). */
  refused(error: unknown): void;
  /** Undo put `step`'s text from before back, or redo its text from after. */
  restored(step: HistoryStep, direction: Direction): void;
  /** There was nothing to undo or redo, and why. */
  declined(why: string): void;
}

export type Direction = 'undo' | 'redo';

/** Several edits to make as one action, and what to call it. */
export interface EditGroup {
  edits: FlowEdit[];
  what: string;
}

/** The edits of one document, in order, and their history. */
export class FlowEditing {
  constructor(document: FlowDocument, server: FlowServer, hooks: EditHooks) {
    this._document = document;
    this._server = server;
    this._hooks = hooks;
  }

  /** The edit sent to the server and not answered yet. */
  get pending(): FlowEdit | null {
    return this._pending;
  }

  get canUndo(): boolean {
    return this._history.canUndo;
  }

  get canRedo(): boolean {
    return this._history.canRedo;
  }

  /** Apply one edit as one action; null when it was refused (or the view is closed). */
  edit(edit: FlowEdit): Promise<EditReply | null> {
    return this._enqueue(() => this._send(edit, true));
  }

  /** Apply the edits `plan` returns as one action, stopping at the first refused one.
   * `plan` runs once the edits queued before are done, so it sees the text they left.
   * Returns the answers of the edits applied. */
  group(plan: () => EditGroup | null): Promise<EditReply[]> {
    return this._enqueue(async () => {
      const group = this._closed ? null : plan();
      if (!group) {
        return [];
      }
      const before = this._document.text;
      const replies: EditReply[] = [];
      for (const edit of group.edits) {
        const reply = await this._send(edit, false);
        if (!reply) {
          break;
        }
        replies.push(reply);
      }
      this._history.push({ before, after: this._document.text, what: group.what });
      return replies;
    });
  }

  /** Put back the text from before the last action (once the edits in flight are done).
   * False when there was nothing to undo, or the document was changed elsewhere since
   * (the history is then forgotten: putting an old text back would lose that change). */
  undo(): Promise<boolean> {
    return this._enqueue(async () => this._restore('undo'));
  }

  /** Make the last undone action again. */
  redo(): Promise<boolean> {
    return this._enqueue(async () => this._restore('redo'));
  }

  /** The view is closed: no edit reaches the document any more. */
  close(): void {
    this._closed = true;
  }

  private _enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this._queue.then(job);
    this._queue = run.then(
      () => undefined,
      () => undefined
    );
    return run;
  }

  private async _send(edit: FlowEdit, record: boolean): Promise<EditReply | null> {
    if (this._closed) {
      return null;
    }
    const text = this._document.text;
    this._pending = edit;
    try {
      const reply = await this._server.edit(this._document.path, text, edit);
      if (this._closed) {
        return null;
      }
      if (reply.text !== text) {
        this._document.setText(reply.text);
        if (record) {
          this._history.push({ before: text, after: reply.text, what: reply.what });
        }
      }
      this._hooks.applied(reply);
      return reply;
    } catch (error) {
      if (!this._closed) {
        this._hooks.refused(error);
      }
      return null;
    } finally {
      this._pending = null;
    }
  }

  private _restore(direction: Direction): boolean {
    if (this._closed) {
      return false;
    }
    const step = direction === 'undo' ? this._history.lastDone : this._history.lastUndone;
    if (!step) {
      this._hooks.declined(`Nothing to ${direction}.`);
      return false;
    }
    const [from, to] = direction === 'undo' ? [step.after, step.before] : [step.before, step.after];
    if (this._document.text !== from) {
      this._history.clear();
      this._hooks.declined(`Nothing to ${direction}: the file was changed outside the flow view.`);
      return false;
    }
    if (direction === 'undo') {
      this._history.undo();
    } else {
      this._history.redo();
    }
    this._document.setText(to);
    this._hooks.restored(step, direction);
    return true;
  }

  private _document: FlowDocument;
  private _server: FlowServer;
  private _hooks: EditHooks;
  private _history = new EditHistory();
  private _pending: FlowEdit | null = null;
  private _queue: Promise<void> = Promise.resolve();
  private _closed = false;
}
