/**
 * "Schedule…" of a flow file: the flow's production notebook (`POST export`, the notebook
 * papermill runs) handed to jupyter-scheduler through its REST API, as a job that runs once
 * now (`POST scheduler/jobs`) or as a job definition on a cron schedule
 * (`POST scheduler/job_definitions`). The inputs go in the notebook's `parameters` as the
 * Python literal jupyter-scheduler writes into the cell it adds after them.
 */
import { URLExt } from '@jupyterlab/coreutils';

import { serverRequest } from './api';
import type { FolderReply } from './edits';
import { pythonLiteral } from './inputs';

/** The command of jupyter-scheduler's frontend that opens its list of jobs. */
export const SCHEDULER_JOBS_COMMAND = 'scheduling:list-jobs-from-launcher';

/** What to schedule. */
export interface ScheduleRequest {
  /** The exported notebook, as the server's contents name it. */
  notebook: string;
  /** The job's name in jupyter-scheduler's list. */
  name: string;
  /** The flow's inputs for the notebook's `inputs` parameter (none: its defaults). */
  inputs: Record<string, unknown>;
  /** A cron expression: a job definition on that schedule; empty: one job, run now. */
  cron: string;
  /** The time zone the cron expression is read in (IANA name). */
  timezone: string;
  /** Run the job on a copy of the notebook's whole folder (the files the flow reads),
   * whose new files (the run's results) come back with the job's output. */
  withFolder: boolean;
}

/** What was made: a job (run now), or a job definition (on a schedule). */
export interface Scheduled {
  kind: 'job' | 'definition';
  id: string;
}

async function scheduler<T>(path: string, init: RequestInit = {}): Promise<T> {
  const fail = (status: number, data: Record<string, unknown>): Error => {
    const message = typeof data.message === 'string' ? data.message : JSON.stringify(data);
    return new Error(`jupyter-scheduler answered ${status}: ${message.slice(0, 500)}`);
  };
  return (await serverRequest(URLExt.join('scheduler', path), init, fail)) as T;
}

/** Whether "Run on a copy of the flow's folder" starts checked, and a note that says why
 * not: a copy of a large folder (the server's root, say) would go into every job. Unknown
 * (`folder` null: the server could not say) keeps it off too. */
export function folderChoice(folder: FolderReply | null): { checked: boolean; note: string } {
  if (folder?.small) {
    return { checked: true, note: '' };
  }
  if (!folder) {
    return { checked: false, note: "Off: the size of the flow's folder could not be read, and every job would get a copy of it." };
  }
  const where = folder.path ? `'${folder.path}'` : "the server's root";
  const count = `${folder.complete ? '' : 'more than '}${folder.files.toLocaleString('en')} files, ${megabytes(folder.bytes)} MB`;
  return {
    checked: false,
    note: `Off: the flow's folder (${where}) holds ${count}, and every job would get a copy of it (on by default up to ${folder.small_files.toLocaleString('en')} files and ${megabytes(folder.small_bytes)} MB).`
  };
}

function megabytes(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0);
}

/** The notebook's parameters for `inputs` (none when there are none). */
export function notebookParameters(inputs: Record<string, unknown>): Record<string, string> {
  return Object.keys(inputs).length > 0 ? { inputs: pythonLiteral(inputs) } : {};
}

/** The environment jobs run in: jupyter-scheduler's first (the server's own Python when
 * there is no conda). */
async function environment(): Promise<string> {
  const environments = await scheduler<{ name: string }[]>('runtime_environments');
  if (!Array.isArray(environments) || environments.length === 0 || typeof environments[0].name !== 'string') {
    throw new Error('jupyter-scheduler offers no runtime environment to run the notebook in');
  }
  return environments[0].name;
}

/** Create the job (or job definition) in jupyter-scheduler. */
export async function schedule(request: ScheduleRequest): Promise<Scheduled> {
  const body = {
    input_uri: request.notebook,
    runtime_environment_name: await environment(),
    name: request.name,
    output_formats: ['ipynb'],
    parameters: notebookParameters(request.inputs),
    package_input_folder: request.withFolder
  };
  if (!request.cron.trim()) {
    const reply = await scheduler<{ job_id: string }>('jobs', { method: 'POST', body: JSON.stringify(body) });
    return { kind: 'job', id: reply.job_id };
  }
  const reply = await scheduler<{ job_definition_id: string }>('job_definitions', {
    method: 'POST',
    body: JSON.stringify({ ...body, schedule: request.cron.trim(), timezone: request.timezone })
  });
  return { kind: 'definition', id: reply.job_definition_id };
}
