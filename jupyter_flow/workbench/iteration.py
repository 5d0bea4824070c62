"""The workbench's iteration loop, apart from its widgets: change a node, run again, compare.

`IterationState` holds the node cache and the run history the workbench runs with, lists
the past runs of the flow from the history, compares two of them (a `Comparison`: the runs'
`RunDiff`, the flows' `FlowDiff`, and the nodes to mark on the graph), clears a node's
cached results, and holds the evaluation shown (an `Evaluation`, made here or read from the
folder `jupyter-flow eval --out DIR` wrote).

Where the stores go (`Workbench(..., cache=True, history=True)`): a folder ``.jupyter-flow``
beside the flow file (``cache/`` and ``history.sqlite`` in it), or in the current folder for
a flow without a file (a notebook's kernel runs in the notebook's folder). A folder or file
given instead is used as it is; False (the default) leaves the store off.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from jupyter_flow.cache import NodeCache
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.evaluate import REPORT_FILE, ROWS_FILE, SUMMARY_FILE, Evaluation, ScoreFn, evaluate
from jupyter_flow.flow import Flow
from jupyter_flow.flowdiff import FlowDiff, diff_flows, load_flow_version
from jupyter_flow.history import RunDiff, RunHistory
from jupyter_flow.spec import spec_from_dict
from jupyter_flow.sqlite_store import from_choice
from jupyter_flow.workbench.events import Observers

__all__ = ["CACHE_FOLDER", "HISTORY_FILE", "LIST_RUNS", "MAX_EVAL_ROWS", "STORES_FOLDER", "Comparison", "IterationState", "Mark",
           "StoreChoice", "load_evaluation", "stores_folder", "workbench_cache", "workbench_history"]

STORES_FOLDER = ".jupyter-flow"
CACHE_FOLDER = "cache"
HISTORY_FILE = "history.sqlite"
EVALUATIONS_FOLDER = "evaluations"
#: the newest runs of the flow the History tab lists
LIST_RUNS = 50
#: the rows an evaluation read from a folder keeps (the table shows fewer)
MAX_EVAL_ROWS = 100_000

#: what `Workbench(cache=..., history=...)` takes: off (False, None), the default place
#: beside the flow (True), a folder (cache) or file (history), or the store itself
StoreChoice = Union[bool, str, Path, NodeCache, RunHistory, None]

#: how a compared node is marked: its settings changed (or it is new), or only what it gave
Mark = Literal["edited", "changed"]


def stores_folder(flow_path: Path | None) -> Path:
    """Where a workbench keeps its cache and history by default: ``.jupyter-flow`` beside
    the flow file, else in the current folder (the notebook's, in a kernel)."""
    base = flow_path.resolve().parent if flow_path is not None else Path.cwd()
    return base / STORES_FOLDER


def workbench_cache(choice: StoreChoice, flow_path: Path | None) -> NodeCache | None:
    """The node cache `choice` names for a workbench of the flow at `flow_path` (True: in
    `stores_folder`)."""
    return from_choice(choice, NodeCache, lambda at: NodeCache(stores_folder(flow_path) / CACHE_FOLDER if at is None else at),
                       option="cache", place="a folder")


def workbench_history(choice: StoreChoice, flow_path: Path | None) -> RunHistory | None:
    """The run history `choice` names for a workbench of the flow at `flow_path` (True: in
    `stores_folder`)."""
    return from_choice(choice, RunHistory, lambda at: RunHistory(stores_folder(flow_path) / HISTORY_FILE if at is None else at),
                       option="history", place="a file")


@dataclass(frozen=True)
class Comparison:
    """Two runs of the history compared: `diff` node by node (config, outputs, status,
    time), `flow_diff` the two flows as recorded (None when a run kept no flow), and
    `marks`, the nodes to mark on the graph."""

    diff: RunDiff
    flow_diff: FlowDiff | None
    marks: dict[str, Mark] = field(default_factory=dict)

    @property
    def before(self) -> str:
        return self.diff.before

    @property
    def after(self) -> str:
        return self.diff.after


def _marks(diff: RunDiff, flow_diff: FlowDiff | None) -> dict[str, Mark]:
    marks: dict[str, Mark] = {}
    edited = flow_diff.changed_nodes() if flow_diff is not None else set()
    for node in diff.nodes:
        if node.node in edited or node.config or node.status[0] is None:
            marks[node.node] = "edited"
        elif node.changed:
            marks[node.node] = "changed"
    return marks


def _version(ref: str | Path | Flow, like: Flow) -> Flow:
    """The version to evaluate against: a flow, or a file (``FILE@REV`` too) run with the
    workbench's node kinds and registered functions."""
    if isinstance(ref, Flow):
        return ref
    text = str(ref)
    path, at, rev = text.rpartition("@")
    source = path if at and rev and not Path(text).exists() else text
    return Flow(load_flow_version(text), source=source, registry=like.registry, functions=like.functions)


def load_evaluation(source: Evaluation | str | Path) -> Evaluation:
    """An evaluation as `evaluate` returned it, or read back from the folder it wrote
    (``rows.jsonl`` and ``summary.json``; at most MAX_EVAL_ROWS rows)."""
    if isinstance(source, Evaluation):
        return source
    folder = Path(source)
    summary_path, rows_path = folder / SUMMARY_FILE, folder / ROWS_FILE
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        rows: list[dict[str, Any]] = []
        with rows_path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if len(rows) >= MAX_EVAL_ROWS:
                    break
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise FlowValidationError([Problem(f"{rows_path} line {number} is not JSON: {exc.msg}",
                                                           field="evaluation")]) from None
    except FileNotFoundError as exc:
        raise FlowValidationError([Problem(f"{folder} holds no evaluation: {exc.filename} is missing (write one with "
                                           "`jupyter-flow eval ... --out DIR`)", field="evaluation")]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlowValidationError([Problem(f"cannot read the evaluation in {folder}: {exc}", field="evaluation")]) from None
    if not isinstance(summary, Mapping) or not isinstance(summary.get("flows"), Mapping):
        raise FlowValidationError([Problem(f"{summary_path} is not an evaluation summary (no 'flows')", field="evaluation")])
    flows = [str(side.get("flow", label)) for label, side in summary["flows"].items() if isinstance(side, Mapping)]
    return Evaluation(folder, flows, rows, dict(summary))


class IterationState:
    """The cache, the history, the comparison and the evaluation of a workbench. Changes are
    marked on the state's `observers`: ``history`` when the runs listed or the comparison
    change, ``evaluation`` when another evaluation is shown."""

    def __init__(self, observers: Observers) -> None:
        self._observers = observers
        self.cache: NodeCache | None = None
        self.history: RunHistory | None = None
        self.flow_name = ""
        self.stores = Path.cwd() / STORES_FOLDER
        self.comparison: Comparison | None = None
        self.evaluation: Evaluation | None = None
        self.evaluating: asyncio.Task[Evaluation | None] | None = None

    def configure(self, cache: StoreChoice, history: StoreChoice, flow_path: Path | None, flow_name: str) -> None:
        """Use the stores the choices name for the flow at `flow_path` (see the module)."""
        self.cache = workbench_cache(cache, flow_path)
        self.history = workbench_history(history, flow_path)
        self.stores = stores_folder(flow_path)
        self.rename(flow_name)

    def rename(self, flow_name: str) -> None:
        """The flow's name changed: list the runs of that name; a comparison of runs of
        another flow no longer applies."""
        if flow_name != self.flow_name:
            with self._observers.action("history"):
                self.flow_name = flow_name
                self.comparison = None

    # -- the history ----------------------------------------------------------------------
    def runs(self, limit: int = LIST_RUNS) -> list[dict[str, Any]]:
        """The newest runs of this flow in the history (see `RunHistory.runs`); none when
        the history is off."""
        if self.history is None:
            return []
        return self.history.runs(flow=self.flow_name, limit=limit)

    def compare(self, before: str | None = None, after: str | None = None) -> Comparison:
        """Compare two runs of the history (ids or unique prefixes; by default the newest
        run with the one before it) and mark the nodes that changed on the graph."""
        say = self._observers.say
        with self._observers.action("history"):
            if self.history is None:
                say("The run history is off: make the workbench with history=True to keep runs.", error=True, place="history")
                raise FlowValidationError([Problem("the run history is off", field="history")])
            if before is None or after is None:
                listed = self.runs(limit=2)
                if len(listed) < 2:
                    say("Run the flow twice to have two runs to compare.", error=True, place="history")
                    raise FlowValidationError([Problem("fewer than two runs in the history", field="history")])
                after = after or listed[0]["run_id"]
                before = before or listed[1]["run_id"]
            try:
                diff = self.history.diff(before, after)
                flow_diff = self._flow_diff(diff.before, diff.after)
            except FlowError as exc:
                say(f"Cannot compare: {exc}", error=True, place="history")
                raise
            if diff.before == diff.after:
                say("Choose two different runs to compare.", error=True, place="history")
                raise FlowValidationError([Problem("the same run twice", field="history")])
            self.comparison = Comparison(diff, flow_diff, _marks(diff, flow_diff))
            changed = diff.changed_nodes()
            say(f"Run {diff.before[:12]} against {diff.after[:12]}: "
                + (f"{len(changed)} node(s) changed ({', '.join(changed)})." if changed else "no node changed."), place="history")
        return self.comparison

    def _flow_diff(self, before: str, after: str) -> FlowDiff | None:
        assert self.history is not None
        specs = [self.history.get(run_id).get("spec") for run_id in (before, after)]
        if not all(isinstance(s, Mapping) for s in specs):
            return None
        try:
            a, b = (spec_from_dict(dict(s)) for s in specs)  # type: ignore[arg-type]
        except FlowError:
            return None  # a flow recorded by another version that no longer reads: the runs' diff still says what changed
        return diff_flows(a, b, before_name=f"run {before[:12]}", after_name=f"run {after[:12]}")

    def clear_marks(self) -> None:
        """Take the comparison's marks off the graph."""
        with self._observers.action("history"):
            self.comparison = None

    def recorded(self) -> None:
        """A run was added to the history: the list changes."""
        self._observers.mark("history")

    # -- the cache ------------------------------------------------------------------------------
    def clear_cache(self, node_id: str) -> int:
        """Remove every cached result of a node (by its id); its next run computes it again.
        Returns how many entries went."""
        say = self._observers.say
        with self._observers.action():
            if self.cache is None:
                say("The node cache is off: make the workbench with cache=True to use one.", error=True, place="inspect")
                raise FlowValidationError([Problem("the node cache is off", node=node_id, field="cache")])
            try:
                count = self.cache.clear(node=node_id)
            except FlowError as exc:
                say(f"Cannot clear the cache: {exc}", error=True, place="inspect")
                raise
            say(f"Removed {count} cached result(s) of {node_id}: its next run computes it again.", place="inspect")
        return count

    # -- evaluations ----------------------------------------------------------------------------
    def show_evaluation(self, source: Evaluation | str | Path) -> Evaluation:
        """Show an evaluation: what `evaluate` returned, or the folder it wrote."""
        with self._observers.action("evaluation"):
            if not str(source).strip():
                self._observers.say("Type the folder an evaluation was written to (jupyter-flow eval --out FOLDER).", error=True,
                                    place="evaluation")
                raise FlowValidationError([Problem("no evaluation folder given", field="evaluation")])
            try:
                shown = load_evaluation(source)
            except FlowValidationError as exc:
                self._observers.say(f"Cannot show the evaluation: {exc}", error=True, place="evaluation", problems=exc.problems)
                raise
            self.evaluation = shown
            s = shown.summary
            self._observers.say(f"Evaluation of {s.get('items', len(shown.rows))} items: {s.get('changed', 0)} changed.",
                                place="evaluation")
        return shown

    def evaluate(self, flow: Flow, against: str | Path | Flow, data: str | Path, *, out: str | Path | None = None,
                 score: str | ScoreFn | None = None, expect: Sequence[str] = (), concurrency: int = 4) -> asyncio.Task[Evaluation | None]:
        """Evaluate `against` (version a) and `flow` (version b) over `data` in a thread,
        through the workbench's node cache, then show it; returns the task (`await` it)."""
        say = self._observers.say
        with self._observers.action("evaluation"):
            if not str(data).strip():
                say("Type the items file to evaluate over (a .jsonl file, one item a line).", error=True, place="evaluation")
                raise FlowValidationError([Problem("no items file given", field="data")])
            if self.evaluating is not None and not self.evaluating.done():
                say("An evaluation is in progress.", error=True, place="evaluation")
                raise FlowValidationError([Problem("an evaluation is in progress", field="evaluation")])
            target = Path(out) if out is not None else self.stores / EVALUATIONS_FOLDER / time.strftime("%Y%m%d-%H%M%S")
            try:
                version_a = _version(against, flow)
            except FlowError as exc:
                say(f"Cannot evaluate: {exc}", error=True, place="evaluation")
                raise
            say(f"Evaluating over {data} into {target}...", place="evaluation")
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = asyncio.get_event_loop()
            names = (str(against) if not isinstance(against, Flow) else against.name, f"{flow.name} (as edited here)")
            self.evaluating = task = loop.create_task(self._evaluate(flow, version_a, names, data, target, score, expect,
                                                                     concurrency))
        return task

    async def _evaluate(self, flow: Flow, against: Flow, names: tuple[str, str], data: str | Path, out: Path,
                        score: str | ScoreFn | None, expect: Sequence[str], concurrency: int) -> Evaluation | None:
        try:
            made = await asyncio.to_thread(evaluate, against, flow, data=data, out=out, score=score, expect=expect,
                                           concurrency=concurrency, progress=False, cache=self.cache or False)
        except FlowValidationError as exc:
            with self._observers.action():
                self._observers.say(f"Cannot evaluate: {exc}", error=True, place="evaluation", problems=exc.problems)
            return None
        except FlowError as exc:
            with self._observers.action():
                self._observers.say(f"The evaluation failed: {exc}", error=True, place="evaluation")
            return None
        except Exception as exc:  # shown in the workbench instead of lost in a task
            with self._observers.action():
                self._observers.say(f"The evaluation failed: {type(exc).__name__}: {exc}", error=True, place="evaluation")
            return None
        # both versions carry the flow's name: say which is which
        for label, name in zip(made.summary.get("flows", {}), names):
            made.summary["flows"][label]["flow"] = name
        made.flows = list(names)
        return self.show_evaluation(made)

    def report_path(self) -> Path | None:
        """The HTML report of the evaluation shown."""
        return self.evaluation.out_dir / REPORT_FILE if self.evaluation is not None else None
