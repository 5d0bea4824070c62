"""The one entry point of notebooks written by `export_notebook`: `run_exported`.

An exported notebook holds the flow's spec and a `parameters` cell; its run cell is a
single call of `jupyter_flow.run_exported(FLOW_SPEC, inputs=..., ...)` with those
parameters. So what an exported notebook does is defined here, in the package, and a
notebook exported today keeps working when the package's insides change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_flow.batch.items import BatchInputError, BatchItem
from jupyter_flow.batch.local import run_local
from jupyter_flow.batch.options import BatchOptions
from jupyter_flow.batch.results import BatchSummary
from jupyter_flow.errors import Problem

__all__ = ["ENGINES", "run_exported"]

#: The values of the `engine` parameter.
ENGINES = ("local", "ray")
#: The item id of a single run (no `inputs_path`).
SINGLE_RUN_ID = "run"


def run_exported(
    flow_spec: Mapping[str, Any],
    *,
    inputs: Mapping[str, Any] | None = None,
    inputs_path: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] = "out",
    device: str | None = None,
    endpoints: Mapping[str, str] | None = None,
    concurrency: int = 4,
    fail_fast: bool = False,
    engine: str = "local",
    flow_dir: str | os.PathLike[str] | None = None,
) -> BatchSummary:
    """Run a flow as an exported notebook does, with the notebook's parameters.

    - `flow_spec`: the flow, as `Flow.to_dict()` gives it;
    - `inputs`: one run's inputs; with `inputs_path`, inputs given to every item;
    - `inputs_path`: a folder or glob (one run per file) or a JSONL file (one run per
      line): a batch, which resumes (items already in `output_dir` are not run again);
      without it the flow runs once with `inputs` (item id `run`);
    - `output_dir`: where `results.jsonl`, `traces/` and `summary.json` go;
    - `device`: device for model nodes that say `device: auto` (`cpu`, `cuda`, `cuda:1`);
    - `endpoints`: http node endpoints to use instead of the flow's, by node id;
    - `concurrency`: items run at once (on Ray: in each replica);
    - `fail_fast`: stop at the first failed item and raise BatchStoppedError naming it
      and the node (so papermill fails);
    - `engine`: "local" (in this process) or "ray" (a batch on a Ray cluster: `RAY_ADDRESS`,
      else a local one; a single run stays local);
    - `flow_dir`: the folder of the file the flow was exported from; relative paths in
      the flow (models, rule files) are read from there while it exists, else from the
      working folder.

    Returns the BatchSummary (counts, failures, per-node timing); shows a progress bar.
    """
    from jupyter_flow.flow import Flow

    if engine not in ENGINES:
        raise BatchInputError([Problem(f"must be 'local' or 'ray', not {engine!r}", field="engine")])
    batch = bool(inputs_path)
    options = BatchOptions(
        concurrency=concurrency if batch else 1,
        resume=batch,  # running the notebook again after a crash goes on where it stopped
        fail_fast=fail_fast,
        progress=True,
        settings={"device": device} if device else {},
        endpoints=endpoints or {},
        common_inputs=(inputs or {}) if batch else {},
    )
    source = None
    if flow_dir is not None and Path(flow_dir).is_dir():
        source = Path(flow_dir) / "(exported flow)"  # the folder relative paths are read from
    flow = Flow.from_dict(flow_spec, source=source)
    out = Path(output_dir)
    if not batch:
        return run_local(flow, [BatchItem(SINGLE_RUN_ID, dict(inputs or {}))], out, options)
    if engine == "ray":  # one loaded flow per Ray actor, `concurrency` items at once in each
        from jupyter_flow.batch.ray import run_ray

        return run_ray(flow, str(inputs_path), out, options)
    return run_local(flow, str(inputs_path), out, options)
