// Schedule… against a `fetch` that answers as jupyter-scheduler's REST API does: the
// environment is asked first, then a job (run now) or a job definition (on a cron
// schedule) is made with the inputs as the notebook's `inputs` parameter.
import { PageConfig } from '@jupyterlab/coreutils';

import { folderChoice, notebookParameters, schedule } from '../schedule';

type Sent = { path: string; method: string; body: any };

function scheduler(sent: Sent[], status = 200): void {
  (globalThis as { fetch: unknown }).fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const text = await request.text();
    const path = new URL(request.url).pathname.replace('/base/scheduler/', '');
    sent.push({ path, method: request.method, body: text ? JSON.parse(text) : undefined });
    const body =
      path === 'runtime_environments'
        ? [{ name: 'python', label: 'python' }]
        : status !== 200
          ? { message: 'There is no kernel associated with the notebook.' }
          : path === 'jobs'
            ? { job_id: 'j1' }
            : { job_definition_id: 'd1' };
    return new Response(JSON.stringify(body), { status: path === 'runtime_environments' ? 200 : status });
  };
}

describe('schedule', () => {
  const realFetch = globalThis.fetch;
  beforeAll(() => PageConfig.setOption('baseUrl', 'http://127.0.0.1:8888/base/'));
  afterEach(() => {
    globalThis.fetch = realFetch;
  });

  it('makes a job that runs now, with the inputs as a Python literal', async () => {
    const sent: Sent[] = [];
    scheduler(sent);
    const made = await schedule({ notebook: 'a/f.production.ipynb', name: 'f', inputs: { text: 'x', on: true }, cron: ' ', timezone: 'UTC', withFolder: true });
    expect(made).toEqual({ kind: 'job', id: 'j1' });
    expect(sent.map(s => `${s.method} ${s.path}`)).toEqual(['GET runtime_environments', 'POST jobs']);
    expect(sent[1].body).toEqual({
      input_uri: 'a/f.production.ipynb',
      runtime_environment_name: 'python',
      name: 'f',
      output_formats: ['ipynb'],
      parameters: { inputs: '{"text": "x", "on": True}' },
      package_input_folder: true
    });
  });

  it('makes a job definition on a cron schedule, and says why the scheduler refused', async () => {
    const sent: Sent[] = [];
    scheduler(sent);
    const made = await schedule({ notebook: 'f.ipynb', name: 'f', inputs: {}, cron: '0 6 * * 1-5', timezone: 'Europe/Paris', withFolder: false });
    expect(made).toEqual({ kind: 'definition', id: 'd1' });
    expect(sent[1].path).toBe('job_definitions');
    expect(sent[1].body.schedule).toBe('0 6 * * 1-5');
    expect(sent[1].body.timezone).toBe('Europe/Paris');
    expect(sent[1].body.parameters).toEqual({});
    expect(notebookParameters({})).toEqual({});
    scheduler(sent, 500);
    await expect(schedule({ notebook: 'f.ipynb', name: 'f', inputs: {}, cron: '', timezone: 'UTC', withFolder: false })).rejects.toThrow(
      'jupyter-scheduler answered 500: There is no kernel associated with the notebook.'
    );
  });

  it('runs on a copy of the folder by default only when the folder is small, and says why not', () => {
    const bounds = { small_files: 2000, small_bytes: 50 * 1024 * 1024 };
    expect(folderChoice({ path: 'flows', files: 12, bytes: 40_000, complete: true, small: true, ...bounds })).toEqual({ checked: true, note: '' });
    const root = folderChoice({ path: '', files: 2001, bytes: 3 * 1024 * 1024, complete: false, small: false, ...bounds });
    expect(root.checked).toBe(false);
    expect(root.note).toBe(
      "Off: the flow's folder (the server's root) holds more than 2,001 files, 3.0 MB, and every job would get a copy of it " +
        '(on by default up to 2,000 files and 50 MB).'
    );
    const big = folderChoice({ path: 'data', files: 3, bytes: 900 * 1024 * 1024, complete: true, small: false, ...bounds });
    expect(big.checked).toBe(false);
    expect(big.note).toContain("folder ('data') holds 3 files, 900 MB");
    expect(folderChoice(null).checked).toBe(false);
  });
});
