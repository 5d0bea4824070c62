// The calls to the server extension, against a `fetch` that answers as the server extension
// does: a refused edit names its op and fields, and each route is sent its typed request.
import { PageConfig } from '@jupyterlab/coreutils';

import { FlowApiError, editFlow, newFlow } from '../api';
import type { EditRefusal, FlowEdit } from '../edits';

type Sent = { url: string; method: string; body: unknown };

function answer(status: number, body: unknown, sent: Sent[]): void {
  (globalThis as { fetch: unknown }).fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const text = await request.text();
    sent.push({ url: request.url, method: request.method, body: text ? JSON.parse(text) : undefined });
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
  };
}

describe('the server extension calls', () => {
  const realFetch = globalThis.fetch;
  beforeAll(() => {
    PageConfig.setOption('baseUrl', 'http://127.0.0.1:8888/lab-base/');
  });
  afterEach(() => {
    globalThis.fetch = realFetch;
  });

  it('sends an edit with the document text and reads a refusal naming its op and field', async () => {
    const refusal: EditRefusal = {
      applied: false,
      message: "not applied: edit 'remove', field 'edges': Input should be a valid list",
      path: 'flows/greet.flow.yaml',
      op: 'remove',
      errors: [{ loc: ['edit', 'remove', 'edges'], field: 'edges', message: 'Input should be a valid list', type: 'list_type' }],
      problems: [{ node: null, edge: null, field: 'edges', message: "edit 'remove', field 'edges': Input should be a valid list" }]
    };
    const sent: Sent[] = [];
    answer(200, refusal, sent); // a refusal is an answer: no failed request in the console
    const edit: FlowEdit = { op: 'remove', edges: [0] };
    const error = await editFlow('flows/greet.flow.yaml', 'name: greet\n', edit).catch(e => e);
    expect(error).toBeInstanceOf(FlowApiError);
    expect(error.status).toBe(200);
    expect(error.op).toBe('remove');
    expect(error.errors.map((e: { field: string }) => e.field)).toEqual(['edges']);
    expect(error.problems[0].field).toBe('edges');
    expect(error.message).toContain("field 'edges'");
    expect(sent).toHaveLength(1);
    expect(new URL(sent[0].url).pathname).toBe('/lab-base/jupyter-flow/api/edit');
    expect(sent[0].body).toEqual({ path: 'flows/greet.flow.yaml', text: 'name: greet\n', edit });
  });

  it('refuses a device the server does not know before sending anything', async () => {
    const sent: Sent[] = [];
    answer(201, { flow: 'untitled.flow.yaml', notebook: 'untitled.ipynb' }, sent);
    await expect(newFlow('', 'tpu', 8)).rejects.toThrow("the device must be auto, cpu or cuda, not 'tpu'");
    expect(sent).toHaveLength(0);
    await expect(newFlow('', 'cuda', 16)).resolves.toEqual({ flow: 'untitled.flow.yaml', notebook: 'untitled.ipynb' });
    expect(sent[0].body).toEqual({ directory: '', device: 'cuda', batch_size: 16 });
  });
});
