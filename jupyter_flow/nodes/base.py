"""The node contract, written once.

A node kind is a small class:

- ``kind``: the name flow files use in ``type:``.
- ``Config``: a frozen pydantic model of its ``config`` (``extra="forbid"``), checked when
  the flow is validated, before anything runs. Fields that take ``{{ }}`` templates are
  typed loosely (``Any`` or ``str``) since a template resolves only at run time.
- ``__init__(spec)`` is light: it keeps the spec and the parsed config. Nothing heavy.
- ``problems()`` returns static problems beyond the schema (a module that does not import,
  a rule file with a bad regex) as `Problem` objects naming the field.
- ``warm_up()`` does the heavy loading (models, files) once; it is synchronous and the
  engine calls it off the event loop, under a lock, before the first run.
- ``async run(inputs, ctx)`` does the work. ``inputs`` is the node's config with every
  template resolved (this is what the trace records as the node's inputs). It returns the
  node's output, by convention a dict. Blocking work goes through
  ``await ctx.run_blocking(fn, ...)``; ``CancelledError`` is never swallowed.
  Failures raise `NodeError` (``retryable=False`` when another attempt cannot help);
  any other exception is wrapped into a `NodeError` that names the node.
- ``default_retry`` is the retry policy when the flow file gives none.
- ``own_templates`` names config fields whose templates the node evaluates itself, over
  a context of its own (an ``http`` node's ``output_mapping`` reads the answer): the plan
  neither renders them before the run nor reads their references; the node compiles them
  in ``__init__`` and reports their problems from ``problems()``.
- Other modules ask a node, never probe its config: ``branches()`` (the branch names a
  node can choose, for edges with ``branch:``), ``device_request()`` (the device a model
  node asks for), ``describe()`` (one line for the UI and exported notebooks),
  ``runtime_info()`` (where it runs, for health checks) and, of the kind,
  ``endpoint_changes(url)`` (the config changes that point it at another endpoint, for a
  batch's endpoint overrides).
- ``cache_token()`` adds to the cache key whatever the config alone does not pin down
  (the code of a Python function, say), so a re-run after an edit does not reuse stale
  results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from jupyter_flow.errors import Problem
from jupyter_flow.spec import NodeSpec, RetrySpec

if TYPE_CHECKING:
    import httpx

    from jupyter_flow.trace import NodeRecord, RunResult

__all__ = ["Node", "NodeConfig", "NodeContext"]

T = TypeVar("T")


class NodeConfig(BaseModel):
    """Base of every node kind's config model."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class NodeContext:
    """What a running node may use: its record, the run, a shared HTTP client, threads."""

    __slots__ = ("node_id", "record", "result", "attempt", "traced", "_runtime")

    def __init__(
        self, node_id: str, record: NodeRecord, result: RunResult, runtime: Any, attempt: int = 1, traced: bool = False
    ) -> None:
        self.node_id = node_id
        self.record = record
        self.result = result
        self.attempt = attempt
        #: whether the run is traced (OpenTelemetry): a node calling out passes the trace on
        self.traced = traced
        self._runtime = runtime

    @property
    def http(self) -> httpx.AsyncClient:
        """The run's shared `httpx.AsyncClient` (connection pooling across nodes)."""
        return self._runtime.http_client()

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """Functions registered from the notebook for `python` nodes."""
        return self._runtime.functions

    @property
    def settings(self) -> Mapping[str, Any]:
        """Run-wide settings (e.g. ``device``) passed to ``Flow.run(settings=...)``."""
        return self._runtime.settings

    async def run_blocking(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work in one of the engine's worker threads, off the event loop. If
        the node's timeout passes first, control comes back at once and the thread's
        result is discarded."""
        result: T = await self._runtime.run_blocking(fn, *args, **kwargs)
        return result


class Node:
    """Base class of node kinds; see the module docstring for the contract."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[NodeConfig]] = NodeConfig
    default_retry: ClassVar[RetrySpec | None] = None
    #: True for a kind that ends its own work by its `timeout_s` (counted from the start of
    #: each attempt) with an error of its own that says more (an `http` node names the
    #: endpoint that did not answer): the engine then sets no timer of its own for it
    keeps_own_deadline: ClassVar[bool] = False
    own_templates: ClassVar[frozenset[str]] = frozenset()
    #: False for a kind users do not add themselves (one a tool writes, such as a stand-in
    #: for a node it could not import): palettes of node kinds leave it out
    palette: ClassVar[bool] = True
    #: the folder of the flow file; relative paths in a config are read from there
    base_dir: Path | None = None

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.id = spec.id
        self.config = self.Config.model_validate(spec.config)
        #: whether `warm_up` has yet to run (a kind without one is warm from the start); an
        #: attribute, not a property, as the engine reads it on every run of the node
        self.needs_warm_up = type(self).warm_up is not Node.warm_up
        self._warm_lock = threading.Lock()

    @classmethod
    def check_config(cls, spec: NodeSpec) -> list[Problem]:
        """Schema problems of a node's config, each naming the field."""
        try:
            cls.Config.model_validate(spec.config)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in ("config", *err["loc"]))
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    known = ", ".join(sorted(cls.Config.model_fields)) or "none"
                    msg = f"unknown field for a '{cls.kind}' node (known: {known})"
                elif msg.startswith("Value error, "):
                    msg = msg[len("Value error, ") :]
                problems.append(Problem(msg, node=spec.id, field=field))
            return problems
        return []

    def problems(self) -> list[Problem]:
        return []

    def warm_up(self) -> None:
        """Load what is heavy. Called once, off the event loop, before the first run."""

    def ensure_warm(self) -> None:
        if not self.needs_warm_up:
            return
        with self._warm_lock:
            if self.needs_warm_up:
                self.warm_up()
                self.needs_warm_up = False

    def cache_token(self) -> str:
        return ""

    def branches(self) -> list[str] | None:
        """The branch names this node can choose; None for a node that does not branch."""
        return None

    def device_request(self, ctx: NodeContext | None = None) -> str | None:
        """The device this node asks for (``auto``, ``cpu``, ``cuda:N``, or a template);
        None when it runs no model of its own."""
        return None

    @classmethod
    def endpoint_changes(cls, url: str) -> dict[str, Any] | None:
        """The config changes that make a node of this kind call `url` instead of the
        endpoint its config names; None for a kind that calls no endpoint."""
        return None

    def describe(self) -> str:
        """One line saying what the node does, for the UI and exported notebooks."""
        if self.spec.description or self.spec.title:
            return str(self.spec.description or self.spec.title)
        shown = [
            f"{k}: `{v}`" for k, v in self.spec.config.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 60
        ]
        return ", ".join(shown[:4]) or "(no settings)"

    def runtime_info(self) -> dict[str, Any]:
        """What a health check may show about where the node runs (device, dtype)."""
        return {}

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r}>"
