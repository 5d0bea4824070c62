"""Reading a Dify DSL file within bounds, so that a hostile or broken app is refused quickly
with a message naming the file and the bound, before anything walks it.

The bounds (a real app is far inside each: the corpus's largest is 100 KB, 71 nodes, no
alias, nested 12 levels):

- bytes: `MAX_DSL_BYTES` (5 MB), read from a regular file only (`atomic.read_bounded`: a pipe
  or a device is refused before it is opened), never more than the bound;
- nesting: `MAX_DSL_DEPTH` levels, counted while YAML composes the document, so neither a
  deep block nor a deep `[[[...` is parsed past the bound (no RecursionError);
- aliases: `MAX_DSL_ALIASES` uses of `*name`, counted while composing, and `MAX_DSL_VALUES`
  values once aliases are counted at each place they appear (an alias bomb is refused
  without being expanded);
- graph: `MAX_DSL_NODES` nodes and `MAX_DSL_EDGES` edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jupyter_flow.atomic import read_bounded
from jupyter_flow.errors import FlowFileError
from jupyter_flow.spec import check_document, yaml_problem

__all__ = ["MAX_DSL_ALIASES", "MAX_DSL_BYTES", "MAX_DSL_DEPTH", "MAX_DSL_EDGES", "MAX_DSL_NODES", "MAX_DSL_VALUES", "read_dsl"]

MAX_DSL_BYTES = 5 * 1024 * 1024
MAX_DSL_DEPTH = 100
MAX_DSL_ALIASES = 1_000
MAX_DSL_VALUES = 500_000
MAX_DSL_NODES = 2_000
MAX_DSL_EDGES = 10_000


class _Refused(yaml.YAMLError):
    """A bound passed while composing; carries the message for the user."""


class _BoundedLoader(yaml.SafeLoader):
    """YAML's safe loader, counting nesting and alias uses as it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_DSL_ALIASES:
                raise _Refused(f"uses more than {MAX_DSL_ALIASES:,} aliases (*name); a Dify export has none")
            return super().compose_node(parent, index)
        if self.check_event(yaml.ScalarEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DSL_DEPTH:
            raise _Refused(f"nested more than {MAX_DSL_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _load(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_dsl(path: Path) -> Mapping[str, Any]:
    """The Dify app in `path`: a mapping with `kind: app` and `workflow.graph`, within the
    bounds above; FlowFileError naming the file (and the line, for YAML errors) otherwise."""
    source = str(path)
    try:  # a regular file only (a pipe would never end), at most MAX_DSL_BYTES
        text = read_bounded(path, max_bytes=MAX_DSL_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise FlowFileError("no such file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowFileError(f"cannot read: {exc}", source=source) from None
    try:
        data = _load(text)
    except _Refused as exc:
        raise FlowFileError(str(exc), source=source) from None
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc)
        raise FlowFileError(problem.message, source=source, line=problem.line, column=problem.column) from None
    check_document(data, source=source, max_depth=MAX_DSL_DEPTH, max_values=MAX_DSL_VALUES)
    graph = (data.get("workflow") or {}).get("graph") if isinstance(data, Mapping) else None
    if not isinstance(data, Mapping) or data.get("kind") != "app" or not isinstance(graph, Mapping):
        raise FlowFileError("not a Dify app: expected `kind: app` and `workflow.graph` (export it from Dify as DSL)", source=source)
    for part, bound in (("nodes", MAX_DSL_NODES), ("edges", MAX_DSL_EDGES)):
        items = graph.get(part)
        if isinstance(items, list) and len(items) > bound:
            raise FlowFileError(f"workflow.graph.{part} has {len(items):,} entries; a Dify app is imported with up to {bound:,}",
                                source=source)
    return data
