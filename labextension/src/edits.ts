/* eslint-disable */
/**
 * The requests, edits and replies of the jupyter-flow file view, GENERATED from
 * src/edits.schema.json, which jupyter_flow/edits.py writes. Do not edit by hand: change
 * jupyter_flow/edits.py and run `python scripts/edit_types.py` from the repository root.
 *
 * schema sha256: d53736e7db1060b1cefd458720189b4e8abbe95488f9591bdcd20608c383655a
 */

/**
 * One edit of a flow document, told apart by its `op`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "FlowEdit".
 */
export type FlowEdit =
  AddNodeEdit | RemoveEdit | AddEdgeEdit | ReplaceNodeEdit | SetConfigEdit | ReplaceEdgeEdit | MoveEdit | SettingsEdit;
/**
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "JsonValue".
 */
export type JsonValue = unknown;
/**
 * What `POST edit` answers: the edit applied, or refused (`applied` tells them apart).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "EditOutcome".
 */
export type EditOutcome = EditReply | EditRefusal;

/**
 * Each route of the jupyter-flow server extension that the file view calls: its request (none for a GET) and its reply. Generated from jupyter_flow/protocol.py.
 */
export interface FileViewRoutes {
  status: {
    reply: StatusReply;
  };
  palette: {
    reply: PaletteReply;
  };
  validate: {
    request: ValidateRequest;
    reply: ValidateReply;
  };
  edit: {
    request: EditRequest;
    reply: EditOutcome;
  };
  schema: {
    reply: SchemaReply;
  };
  export: {
    request: ExportRequest;
    reply: ExportReply;
  };
  new: {
    request: NewFlowRequest;
    reply: NewFlowReply;
  };
  workbench: {
    request: WorkbenchRequest;
    reply: WorkbenchReply;
  };
  run: {
    request: RunRequest;
    reply: RunReply;
  };
  runstate: {
    reply: RunReply;
  };
  cancel: {
    request: CancelRequest;
    reply: RunReply;
  };
  lastrun: {
    reply: LastRunReply;
  };
  folder: {
    reply: FolderReply;
  };
}
/**
 * `GET status`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "StatusReply".
 */
export interface StatusReply {
  version: string;
  export: boolean;
}
/**
 * `GET palette`: the colours the notebook workbench draws with.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "PaletteReply".
 */
export interface PaletteReply {
  kinds: KindColour[];
  statuses: {
    [k: string]: string;
  };
  problem: string;
  selected: string;
}
/**
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "KindColour".
 */
export interface KindColour {
  kind: string;
  colour: string;
  builtin: boolean;
}
/**
 * `POST validate`: the flow file at `path`, or unsaved `text` for it.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ValidateRequest".
 */
export interface ValidateRequest {
  path: string;
  text?: string | null;
}
/**
 * `POST validate`: every problem of the flow, with its node and edge counts.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ValidateReply".
 */
export interface ValidateReply {
  path: string;
  valid: boolean;
  nodes: number;
  edges: number;
  problems: FlowProblem[];
}
/**
 * One thing wrong with a flow: its node, edge (index in the file's edges) and field.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "FlowProblem".
 */
export interface FlowProblem {
  node: string | null;
  edge: number | null;
  field: string | null;
  message: string;
}
/**
 * `POST edit`: the flow document's (unsaved) text, and one edit of it.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "EditRequest".
 */
export interface EditRequest {
  path: string;
  text: string;
  edit: FlowEdit;
}
/**
 * Add a node of `kind`, with `config` (by default the kind's required fields, empty).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "AddNodeEdit".
 */
export interface AddNodeEdit {
  op: 'add_node';
  kind: string;
  id?: string | null;
  config?: {
    [k: string]: JsonValue;
  } | null;
  position?: NodePosition | null;
}
/**
 * Where a node is drawn, in the graph's coordinates.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "NodePosition".
 */
export interface NodePosition {
  x: number;
  y: number;
}
/**
 * Remove nodes (with their edges) and edges, by id and by index in the file's edges.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "RemoveEdit".
 */
export interface RemoveEdit {
  op: 'remove';
  /**
   * @maxItems 10000
   */
  nodes?: string[];
  /**
   * @maxItems 10000
   */
  edges?: number[];
}
/**
 * Wire `from` (a node, or `start` for an entry node) to `to`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "AddEdgeEdit".
 */
export interface AddEdgeEdit {
  op: 'add_edge';
  from: string;
  to: string;
  when?: string | null;
  branch?: string | null;
  on?: ('success' | 'error') | null;
  label?: string | null;
}
/**
 * Replace a node's settings (id, type, config, ...); a new `id` renames the node.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ReplaceNodeEdit".
 */
export interface ReplaceNodeEdit {
  op: 'replace_node';
  node: string;
  body:
    | string
    | {
        [k: string]: JsonValue;
      };
}
/**
 * Replace a node's config, keeping its other settings.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "SetConfigEdit".
 */
export interface SetConfigEdit {
  op: 'set_config';
  node: string;
  config: {
    [k: string]: JsonValue;
  };
}
/**
 * Replace an edge's settings (when, branch, on, label; its ends unless given).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ReplaceEdgeEdit".
 */
export interface ReplaceEdgeEdit {
  op: 'replace_edge';
  index: number;
  body:
    | string
    | {
        [k: string]: JsonValue;
      };
}
/**
 * Keep nodes' positions in the flow's layout.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "MoveEdit".
 */
export interface MoveEdit {
  op: 'move';
  positions: {
    [k: string]: NodePosition;
  };
}
/**
 * Replace the flow's settings: name, description, inputs, timeout_s, max_concurrency.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "SettingsEdit".
 */
export interface SettingsEdit {
  op: 'settings';
  body:
    | string
    | {
        [k: string]: JsonValue;
      };
}
/**
 * `POST edit`: the document's text after the edit (comments kept), what the edit did
 * ("add node template_1"), what it made (a new node's id, a new edge's index), and the
 * problems of the flow the text holds.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "EditReply".
 */
export interface EditReply {
  applied: true;
  path: string;
  text: string;
  what: string;
  made: string | number | null;
  nodes: number;
  edges: number;
  problems: FlowProblem[];
}
/**
 * `POST edit`, refused: the edit does not fit the protocol or the document (`op` and
 * `errors` name the field), or it would break the flow (`problems`). The text is not
 * changed. A refusal is an answer, not a failed request: the view shows it.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "EditRefusal".
 */
export interface EditRefusal {
  applied: false;
  message: string;
  path?: string | null;
  op?: string | null;
  errors?: FieldError[];
  problems?: FlowProblem[];
}
/**
 * One field of a request that does not fit: pydantic's location, the field within the
 * edit (or request), and what is wrong.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "FieldError".
 */
export interface FieldError {
  loc: (string | number)[];
  field: string;
  message: string;
  type: string;
}
/**
 * `GET schema?kind=K`: the JSON schema of a node kind's config as a form shows it, and
 * a new node's config; without `kind`, the schema of an edge's settings.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "SchemaReply".
 */
export interface SchemaReply {
  kind: string | null;
  schema: {
    [k: string]: JsonValue;
  };
  config: {
    [k: string]: JsonValue;
  };
}
/**
 * `POST export`: write the flow's production notebook beside it, or at `output`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ExportRequest".
 */
export interface ExportRequest {
  path: string;
  output?: string | null;
}
/**
 * `POST export`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ExportReply".
 */
export interface ExportReply {
  path: string;
  notebook: string;
}
/**
 * `POST new`: a new flow file and its workbench notebook in `directory`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "NewFlowRequest".
 */
export interface NewFlowRequest {
  directory?: string | null;
  name?: string | null;
  device?: 'auto' | 'cpu' | 'cuda';
  batch_size?: number;
}
/**
 * `POST new`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "NewFlowReply".
 */
export interface NewFlowReply {
  flow: string;
  notebook: string;
}
/**
 * `POST workbench`: the workbench notebook of the flow file at `path`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "WorkbenchRequest".
 */
export interface WorkbenchRequest {
  path: string;
}
/**
 * `POST workbench`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "WorkbenchReply".
 */
export interface WorkbenchReply {
  path: string;
  notebook: string;
  created: boolean;
  runnable: boolean;
}
/**
 * `POST run`: run the flow file at `path` (as saved) with `inputs`, in a process of its
 * own; `cache`: take unchanged nodes' results from the node cache; `timeout_s`: stop the
 * run after this long (default and bound: `jupyter_flow.viewruns`).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "RunRequest".
 */
export interface RunRequest {
  path: string;
  inputs?: {
    [k: string]: JsonValue;
  };
  cache?: boolean;
  timeout_s?: number | null;
}
/**
 * `POST run`, `GET runstate?run=ID&after=N`, `POST cancel`: a run of the file view, its
 * events from the `after`-th on (`next`: where the next poll starts), and the end of
 * what it printed (`log`).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "RunReply".
 */
export interface RunReply {
  run: string;
  path: string;
  status: 'running' | 'ok' | 'error' | 'cancelled' | 'timeout' | 'refused';
  done: boolean;
  events: (RunStarted | NodeState | RunFinished | RunRefused)[];
  next: number;
  message?: string | null;
  log?: string;
}
/**
 * A run of the file view started: its run id (the run history's) and its nodes.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "RunStarted".
 */
export interface RunStarted {
  event: 'started';
  run_id: string;
  flow: string;
  nodes: string[];
}
/**
 * A node of a run started or ended: its status, whether its result came from the node
 * cache, its time, its error, and its output as the trace writes it (`output_chars`: the
 * length of the whole output as JSON; when that is over the run's bound, `output` is the
 * beginning of that text).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "NodeState".
 */
export interface NodeState {
  event: 'node';
  node: string;
  status: 'pending' | 'running' | 'ok' | 'error' | 'skipped' | 'cancelled';
  cached?: boolean;
  duration_s?: number | null;
  error?: string | null;
  output?: {
    [k: string]: unknown;
  };
  output_chars?: number;
}
/**
 * The run ended: its status, why it failed, every node's status, and whether it is in
 * the run history.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "RunFinished".
 */
export interface RunFinished {
  event: 'finished';
  run_id: string | null;
  status: 'ok' | 'error' | 'cancelled' | 'timeout';
  error?: string | null;
  nodes?: {
    [k: string]: 'pending' | 'running' | 'ok' | 'error' | 'skipped' | 'cancelled';
  };
  recorded?: boolean;
}
/**
 * The flow or its inputs are not valid: nothing ran.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "RunRefused".
 */
export interface RunRefused {
  event: 'refused';
  message: string;
  problems?: FlowProblem[];
}
/**
 * `POST cancel`: stop a run of the file view.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "CancelRequest".
 */
export interface CancelRequest {
  run: string;
}
/**
 * `GET lastrun?path=P`: the flow file's last run, or null when the history has none;
 * `active`: the id of a run of the file still going on in this server (started from a
 * view since closed), which a view opened again follows (`GET runstate`).
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "LastRunReply".
 */
export interface LastRunReply {
  path: string;
  run: LastRun | null;
  active?: string | null;
}
/**
 * The newest run of a flow file in the run history: its nodes as they ended.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "LastRun".
 */
export interface LastRun {
  run_id: string;
  status: string;
  started_at: number | null;
  error?: string | null;
  nodes: NodeState[];
}
/**
 * `GET folder?path=P`: the size of the flow file's folder as a job that runs "on a copy
 * of the flow's folder" would copy it (every file, hidden ones and links' targets too):
 * counting stops past `small_files` files or `small_bytes` bytes (or a time bound), and
 * `small` is then false.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "FolderReply".
 */
export interface FolderReply {
  path: string;
  files: number;
  bytes: number;
  complete: boolean;
  small: boolean;
  small_files: number;
  small_bytes: number;
}
/**
 * What every route answers when it refuses: `message`; a refused request or edit names
 * its `op` and `errors`, a flow that is invalid lists its `problems`.
 *
 * This interface was referenced by `FileViewRoutes`'s JSON-Schema
 * via the `definition` "ErrorReply".
 */
export interface ErrorReply {
  message: string;
  reason?: string | null;
  path?: string | null;
  op?: string | null;
  errors?: FieldError[];
  problems?: FlowProblem[];
}
