"""The shape of a flow's graph, checked once for everyone: `plan` (validate, run, serve,
batch) and the workbench's editor ask the same `check_graph`, so a flow is a good graph
or a bad one in every place alike.

What it checks: duplicate node ids, node ids that are also input names, edges from or to
missing nodes, edges from a node to itself, edges given twice (same ends, `on`, `branch`
and `when`), and cycles. Each problem names the node and the edge (by index) it is on.
What it gives besides: each node's parents, a topological order, and reachability
questions ("is A upstream of B?", "what is downstream of A?") answered without building
an ancestor set per node, so that a 10,000-node flow plans in linear memory.
"""

from __future__ import annotations

import graphlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jupyter_flow.errors import Problem

if TYPE_CHECKING:
    from jupyter_flow.spec import FlowSpec

__all__ = ["START", "Graph", "check_graph", "duplicate_ids", "self_edge"]

#: The pseudo-node an edge starts from to mark an entry node (the seed format's `start`).
#: Defined here, below the spec (`jupyter_flow.spec` gives it too), so that the spec can
#: check a raw flow's graph before it is a FlowSpec.
START = "start"


@dataclass
class Graph:
    """A flow's nodes and edges as a graph, with what is wrong with it."""

    node_ids: list[str]
    parents: dict[str, set[str]]
    order: list[str]  # topological; empty when the edges form a cycle
    problems: list[Problem] = field(default_factory=list)

    _masks: dict[str, int] | None = field(default=None, repr=False)
    _positions: dict[str, int] | None = field(default=None, repr=False)

    def is_upstream(self, node: str, of: str) -> bool:
        """Whether `node` comes before `of` along the edges (never, when there is a cycle)."""
        masks = self._ancestor_masks()
        position = self._position().get(node)
        return position is not None and bool(masks.get(of, 0) >> position & 1)

    def upstream(self, node: str) -> set[str]:
        """Every node before `node` along the edges (none when there is a cycle)."""
        mask = self._ancestor_masks().get(node, 0)
        return {nid for i, nid in enumerate(self.order) if mask >> i & 1}

    def downstream(self, node: str) -> set[str]:
        """Every node after `node` along the edges (a walk, linear in the edges)."""
        children: dict[str, list[str]] = defaultdict(list)
        for child, parents in self.parents.items():
            for p in parents:
                children[p].append(child)
        seen: set[str] = set()
        todo = [node]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    def _position(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = {nid: i for i, nid in enumerate(self.order)}
        return self._positions

    def _ancestor_masks(self) -> dict[str, int]:
        # Each node's ancestors as one integer with a bit per topological position, built
        # in one pass in topological order: n * n / 8 bytes in all (12 MB for a 10,000-node
        # chain), where a set of names per node took about 60 * n * n.
        if self._masks is None:
            position = self._position()
            masks: dict[str, int] = {}
            for nid in self.order:
                mask = 0
                for p in self.parents.get(nid, ()):
                    mask |= masks[p] | 1 << position[p]
                masks[nid] = mask
            self._masks = masks
        return self._masks


def duplicate_ids(ids: list[str]) -> list[Problem]:
    """A problem for each node id given a second time."""
    seen: set[str] = set()
    problems = []
    for nid in ids:
        if nid in seen:
            problems.append(Problem("duplicate node id (each node needs its own id)", node=nid, field="id"))
        seen.add(nid)
    return problems


def self_edge(index: int, source: str, target: object) -> Problem | None:
    """The problem of edge `index` going from a node to itself, if it does."""
    if source != target:
        return None
    return Problem(f"edge {source} -> {source} goes from a node to itself", node=source, edge=index)


def check_graph(spec: FlowSpec) -> Graph:
    problems = duplicate_ids([node.id for node in spec.nodes])
    ids = list(dict.fromkeys(node.id for node in spec.nodes))
    seen_ids = set(ids)
    for name in sorted(seen_ids & (set(spec.inputs) | {"inputs"})):
        problems.append(Problem(f"node id '{name}' is also the name of a flow input; rename one", node=name, field="id"))

    known = ", ".join(ids) or "none"
    parents: dict[str, set[str]] = defaultdict(set)
    seen_edges: dict[tuple[object, ...], int] = {}
    for i, edge in enumerate(spec.edges):
        if edge.source != START and edge.source not in seen_ids:
            problems.append(Problem(f"edge {edge.describe()} starts at a missing node '{edge.source}' (nodes: {known})", edge=i, field="from"))
        if edge.target not in seen_ids:
            problems.append(Problem(f"edge {edge.describe()} ends at a missing node '{edge.target}' (nodes: {known})", edge=i, field="to"))
        looped = self_edge(i, edge.source, edge.target)
        if looped is not None:
            problems.append(looped)
        key = (edge.source, edge.target, edge.on, edge.branch, edge.when)
        if key in seen_edges:
            problems.append(Problem(f"edge {edge.describe()} is given twice (the same ends and settings); delete one", edge=i))
        else:
            seen_edges[key] = i
        if edge.source in seen_ids and edge.target in seen_ids and edge.source != edge.target:
            parents[edge.target].add(edge.source)

    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for nid in ids:
        sorter.add(nid, *sorted(parents.get(nid, ())))
    order: list[str] = []
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        problems.append(Problem(f"the edges form a cycle: {' -> '.join(cycle)}", node=cycle[0], field="edges"))
    return Graph(ids, dict(parents), order, problems)
