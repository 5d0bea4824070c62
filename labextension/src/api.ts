/**
 * Calls to the jupyter-flow server extension, through JupyterLab's ServerConnection (which
 * adds the token and the XSRF header). Every request and reply is typed by `./edits`, which
 * is generated from the server's own models (jupyter_flow/edits.py, jupyter_flow/replies.py).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import type {
  EditReply,
  ErrorReply,
  FieldError,
  FileViewRoutes,
  FlowEdit,
  FolderReply,
  LastRunReply,
  NewFlowRequest,
  RunReply,
  SchemaReply,
  ValidateReply
} from './edits';
import { readPalette, type Palette } from './graph';
import { readProblems, type Problem } from './problems';

export type {
  EditReply,
  ExportReply,
  FlowEdit,
  NewFlowReply,
  SchemaReply,
  ValidateReply,
  WorkbenchReply
} from './edits';

/** The server answered with an error: `problems` is set when the flow was invalid, `op` and
 * `errors` when a request or edit did not fit (each error names its field). */
export class FlowApiError extends Error {
  readonly status: number;
  readonly problems: Problem[];
  readonly op: string | null;
  readonly errors: FieldError[];

  constructor(message: string, status: number, problems: Problem[] = [], op: string | null = null, errors: FieldError[] = []) {
    super(message);
    this.name = 'FlowApiError';
    this.status = status;
    this.problems = problems;
    this.op = op;
    this.errors = errors;
  }
}

type Route = keyof FileViewRoutes;
type RequestOf<R extends Route> = FileViewRoutes[R] extends { request: infer Q } ? Q : never;
type ReplyOf<R extends Route> = FileViewRoutes[R]['reply'];

/** One request to the Jupyter server at `path` below its base URL (then `query`), through ServerConnection:
 * the reply's JSON (a reply that is not JSON reads as `{message: text}`, an empty one as
 * `{}`), or, for a reply that is not ok, the error `fail` makes of its status and data. */
export async function serverRequest(
  path: string,
  init: RequestInit,
  fail: (status: number, data: Record<string, unknown>) => Error,
  query = ''
): Promise<unknown> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, path) + query;
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: unknown = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    throw fail(response.status, (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>);
  }
  return data;
}

function apiError(status: number, data: Record<string, unknown>): FlowApiError {
  const error = data as Partial<ErrorReply>;
  const message =
    typeof error.message === 'string' && error.message ? error.message : `the jupyter-flow server extension answered ${status}`;
  if (status === 404 && !error.message) {
    return new FlowApiError('the jupyter-flow server extension is not running: check `jupyter server extension list`', 404);
  }
  const problems = Array.isArray(error.problems) ? readProblems(error.problems) : [];
  const errors = Array.isArray(error.errors) ? error.errors : [];
  return new FlowApiError(message, status, problems, typeof error.op === 'string' ? error.op : null, errors);
}

async function request<R extends Route>(route: R, body?: RequestOf<R>, query = ''): Promise<ReplyOf<R>> {
  const init: RequestInit = body === undefined ? { method: 'GET' } : { method: 'POST', body: JSON.stringify(body) };
  return (await serverRequest(URLExt.join('jupyter-flow/api', route), init, apiError, query)) as ReplyOf<R>;
}

/** The colours of node kinds (plug-ins included) as the notebook workbench draws them. */
export async function fetchPalette(): Promise<Palette> {
  return readPalette(await request('palette'));
}

export async function validateFlow(path: string, text?: string): Promise<ValidateReply> {
  const reply = await request('validate', text === undefined ? { path } : { path, text });
  return { ...reply, problems: readProblems(reply.problems) };
}

export function exportFlow(path: string): Promise<ReplyOf<'export'>> {
  return request('export', { path });
}

function deviceOf(device: string): NewFlowRequest['device'] {
  if (device === 'auto' || device === 'cpu' || device === 'cuda') {
    return device;
  }
  throw new FlowApiError(`the device must be auto, cpu or cuda, not '${device}'`, 400);
}

export async function newFlow(directory: string, device: string, batchSize: number): Promise<ReplyOf<'new'>> {
  return request('new', { directory, device: deviceOf(device), batch_size: batchSize });
}

export function workbenchFor(path: string): Promise<ReplyOf<'workbench'>> {
  return request('workbench', { path });
}

/** Apply `edit` to the document text `text` of the flow at `path`; the server answers
 * with the new text (nothing is written to disk) or refuses (`applied: false`, still a
 * 200: a refusal is an answer, not a failed request), naming the edit's op and field when
 * the edit does not fit, the problems when it would break the flow. A refusal rejects
 * with a `FlowApiError` that carries them. */
export async function editFlow(path: string, text: string, edit: FlowEdit): Promise<EditReply> {
  const reply = await request('edit', { path, text, edit });
  if (reply.applied === false) {
    const problems = readProblems(reply.problems ?? []);
    throw new FlowApiError(reply.message, 200, problems, reply.op ?? null, reply.errors ?? []);
  }
  return { ...reply, problems: readProblems(reply.problems) };
}

/** The JSON schema of a node kind's config (or, without a kind, of an edge's settings). */
export function fetchSchema(kind: string | null): Promise<SchemaReply> {
  return request('schema', undefined, kind === null ? '' : `?kind=${encodeURIComponent(kind)}`);
}

/** Start a run of the saved flow file at `path` with `inputs` (in a process of the server's
 * own); `cache` takes unchanged nodes' results from the node cache. */
export function startRun(path: string, inputs: Record<string, unknown>, cache: boolean): Promise<RunReply> {
  return request('run', { path, inputs, cache });
}

/** The run's events from the `after`-th on, once there is one (the server waits a while). */
export function pollRun(run: string, after: number): Promise<RunReply> {
  return request('runstate', undefined, `?run=${encodeURIComponent(run)}&after=${after}&wait=10`);
}

export function cancelRun(run: string): Promise<RunReply> {
  return request('cancel', { run });
}

/** The newest run of the flow file at `path` in the run history (its `run` is null when
 * there is none). */
export function fetchLastRun(path: string): Promise<LastRunReply> {
  return request('lastrun', undefined, `?path=${encodeURIComponent(path)}`);
}

/** The size of the flow file's folder, as a copy of it would take it (counting stops early
 * past what is small: `small` is then false). */
export function fetchFolder(path: string): Promise<FolderReply> {
  return request('folder', undefined, `?path=${encodeURIComponent(path)}`);
}
