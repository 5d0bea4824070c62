"""The steps before and after the runs of a batch, the same for every engine.

Before: the flow gets the endpoint overrides and is validated, the items are collected,
the output folder is made ready (resumed or emptied) and what is left to run is known.
After: the summary is read from the results and written to `summary.json`, and a
fail-fast stop is raised as BatchStoppedError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_flow.batch.items import BatchItem, ItemsSource, apply_endpoints, items_to_run
from jupyter_flow.batch.results import BatchStoppedError, BatchSummary, open_results, summarize_results

if TYPE_CHECKING:
    from jupyter_flow.batch.options import BatchOptions
    from jupyter_flow.flow import Flow

__all__ = ["PreparedBatch", "finish_batch", "prepare_batch"]


@dataclass
class PreparedBatch:
    """A batch ready to run: the flow to run (endpoints applied, validated), every item,
    the output folder, the ids it already has results for, and the items left to run."""

    flow: Flow
    items: list[BatchItem]
    out_dir: Path
    done: set[str]
    todo: list[BatchItem]

    @property
    def resumed(self) -> int:
        """Items skipped because the output folder already had their results."""
        return len(self.items) - len(self.todo)


def prepare_batch(flow: Flow, source: ItemsSource, out_dir: str | Path, options: BatchOptions) -> PreparedBatch:
    """Everything before the first run; raises BatchInputError (or FlowValidationError)
    before the output folder is touched when the flow, items or options are wrong."""
    flow = apply_endpoints(flow, options.endpoints).validate()
    items = items_to_run(flow, source, input_name=options.input_name, common_inputs=options.common_inputs)
    out = Path(out_dir)
    done = open_results(out, resume=options.resume)
    return PreparedBatch(flow, items, out, done, [item for item in items if item.id not in done])


def finish_batch(batch: PreparedBatch, *, ran: int, duration_s: float, stopped: str | None) -> BatchSummary:
    """The summary of the batch (also written to `summary.json`); raises
    BatchStoppedError with it when `stopped` says why fail-fast stopped the batch."""
    summary = summarize_results(
        batch.out_dir, batch.items, resumed=batch.resumed, ran=ran, duration_s=duration_s, stopped=stopped
    )
    if stopped:
        raise BatchStoppedError(f"batch stopped (fail-fast): {stopped}", summary)
    return summary
