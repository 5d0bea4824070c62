"""The steps before and after the runs of a batch, the same for every engine.

Before: the flow gets the endpoint overrides and is validated, the items are collected,
the output folder is locked (one batch per folder at a time; see `lock`) and made ready
(resumed, or earlier results moved aside), and what is left to run is known.
After: the summary is read from the results and written to `summary.json`, a fail-fast
stop is raised as BatchStoppedError, and the lock is released (`PreparedBatch.close`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_flow.batch.items import BatchItem, ItemsSource, apply_endpoints, check_out_dir, items_to_run
from jupyter_flow.batch.lock import FolderLock
from jupyter_flow.batch.options import parse_max_failures
from jupyter_flow.batch.results import BatchStoppedError, BatchSummary, open_results, summarize_results
from jupyter_flow.batch.resume import override_digests, resume_results
from jupyter_flow.history import flow_digest

if TYPE_CHECKING:
    from jupyter_flow.batch.options import BatchOptions
    from jupyter_flow.flow import Flow

__all__ = ["PreparedBatch", "finish_batch", "prepare_batch"]


@dataclass
class PreparedBatch:
    """A batch ready to run: the flow to run (endpoints applied, validated), every item,
    the output folder (locked until `close`), the ids it already has results for, the
    items left to run, notes for the user (earlier results moved, a lock taken over), and
    the digest of the flow as given (before endpoint overrides) and the digests of the
    common inputs and endpoint overrides (`override_digests`) that every result carries."""

    flow: Flow
    items: list[BatchItem]
    out_dir: Path
    done: set[str]
    todo: list[BatchItem]
    lock: FolderLock | None = None
    max_failures: int | float = 0
    notes: list[str] = field(default_factory=list)
    flow_digest: str | None = None
    overrides: dict[str, dict[str, str]] | None = None

    @property
    def resumed(self) -> int:
        """Items skipped because the output folder already had their results."""
        return len(self.items) - len(self.todo)

    def close(self) -> None:
        """Release the output folder's lock (again is fine)."""
        if self.lock is not None:
            self.lock.release()


def prepare_batch(flow: Flow, source: ItemsSource, out_dir: str | Path, options: BatchOptions) -> PreparedBatch:
    """Everything before the first run; raises BatchInputError (or FlowValidationError)
    before the output folder is touched when the flow, items or options are wrong or the
    output folder is where the items are read from, BatchLockedError when another batch
    is running on the folder, and FlowChangedError when a resume finds results of another
    version of the flow (unless `rerun_changed`). The caller closes the returned batch
    (releasing the lock) when it is done."""
    digest = flow_digest(flow.spec)
    overrides = override_digests(options.common_inputs, options.endpoints)
    flow = apply_endpoints(flow, options.endpoints).validate()
    items = items_to_run(flow, source, input_name=options.input_name, common_inputs=options.common_inputs)
    check_out_dir(source, out_dir)
    out = Path(out_dir)
    lock = FolderLock(out)
    notes = [note] if (note := lock.acquire()) else []
    try:
        if options.resume or options.rerun_changed:
            done, more = resume_results(out, digest, rerun_changed=options.rerun_changed, overrides=overrides)
            notes += more
        else:
            done, moved = open_results(out, resume=False)
            if moved is not None:
                notes.append(f"earlier results in {out} were moved to {moved} (use --resume to keep adding to them)")
    except BaseException:
        lock.release()
        raise
    todo = [item for item in items if item.id not in done]
    return PreparedBatch(flow, items, out, done, todo, lock, parse_max_failures(options.max_failures), notes, digest,
                         overrides)


def finish_batch(batch: PreparedBatch, *, ran: int, duration_s: float, stopped: str | None) -> BatchSummary:
    """The summary of the batch (also written to `summary.json`); raises
    BatchStoppedError with it when `stopped` says why fail-fast stopped the batch."""
    summary = summarize_results(
        batch.out_dir, batch.items, resumed=batch.resumed, ran=ran, duration_s=duration_s, stopped=stopped,
        max_failures=batch.max_failures, notes=batch.notes, flow_digest=batch.flow_digest,
    )
    if stopped:
        raise BatchStoppedError(f"batch stopped (fail-fast): {stopped}", summary)
    return summary
