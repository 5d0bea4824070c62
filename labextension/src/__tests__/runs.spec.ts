// The runs of a flow view against a server of the test's own that answers as the server
// extension does: node states follow the events, a poll starts where the last one ended,
// the history's last run shows until a run of the view starts, a cancel goes out, a view
// that closes cancels its run, and a view opened while its file runs follows that run.
import { FlowRuns, runLine, type LastRunReply, type RunReply, type RunServer } from '../runs';
import { runClass } from '../graph';

function reply(run: string, events: RunReply['events'], next: number, status: RunReply['status'], done = false): RunReply {
  return { run, path: 'a.flow.yaml', status, done, events, next, message: null, log: '' };
}

class Server implements RunServer {
  polls: [string, number][] = [];
  cancelled: string[] = [];
  queue: RunReply[] = [];
  last: LastRunReply = { path: 'a.flow.yaml', run: null };

  async start(): Promise<RunReply> {
    return reply('r1', [{ event: 'started', run_id: 'x1', flow: 'a', nodes: ['a', 'b'] }], 1, 'running');
  }
  async poll(run: string, after: number): Promise<RunReply> {
    this.polls.push([run, after]);
    return this.queue.shift()!;
  }
  async cancel(run: string): Promise<RunReply> {
    this.cancelled.push(run);
    return reply(run, [], 0, 'running');
  }
  async lastRun(): Promise<LastRunReply> {
    return this.last;
  }
}

describe('FlowRuns', () => {
  it('follows a run to its end, node by node, each poll after the last', async () => {
    const server = new Server();
    server.queue.push(
      reply('r1', [{ event: 'node', node: 'a', status: 'running' }], 2, 'running'),
      reply('r1', [
        { event: 'node', node: 'a', status: 'ok', cached: true, output: { text: 'HI' }, output_chars: 13 },
        { event: 'node', node: 'b', status: 'error', error: 'boom' },
        { event: 'finished', run_id: 'x1', status: 'error', error: "node 'b': boom", nodes: { a: 'ok', b: 'error' } }
      ], 5, 'error', true)
    );
    const runs = new FlowRuns(server, () => 'a.flow.yaml');
    const seen: string[] = [];
    runs.changed.connect(() => seen.push([...runs.states.values()].map(s => `${s.node}:${runClass(s)}`).join(' ')));
    const last = await runs.start({ text: 'hi' });
    expect(last.done).toBe(true);
    expect(server.polls).toEqual([['r1', 1], ['r1', 2]]);
    expect(seen).toEqual(['a:pending b:pending', 'a:running b:pending', 'a:cached b:error']);
    expect(runs.states.get('a')?.output).toEqual({ text: 'HI' });
    expect(runs.summary?.status).toBe('error');
    expect(runLine(runs.summary)).toBe("Run error \u2014 1 cached, 1 error: node 'b': boom");
    expect(runs.running).toBe(false);
    runs.clear();
    expect(runs.states.size).toBe(0);
  });

  it('shows the last run from the history, and a cancel reaches the server', async () => {
    const server = new Server();
    server.last = {
      path: 'a.flow.yaml',
      run: { run_id: 'old', status: 'ok', started_at: null, error: null, nodes: [{ event: 'node', node: 'a', status: 'ok' }] }
    };
    const runs = new FlowRuns(server, () => 'a.flow.yaml');
    expect(await runs.loadLast()).toBe(true);
    expect(runLine(runs.summary)).toBe('Last run: ok \u2014 1 ok');
    let release: (r: RunReply) => void = () => undefined;
    server.poll = async () => new Promise<RunReply>(resolve => (release = resolve));
    const done = runs.start({});
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(runs.summary?.source).toBe('live');
    expect(runs.running).toBe(true);
    await runs.cancel();
    expect(server.cancelled).toEqual(['r1']);
    release(reply('r1', [{ event: 'finished', run_id: 'x1', status: 'cancelled', error: 'cancelled', nodes: {} }], 2, 'cancelled', true));
    await done;
    expect(runs.summary?.status).toBe('cancelled');
  });

  it('cancels the run going on when the view closes, and only then', async () => {
    const server = new Server();
    server.poll = async () => new Promise<RunReply>(() => undefined); // the run goes on
    const runs = new FlowRuns(server, () => 'a.flow.yaml');
    void runs.start({});
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(runs.running).toBe(true);
    runs.dispose();
    runs.dispose();
    expect(server.cancelled).toEqual(['r1']);

    // a view whose run has ended cancels nothing
    const ended = new Server();
    ended.queue.push(reply('r1', [{ event: 'finished', run_id: 'x1', status: 'ok', error: null, nodes: {} }], 2, 'ok', true));
    const done = new FlowRuns(ended, () => 'a.flow.yaml');
    await done.start({});
    done.dispose();
    expect(ended.cancelled).toEqual([]);
  });

  it('follows the run of its file going on in the server when it opens', async () => {
    const server = new Server();
    server.last = {
      path: 'a.flow.yaml',
      active: 'r9',
      run: { run_id: 'old', status: 'ok', started_at: null, error: null, nodes: [{ event: 'node', node: 'a', status: 'ok' }] }
    };
    server.queue.push(
      reply('r9', [{ event: 'started', run_id: 'x9', flow: 'a', nodes: ['a', 'b'] }, { event: 'node', node: 'a', status: 'running' }], 2, 'running'),
      reply('r9', [{ event: 'finished', run_id: 'x9', status: 'cancelled', error: 'cancelled', nodes: { a: 'cancelled', b: 'cancelled' } }], 3, 'cancelled', true)
    );
    const runs = new FlowRuns(server, () => 'a.flow.yaml');
    expect(await runs.loadLast()).toBe(true);
    expect(runs.summary?.source).toBe('live');
    for (let i = 0; i < 10 && !runs.summary?.done; i++) {
      await new Promise(resolve => setTimeout(resolve, 0));
    }
    expect(server.polls).toEqual([['r9', 0], ['r9', 2]]);
    expect(runs.summary?.runId).toBe('x9');
    expect(runs.summary?.status).toBe('cancelled');
    expect([...runs.states.values()].map(s => s.status)).toEqual(['cancelled', 'cancelled']);
  });
});
