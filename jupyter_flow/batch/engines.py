"""The batch engines by name: `local` (the items run in this process) and `ray` (on a Ray
cluster; the `ray` extra), and any engine a package adds, found through the
`jupyter_flow.batch_engines` entry points when an engine is first asked for::

    [project.entry-points."jupyter_flow.batch_engines"]
    spark = "my_package.batch:SPARK_ENGINE"     # a BatchEngine

The CLI's `batch --engine NAME` and an exported notebook's `engine` parameter both pick
their engine here, so they know the same engines and say the same about an unknown one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points

from jupyter_flow.batch.items import BatchInputError
from jupyter_flow.batch.local import run_local
from jupyter_flow.batch.ray import import_ray, run_ray
from jupyter_flow.batch.results import BatchSummary
from jupyter_flow.errors import Problem

__all__ = ["ENTRY_POINT_GROUP", "BatchEngine", "BatchEngines", "batch_engines"]

ENTRY_POINT_GROUP = "jupyter_flow.batch_engines"


def _nothing_to_check() -> None:
    """An engine that needs nothing besides the package itself."""


@dataclass(frozen=True)
class BatchEngine:
    """One way to run a batch.

    - `run(flow, items, out_dir, options, **settings)` runs it and returns the
      BatchSummary: `options` (a `BatchOptions`) are what every engine shares, `settings`
      the engine's own;
    - `check()` raises MissingDependencyError, naming the extra to install, when the engine
      cannot run here (the CLI asks before it reads the flow, so that is said first);
    - `settings` names the engine's own settings (`address` for Ray).
    """

    run: Callable[..., BatchSummary]
    check: Callable[[], object] = _nothing_to_check
    settings: frozenset[str] = frozenset()


class BatchEngines:
    """Batch engines by name: the built-in ones, those of the entry points (loaded when
    asked for) and those registered at run time."""

    def __init__(self, *, entry_points_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._engines: dict[str, BatchEngine] = {
            "local": BatchEngine(run_local),
            "ray": BatchEngine(run_ray, check=import_ray, settings=frozenset({"address"})),
        }
        self._group = entry_points_group
        self._found: dict[str, str] | None = None

    def _targets(self) -> dict[str, str]:
        """The entry points' engines, name to `module:attribute`, read on first use."""
        if self._found is None:
            self._found = {ep.name: ep.value for ep in entry_points(group=self._group)} if self._group else {}
        return self._found

    def register(self, name: str, engine: BatchEngine) -> None:
        """Add (or replace) the engine called `name`."""
        if not isinstance(engine, BatchEngine):
            raise TypeError(f"a batch engine must be a BatchEngine, not {type(engine).__name__}")
        self._engines[name] = engine

    def names(self) -> list[str]:
        return sorted(set(self._engines) | set(self._targets()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._engines or name in self._targets())

    def get(self, name: str) -> BatchEngine:
        """The engine called `name`; BatchInputError (on the field `engine`) naming the
        known engines when there is none, or when a package's engine cannot be loaded."""
        engine = self._engines.get(name)
        if engine is not None:
            return engine
        target = self._targets().get(name)
        if target is None:
            known = ", ".join(self.names())
            raise BatchInputError([Problem(f"unknown batch engine {name!r} (known: {known})", field="engine")])
        engine = self._engines[name] = _load(name, target)
        return engine


def _load(name: str, target: str) -> BatchEngine:
    module, _, attr = target.partition(":")
    try:
        engine = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise BatchInputError([Problem(f"batch engine {name!r} ({target}) cannot be loaded: {exc}", field="engine")]) from exc
    if not isinstance(engine, BatchEngine):
        raise BatchInputError([Problem(f"batch engine {name!r} ({target}) is a {type(engine).__name__}, not a BatchEngine",
                                       field="engine")])
    return engine


@lru_cache(maxsize=1)
def batch_engines() -> BatchEngines:
    """The process's batch engines, gathered on first use."""
    return BatchEngines()
