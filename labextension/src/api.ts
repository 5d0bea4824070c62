/**
 * Calls to the jupyter-flow server extension, through JupyterLab's ServerConnection (which
 * adds the token and the XSRF header).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { readPalette, type Palette } from './graph';
import { readProblems, type Problem } from './problems';

/** The server answered with an error; `problems` is set when the flow was invalid. */
export class FlowApiError extends Error {
  readonly status: number;
  readonly problems: Problem[];

  constructor(message: string, status: number, problems: Problem[] = []) {
    super(message);
    this.name = 'FlowApiError';
    this.status = status;
    this.problems = problems;
  }
}

export interface ValidateReply {
  path: string;
  valid: boolean;
  nodes: number;
  edges: number;
  problems: Problem[];
}

export interface ExportReply {
  path: string;
  notebook: string;
}

export interface NewFlowReply {
  flow: string;
  notebook: string;
}

export interface WorkbenchReply {
  path: string;
  notebook: string;
  created: boolean;
}

async function request<T>(endpoint: string, body?: Record<string, unknown>): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'jupyter-flow/api', endpoint);
  const init: RequestInit =
    body === undefined ? { method: 'GET' } : { method: 'POST', body: JSON.stringify(body) };
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    const message =
      typeof data.message === 'string' && data.message
        ? data.message
        : `the jupyter-flow server extension answered ${response.status}`;
    const problems = Array.isArray(data.problems) ? readProblems(data.problems) : [];
    if (response.status === 404 && !data.message) {
      throw new FlowApiError(
        'the jupyter-flow server extension is not running: check `jupyter server extension list`',
        404
      );
    }
    throw new FlowApiError(message, response.status, problems);
  }
  return data as T;
}

/** The colours of node kinds (plug-ins included) as the notebook workbench draws them. */
export async function fetchPalette(): Promise<Palette> {
  return readPalette(await request<unknown>('palette'));
}

export async function validateFlow(path: string, text?: string): Promise<ValidateReply> {
  const reply = await request<ValidateReply>('validate', text === undefined ? { path } : { path, text });
  return { ...reply, problems: readProblems(reply.problems) };
}

export function exportFlow(path: string): Promise<ExportReply> {
  return request<ExportReply>('export', { path });
}

export function newFlow(directory: string, device: string, batchSize: number): Promise<NewFlowReply> {
  return request<NewFlowReply>('new', { directory, device, batch_size: batchSize });
}

export function workbenchFor(path: string): Promise<WorkbenchReply> {
  return request<WorkbenchReply>('workbench', { path });
}

/** One edit of a flow document, as the server's editor takes it (`op` and its fields). */
export interface FlowEdit {
  op: 'add_node' | 'remove' | 'add_edge' | 'replace_node' | 'set_config' | 'replace_edge' | 'move' | 'settings';
  [field: string]: unknown;
}

export interface EditReply {
  path: string;
  /** The document's text after the edit, its comments kept. */
  text: string;
  /** What the edit did ("add node template_1"). */
  what: string;
  /** What the edit made: a new node's id, a new edge's index. */
  made: string | number | null;
  nodes: number;
  edges: number;
  problems: Problem[];
}

export interface SchemaReply {
  kind: string | null;
  schema: Record<string, unknown>;
  config: Record<string, unknown>;
}

/** Apply `edit` to the document text `text` of the flow at `path`; the server answers
 * with the new text (nothing is written to disk) or refuses with the problems. */
export async function editFlow(path: string, text: string, edit: FlowEdit): Promise<EditReply> {
  const reply = await request<EditReply>('edit', { path, text, edit });
  return { ...reply, problems: readProblems(reply.problems) };
}

/** The JSON schema of a node kind's config (or, without a kind, of an edge's settings). */
export function fetchSchema(kind: string | null): Promise<SchemaReply> {
  return request<SchemaReply>(kind === null ? 'schema' : `schema?kind=${encodeURIComponent(kind)}`);
}
