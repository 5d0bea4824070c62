/**
 * The undo and redo stacks of a flow view: each step is the document's text before and
 * after one user action (an edit, or a paste made of several). Texts, not inverse edits:
 * the text is what the server's editor wrote, comments and all, so putting an old text
 * back restores the file exactly as it was.
 *
 * Plain data only, so the unit tests check it directly.
 */

/** One undoable step. */
export interface HistoryStep {
  before: string;
  after: string;
  /** What the step did, as the edit's note said it ("add node template_1"). */
  what: string;
}

/** How many steps are kept; the oldest go first. */
export const HISTORY_LIMIT = 200;

export class EditHistory {
  constructor(readonly limit: number = HISTORY_LIMIT) {}

  get canUndo(): boolean {
    return this._undo.length > 0;
  }

  get canRedo(): boolean {
    return this._redo.length > 0;
  }

  /** The step an undo would take back (null when there is none). */
  get lastDone(): HistoryStep | null {
    return this._undo[this._undo.length - 1] ?? null;
  }

  /** The step a redo would do again (null when there is none). */
  get lastUndone(): HistoryStep | null {
    return this._redo[this._redo.length - 1] ?? null;
  }

  /** A new step: what was undone can no longer be redone. A step that changed nothing is
   * not kept. */
  push(step: HistoryStep): void {
    if (step.before === step.after) {
      return;
    }
    this._undo.push(step);
    if (this._undo.length > this.limit) {
      this._undo.splice(0, this._undo.length - this.limit);
    }
    this._redo = [];
  }

  /** Move the last step to the redo stack; returns it (null when there is none). */
  undo(): HistoryStep | null {
    const step = this._undo.pop() ?? null;
    if (step) {
      this._redo.push(step);
    }
    return step;
  }

  /** Move the last undone step back; returns it (null when there is none). */
  redo(): HistoryStep | null {
    const step = this._redo.pop() ?? null;
    if (step) {
      this._undo.push(step);
    }
    return step;
  }

  /** Forget every step (the document was changed where this history did not see it). */
  clear(): void {
    this._undo = [];
    this._redo = [];
  }

  private _undo: HistoryStep[] = [];
  private _redo: HistoryStep[] = [];
}
