// The undo history on its own: steps in order, a bound, nothing kept for a step that
// changed nothing.
import { EditHistory } from '../history';

describe('EditHistory', () => {
  it('undoes the newest step first and redoes what was undone', () => {
    const history = new EditHistory();
    history.push({ before: 'a', after: 'b', what: 'one' });
    history.push({ before: 'b', after: 'c', what: 'two' });
    expect(history.undo()?.what).toBe('two');
    expect(history.lastUndone?.what).toBe('two');
    expect(history.undo()?.what).toBe('one');
    expect(history.undo()).toBeNull();
    expect(history.redo()?.what).toBe('one');
    expect(history.canUndo && history.canRedo).toBe(true);
  });

  it('drops the redo steps on a new step, and skips steps that changed nothing', () => {
    const history = new EditHistory();
    history.push({ before: 'a', after: 'b', what: 'one' });
    history.undo();
    history.push({ before: 'a', after: 'a', what: 'nothing' });
    expect(history.canRedo).toBe(true);
    history.push({ before: 'a', after: 'x', what: 'other' });
    expect(history.canRedo).toBe(false);
    expect(history.lastDone?.what).toBe('other');
  });

  it('keeps at most its limit of steps, forgetting the oldest', () => {
    const history = new EditHistory(3);
    for (let i = 0; i < 5; i++) {
      history.push({ before: `${i}`, after: `${i + 1}`, what: `step ${i}` });
    }
    const undone: string[] = [];
    while (history.canUndo) {
      undone.push(history.undo()!.what);
    }
    expect(undone).toEqual(['step 4', 'step 3', 'step 2']);
  });
});
