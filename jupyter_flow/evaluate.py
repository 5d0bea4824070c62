"""Evaluation: one or two versions of a flow over a dataset, row by row, with scores.

`jupyter-flow eval FLOW [OTHER] --data items.jsonl --out DIR` (OTHER may be ``FLOW@REV``,
the file at a git revision) runs every item through each flow as a batch
(`DIR/a/`, `DIR/b/`: concurrent, resumable, each item's trace kept), then writes:

- ``DIR/rows.jsonl``: one line per item: ``id``, ``inputs``, each flow's ``outputs`` and
  ``status``, ``changed`` (the two flows' answers differ), per-node latency, and scores;
- ``DIR/summary.json``: items, changed, failed per flow, latency p50/p95 per node per flow,
  and each score's mean per flow;
- ``DIR/report.html``: a self-contained page showing the rows that changed side by side.

An item is a JSON line: its ``id``, the flow's inputs by name, and any other fields (what
the item is expected to give, a label). Scores: ``--score module:function`` is called with
the item (every field) and a flow's answer, and returns a number or a dict of numbers;
``--expect FIELD`` scores 1 when the answer's FIELD (a dotted path, e.g. ``reply.text``)
equals the item's FIELD, else 0. A flow's answer is its declared outputs, or every node's
output by node id. A killed evaluation resumes where it stopped: finished items are not run
again, unless the flow changed since (their results are then moved aside and they run again).

Exit codes: 0 the evaluation ran (whatever the rows say), 1 an item failed in every flow,
2 a flow, the data or an option is wrong.
"""

from __future__ import annotations

import argparse
import html
import importlib
import json
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_flow.batch import run_batch
from jupyter_flow.batch.items import read_jsonl_items
from jupyter_flow.batch.results import read_results
from jupyter_flow.cache import CacheChoice
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.flow import Flow
from jupyter_flow.flowdiff import load_flow_version
from jupyter_flow.values import dumps

__all__ = ["Evaluation", "ScoreFn", "add_to_cli", "evaluate"]

ScoreFn = Callable[[Mapping[str, Any], Any], "float | Mapping[str, float]"]
ROWS_FILE = "rows.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
#: rows the HTML report shows (the changed ones first); the rest are in rows.jsonl
MAX_REPORT_ROWS = 500


class EvaluationError(FlowValidationError):
    """The data, a score function or an option of an evaluation is wrong."""


@dataclass
class Evaluation:
    """What `evaluate` wrote: the rows, the summary and where they are."""

    out_dir: Path
    flows: list[str]
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def frame(self) -> Any:
        """The rows as a pandas DataFrame: one row per item, a column per flow's status,
        answer and score."""
        import pandas as pd

        flat = []
        for row in self.rows:
            entry: dict[str, Any] = {"id": row["id"], "changed": row["changed"]}
            for label, side in row["flows"].items():
                entry[f"{label}.status"] = side["status"]
                entry[f"{label}.answer"] = json.dumps(side["answer"], ensure_ascii=False)[:200]
                for name, value in (side.get("scores") or {}).items():
                    entry[f"{label}.{name}"] = value
            flat.append(entry)
        return pd.DataFrame(flat)


def _load(ref: str | Path | Flow) -> tuple[str, Flow]:
    if isinstance(ref, Flow):
        return ref.name, ref
    text = str(ref)
    spec = load_flow_version(text)
    source = text.rpartition("@")[0] if "@" in text and not Path(text).exists() else text
    return text, Flow(spec, source=source)


def _read_data(path: Path) -> list[dict[str, Any]]:
    """Every item of the data file with all its fields (the batch's JSONL reader: the same
    ids, bounds and messages); an item the reader refuses stops the evaluation."""
    items = read_jsonl_items(path)
    refused = [Problem(item.problem, field="data") for item in items if item.problem is not None]
    if refused:
        raise EvaluationError(refused)
    if not items:
        raise EvaluationError([Problem(f"{path} holds no items", field="data")])
    return [{**item.inputs, "id": item.id} for item in items]


def _score_fn(spec: str | ScoreFn | None) -> ScoreFn | None:
    if spec is None or callable(spec):
        return spec
    module, _, name = spec.partition(":")
    if not module or not name:
        raise EvaluationError([Problem(f"--score {spec!r}: give module:function", field="score")])
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise EvaluationError([Problem(f"--score {spec!r}: {exc}", field="score")]) from None
    if not callable(fn):
        raise EvaluationError([Problem(f"--score {spec!r} is not a function", field="score")])
    return fn


def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _answer(record: Mapping[str, Any]) -> Any:
    """A batch record's answer: the flow's declared outputs (``result``), else its nodes'."""
    return record["result"] if "result" in record else record.get("outputs")


def _scores(item: Mapping[str, Any], answer: Any, score: ScoreFn | None, expect: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for field in expect:
        out[f"expect:{field}"] = 1.0 if field in item and _dig(answer, field) == item[field] else 0.0
    if score is not None:
        try:
            value = score(item, answer)
        except Exception as exc:  # a user's score function failing on one row names the row
            raise EvaluationError([Problem(f"the score function failed on item {item.get('id')!r}: {type(exc).__name__}: {exc}",
                                           field="score")]) from exc
        if isinstance(value, Mapping):
            out.update({str(k): float(v) for k, v in value.items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out["score"] = float(value)
        else:
            raise EvaluationError([Problem(f"the score function gave {type(value).__name__} for item {item.get('id')!r}: "
                                           "return a number or a dict of numbers", field="score")])
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"p50_ms": round(at(0.5) * 1000, 3), "p95_ms": round(at(0.95) * 1000, 3)}


def evaluate(
    flow: str | Path | Flow,
    other: str | Path | Flow | None = None,
    *,
    data: str | Path,
    out: str | Path,
    score: str | ScoreFn | None = None,
    expect: Sequence[str] = (),
    concurrency: int = 4,
    progress: Any = True,
    cache: CacheChoice = None,
) -> Evaluation:
    """Run the evaluation (see the module's docstring) and return its rows and summary.
    With `cache` (True: the default folder, a folder, or a `NodeCache`) every run goes
    through the node cache: the nodes two versions share, and items seen before, are not
    run again."""
    out_dir = Path(out)
    flows = [_load(flow)] + ([_load(other)] if other is not None else [])
    items = _read_data(Path(data))
    score_fn = _score_fn(score)
    labels = ["a", "b"][: len(flows)]
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for label, (_, f) in zip(labels, flows):
        names = set(f.spec.inputs)
        batch_items = [{"id": item["id"], **{k: v for k, v in item.items() if k in names}} for item in items]
        # resumes a killed evaluation; items another version of this flow ran are run again
        run_batch(f, batch_items, out_dir / label, concurrency=concurrency, rerun_changed=True, progress=progress,
                  max_failures="100%", cache=cache)
        records[label] = {r["id"]: r for r in read_results(out_dir / label)}
    rows = [_row(item, labels, records, score_fn, expect) for item in items]
    summary = _summary(flows, labels, rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ROWS_FILE).write_text("".join(dumps(row) + "\n" for row in rows), encoding="utf-8")
    (out_dir / SUMMARY_FILE).write_text(dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out_dir / REPORT_FILE).write_text(_report(summary, rows, labels), encoding="utf-8")
    return Evaluation(out_dir, [name for name, _ in flows], rows, summary)


def _row(item: Mapping[str, Any], labels: list[str], records: Mapping[str, Mapping[str, dict[str, Any]]],
         score_fn: ScoreFn | None, expect: Sequence[str]) -> dict[str, Any]:
    sides: dict[str, Any] = {}
    for label in labels:
        record = records[label].get(item["id"]) or {"status": "missing", "outputs": None, "nodes": {}}
        answer = _answer(record)
        sides[label] = {
            "status": record.get("status"),
            "answer": answer,
            "error": (record.get("error") or {}).get("message") if record.get("error") else None,
            "latency_ms": {node: round(info["duration_s"] * 1000, 3) for node, info in (record.get("nodes") or {}).items()
                           if isinstance(info, Mapping) and isinstance(info.get("duration_s"), (int, float))},
            "scores": _scores(item, answer, score_fn, expect) if record.get("status") == "ok" else {},
        }
    answers = [json.dumps(sides[label]["answer"], sort_keys=True, default=str) for label in labels]
    return {"id": item["id"], "inputs": {k: v for k, v in item.items() if k != "id"}, "flows": sides,
            "changed": len(set(answers)) > 1 or len({sides[label]["status"] for label in labels}) > 1}


def _summary(flows: list[tuple[str, Flow]], labels: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"items": len(rows), "changed": sum(1 for r in rows if r["changed"]) if len(labels) > 1 else 0,
                           "flows": {}}
    for label, (name, _) in zip(labels, flows):
        latencies: dict[str, list[float]] = {}
        scores: dict[str, list[float]] = {}
        for row in rows:
            side = row["flows"][label]
            for node, ms in side["latency_ms"].items():
                latencies.setdefault(node, []).append(ms / 1000)
            for key, value in side["scores"].items():
                scores.setdefault(key, []).append(value)
        out["flows"][label] = {
            "flow": name,
            "ok": sum(1 for r in rows if r["flows"][label]["status"] == "ok"),
            "failed": sum(1 for r in rows if r["flows"][label]["status"] != "ok"),
            "latency": {node: _percentiles(values) for node, values in latencies.items()},
            "scores": {key: round(statistics.fmean(values), 6) for key, values in scores.items()},
        }
    return out


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1, default=str)
    return f"<pre>{html.escape(text[:4000])}</pre>"


def _report(summary: Mapping[str, Any], rows: list[dict[str, Any]], labels: list[str]) -> str:
    heads = "".join(f"<th>{html.escape(label)}: {html.escape(summary['flows'][label]['flow'])}</th>" for label in labels)
    scores = "".join(
        f"<li><b>{html.escape(label)}</b>: {summary['flows'][label]['ok']} ok, {summary['flows'][label]['failed']} failed"
        + "".join(f", {html.escape(k)} {v:.3f}" for k, v in summary["flows"][label]["scores"].items()) + "</li>"
        for label in labels)
    shown = sorted(rows, key=lambda r: not r["changed"])[:MAX_REPORT_ROWS]
    body = "".join(
        f"<tr class='{'changed' if r['changed'] else 'same'}'><td>{html.escape(r['id'])}</td><td>{_cell(r['inputs'])}</td>"
        + "".join(f"<td>{html.escape(str(r['flows'][label]['status']))}{_cell(r['flows'][label]['answer'])}</td>" for label in labels)
        + "</tr>" for r in shown)
    more = f"<p>{len(rows) - len(shown)} more rows in {ROWS_FILE}</p>" if len(rows) > len(shown) else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation</title><style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }}
tr.changed {{ background: #fff4e0; }} pre {{ margin: 0; white-space: pre-wrap; font-size: 12px; }}
</style></head><body><h1>Evaluation: {summary['items']} items, {summary['changed']} changed</h1><ul>{scores}</ul>
<table><thead><tr><th>id</th><th>inputs</th>{heads}</tr></thead><tbody>{body}</tbody></table>{more}</body></html>
"""


def _cmd_eval(args: argparse.Namespace) -> int:
    try:
        result = evaluate(args.flow, args.other, data=args.data, out=args.out, score=args.score, expect=args.expect or (),
                          concurrency=args.concurrency, progress=not args.quiet, cache=args.cache)
    except FlowValidationError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = result.summary
    print(f"{s['items']} items, {s['changed']} changed; rows in {result.out_dir / ROWS_FILE}, report in {result.out_dir / REPORT_FILE}")
    for label, side in s["flows"].items():
        scores = ", ".join(f"{k} {v:.3f}" for k, v in side["scores"].items())
        print(f"  {label} ({side['flow']}): {side['ok']} ok, {side['failed']} failed" + (f"; {scores}" if scores else ""))
    all_failed = any(all(r["flows"][label]["status"] != "ok" for label in r["flows"]) for r in result.rows)
    return 1 if all_failed else 0


def add_to_cli(sub: Any) -> None:
    p = sub.add_parser("eval", help="run one or two versions of a flow over a dataset and compare them")
    p.add_argument("flow", help="a flow file (or FILE@REV)")
    p.add_argument("other", nargs="?", help="a second version to compare with (a file, or FILE@REV)")
    p.add_argument("--data", required=True, help="a .jsonl file: one item per line (id, the flow's inputs, other fields)")
    p.add_argument("--out", required=True, help="the folder for rows.jsonl, summary.json, report.html (resumable)")
    p.add_argument("--score", help="module:function called with (item, answer), returning a number or a dict of numbers")
    p.add_argument("--expect", action="append", metavar="FIELD", help="score 1 when the answer's FIELD equals the item's FIELD")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--cache", nargs="?", const=True, default=False, metavar="DIR",
                   help="run through the node cache: unchanged nodes are not run again "
                   "(default folder: $JUPYTER_FLOW_CACHE, else ~/.cache/jupyter-flow)")
    p.set_defaults(fn=_cmd_eval)
