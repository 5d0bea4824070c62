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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jupyter_flow.batch.engines import batch_engines
from jupyter_flow.batch.items import BatchItem
from jupyter_flow.batch.options import BatchOptions, parse_max_failures
from jupyter_flow.batch.results import BatchSummary
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.flow import Flow

__all__ = ["DEFAULTS", "ParameterError", "check_parameters", "choose_flow_dir", "run_exported"]

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


#: The notebook's parameters (the names of its `parameters` cell) and their defaults.
DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "inputs": None,
    "inputs_path": None,
    "output_dir": "out",
    "device": None,
    "endpoints": None,
    "concurrency": 4,
    "fail_fast": False,
    "max_failures": 0,
    "engine": "local",
    "flow_dir": None,
    "cache": None,
    "rerun_changed": False,
})


def check_parameters(**given: Any) -> dict[str, Any]:
    """The notebook's parameters (`DEFAULTS` for those not given) checked and normalised
    (JSON text of a dict read, `"8"` as 8, `"true"` as True); raises ParameterError
    listing every wrong one, each with the parameter's name, the value given and the type
    expected."""
    problems = [Problem(f"there is no parameter `{name}` (the notebook's: {', '.join(DEFAULTS)})")
                for name in given if name not in DEFAULTS]
    values = {**DEFAULTS, **given}
    out = {name: check(problems, name, values[name]) for name, check in _CHECKS.items()}
    if problems:
        raise ParameterError(problems)
    return out


def _inputs(problems: list[Problem], name: str, value: Any) -> dict[str, Any]:
    return _mapping(problems, name, value, "input names to values")


def _endpoints(problems: list[Problem], name: str, value: Any) -> dict[str, Any]:
    endpoints = _mapping(problems, name, value, "node ids to URLs")
    if any(not isinstance(v, str) or not v for v in endpoints.values()):
        _bad(problems, name, value, "a dict of node ids to URLs (strings)")
    return endpoints


def _path(problems: list[Problem], name: str, value: Any, *, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return value
    _bad(problems, name, value, "a path (a string)" + (" or None" if optional else ""))
    return None


def _output_dir(problems: list[Problem], name: str, value: Any) -> Any:
    return _path(problems, name, value, optional=False)


def _flow_dir(problems: list[Problem], name: str, value: Any) -> Any:
    folder = _path(problems, name, value)
    if folder is not None and not Path(folder).expanduser().is_dir():
        _bad(problems, name, value, "a folder that exists here (or None: the working folder)")
    return folder


def _device(problems: list[Problem], name: str, value: Any) -> Any:
    if value is not None and not (isinstance(value, str) and value.strip()):
        _bad(problems, name, value, "a device name such as 'cpu', 'cuda' or 'cuda:1', or None")
    return value or None


def _concurrency(problems: list[Problem], name: str, value: Any) -> int:
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        _bad(problems, name, value, "a whole number of at least 1 (int)")
        return 1
    return number


def _flag(problems: list[Problem], name: str, value: Any) -> bool:
    flag = value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        flag = value.strip().lower() in _TRUE
    if not isinstance(flag, bool):
        _bad(problems, name, value, "True or False (bool)")
        return False
    return flag


def _max_failures(problems: list[Problem], name: str, value: Any) -> int | float | None:
    try:
        return parse_max_failures(value)
    except ValueError as exc:
        _bad(problems, name, value, str(exc).removeprefix("must be "))
        return None


def _cache(problems: list[Problem], name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value or None
    return _path(problems, name, value)


def _engine(problems: list[Problem], name: str, value: Any) -> Any:
    engines = batch_engines()
    if value not in engines:
        _bad(problems, name, value, " or ".join(repr(known) for known in engines.names()) + " (str)")
    return value


#: How each parameter is checked, in the order of `DEFAULTS`.
_CHECKS: Mapping[str, Callable[[list[Problem], str, Any], Any]] = MappingProxyType({
    "inputs": _inputs,
    "inputs_path": _path,
    "output_dir": _output_dir,
    "device": _device,
    "endpoints": _endpoints,
    "concurrency": _concurrency,
    "fail_fast": _flag,
    "max_failures": _max_failures,
    "engine": _engine,
    "flow_dir": _flow_dir,
    "cache": _cache,
    "rerun_changed": _flag,
})


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
    inputs: Any = DEFAULTS["inputs"],
    inputs_path: Any = DEFAULTS["inputs_path"],
    output_dir: Any = DEFAULTS["output_dir"],
    device: Any = DEFAULTS["device"],
    endpoints: Any = DEFAULTS["endpoints"],
    concurrency: Any = DEFAULTS["concurrency"],
    fail_fast: Any = DEFAULTS["fail_fast"],
    max_failures: Any = DEFAULTS["max_failures"],
    engine: Any = DEFAULTS["engine"],
    flow_dir: Any = DEFAULTS["flow_dir"],
    cache: Any = DEFAULTS["cache"],
    rerun_changed: Any = DEFAULTS["rerun_changed"],
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
    - `cache`: None (the default: every node runs), True (the node cache's default
      folder) or a folder: nodes whose kind, inputs and code are unchanged are not run
      again (see `jupyter_flow.cache`);
    - `rerun_changed`: a batch resumes only results of this very flow (another version's
      refuse the run, naming them); True runs their items again, their old results moved
      to `output_dir/earlier-<time>/`;
    - `exported_from`, `flow_files`: written by the export: the flow file's folder then,
      and the relative paths the flow named that existed there.

    Every parameter is checked first (ParameterError names each wrong one, its value
    and the type expected), and a single run's inputs before it starts. Returns the
    BatchSummary (counts, failures, per-node timing); shows a progress bar.
    """
    p = check_parameters(inputs=inputs, inputs_path=inputs_path, output_dir=output_dir, device=device,
                         endpoints=endpoints, concurrency=concurrency, fail_fast=fail_fast,
                         max_failures=max_failures, engine=engine, flow_dir=flow_dir, cache=cache,
                         rerun_changed=rerun_changed)
    batch = p["inputs_path"] is not None
    base = choose_flow_dir(p["flow_dir"], exported_from, flow_files)
    flow = Flow.from_dict(flow_spec, source=base / "(exported flow)")  # relative paths are read from `base`
    given = _inputs_from_here(flow, p["inputs"])
    if not batch:
        flow.validate().resolve_inputs(given)  # a missing or wrong input fails here, named
    options = BatchOptions(
        concurrency=p["concurrency"] if batch else 1,
        resume=batch,  # running the notebook again after a crash goes on where it stopped
        rerun_changed=batch and p["rerun_changed"],
        fail_fast=p["fail_fast"],
        progress=True,
        settings={"device": p["device"]} if p["device"] else {},
        endpoints=p["endpoints"],
        common_inputs=given if batch else {},
        max_failures=p["max_failures"],
        cache=p["cache"],
    )
    out = Path(p["output_dir"])
    if not batch:  # a single run stays in this process
        return batch_engines().get("local").run(flow, [BatchItem(SINGLE_RUN_ID, given)], out, options)
    return batch_engines().get(p["engine"]).run(flow, str(p["inputs_path"]), out, options)

