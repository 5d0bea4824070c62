"""The one entry point of notebooks written by `export_notebook`: `run_exported`.

An exported notebook holds the flow's spec and a `parameters` cell; its run cell is a
single call of `jupyter_flow.run_exported(FLOW_SPEC, inputs=..., ...)` with those
parameters, and its last cell `summary.check()`. So what an exported notebook does is
defined here, in the package, and a notebook exported today keeps working when the
package's insides change.

Where files are read from, so that a notebook copied to another machine or a staging
folder runs there:

- paths in the flow's node configs (models, rule files, templates, modules beside the
  flow) are read from `flow_dir`; by default the folder the notebook runs from (its
  working folder) when the flow's files are there, else the folder the flow was
  exported from (while it exists on this machine);
- file inputs (`inputs`, `inputs_path`) are read relative to the working folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_flow.batch.items import BatchItem
from jupyter_flow.batch.local import run_local
from jupyter_flow.batch.options import BatchOptions, parse_max_failures
from jupyter_flow.batch.results import BatchSummary
from jupyter_flow.errors import FlowError, FlowValidationError, Problem

__all__ = ["ENGINES", "ParameterError", "check_parameters", "choose_flow_dir", "run_exported"]

#: The values of the `engine` parameter.
ENGINES = ("local", "ray")
#: The item id of a single run (no `inputs_path`).
SINGLE_RUN_ID = "run"

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off", "")


class ParameterError(FlowValidationError):
    """A notebook parameter has a wrong value; each problem names the parameter, the
    value given and what it takes."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        self.source = None
        lines = "\n".join(f"  - {p}" for p in self.problems)
        FlowError.__init__(self, f"invalid notebook parameters ({len(self.problems)}):\n{lines}")


def _bad(problems: list[Problem], name: str, value: Any, expected: str) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 200 else shown[:200] + "..."
    problems.append(Problem(f"parameter `{name}` is {shown} ({type(value).__name__}); expected {expected}"))


def _mapping(problems: list[Problem], name: str, value: Any, what: str) -> dict[str, Any]:
    """A dict parameter, or its JSON text (as `papermill -p NAME '{...}'` gives it)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    _bad(problems, name, value, f"a dict of {what} (or its JSON text, e.g. -y \"{name}: {{...}}\")")
    return {}


def check_parameters(
    *,
    inputs: Any = None,
    inputs_path: Any = None,
    output_dir: Any = "out",
    device: Any = None,
    endpoints: Any = None,
    concurrency: Any = 4,
    fail_fast: Any = False,
    max_failures: Any = 0,
    engine: Any = "local",
    flow_dir: Any = None,
) -> dict[str, Any]:
    """The notebook's parameters checked and normalised (JSON text of a dict read, `"8"`
    as 8, `"true"` as True); raises ParameterError listing every wrong one, each with
    the parameter's name, the value given and the type expected."""
    problems: list[Problem] = []
    out: dict[str, Any] = {}
    out["inputs"] = _mapping(problems, "inputs", inputs, "input names to values")
    endpoints_ = _mapping(problems, "endpoints", endpoints, "node ids to URLs")
    if any(not isinstance(v, str) or not v for v in endpoints_.values()):
        _bad(problems, "endpoints", endpoints, "a dict of node ids to URLs (strings)")
    out["endpoints"] = endpoints_
    for name, value, optional in (("inputs_path", inputs_path, True), ("output_dir", output_dir, False),
                                  ("flow_dir", flow_dir, True)):
        if value is None and optional:
            out[name] = None
        elif isinstance(value, (str, os.PathLike)) and str(value).strip():
            out[name] = value
        else:
            _bad(problems, name, value, "a path (a string)" + (" or None" if optional else ""))
            out[name] = None
    if out["flow_dir"] is not None and not Path(out["flow_dir"]).expanduser().is_dir():
        _bad(problems, "flow_dir", flow_dir, "a folder that exists here (or None: the working folder)")
    if device is not None and not (isinstance(device, str) and device.strip()):
        _bad(problems, "device", device, "a device name such as 'cpu', 'cuda' or 'cuda:1', or None")
    out["device"] = device or None
    number = concurrency
    if isinstance(concurrency, str) and concurrency.strip().isdigit():
        number = int(concurrency)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        _bad(problems, "concurrency", concurrency, "a whole number of at least 1 (int)")
        number = 1
    out["concurrency"] = number
    flag = fail_fast
    if isinstance(fail_fast, str) and fail_fast.strip().lower() in _TRUE + _FALSE:
        flag = fail_fast.strip().lower() in _TRUE
    if not isinstance(flag, bool):
        _bad(problems, "fail_fast", fail_fast, "True or False (bool)")
        flag = False
    out["fail_fast"] = flag
    try:
        out["max_failures"] = parse_max_failures(max_failures)
    except ValueError as exc:
        _bad(problems, "max_failures", max_failures, str(exc).removeprefix("must be "))
    if engine not in ENGINES:
        _bad(problems, "engine", engine, "'local' or 'ray' (str)")
    out["engine"] = engine
    if problems:
        raise ParameterError(problems)
    return out


def _flow_files_under(folder: Path, flow_files: Sequence[str]) -> bool:
    return all((folder / name).exists() for name in flow_files)


def choose_flow_dir(flow_dir: str | os.PathLike[str] | None, exported_from: str | None,
                    flow_files: Sequence[str] = ()) -> Path:
    """The folder the flow's relative paths are read from: `flow_dir` when given; else the
    working folder when it has every one of `flow_files` (the relative paths the flow
    named that existed when it was exported); else the folder it was exported from when
    that has them; else the working folder (a missing file is then named by its node)."""
    if flow_dir is not None:
        return Path(flow_dir).expanduser().resolve()
    here = Path.cwd()
    if _flow_files_under(here, flow_files):
        return here
    if exported_from and Path(exported_from).is_dir() and _flow_files_under(Path(exported_from), flow_files):
        return Path(exported_from)
    return here


def _inputs_from_here(flow: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """`inputs` with relative paths of file inputs made absolute against the working
    folder, where they exist there (so nodes never read them against `flow_dir`)."""
    out = dict(inputs)
    for name, spec in flow.spec.inputs.items():
        value = out.get(name, spec.default)
        if spec.type == "file" and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            candidate = Path.cwd() / value
            if candidate.exists():
                out[name] = str(candidate)
    return out


def run_exported(
    flow_spec: Mapping[str, Any],
    *,
    inputs: Any = None,
    inputs_path: Any = None,
    output_dir: Any = "out",
    device: Any = None,
    endpoints: Any = None,
    concurrency: Any = 4,
    fail_fast: Any = False,
    max_failures: Any = 0,
    engine: Any = "local",
    flow_dir: Any = None,
    exported_from: str | None = None,
    flow_files: Sequence[str] = (),
) -> BatchSummary:
    """Run a flow as an exported notebook does, with the notebook's parameters.

    - `flow_spec`: the flow, as `Flow.to_dict()` gives it;
    - `inputs`: one run's inputs; with `inputs_path`, inputs given to every item;
    - `inputs_path`: a folder or glob (one run per file) or a JSONL file (one run per
      line): a batch, which resumes (items already in `output_dir` are not run again);
      without it the flow runs once with `inputs` (item id `run`);
    - `output_dir`: where `results.jsonl`, `traces/` and `summary.json` go (one batch
      at a time per folder);
    - `device`: device for model nodes that say `device: auto` (`cpu`, `cuda`, `cuda:1`);
    - `endpoints`: http node endpoints to use instead of the flow's, by node id;
    - `concurrency`: items run at once (on Ray: in each replica);
    - `fail_fast`: stop at the first failed item and raise BatchStoppedError naming it
      and the node (so papermill fails);
    - `max_failures`: failed items accepted (a number, `"5%"` or `0.05`); the notebook's
      last cell, `summary.check()`, fails beyond it;
    - `engine`: "local" (in this process) or "ray" (a batch on a Ray cluster: `RAY_ADDRESS`,
      else a local one; a single run stays local);
    - `flow_dir`: the folder relative paths in the flow (models, rule files) are read
      from; None: see `choose_flow_dir` (the working folder, else `exported_from`);
    - `exported_from`, `flow_files`: written by the export: the flow file's folder then,
      and the relative paths the flow named that existed there.

    Every parameter is checked first (ParameterError names each wrong one, its value
    and the type expected), and a single run's inputs before it starts. Returns the
    BatchSummary (counts, failures, per-node timing); shows a progress bar.
    """
    from jupyter_flow.flow import Flow

    p = check_parameters(inputs=inputs, inputs_path=inputs_path, output_dir=output_dir, device=device,
                         endpoints=endpoints, concurrency=concurrency, fail_fast=fail_fast,
                         max_failures=max_failures, engine=engine, flow_dir=flow_dir)
    batch = p["inputs_path"] is not None
    base = choose_flow_dir(p["flow_dir"], exported_from, flow_files)
    flow = Flow.from_dict(flow_spec, source=base / "(exported flow)")  # relative paths are read from `base`
    given = _inputs_from_here(flow, p["inputs"])
    if not batch:
        flow.validate().resolve_inputs(given)  # a missing or wrong input fails here, named
    options = BatchOptions(
        concurrency=p["concurrency"] if batch else 1,
        resume=batch,  # running the notebook again after a crash goes on where it stopped
        fail_fast=p["fail_fast"],
        progress=True,
        settings={"device": p["device"]} if p["device"] else {},
        endpoints=p["endpoints"],
        common_inputs=given if batch else {},
        max_failures=p["max_failures"],
    )
    out = Path(p["output_dir"])
    if not batch:
        return run_local(flow, [BatchItem(SINGLE_RUN_ID, given)], out, options)
    if p["engine"] == "ray":  # one loaded flow per Ray actor, `concurrency` items at once in each
        from jupyter_flow.batch.ray import run_ray

        return run_ray(flow, str(p["inputs_path"]), out, options)
    return run_local(flow, str(p["inputs_path"]), out, options)

