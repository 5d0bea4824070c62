"""`Flow`: load, validate and run a flow from Python, in a script or in a Jupyter kernel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from jupyter_flow.cache import CacheChoice, node_cache
from jupyter_flow.engine import EventCallback, execute
from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.history import HistoryChoice, run_history
from jupyter_flow.inputs import InputValidator
from jupyter_flow.nodes.python import PythonNode, default_functions, run_functions, run_source
from jupyter_flow.nodes.registry import NodeRegistry, default_registry
from jupyter_flow.plan import Plan, build_plan
from jupyter_flow.runtime import Runtime
from jupyter_flow.spec import FlowSpec, PathLike, dump_spec, load_spec, parse_spec_text, spec_from_dict, spec_to_dict
from jupyter_flow.trace import RunResult
from jupyter_flow.workers import DEFAULT_MAX_THREADS, run_sync

if TYPE_CHECKING:
    import httpx

__all__ = ["Flow"]

#: the settings of a run given none (shared, read-only)
_NO_SETTINGS: Mapping[str, Any] = MappingProxyType({})


class Flow:
    """A flow: a validated spec plus the node objects that run it.

    Node objects (and the models they load in `warm_up`) live as long as the Flow, so
    repeated runs reuse them.
    """

    def __init__(
        self,
        spec: FlowSpec,
        *,
        source: PathLike | None = None,
        registry: NodeRegistry | None = None,
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.spec = spec
        self.source = Path(source) if source is not None else None
        self.registry = registry or default_registry()
        self.functions: dict[str, Callable[..., Any]] = dict(functions or {})
        self._plan: Plan | None = None
        self._problems: list[Problem] | None = None
        self._functions_in: tuple[Plan, bool] | None = None

    # -- construction -------------------------------------------------------------
    @classmethod
    def load(cls, path: PathLike, **kwargs: Any) -> Flow:
        """Load a `.flow.yaml` / `.flow.json` file (raises FlowValidationError naming line and column)."""
        return cls(load_spec(path), source=path, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> Flow:
        return cls(spec_from_dict(data), **kwargs)

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> Flow:
        """Parse YAML (or JSON) text."""
        return cls(parse_spec_text(text), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return spec_to_dict(self.spec)

    def save(self, path: PathLike | None = None) -> Path:
        target = Path(path) if path is not None else self.source
        if target is None:
            raise ValueError("this flow has no file yet: pass a path")
        dump_spec(self.spec, target)
        self.source = target
        return target

    def with_config(self, node_id: str, changes: Mapping[str, Any] | None = None, /, **more: Any) -> Flow:
        """A new Flow whose node `node_id` has its config changed: `changes` (a mapping) and
        the keyword arguments set over the node's config, the rest kept. The new flow is
        validated (FlowValidationError names the node and field of anything the change
        broke); this flow is left as it is. It keeps this flow's file (relative paths are
        read from the same folder), node registry and registered functions."""
        try:
            node = self.spec.node(node_id)
        except KeyError:
            known = ", ".join(self.node_ids) or "none"
            raise FlowValidationError([Problem(f"no such node (the flow has: {known})", node=node_id, field="config")]) from None
        changed = node.model_copy(update={"config": {**node.config, **(changes or {}), **more}})
        nodes = [changed if n is node else n for n in self.spec.nodes]
        spec = self.spec.model_copy(update={"nodes": nodes})
        return Flow(spec, source=self.source, registry=self.registry, functions=self.functions).validate()

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Make `fn` callable from this flow's `python` nodes as `function: name`."""
        self.functions[name] = fn

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.spec.nodes]

    # -- validation --------------------------------------------------------------
    def problems(self) -> list[Problem]:
        """Every problem of the flow (empty when it is valid); nothing is raised."""
        if self._problems is None:
            self._plan, self._problems = build_plan(
                self.spec, self.registry, base_dir=self.source.resolve().parent if self.source else None
            )
        return list(self._problems)

    def validate(self) -> Flow:
        """Raise FlowValidationError listing every problem, each naming node and field."""
        problems = self.problems()
        if problems:
            raise FlowValidationError(problems, source=str(self.source) if self.source else None)
        return self

    @property
    def plan(self) -> Plan:
        if self._plan is None or self._problems:  # planned once, and valid: nothing to check again
            self.validate()
        assert self._plan is not None
        return self._plan

    def resolve_inputs(self, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
        """Declared defaults filled in, values checked and converted by the input rules
        (`jupyter_flow.inputs`), unknown and missing inputs reported together."""
        used = None if self.spec.inputs else self.plan.input_names
        return InputValidator(self.spec.inputs).validate(inputs, used=used)

    # -- running -----------------------------------------------------------------
    async def arun(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        reuse: RunResult | None = None,
        rerun: list[str] | set[str] | str | None = None,
        on_event: EventCallback | None = None,
        settings: Mapping[str, Any] | None = None,
        http_client: httpx.AsyncClient | None = None,
        raise_on_error: bool = True,
        run_id: str | None = None,
        wait_for_shadows: bool = True,
        max_threads: int = DEFAULT_MAX_THREADS,
        cache: CacheChoice = False,
        history: HistoryChoice = False,
    ) -> RunResult:
        """Run once on the current event loop.

        `reuse` takes a previous RunResult: nodes whose spec, code and resolved inputs are
        unchanged are not run again (their records say `cached`). `rerun` names nodes to run
        again anyway, with everything downstream of them ("run from here").
        With `raise_on_error` (the default) a failed run raises FlowRunError, whose
        `.result` keeps everything that finished. With `wait_for_shadows=False` the run
        returns without waiting for `shadow` variants; they complete in `result.background`
        (and must then be awaited by the caller).
        Without `http_client` the run uses the event loop's shared client
        (`jupyter_flow.http.shared_client`), so repeated runs reuse connections; it is made
        when a node first calls out (a flow of local models makes none). Blocking
        node work runs on the engine's pool of `max_threads` threads (default 64).
        `cache` (off by default) runs through the node cache (`jupyter_flow.cache`): True for
        the default folder (`$JUPYTER_FLOW_CACHE`, else `~/.cache/jupyter-flow`), a folder,
        or a `NodeCache`; a node whose kind, resolved inputs and code match a stored result
        is not run (its record says `cached`), and ok results are stored. `history` (off by
        default) records the finished run, failed or not, in the run history
        (`jupyter_flow.history`): True for the default file, a file, or a `RunHistory`.
        """
        plan = self.plan
        resolved = self.resolve_inputs(inputs)
        if isinstance(rerun, str):
            rerun = {rerun}
        if rerun:
            unknown = set(rerun) - set(plan.nodes)
            if unknown:
                raise FlowValidationError([Problem("rerun names a node that is not in the flow", node=n, field="rerun") for n in sorted(unknown)])
        functions = default_functions().snapshot()
        if self.functions:
            functions = {**functions, **self.functions}
        runtime = Runtime(functions, dict(settings) if settings else _NO_SETTINGS, http_client, max_threads=max_threads)
        # the functions of this run, for the cache keys of its python nodes (set only where
        # there are some: the context change costs every run)
        token = run_functions.set(functions) if self._calls_functions(plan) else None
        source = run_source.set(self.source) if token is not None else None
        store = None if cache is False or cache is None else node_cache(cache)
        try:
            result = await execute(plan, resolved, runtime=runtime, on_event=on_event, reuse=reuse,
                                   rerun=set(rerun) if rerun else None, run_id=run_id, wait_for_shadows=wait_for_shadows,
                                   cache=store)
        finally:
            if token is not None:
                run_functions.reset(token)
            if source is not None:
                run_source.reset(source)
            if store is not None and store is not cache:  # opened for this run: closed with it
                await asyncio.to_thread(store.close)
        runs = None if history is False or history is None else run_history(history)
        if runs is not None:
            await asyncio.to_thread(runs.record, result, spec=self.spec, flow_path=self.source)
        if raise_on_error:
            result.raise_for_status()
        return result

    def _calls_functions(self, plan: Plan) -> bool:
        """Whether the plan has a `python` node (or variant), worked out once per plan."""
        known = self._functions_in
        if known is None or known[0] is not plan:
            known = self._functions_in = (plan, any(isinstance(n, PythonNode) for n in plan.node_objects()))
        return known[1]

    def run(self, inputs: Mapping[str, Any] | None = None, **kwargs: Any) -> RunResult:
        """Run once and wait. Works in a plain script and inside a running event loop (a
        Jupyter kernel): there it runs on a background loop the process keeps (so runs
        share connections) and blocks until done. Ctrl-C stops the run."""
        return run_sync(lambda: self.arun(inputs, **kwargs))

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<Flow {self.name!r}: {len(self.spec.nodes)} nodes, {len(self.spec.edges)} edges{where}>"
