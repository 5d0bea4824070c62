"""The files a batch leaves in its output folder, and the summary read from them.

`results.jsonl` gets one JSON line per finished item, flushed and fsynced; `traces/`
one trace per item; `summary.json` the counts, the failures and per-node timing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from jupyter_flow.batch.options import allowed_failures
from jupyter_flow.errors import FlowRunError
from jupyter_flow.values import dumps

if TYPE_CHECKING:
    from jupyter_flow.batch.items import BatchItem

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "TRACES_DIR",
    "BatchFailedError",
    "BatchStoppedError",
    "BatchSummary",
    "ResultsWriter",
    "earlier_folder",
    "open_results",
    "printable",
    "read_result_lines",
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
    return [record for _, record in read_result_lines(out_dir, repair=repair)]


def read_result_lines(out_dir: str | Path, *, repair: bool = False) -> list[tuple[bytes, dict[str, Any]]]:
    """Each record of `out_dir/results.jsonl` with its line as it is in the file (its
    newline included); see `read_results`."""
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
    # split at newlines only: text may hold U+2028 or U+0085, which JSON leaves as they are
    for line in (piece + b"\n" for piece in keep.split(b"\n")[:-1]):
        try:
            data = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "id" in data:
            records.append((line, data))
    return records


def earlier_folder(out_dir: Path) -> Path:
    """A new folder `out_dir/earlier-<UTC time>/` (numbered when that one exists) for
    results moved aside: they are never deleted."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    moved = out_dir / f"earlier-{stamp}"
    n = 1
    while moved.exists():
        n += 1
        moved = out_dir / f"earlier-{stamp}-{n}"
    moved.mkdir()
    return moved


def open_results(out_dir: Path, *, resume: bool) -> tuple[set[str], Path | None]:
    """Make `out_dir` ready for a batch; returns the ids it already has results for, and
    the folder earlier results were moved to (or None).

    With `resume` the results stay (a line torn by a crash is cut). Without it, earlier
    results, traces and summary are moved aside to `out_dir/earlier-<UTC time>/`, never
    deleted. The caller holds the folder's lock (see `FolderLock`)."""
    traces = out_dir / TRACES_DIR
    traces.mkdir(parents=True, exist_ok=True)
    if resume:
        return {r["id"] for r in read_results(out_dir, repair=True)}, None
    results, summary = out_dir / RESULTS_FILE, out_dir / SUMMARY_FILE
    old = [p for p in (results, summary) if p.exists() and p.stat().st_size] + ([traces] if any(traces.iterdir()) else [])
    moved = None
    if old:
        moved = earlier_folder(out_dir)
        for path in old:
            os.replace(path, moved / path.name)
        traces.mkdir(exist_ok=True)
    results.write_bytes(b"")
    return set(), moved


TraceText = Union[str, Callable[[], str], None]


@dataclass
class _Job:
    record: Mapping[str, Any]
    trace: TraceText
    trace_path: Path | None
    done: concurrent.futures.Future[None]


def _settle(done: concurrent.futures.Future[None], exc: BaseException | None) -> None:
    """Tell the waiter, unless it stopped waiting (a cancelled batch: the line is written anyway)."""
    if done.set_running_or_notify_cancel():
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)


class ResultsWriter:
    """Writes each finished item to the output folder on one thread of its own, so the
    event loop never waits on the disk: the item's trace to `traces/`, then its JSON line
    to `results.jsonl`, flushed and fsynced. `write` (async) and `append` (blocking)
    return once the line is on disk, so an item counts as done only when a crash can no
    longer lose it. Lines that arrive together share one fsync."""

    def __init__(self, out_dir: Path, *, flow_digest: str | None = None,
                 overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.out_dir = out_dir
        # written into every line: a resume tells whose results they are (`jupyter_flow.batch.resume`)
        self.flow_digest = flow_digest
        self.overrides = overrides
        self._fh = open(out_dir / RESULTS_FILE, "ab")  # noqa: SIM115 - closed by close()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="jupyter-flow results", daemon=True)
        self._thread.start()

    def submit(self, record: Mapping[str, Any], trace: TraceText = None) -> concurrent.futures.Future[None]:
        """Queue `record` (and its trace: JSON text, or a function that makes it, run on
        the writer's thread); the future is done when the line is on disk."""
        name = record.get("trace")
        path = self.out_dir / str(name) if trace is not None and name else None
        job = _Job(record, trace, path, concurrent.futures.Future())
        self._queue.put(job)
        return job.done

    async def write(self, record: Mapping[str, Any], trace: TraceText = None) -> None:
        """`submit` and wait for the line to be on disk, without blocking the loop."""
        await asyncio.wrap_future(self.submit(record, trace))

    def append(self, record: Mapping[str, Any], trace: TraceText = None) -> None:
        """`submit` and block until the line is on disk."""
        self.submit(record, trace).result()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while True:  # whatever else is waiting goes out with the same fsync
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._write(jobs)
            if stop:
                return

    def _write(self, jobs: list[_Job]) -> None:
        lines: list[bytes] = []
        written: list[_Job] = []
        for job in jobs:
            try:
                if job.trace_path is not None:
                    text = job.trace() if callable(job.trace) else str(job.trace)
                    job.trace_path.write_text(text + "\n", encoding="utf-8")
                record = job.record if self.flow_digest is None else {**job.record, "flow_digest": self.flow_digest}
                if self.overrides:
                    record = {**record, "overrides": self.overrides}
                lines.append((dumps(record) + "\n").encode("utf-8"))
                written.append(job)
            except BaseException as exc:  # noqa: BLE001 - handed to the item's waiter
                _settle(job.done, exc)
        if not written:
            return
        try:
            self._fh.write(b"".join(lines))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except BaseException as exc:  # noqa: BLE001 - a full disk: every waiter hears it
            for job in written:
                _settle(job.done, exc)
            return
        for job in written:
            _settle(job.done, None)

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file."""
        self._queue.put(None)
        self._thread.join()
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
    max_failures: int | float = 0  # failed items accepted (a count, or a share below 1)
    notes: list[str] = field(default_factory=list)  # earlier results moved aside, a lock taken over
    flow_digest: str | None = None  # of the flow that made the results (see `jupyter_flow.batch.resume`)

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS_FILE

    @property
    def allowed_failures(self) -> int:
        """How many items may fail (or not run) with the batch still a success."""
        return allowed_failures(self.max_failures, self.total)

    @property
    def succeeded(self) -> bool:
        """True when no more items failed or were left unrun than `max_failures` allows
        (by default: every item ran and succeeded)."""
        return self.stopped is None and self.failed + self.pending <= self.allowed_failures

    @property
    def failed_ids(self) -> list[str]:
        return [str(f["id"]) for f in self.failures]

    def verdict(self) -> str:
        """One line: whether the batch succeeded by the `max_failures` rule, and why not."""
        bad = self.failed + self.pending
        if self.succeeded:
            accepted = f" ({bad} failed, {self.allowed_failures} allowed)" if bad else ""
            return f"batch succeeded: {self.ok} of {self.total} items ok{accepted}"
        what = f"{self.failed} of {self.total} items failed" + (f", {self.pending} not run" if self.pending else "")
        return f"batch FAILED: {what} ({self.allowed_failures} allowed)"

    def check(self) -> BatchSummary:
        """Raise BatchFailedError (naming the counts and the failed items) unless the batch
        succeeded by the `max_failures` rule; returns the summary otherwise."""
        if not self.succeeded:
            raise BatchFailedError(self)
        return self

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
            "max_failures": self.max_failures,
            "allowed_failures": self.allowed_failures,
            "succeeded": self.succeeded,
            "notes": self.notes,
            "flow_digest": self.flow_digest,
            "failures": self.failures,
            "node_timing": self.node_timing,
        }

    def to_text(self) -> str:
        """The summary as text; its last lines are the counts, the verdict and the failed
        items (what a log shows last)."""
        lines = [*self.notes]
        if self.node_timing:
            lines.append(f"{'node':<24} {'runs':>5} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
            for node, t in self.node_timing.items():
                lines.append(
                    f"{node:<24} {int(t['count']):>5} {t['mean_s'] * 1e3:>9.1f} {t['p50_s'] * 1e3:>9.1f}"
                    f" {t['p95_s'] * 1e3:>9.1f} {t['max_s'] * 1e3:>9.1f}"
                )
        for f in self.failures:
            lines.append(f"  FAILED {printable(f['id'])}: node '{f['node']}': {printable(f['message'])}")
        lines.append(f"results: {self.results_path}")
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        lines.append(self._counts())
        lines.append(self.verdict())
        if self.failures:
            lines.append("failed items: " + ", ".join(map(printable, self.failed_ids)))
        return "\n".join(lines)

    def _counts(self) -> str:
        return (
            f"{self.total} items: {self.ok} ok, {self.failed} failed"
            + (f", {self.pending} not run" if self.pending else "")
            + f" ({self.ran} run now, {self.resumed} already done; {self.duration_s:.2f} s)"
        )

    def __repr__(self) -> str:
        return f"<BatchSummary {self._counts()}>"

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


class BatchFailedError(FlowRunError):
    """More items failed than `max_failures` allows (CLI exit code 1; an exported notebook
    ends with it, so papermill fails). The message has the counts and the failed items;
    `summary` has the rest."""

    def __init__(self, summary: BatchSummary) -> None:
        shown = [printable(i) for i in summary.failed_ids[:20]]
        more = f" and {len(summary.failed_ids) - 20} more" if len(summary.failed_ids) > 20 else ""
        ids = f"; failed items: {', '.join(shown)}{more}" if shown else ""
        super().__init__(f"{summary.verdict()}{ids}; see {summary.results_path}")
        self.summary = summary


class BatchStoppedError(FlowRunError):
    """`fail_fast` stopped a batch; the message names the item and the node, `summary`
    tells what had finished."""

    def __init__(self, message: str, summary: BatchSummary) -> None:
        super().__init__(message)
        self.summary = summary


def printable(text: object) -> str:
    """`text` as a terminal or log shows it safely: control and format characters (escape
    sequences, a right-to-left override, line separators) as backslash escapes, so an id or
    a message read from a file name cannot rewrite the screen or split a log line."""
    value = str(text)
    if all(ch.isprintable() or ch == " " for ch in value):
        return value
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in value)


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")[:300]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize_results(
    out_dir: Path, items: Sequence[BatchItem], *, resumed: int, ran: int, duration_s: float, stopped: str | None,
    max_failures: int | float = 0, notes: Sequence[str] = (), flow_digest: str | None = None,
) -> BatchSummary:
    """Counts and timings over every result of these items in `out_dir` (earlier runs too)."""
    order = {item.id: n for n, item in enumerate(items)}
    records = sorted((r for r in read_results(out_dir) if r["id"] in order), key=lambda r: order[r["id"]])
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
        max_failures=max_failures,
        notes=list(notes),
        flow_digest=flow_digest,
    )
    (out_dir / SUMMARY_FILE).write_text(dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
