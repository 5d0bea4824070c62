"""The files a batch leaves in its output folder, and the summary read from them.

`results.jsonl` gets one JSON line per finished item, flushed and fsynced; `traces/`
one trace per item; `summary.json` the counts, the failures and per-node timing.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import FlowRunError

if TYPE_CHECKING:
    from jupyter_flow.batch.items import BatchItem

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "TRACES_DIR",
    "BatchStoppedError",
    "BatchSummary",
    "ResultsWriter",
    "open_results",
    "read_results",
    "summarize_results",
]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
TRACES_DIR = "traces"


# -- results --------------------------------------------------------------------------
def read_results(out_dir: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The records in `out_dir/results.jsonl`. A last line torn by a crash is left out
    (and cut from the file when `repair`)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.exists():
        return []
    raw = path.read_bytes()
    keep = raw if raw.endswith(b"\n") or not raw else raw[: raw.rfind(b"\n") + 1]
    if repair and len(keep) != len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(len(keep))
            fh.flush()
            os.fsync(fh.fileno())
    records = []
    for line in keep.decode("utf-8", errors="replace").splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "id" in data:
            records.append(data)
    return records


def open_results(out_dir: Path, *, resume: bool) -> set[str]:
    """Make `out_dir` ready for a batch; returns the ids it already has results for.

    With `resume` the results stay (a line torn by a crash is cut); without it earlier
    results and traces are removed."""
    traces = out_dir / TRACES_DIR
    traces.mkdir(parents=True, exist_ok=True)
    if resume:
        return {r["id"] for r in read_results(out_dir, repair=True)}
    (out_dir / RESULTS_FILE).write_bytes(b"")
    for old in traces.glob("*.json"):
        old.unlink()
    return set()


class ResultsWriter:
    """Appends one JSON line per item to `out_dir/results.jsonl`, flushed and fsynced
    before the next."""

    def __init__(self, out_dir: Path) -> None:
        self._fh = open(out_dir / RESULTS_FILE, "a", encoding="utf-8")

    def append(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


@dataclass
class BatchSummary:
    """What a batch did: counts, the failures (item, node, message), per-node timing."""

    out_dir: Path
    total: int
    ok: int
    failed: int
    resumed: int  # items skipped because results.jsonl already had them
    ran: int  # items run by this call
    pending: int  # items with no result (a fail-fast stop)
    failures: list[dict[str, Any]] = field(default_factory=list)
    node_timing: dict[str, dict[str, float]] = field(default_factory=dict)
    duration_s: float = 0.0
    stopped: str | None = None

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS_FILE

    def results(self) -> list[dict[str, Any]]:
        return read_results(self.out_dir)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "resumed": self.resumed,
            "ran": self.ran,
            "pending": self.pending,
            "duration_s": self.duration_s,
            "stopped": self.stopped,
            "failures": self.failures,
            "node_timing": self.node_timing,
        }

    def to_text(self) -> str:
        lines = [
            f"{self.total} items: {self.ok} ok, {self.failed} failed"
            + (f", {self.pending} not run" if self.pending else "")
            + f" ({self.ran} run now, {self.resumed} already done; {self.duration_s:.2f} s)",
        ]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        for f in self.failures:
            lines.append(f"  FAILED {f['id']}: node '{f['node']}': {f['message']}")
        if self.node_timing:
            lines.append(f"{'node':<24} {'runs':>5} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
            for node, t in self.node_timing.items():
                lines.append(
                    f"{node:<24} {int(t['count']):>5} {t['mean_s'] * 1e3:>9.1f} {t['p50_s'] * 1e3:>9.1f}"
                    f" {t['p95_s'] * 1e3:>9.1f} {t['max_s'] * 1e3:>9.1f}"
                )
        lines.append(f"results: {self.results_path}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<BatchSummary {self.to_text().splitlines()[0]}>"

    def _repr_markdown_(self) -> str:
        rows = [
            "| items | ok | failed | not run | run now | already done | seconds |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.total} | {self.ok} | {self.failed} | {self.pending} | {self.ran} | {self.resumed} | {self.duration_s:.2f} |",
        ]
        if self.failures:
            rows += ["", "| failed item | node | error |", "|---|---|---|"]
            rows += [f"| {f['id']} | {f['node']} | {_md(f['message'])} |" for f in self.failures]
        return "\n".join(rows)

    def results_markdown(self, limit: int = 100) -> str:
        """A table of the items' results (the first `limit`)."""
        records = self.results()
        rows = ["| item | status | seconds | failed node | error |", "|---|---|---:|---|---|"]
        for r in records[:limit]:
            err = r.get("error") or {}
            rows.append(
                f"| {_md(r['id'])} | {r.get('status')} | {r.get('duration_s') or 0:.3f} | {err.get('node') or ''}"
                f" | {_md(err.get('message') or '')} |"
            )
        if len(records) > limit:
            rows.append(f"\n{len(records) - limit} more in `{self.results_path}`")
        return "\n".join(rows)

    def timing_html(self) -> str:
        """A bar chart of the mean time per node, in plain HTML (no plotting library needed)."""
        if not self.node_timing:
            return "<p>No node timings.</p>"
        top = max(t["mean_s"] for t in self.node_timing.values()) or 1.0
        rows = []
        for node, t in self.node_timing.items():
            width = max(1.0, 100.0 * t["mean_s"] / top)
            rows.append(
                f"<tr><td style='text-align:left'>{escape(node)}</td><td style='width:60%;text-align:left'>"
                f"<div style='background:#4c78a8;height:1em;width:{width:.1f}%'></div></td>"
                f"<td>{t['mean_s'] * 1e3:.1f} ms</td><td>{int(t['count'])} runs</td></tr>"
            )
        return "<table><caption>mean time per node</caption>" + "".join(rows) + "</table>"


class BatchStoppedError(FlowRunError):
    """`fail_fast` stopped a batch; the message names the item and the node, `summary`
    tells what had finished."""

    def __init__(self, message: str, summary: BatchSummary) -> None:
        super().__init__(message)
        self.summary = summary


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")[:300]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize_results(
    out_dir: Path, items: Sequence[BatchItem], *, resumed: int, ran: int, duration_s: float, stopped: str | None
) -> BatchSummary:
    """Counts and timings over every result of these items in `out_dir` (earlier runs too)."""
    wanted = {item.id for item in items}
    records = [r for r in read_results(out_dir) if r["id"] in wanted]
    timings: dict[str, list[float]] = {}
    failures = []
    for rec in records:
        for node, info in (rec.get("nodes") or {}).items():
            if info.get("duration_s") is not None and info.get("status") in ("ok", "error"):
                timings.setdefault(node, []).append(float(info["duration_s"]))
        if rec.get("status") != "ok":
            err = rec.get("error") or {}
            failures.append({"id": rec["id"], "node": err.get("node"), "message": err.get("message")})
    node_timing = {
        node: {
            "count": float(len(values)),
            "total_s": sum(values),
            "mean_s": statistics.fmean(values),
            "p50_s": _percentile(values, 0.5),
            "p95_s": _percentile(values, 0.95),
            "max_s": max(values),
        }
        for node, values in timings.items()
    }
    ok = sum(1 for r in records if r.get("status") == "ok")
    summary = BatchSummary(
        out_dir=out_dir,
        total=len(items),
        ok=ok,
        failed=len(records) - ok,
        resumed=resumed,
        ran=ran,
        pending=len(items) - len(records),
        failures=failures,
        node_timing=node_timing,
        duration_s=duration_s,
        stopped=stopped,
    )
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary
