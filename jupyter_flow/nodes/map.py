"""`map`: run a flow file once per item of a list, and collect what each run answered.

Config: `flow` (the flow file, read from this flow file's folder), `items` (a template
giving the list), `item_input` (the input each item is given as, default ``item``),
`index_input` (the input given the item's position from 0, default ``index``; given only
to a flow that declares it or declares no inputs), `inputs` (the flow's other inputs, as
templates over this flow), `output` (the declared output collected for each item;
default: all of the flow's declared outputs, or every node's output when it declares
none), `concurrency` (items run at once, default 1) and `on_error`: ``fail`` (the first
item that fails fails the node, the others are cancelled), ``skip`` (a failed item is left
out) or ``keep`` (its place holds null).

Output: ``{"output": [one result per item, in order], "errors": [{"index", "error"}]}``.
The node record's ``extra["items"]`` says how each item went (status, time, error), live
while it runs and in the trace after. Validation
loads and checks the flow file without running it; a flow that maps itself, however
deeply, is refused. `timeout_s` bounds all the items together.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from jupyter_flow.errors import FlowValidationError, NodeError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.flow import Flow
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.spec import NodeSpec

__all__ = ["MapConfig", "MapNode"]

#: the flow files being mapped (or checked) further up this chain, so a flow cannot map itself
_ACTIVE: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar("map_active_flows", default=frozenset())


class MapConfig(NodeConfig):
    flow: str
    items: Any
    item_input: str = "item"
    index_input: str | None = "index"
    inputs: dict[str, Any] = {}
    output: str | None = None
    concurrency: int = Field(1, ge=1, le=1000)
    on_error: Literal["fail", "skip", "keep"] = "fail"


class _NotRunnable(Exception):
    """Why the flow file cannot be run here (for a problem, or a node error)."""


class _ItemFailed(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class MapNode(Node):
    """Run `flow` once per item of `items`; see the module docstring."""

    kind = "map"
    Config = MapConfig
    config: MapConfig

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self._flow: Flow | None = None

    def _path(self) -> Path:
        path = Path(self.config.flow).expanduser()
        return self.base_dir / path if not path.is_absolute() and self.base_dir is not None else path

    def _load(self) -> Flow:
        """The flow file, loaded and checked; a flow already mapped further up is refused."""
        key = self._path().resolve()
        active = _ACTIVE.get()
        if key in active:
            raise _NotRunnable(f"{self.config.flow} maps itself (it is already being run or checked further up)")
        token = _ACTIVE.set(active | {key})
        try:
            return Flow.load(key).validate()
        except FlowValidationError as exc:
            raise _NotRunnable(f"{self.config.flow} is not a flow this node can run: {exc}") from None
        finally:
            _ACTIVE.reset(token)

    def _loaded(self) -> Flow:
        try:
            return self._load()
        except _NotRunnable as exc:
            raise NodeError(f"config.flow: {exc}", node=self.id, retryable=False) from None

    def problems(self) -> list[Problem]:
        cfg = self.config
        if is_template(cfg.flow):
            return [Problem("give the flow file's path as it is, not a template", node=self.id, field="config.flow")]
        if not self._path().is_file():
            return [Problem(f"no flow file {cfg.flow!r} (paths are read from the flow file's folder)", node=self.id, field="config.flow")]
        try:
            flow = self._load()
        except _NotRunnable as exc:
            return [Problem(str(exc), node=self.id, field="config.flow")]
        declared = flow.spec.inputs
        problems = []
        if declared and cfg.item_input not in declared:
            problems.append(Problem(f"{cfg.flow} has no input {cfg.item_input!r} to give each item as (it takes: {', '.join(declared)})",
                                    node=self.id, field="config.item_input"))
        for name in cfg.inputs:
            if declared and name not in declared:
                problems.append(Problem(f"{cfg.flow} has no input {name!r} (it takes: {', '.join(declared)})", node=self.id,
                                        field=f"config.inputs.{name}"))
        if cfg.output is not None and cfg.output not in flow.spec.outputs:
            known = ", ".join(flow.spec.outputs) or "none"
            problems.append(Problem(f"{cfg.flow} declares no output {cfg.output!r} (it declares: {known})", node=self.id, field="config.output"))
        return problems

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"runs `{self.config.flow}` once per item"

    def warm_up(self) -> None:
        self._flow = self._loaded()

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        cfg = self.config
        flow = self._flow or self._loaded()
        flow.functions.update(ctx.functions)
        items = inputs.get("items")
        if items is None:
            items = []
        if not isinstance(items, (list, tuple)):
            raise NodeError(f"config.items: needs a list to run {cfg.flow} for each item, got {type(items).__name__}", node=self.id,
                            retryable=False)
        declared = flow.spec.inputs
        give_index = cfg.index_input is not None and (not declared or cfg.index_input in declared)
        extra = dict(inputs.get("inputs") or {})
        report: list[dict[str, Any]] = [{"index": i, "status": "pending"} for i in range(len(items))]
        ctx.record.extra["items"] = report
        limit = asyncio.Semaphore(cfg.concurrency)
        key = self._path().resolve()

        async def one(index: int, item: Any) -> Any:
            async with limit:
                given = {**extra, cfg.item_input: item}
                if give_index:
                    given[str(cfg.index_input)] = index
                report[index]["status"] = "running"
                started = time.perf_counter()
                token = _ACTIVE.set(_ACTIVE.get() | {key})
                try:
                    result = await flow.arun(given, http_client=ctx.http, raise_on_error=False)
                except FlowValidationError as exc:
                    result, error = None, "; ".join(str(p) for p in exc.problems)
                finally:
                    _ACTIVE.reset(token)
                report[index]["duration_s"] = round(time.perf_counter() - started, 6)
                if result is not None and result.ok:
                    report[index]["status"] = "ok"
                    answered = result.flow_outputs if result.flow_outputs is not None else result.outputs
                    return answered.get(cfg.output) if cfg.output is not None else answered
                error = str(result.error) if result is not None else error
                report[index].update(status="error", error=error)
                raise _ItemFailed(index, error)

        outcomes: list[Any] = [None] * len(items)
        errors: list[dict[str, Any]] = []
        if cfg.on_error == "fail":
            tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
            try:
                if tasks:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:  # the first failure (or a cancellation) ends the others
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            failed: list[BaseException] = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
            unexpected = [e for e in failed if not isinstance(e, _ItemFailed)]
            if unexpected:
                raise unexpected[0]
            if failed:
                first = min((e for e in failed if isinstance(e, _ItemFailed)), key=lambda e: e.index)
                raise NodeError(f"item {first.index} of {len(items)} failed in {cfg.flow}: {first}", node=self.id, retryable=False) from None
            outcomes = [t.result() for t in tasks]
        else:
            done = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)), return_exceptions=True)
            for i, value in enumerate(done):
                if isinstance(value, _ItemFailed):
                    errors.append({"index": i, "error": str(value)})
                elif isinstance(value, BaseException):
                    raise value
                else:
                    outcomes[i] = value
            if cfg.on_error == "skip":
                failed_at = {e["index"] for e in errors}
                outcomes = [v for i, v in enumerate(outcomes) if i not in failed_at]
        return {"output": outcomes, "errors": errors}
