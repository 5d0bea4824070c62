/**
 * Run, Cancel Run and Schedule… of a flow file, as JupyterLab commands (the file view's
 * toolbar, the palette, the file browser's context menu). Run asks for the flow's
 * declared inputs in a dialog, saves the document, and runs it on the server (in a process
 * of its own) while the graph colours each node's state; Schedule… exports the flow's
 * production notebook and makes a jupyter-scheduler job of it, then opens the scheduler's
 * list of jobs.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showDialog, type WidgetTracker } from '@jupyterlab/apputils';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { exportFlow, fetchFolder } from './api';
import { flowStem } from './flowfile';
import { InputsForm, type FormValue } from './runview';
import { SCHEDULER_JOBS_COMMAND, folderChoice, schedule } from './schedule';
import type { FlowDocumentWidget, FlowGraphView } from './widget';

export namespace RunCommandIDs {
  export const run = 'jupyter-flow:run';
  export const cancel = 'jupyter-flow:cancel-run';
  export const schedule = 'jupyter-flow:schedule';
}

function fileName(path: string): string {
  return path.split('/').pop() ?? path;
}

/** Ask for the inputs (and options) in a dialog; null when the user cancels. */
async function askInputs(view: FlowGraphView, title: string, accept: string, build: (form: InputsForm) => void): Promise<FormValue | null> {
  view.model.refresh();
  const inputs = view.model.flow?.inputs ?? [];
  const form = new InputsForm(inputs, 'Empty fields take the default the flow declares.');
  build(form);
  const result = await showDialog<FormValue>({
    title,
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: accept })],
    focusNodeSelector: 'input, textarea'
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  if (result.value.error) {
    Notification.error(`${title}: ${result.value.error}`, { autoClose: false });
    return null;
  }
  return result.value;
}

/** Register the commands; `flowView` opens (or finds) the view of a flow file. */
export function addRunCommands(
  app: JupyterFrontEnd,
  tracker: WidgetTracker<FlowDocumentWidget>,
  flowPath: (args: ReadonlyPartialJSONObject) => string | null,
  flowView: (path: string) => Promise<FlowDocumentWidget | null>
): void {
  const { commands } = app;
  /** A command on the flow file its args name (the one in front), in its view (opened if need be). */
  const onFlow = (label: string, caption: string, act: (widget: FlowDocumentWidget) => Promise<unknown>) => ({
    label,
    caption,
    isEnabled: (args: ReadonlyPartialJSONObject) => flowPath(args) !== null,
    execute: async (args: ReadonlyPartialJSONObject) => {
      const path = flowPath(args);
      const widget = path ? await flowView(path) : null;
      return widget ? act(widget) : undefined;
    }
  });

  commands.addCommand(
    RunCommandIDs.run,
    onFlow('Run Flow…', 'Run the flow with the inputs you give, and colour each node by its state', async widget => {
      const view = widget.content;
      if (view.runs.running) {
        Notification.warning(`${fileName(widget.context.path)} is running: cancel that run first`, { autoClose: 5000 });
        return;
      }
      const value = await askInputs(view, `Run ${fileName(widget.context.path)}`, 'Run', form =>
        form.addCheckbox('cache', 'Take unchanged nodes from the node cache', false)
      );
      if (!value) {
        return;
      }
      try {
        if (widget.context.model.dirty) {
          await widget.context.save(); // the server runs the file as saved
        }
        return await view.runs.start(value.inputs, value.options.cache === true);
      } catch (error) {
        Notification.error(`Run ${fileName(widget.context.path)}: ${error instanceof Error ? error.message : String(error)}`, {
          autoClose: false
        });
      }
    })
  );

  commands.addCommand(RunCommandIDs.cancel, {
    label: 'Cancel Flow Run',
    caption: 'Stop the run of the flow in front',
    isEnabled: () => tracker.currentWidget?.content.runs.running ?? false,
    execute: () => tracker.currentWidget?.content.runs.cancel()
  });

  commands.addCommand(
    RunCommandIDs.schedule,
    onFlow('Schedule…', 'Export the flow to a production notebook and make a jupyter-scheduler job of it', async widget => {
      if (!commands.hasCommand(SCHEDULER_JOBS_COMMAND)) {
        Notification.error('Schedule needs jupyter-scheduler: pip install "jupyter-flow[workbench]" (or jupyter-scheduler), then restart JupyterLab', {
          autoClose: false
        });
        return;
      }
      const flowFile = widget.context.path;
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
      // a copy of a large folder (the server's root, say) would go into every job
      const folder = folderChoice(await fetchFolder(flowFile).catch(() => null));
      const value = await askInputs(widget.content, `Schedule ${fileName(flowFile)}`, 'Schedule', form => {
        form.addText('name', 'Job name', flowStem(flowFile));
        form.addText(
          'cron',
          'Cron schedule',
          '',
          `Empty: run once, now. Else a cron expression (minute hour day month weekday), in ${zone}`,
          `empty: once, now; or e.g. 0 6 * * 1-5 (${zone})`
        );
        form.addCheckbox('folder', "Run on a copy of the flow's folder (the files it reads; its results come back with the job)",
          folder.checked, folder.note);
      });
      if (!value) {
        return;
      }
      try {
        if (widget.context.model.dirty) {
          await widget.context.save();
        }
        const exported = await exportFlow(flowFile);
        const made = await schedule({
          notebook: exported.notebook,
          name: String(value.options.name || flowStem(flowFile)),
          inputs: value.inputs,
          cron: String(value.options.cron ?? ''),
          timezone: zone,
          withFolder: value.options.folder === true
        });
        Notification.success(
          made.kind === 'job'
            ? `Scheduled ${fileName(exported.notebook)}: a job that runs now`
            : `Scheduled ${fileName(exported.notebook)} on "${String(value.options.cron)}"`,
          { autoClose: 5000 }
        );
        await commands.execute(SCHEDULER_JOBS_COMMAND);
        return made;
      } catch (error) {
        const problems = (error as { problems?: { message: string }[] }).problems ?? [];
        const why = problems.length > 0 ? `${(error as Error).message}: ${problems.map(p => p.message).join('; ')}` : String(error instanceof Error ? error.message : error);
        Notification.error(`Schedule ${fileName(flowFile)}: ${why}`, { autoClose: false });
      }
    })
  );
}
