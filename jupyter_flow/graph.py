"""The shape of a flow's graph, checked once for everyone: `plan` (validate, run, serve,
batch) and the workbench's editor ask the same `check_graph`, so a flow is a good graph
or a bad one in every place alike.

What it checks: duplicate node ids, node ids that are also input names, edges from or to
missing nodes, edges from a node to itself, edges given twice (same ends, `on`, `branch`
and `when`), and cycles. Each problem names the node and the edge (by index) it is on.
What it gives besides: each node's parents and a topological order.
"""

from __future__ import annotations

import graphlib
from collections import defaultdict
from dataclasses import dataclass, field

from jupyter_flow.errors import Problem
from jupyter_flow.spec import START, FlowSpec

__all__ = ["Graph", "check_graph"]


@dataclass
class Graph:
    """A flow's nodes and edges as a graph, with what is wrong with it."""

    node_ids: list[str]
    parents: dict[str, set[str]]
    order: list[str]  # topological; empty when the edges form a cycle
    problems: list[Problem] = field(default_factory=list)

    def upstream(self) -> dict[str, set[str]]:
        """Every node's ancestors (empty sets when there is a cycle)."""
        ups: dict[str, set[str]] = {nid: set() for nid in self.node_ids}
        for nid in self.order:
            for p in self.parents.get(nid, ()):
                ups[nid] |= ups[p] | {p}
        return ups


def check_graph(spec: FlowSpec) -> Graph:
    problems: list[Problem] = []
    ids: list[str] = []
    seen_ids: set[str] = set()
    for node in spec.nodes:
        if node.id in seen_ids:
            problems.append(Problem("duplicate node id (each node needs its own id)", node=node.id, field="id"))
        else:
            ids.append(node.id)
        seen_ids.add(node.id)
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
        if edge.source == edge.target:
            problems.append(Problem(f"edge {edge.describe()} goes from a node to itself", node=edge.source, edge=i))
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
