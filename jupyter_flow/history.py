"""Run history: every run made with history on, kept in one SQLite file, listed and compared.

A run is recorded with its id, the flow's name, a digest of the flow (its spec as JSON, so
that two runs of the same flow share it whatever the file's comments say), the git revision
of the flow file when it sits in a git work tree, the inputs, the outputs, the status, each
node's status, time and cached flag, and the whole trace (values summarized as in
`RunResult.to_json`).

- Where: ``$JUPYTER_FLOW_HISTORY`` when set, else ``$XDG_DATA_HOME/jupyter-flow/history.sqlite``
  (``~/.local/share/jupyter-flow/history.sqlite``).
- Bounds: a run whose trace is larger than `MAX_RUN_BYTES` keeps its summary (status, nodes,
  timings) without the trace; the file keeps the newest `DEFAULT_KEEP_RUNS` runs.
- Concurrency: SQLite in WAL mode, one short transaction per run: processes that share the
  file (a batch and a notebook) add runs side by side.

`jupyter-flow runs list [--flow F] [--json]`, `runs show ID` and `runs diff ID1 ID2` read it;
in Python, `RunHistory().frame()` is a pandas DataFrame and `RunHistory().diff(a, b)` a
`RunDiff`.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from jupyter_flow.errors import MissingDependencyError, StoreError
from jupyter_flow.flowdiff import MISSING, FieldChange, diff_values
from jupyter_flow.spec import FlowSpec, spec_to_dict
from jupyter_flow.sqlite_store import data_file, from_choice, open_store, store_errors
from jupyter_flow.values import dumps

if TYPE_CHECKING:
    from jupyter_flow.trace import RunResult

__all__ = ["DEFAULT_KEEP_RUNS", "HISTORY_ENV", "MAX_RUN_BYTES", "HistoryChoice", "HistoryError", "add_to_cli", "NodeDiff", "RunDiff", "RunHistory", "default_history_path", "run_history",
           "flow_digest"]

HISTORY_ENV = "JUPYTER_FLOW_HISTORY"
#: the newest runs a history file keeps
DEFAULT_KEEP_RUNS = 10_000
#: a run's trace larger than this is kept as a summary only
MAX_RUN_BYTES = 20 * 1024 * 1024
_GIT_TIMEOUT_S = 5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    flow_digest TEXT,
    flow_path TEXT,
    git_rev TEXT,
    started_at REAL,
    duration_s REAL,
    status TEXT NOT NULL,
    inputs TEXT,
    outputs TEXT,
    nodes TEXT NOT NULL,
    spec TEXT,
    trace TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow, started_at);
"""


class HistoryError(StoreError):
    """The history file cannot be read or written, or a run is not in it."""


def default_history_path() -> Path:
    return data_file(HISTORY_ENV, "history.sqlite")


def flow_digest(spec: FlowSpec) -> str:
    """A digest of what the flow does: its spec as JSON, without node positions."""
    body = spec_to_dict(spec)
    body.pop("layout", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_revision(path: str | Path) -> str | None:
    """The commit of the git work tree `path` is in (with ``+dirty`` when the file has
    uncommitted changes), or None outside one or without git."""
    folder = Path(path).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(Path(path).resolve())], cwd=folder,
                               capture_output=True, text=True, timeout=_GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class NodeDiff:
    """One node in two runs: what changed in its config, its outputs, and its time."""

    node: str
    status: tuple[str | None, str | None]
    config: list[FieldChange]
    outputs: list[FieldChange]
    text_diff: str
    duration_s: tuple[float | None, float | None]
    cached: tuple[bool, bool]

    @property
    def changed(self) -> bool:
        return bool(self.config or self.outputs or self.status[0] != self.status[1])


@dataclass
class RunDiff:
    """Two runs compared node by node (see `RunHistory.diff`)."""

    before: str
    after: str
    inputs: list[FieldChange]
    nodes: list[NodeDiff] = field(default_factory=list)

    def changed_nodes(self) -> list[str]:
        return [n.node for n in self.nodes if n.changed]

    def to_dict(self) -> dict[str, Any]:
        def changes(items: list[FieldChange]) -> list[dict[str, Any]]:
            return [{"field": c.path, "before": _plain(c.before), "after": _plain(c.after)} for c in items]

        return {"before": self.before, "after": self.after, "inputs": changes(self.inputs),
                "nodes": [{"node": n.node, "changed": n.changed, "status": list(n.status), "config": changes(n.config),
                           "outputs": changes(n.outputs), "duration_s": list(n.duration_s), "cached": list(n.cached)}
                          for n in self.nodes]}

    def text(self) -> str:
        lines = [f"--- run {self.before}", f"+++ run {self.after}"]
        lines += [f"~ input {c.text()}" for c in self.inputs]
        for n in self.nodes:
            times = " -> ".join("-" if d is None else f"{d * 1000:.1f} ms" for d in n.duration_s)
            mark = "~" if n.changed else " "
            cached = " (cached after)" if n.cached[1] and not n.cached[0] else ""
            lines.append(f"{mark} node {n.node}: {n.status[0]} -> {n.status[1]}, {times}{cached}")
            lines += [f"    config {c.text()}" for c in n.config]
            if n.text_diff:
                lines += ["    " + line for line in n.text_diff.splitlines()]
            else:
                lines += [f"    output {c.text()}" for c in n.outputs]
        return "\n".join(lines)


class RunHistory:
    """The run history in one SQLite file (see the module's docstring)."""

    def __init__(self, path: str | Path | None = None, *, keep_runs: int = DEFAULT_KEEP_RUNS) -> None:
        self.path = Path(path).expanduser() if path is not None else default_history_path()
        self.keep_runs = keep_runs

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = open_store(self.path, _SCHEMA, error=HistoryError, what="run history")
        with closing(conn), store_errors(conn, self.path, error=HistoryError, what="run history"):
            yield conn

    def record(self, result: RunResult, *, spec: FlowSpec | None = None, flow_path: str | Path | None = None) -> str:
        """Add a run; returns its id."""
        trace = result.to_dict()
        nodes = [{"node": r["node"], "type": r["type"], "status": r["status"], "duration_s": r["duration_s"],
                  "cached": r["cached"]} for r in trace["nodes"]]
        outputs = trace.get("flow_outputs") if result.flow_outputs is not None else {r["node"]: r["outputs"] for r in trace["nodes"]
                                                                                       if r["status"] == "ok"}
        trace_text: str | None = dumps(trace)
        if trace_text is not None and len(trace_text) > MAX_RUN_BYTES:
            trace_text = None
        row = (result.run_id, result.flow, flow_digest(spec) if spec is not None else None,
               str(Path(flow_path).resolve()) if flow_path is not None else None,
               git_revision(flow_path) if flow_path is not None else None,
               result.started_at if result.started_at is not None else time.time(), result.duration_s, result.status,
               dumps(trace["inputs"]), dumps(outputs), dumps(nodes),
               dumps(spec_to_dict(spec)) if spec is not None else None, trace_text)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            db.execute("DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT -1 OFFSET ?)",
                       (self.keep_runs,))
            db.execute("COMMIT")
        return result.run_id

    def runs(self, *, flow: str | None = None, flow_path: str | Path | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs first: id, flow, digest, git revision, time, status, node count;
        of the flow named `flow`, of the flow file `flow_path` (resolved, as recorded)."""
        query = "SELECT run_id, flow, flow_digest, git_rev, started_at, duration_s, status, nodes FROM runs"
        where = {"flow = ?": flow, "flow_path = ?": None if flow_path is None else str(Path(flow_path).resolve())}
        given = {clause: value for clause, value in where.items() if value is not None}
        if given:
            query += " WHERE " + " AND ".join(given)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY started_at DESC LIMIT ?", (*given.values(), limit)).fetchall()
        out = []
        for run_id, name, digest, rev, started, duration, status, nodes in rows:
            node_list = json.loads(nodes)
            out.append({"run_id": run_id, "flow": name, "flow_digest": digest, "git_rev": rev, "started_at": started,
                        "duration_s": duration, "status": status, "nodes": len(node_list),
                        "cached": sum(1 for n in node_list if n.get("cached"))})
        return out

    def get(self, run_id: str) -> dict[str, Any]:
        """One run as recorded; a unique prefix of its id is enough."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 2",
                              (run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)).fetchall()
            names = [d[0] for d in db.execute("SELECT * FROM runs LIMIT 0").description]
        if not rows:
            raise HistoryError(f"no run {run_id!r} in the run history {self.path}")
        if len(rows) > 1:
            raise HistoryError(f"more than one run starts with {run_id!r}: give more of its id")
        run = dict(zip(names, rows[0]))
        for key in ("inputs", "outputs", "nodes", "spec", "trace"):
            run[key] = json.loads(run[key]) if run[key] is not None else None
        return run

    def frame(self, *, flow: str | None = None, limit: int = 1000) -> Any:
        """The runs as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError("pandas", "workbench", "the run history as a DataFrame") from None
        return pd.DataFrame(self.runs(flow=flow, limit=limit))

    def diff(self, before: str, after: str) -> RunDiff:
        """Two runs node by node: config that changed, outputs that changed (a short text
        diff for text, the summaries' fields for tensors), time before and after."""
        a, b = self.get(before), self.get(after)
        out = RunDiff(a["run_id"], b["run_id"], diff_values(a["inputs"] or {}, b["inputs"] or {}))
        configs_a, configs_b = _configs(a["spec"]), _configs(b["spec"])
        nodes_a = {n["node"]: n for n in a["nodes"]}
        nodes_b = {n["node"]: n for n in b["nodes"]}
        outs_a, outs_b = _node_outputs(a), _node_outputs(b)
        for node in list(nodes_a) + [n for n in nodes_b if n not in nodes_a]:
            na, nb = nodes_a.get(node, {}), nodes_b.get(node, {})
            oa, ob = outs_a.get(node), outs_b.get(node)
            out.nodes.append(NodeDiff(
                node=node,
                status=(na.get("status"), nb.get("status")),
                config=diff_values(configs_a.get(node, {}), configs_b.get(node, {})),
                outputs=diff_values(oa, ob) if oa != ob else [],
                text_diff=_text_diff(oa, ob),
                duration_s=(na.get("duration_s"), nb.get("duration_s")),
                cached=(bool(na.get("cached")), bool(nb.get("cached"))),
            ))
        return out


#: what `Flow.run(history=...)` takes: off (False, None), the default file (True), a file, or a history
HistoryChoice = Union[bool, str, Path, RunHistory, None]


def run_history(choice: HistoryChoice) -> RunHistory | None:
    """The run history `choice` names (see `HistoryChoice`); None when it is off."""
    return from_choice(choice, RunHistory, RunHistory, option="history", place="a file")


def _configs(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    if not spec:
        return {}
    return {str(n.get("id")): {k: v for k, v in n.items() if k != "id"} for n in spec.get("nodes", []) if isinstance(n, Mapping)}


def _node_outputs(run: Mapping[str, Any]) -> dict[str, Any]:
    trace = run.get("trace")
    if trace:
        return {r["node"]: r.get("outputs") for r in trace.get("nodes", [])}
    outputs = run.get("outputs") or {}
    return dict(outputs) if isinstance(outputs, Mapping) else {}


#: text longer than this is compared in its first part only (the diff says so)
_TEXT_DIFF_CHARS = 20_000
_TEXT_DIFF_LINES = 40


def _text_diff(before: Any, after: Any) -> str:
    """A unified diff of the text in two outputs (each string leaf on its own lines)."""
    if before == after:
        return ""
    ta, tb = _texts(before), _texts(after)
    if not ta and not tb:
        return ""
    lines = list(difflib.unified_diff(ta.splitlines()[:2000], tb.splitlines()[:2000], "before", "after", lineterm="", n=1))
    if len(lines) > _TEXT_DIFF_LINES:
        lines = lines[:_TEXT_DIFF_LINES] + [f"... {len(lines) - _TEXT_DIFF_LINES} more lines of diff"]
    return "\n".join(lines)


def _texts(value: Any, path: str = "") -> str:
    if isinstance(value, str):
        text = value[:_TEXT_DIFF_CHARS]
        return f"{path}: {text}" if path else text
    if isinstance(value, Mapping):
        if "shape" in value and "dtype" in value:  # a tensor's summary: compare its statistics
            stats = {k: value.get(k) for k in ("shape", "dtype", "min", "max", "mean", "std", "nan", "inf") if k in value}
            return f"{path or 'tensor'}: {json.dumps(stats, sort_keys=True)}"
        return "\n".join(t for k, v in value.items() if (t := _texts(v, f"{path}.{k}" if path else str(k))))
    if isinstance(value, list):
        return "\n".join(t for i, v in enumerate(value[:200]) if (t := _texts(v, f"{path}[{i}]")))
    return "" if value is None else f"{path}: {json.dumps(value, default=str)}"


def _plain(value: Any) -> Any:
    return None if value is MISSING else value


def _cmd_list(args: argparse.Namespace) -> int:
    runs = RunHistory(args.history).runs(flow=args.flow, limit=args.limit)
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print(f"no runs recorded in {RunHistory(args.history).path}")
        return 0
    print(f"{'run':<34} {'flow':<24} {'status':<8} {'started':<19} {'ms':>9} {'nodes':>5} {'cached':>6}  git")
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"])) if r["started_at"] else ""
        ms = f"{r['duration_s'] * 1000:.1f}" if r["duration_s"] is not None else ""
        print(f"{r['run_id']:<34} {r['flow'][:24]:<24} {r['status']:<8} {started:<19} {ms:>9} {r['nodes']:>5} {r['cached']:>6}  "
              f"{(r['git_rev'] or '')[:12]}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(RunHistory(args.history).get(args.run_id), indent=2, ensure_ascii=False))
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    result = RunHistory(args.history).diff(args.before, args.after)
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if args.json else result.text())
    return 0



def add_to_cli(sub: Any) -> None:
    runs = sub.add_parser("runs", help="past runs recorded with history on: list, show, diff")
    runs.add_argument("--history", metavar="FILE", default=None,
                      help=f"the history file (default: ${HISTORY_ENV}, else ~/.local/share/jupyter-flow/history.sqlite)")
    verbs = runs.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("list", help="the newest runs first")
    p.add_argument("--flow", help="only runs of this flow (its name)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_list)
    p = verbs.add_parser("show", help="one run as recorded (inputs, outputs, nodes, trace)")
    p.add_argument("run_id", help="a run id, or a unique prefix of one")
    p.set_defaults(fn=_cmd_show)
    p = verbs.add_parser("diff", help="two runs node by node: config, outputs, time")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_cmd_diff)
