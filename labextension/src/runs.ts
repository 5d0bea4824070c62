/**
 * The runs of one flow file's view, apart from its widgets: the run going on (or the last
 * one), each node's state in it and its output, and the last run the run history keeps
 * when the file is opened. The server runs the flow in a process of its own; this model
 * starts a run, follows its events (long polls, one after the other), cancels it, and
 * says what the graph should colour. A view that closes cancels its run (the server also
 * cancels a run nobody polls for a minute); a view opened while a run of its file goes on
 * (its page was reloaded) follows that run.
 *
 * No DOM and no JupyterLab import at run time: the tests drive it with a server of their own.
 */
import { Signal, type ISignal } from '@lumino/signaling';

import type { LastRunReply, NodeState, RunReply } from './edits';
import { runClass } from './graph';

export type { LastRunReply, NodeState, RunReply } from './edits';

/** What the model asks of the server extension (`api.ts` in the lab). */
export interface RunServer {
  start(path: string, inputs: Record<string, unknown>, cache: boolean): Promise<RunReply>;
  poll(run: string, after: number): Promise<RunReply>;
  cancel(run: string): Promise<RunReply>;
  lastRun(path: string): Promise<LastRunReply>;
}

/** Where the shown states come from: a run of this view, or the run history's last run. */
export type RunSource = 'live' | 'history';

/** How the shown run stands. */
export interface RunSummary {
  source: RunSource;
  /** running, ok, error, cancelled, timeout, refused; or the history's status. */
  status: string;
  done: boolean;
  /** Why it failed or was refused. */
  message: string | null;
  runId: string | null;
  /** When the history's run started (seconds since the epoch). */
  startedAt: number | null;
  /** The nodes in each state, as counts ("ok": 3). */
  counts: Record<string, number>;
}


/** One line about the shown run: "Run ok: 3 ok, 1 cached", "Last run (date): error: ...". */
export function runLine(summary: RunSummary | null): string {
  if (!summary) {
    return '';
  }
  const counts = Object.entries(summary.counts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`)
    .join(', ');
  const when = summary.startedAt ? ` (${new Date(summary.startedAt * 1000).toLocaleString()})` : '';
  const head = summary.source === 'history' ? `Last run${when}: ${summary.status}` : `Run ${summary.status}`;
  return [head + (counts ? ` \u2014 ${counts}` : ''), summary.message].filter(Boolean).join(': ');
}

/** The runs of one flow view. */
export class FlowRuns {
  constructor(server: RunServer, path: () => string) {
    this._server = server;
    this._path = path;
  }

  /** The states or the summary changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Each node's state in the shown run. */
  get states(): ReadonlyMap<string, NodeState> {
    return this._states;
  }

  get summary(): RunSummary | null {
    return this._summary;
  }

  /** A run of this view is going on. */
  get running(): boolean {
    return this._run !== null && !this._summary?.done;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Show the run history's last run of the file (when no run of this view is shown), or
   * follow the run of the file still going on in the server. */
  async loadLast(): Promise<boolean> {
    const reply = await this._server.lastRun(this._path());
    if (this._disposed || this._summary?.source === 'live') {
      return false;
    }
    if (reply.active) {
      this._attach(reply.active);
      return true;
    }
    if (!reply.run) {
      return false;
    }
    this._states = new Map(reply.run.nodes.map(n => [n.node, n]));
    this._summary = {
      source: 'history',
      status: reply.run.status,
      done: true,
      message: reply.run.error ?? null,
      runId: reply.run.run_id,
      startedAt: reply.run.started_at,
      counts: {}
    };
    this._count();
    return true;
  }

  /** Start a run with `inputs`, and follow it until it ends. Resolves with its last reply. */
  async start(inputs: Record<string, unknown>, cache = false): Promise<RunReply> {
    if (this.running) {
      throw new Error('a run of this flow is going on: cancel it first');
    }
    const reply = await this._server.start(this._path(), inputs, cache);
    this._run = reply.run;
    this._states = new Map();
    this._summary = { source: 'live', status: reply.status, done: false, message: null, runId: null, startedAt: null, counts: {} };
    this._take(reply);
    return this._follow(reply);
  }

  /** Stop the run going on (its events say when it has ended). */
  async cancel(): Promise<void> {
    if (this._run && this.running) {
      await this._server.cancel(this._run);
    }
  }

  /** Forget the shown run (the colours go). */
  clear(): void {
    if (this.running) {
      return;
    }
    this._run = null;
    this._states = new Map();
    this._summary = null;
    this._emit();
  }

  /** Forget the view; a run of it still going on is cancelled (nobody would see it end). */
  dispose(): void {
    if (this._disposed) {
      return;
    }
    if (this._run && this.running) {
      this._server.cancel(this._run).catch(error => console.warn('jupyter-flow: the run could not be cancelled', error));
    }
    this._disposed = true;
    Signal.clearData(this);
  }

  /** Follow the run `run` of this file from its first event (a run this view did not start). */
  private _attach(run: string): void {
    const first: RunReply = { run, path: this._path(), status: 'running', done: false, events: [], next: 0, message: null, log: '' };
    this._run = run;
    this._states = new Map();
    this._summary = { source: 'live', status: 'running', done: false, message: null, runId: null, startedAt: null, counts: {} };
    this._emit();
    this._follow(first).catch(error => console.warn('jupyter-flow: lost the run', error));
  }

  private async _follow(reply: RunReply): Promise<RunReply> {
    let last = reply;
    let failures = 0;
    while (!last.done && !this._disposed && this._run === reply.run) {
      try {
        last = await this._server.poll(reply.run, last.next);
        failures = 0;
      } catch (error) {
        // the server may be restarting: a few tries, then say so
        if (++failures >= 5) {
          this._summary = { ...this._summary!, done: true, status: 'unknown', message: `lost the run: ${String(error)}` };
          this._emit();
          throw error;
        }
        await new Promise(resolve => setTimeout(resolve, 500 * failures));
        continue;
      }
      this._take(last);
    }
    return last;
  }

  private _take(reply: RunReply): void {
    if (this._disposed || this._run !== reply.run) {
      return;
    }
    const summary = this._summary!;
    for (const event of reply.events) {
      if (event.event === 'started') {
        summary.runId = event.run_id;
        for (const node of event.nodes) {
          this._states.set(node, { event: 'node', node, status: 'pending' });
        }
      } else if (event.event === 'node') {
        const before = this._states.get(event.node);
        // a node's end keeps what its start said; its output comes with the end
        this._states.set(event.node, { ...before, ...event });
      } else if (event.event === 'finished') {
        summary.message = event.error ?? null;
        // how each node ended, those that never ran included (skipped after a failure)
        for (const [node, status] of Object.entries(event.nodes ?? {})) {
          const state = this._states.get(node);
          if (state && state.status !== status) {
            this._states.set(node, { ...state, status });
          }
        }
      } else if (event.event === 'refused') {
        summary.message = event.message + (event.problems?.length ? `: ${event.problems.map(p => p.message).join('; ')}` : '');
      }
    }
    summary.status = reply.status;
    summary.done = reply.done;
    if (reply.message) {
      summary.message = reply.message;
    }
    this._count();
  }

  private _count(): void {
    const counts: Record<string, number> = {};
    for (const state of this._states.values()) {
      const key = runClass(state);
      counts[key] = (counts[key] ?? 0) + 1;
    }
    if (this._summary) {
      this._summary.counts = counts;
    }
    this._emit();
  }

  private _emit(): void {
    if (!this._disposed) {
      this._changed.emit(undefined);
    }
  }

  private _server: RunServer;
  private _path: () => string;
  private _run: string | null = null;
  private _states: Map<string, NodeState> = new Map();
  private _summary: RunSummary | null = null;
  private _disposed = false;
  private _changed = new Signal<this, void>(this);
}
