"""Compile a FlowSpec into a Plan the engine can run, collecting every problem on the way.

Checks, each giving a Problem that names the node, edge and field: the graph's shape
(`jupyter_flow.graph.check_graph`: duplicate ids, dangling, self and repeated edges,
cycles), unknown node types (listing the known ones), node config schemas, templates and
`when` conditions that do not parse, references to unknown or non-upstream nodes and to
undeclared inputs, branches a source node cannot take.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_flow.errors import MissingDependencyError, Problem, TemplateError
from jupyter_flow.expressions import (
    Condition,
    Reference,
    Renderer,
    combine,
    compile_condition,
    compile_fields,
    compile_value,
    is_function_name,
)
from jupyter_flow.graph import Graph, check_graph
from jupyter_flow.nodes.base import Node
from jupyter_flow.nodes.registry import NodeRegistry
from jupyter_flow.spec import START, EdgeSpec, FlowSpec, NodeSpec
from jupyter_flow.trace import fingerprint

__all__ = ["Plan", "PlannedEdge", "PlannedNode", "build_plan"]


@dataclass
class PlannedEdge:
    spec: EdgeSpec
    condition: Condition | None
    #: whether the edge is taken whenever its `on` matches: no `when`, no `branch`
    always: bool = field(init=False)

    def __post_init__(self) -> None:
        self.always = self.condition is None and self.spec.branch is None


@dataclass
class PlannedNode:
    spec: NodeSpec
    node: Node
    renderer: Renderer
    fingerprint: str
    variants: dict[str, tuple[Node, Renderer]] = field(default_factory=dict)
    variant_key: Renderer | None = None
    incoming: list[PlannedEdge] = field(default_factory=list)  # from real nodes
    start_edges: list[PlannedEdge] = field(default_factory=list)
    outgoing: list[PlannedEdge] = field(default_factory=list)
    has_error_edges: bool = False
    id: str = field(init=False)  # the spec's (an attribute: read on every step of a run)
    #: whether each run is one attempt of `node.run` as it is: no retries, no deadline for
    #: the engine to keep (the same for its variants, which share its kind and settings)
    runs_as_is: bool = field(init=False)

    def __post_init__(self) -> None:
        spec, node = self.spec, self.node
        self.id = spec.id
        self.runs_as_is = not (spec.retry or node.default_retry or (spec.timeout_s and not node.keeps_own_deadline))

    def node_objects(self) -> list[Node]:
        """The node object, then its variants' in the order the flow file lists them."""
        return [self.node, *(node for node, _ in self.variants.values())]


class _Related(Mapping[str, set[str]]):
    """Each node's upstream (or downstream) nodes, worked out when asked for one node, so
    that a plan never holds a set per node (memory would grow with the square of the nodes)."""

    def __init__(self, graph: Graph, *, down: bool) -> None:
        self.graph = graph
        self.down = down

    def __getitem__(self, node: str) -> set[str]:
        if node not in self.graph.parents and node not in self.graph.node_ids:
            raise KeyError(node)
        return self.graph.downstream(node) if self.down else self.graph.upstream(node)

    def __iter__(self) -> Iterator[str]:
        return iter(self.graph.node_ids)

    def __len__(self) -> int:
        return len(self.graph.node_ids)


@dataclass
class Plan:
    spec: FlowSpec
    nodes: dict[str, PlannedNode]
    order: list[str]
    input_names: set[str]
    graph: Graph
    #: the flow's declared outputs, compiled (rendered once the run is over)
    outputs: dict[str, Renderer] = field(default_factory=dict)

    def node_objects(self) -> list[Node]:
        """Every node object of the plan, variants included: node by node in the flow
        file's order, each node's own object first, then its variants' in the order the
        file lists them. A variant's object has its node's id."""
        return [node for pn in self.nodes.values() for node in pn.node_objects()]

    @property
    def upstream(self) -> Mapping[str, set[str]]:
        return _Related(self.graph, down=False)

    @property
    def downstream(self) -> Mapping[str, set[str]]:
        return _Related(self.graph, down=True)


def _fingerprint(spec: NodeSpec) -> str:
    return fingerprint(spec.model_dump())


class _References:
    """Checks that the names a template uses resolve: declared inputs, and nodes that are
    upstream of the node using them. Collects the input names used on the way."""

    def __init__(self, spec: FlowSpec, graph: Graph, problems: list[Problem]) -> None:
        self.node_ids = set(graph.node_ids)
        self.inputs = set(spec.inputs)
        self.declared = bool(spec.inputs)
        self.graph = graph
        self.problems = problems
        self.used: set[str] = set()

    def check(self, refs: set[Reference], *, owner: str | None, field: str, after: str | None, edge: int | None = None) -> None:
        """Check the names `refs` read where the nodes upstream of `after` (and, for an
        edge's condition, `after` itself) have run; `after=None`: no node has run."""
        for ref in refs:
            problem = self._problem(ref, owner, after, edge is not None)
            if problem is not None:
                self.problems.append(Problem(problem, node=owner, field=field, edge=edge))

    def _readable(self, name: str, after: str | None, inclusive: bool) -> bool:
        if after is None:
            return False
        return (inclusive and name == after) or self.graph.is_upstream(name, of=after)

    def _problem(self, ref: Reference, owner: str | None, after: str | None, inclusive: bool) -> str | None:
        inputs = self.inputs
        if ref.name == "inputs":
            if ref.attr is None:
                return None
            self.used.add(ref.attr)
            if self.declared and ref.attr not in inputs:
                return f"references undeclared input 'inputs.{ref.attr}' (declared: {', '.join(sorted(inputs)) or 'none'})"
            return None
        if ref.name in self.node_ids:
            if self._readable(ref.name, after, inclusive):
                return None
            if owner:
                return (f"references node '{ref.name}', which is not upstream of '{owner}': add an edge from "
                        f"'{ref.name}' (or a node after it) to '{owner}'")
            return f"references node '{ref.name}', which is not upstream here"
        if is_function_name(ref.name) and ref.name not in inputs:
            return (f"'{ref.name}' is a template function, not a value: `{ref.name}.{ref.attr}` reads nothing "
                    f"(nodes: {', '.join(sorted(self.node_ids)) or 'none'})")
        if ref.attr == "output" or (ref.name not in inputs and self.declared):
            known = ", ".join(sorted(self.node_ids)) or "none"
            if ref.attr == "output":
                return f"references unknown node '{ref.name}' (nodes: {known})"
            return f"references unknown name '{ref.name}' (nodes: {known}; declared inputs: {', '.join(sorted(inputs)) or 'none'})"
        self.used.add(ref.name)
        return None


def _load_kind(registry: NodeRegistry, ns: NodeSpec, problems: list[Problem]) -> type[Node] | None:
    """The node class of `ns.type`, or None with a problem on the node's `type` field."""
    try:
        return registry.get(ns.type)
    except KeyError as exc:
        problems.append(Problem(str(exc.args[0]), node=ns.id, field="type"))
    except MissingDependencyError as exc:
        problems.append(Problem(str(exc), node=ns.id, field="type"))
    except (ImportError, AttributeError, TypeError) as exc:
        problems.append(Problem(f"node type {ns.type!r} cannot be loaded: {exc}", node=ns.id, field="type"))
    return None


def _run_config(cls: type[Node], config: dict[str, Any]) -> dict[str, Any]:
    """The config fields rendered before the node runs: all but the node's `own_templates`."""
    return {k: v for k, v in config.items() if k not in cls.own_templates} if cls.own_templates else config


def _plan_node(
    ns: NodeSpec, cls: type[Node], base_dir: Path | None, refs: _References, problems: list[Problem]
) -> PlannedNode | None:
    """A node's config, templates and variants checked and compiled; None when unusable."""
    nid = ns.id
    config_problems = cls.check_config(ns)
    problems.extend(config_problems)
    if ns.on_error == "default" and ns.default is None:
        problems.append(Problem("on_error: default needs a `default:` value", node=nid, field="default"))
    if config_problems:
        return None
    try:
        node = cls(ns)
        node.base_dir = base_dir
        config = _run_config(cls, ns.config)
        fields = compile_fields(config, node=nid, where="config")
        renderer = combine(config, fields, node=nid, where="config")
    except TemplateError as exc:
        problems.append(exc.problem)
        return None
    problems.extend(node.problems())
    for key, part in fields.items():
        refs.check(part.refs, owner=nid, field=f"config.{key}", after=nid)
    pn = PlannedNode(ns, node, renderer, _fingerprint(ns))
    _plan_variants(pn, cls, base_dir, refs, problems)
    if ns.variant_key:
        try:
            pn.variant_key = compile_value(ns.variant_key, node=nid, where="variant_key")
            refs.check(pn.variant_key.refs, owner=nid, field="variant_key", after=nid)
        except TemplateError as exc:
            problems.append(exc.problem)
    return pn


def _plan_variants(pn: PlannedNode, cls: type[Node], base_dir: Path | None, refs: _References, problems: list[Problem]) -> None:
    """Each variant of the node checked and compiled (its config merged over the node's)
    into `pn.variants`; its problems name the variant's field."""
    ns, nid = pn.spec, pn.id
    for j, variant in enumerate(ns.variants):
        vspec = ns.model_copy(update={"config": {**ns.config, **variant.config}, "variants": []})
        vproblems = cls.check_config(vspec)
        if vproblems:
            problems.extend(Problem(p.message, node=nid, field=f"variants[{j}].{p.field}") for p in vproblems)
            continue
        try:
            vrenderer = compile_value(_run_config(cls, vspec.config), node=nid, where=f"variants[{j}].config")
        except TemplateError as exc:
            problems.append(exc.problem)
            continue
        refs.check(vrenderer.refs, owner=nid, field=f"variants[{j}].config", after=nid)
        vnode = cls(vspec)
        vnode.base_dir = base_dir
        pn.variants[variant.id] = (vnode, vrenderer)
    if ns.variants and sum(v.weight for v in ns.variants) <= 0:
        problems.append(Problem("variants need a positive total weight", node=nid, field="variants"))


def _plan_edges(spec: FlowSpec, planned: dict[str, PlannedNode], refs: _References, problems: list[Problem]) -> None:
    """Compile edge conditions, check branches, and hang each edge on its nodes."""
    for i, edge in enumerate(spec.edges):
        condition = None
        if edge.when is not None:
            try:
                condition = compile_condition(edge.when, node=edge.target, where="when")
            except TemplateError as exc:
                problems.append(Problem(exc.problem.message, node=edge.target, field="when", edge=i))
            else:
                after = edge.source if edge.source != START else None
                refs.check(condition.refs, owner=edge.target, field="when", after=after, edge=i)
        if edge.branch is not None and edge.source in planned:
            problems.extend(_branch_problems(edge, i, planned[edge.source]))
        if edge.target not in planned or (edge.source != START and edge.source not in planned):
            continue
        pe = PlannedEdge(edge, condition)
        if edge.source == START:
            planned[edge.target].start_edges.append(pe)
        else:
            planned[edge.target].incoming.append(pe)
            planned[edge.source].outgoing.append(pe)
            if edge.on == "error":
                planned[edge.source].has_error_edges = True


def _branch_problems(edge: EdgeSpec, index: int, source: PlannedNode) -> list[Problem]:
    """What is wrong with edge `index`'s `branch`: a source that does not branch, or a
    branch it cannot choose."""
    branches = source.node.branches()
    if branches is None:
        return [Problem(f"`branch` needs a node that branches (a switch) as source; '{edge.source}' is a "
                        f"'{source.spec.type}' node", edge=index, field="branch")]
    if edge.branch not in branches:
        return [Problem(f"'{edge.source}' has no branch {edge.branch!r} (branches: {', '.join(branches)})",
                        edge=index, field="branch")]
    return []


def build_plan(spec: FlowSpec, registry: NodeRegistry, base_dir: Path | None = None) -> tuple[Plan | None, list[Problem]]:
    """The steps: the graph's shape (`check_graph`), each node (kind, config, templates,
    variants), then the edges (conditions, branches). Every problem is collected; the plan
    is given only when there are none."""
    graph = check_graph(spec)
    problems = list(graph.problems)
    refs = _References(spec, graph, problems)
    planned: dict[str, PlannedNode] = {}
    first = {ns.id: ns for ns in reversed(spec.nodes)}  # a duplicated id: its first node
    for nid in graph.node_ids:
        ns = first[nid]
        cls = _load_kind(registry, ns, problems)
        if cls is None:
            continue
        pn = _plan_node(ns, cls, base_dir, refs, problems)
        if pn is not None:
            planned[nid] = pn
    _plan_edges(spec, planned, refs, problems)
    outputs = _plan_outputs(spec, refs, problems)
    if problems or not graph.order:
        return None, problems
    return Plan(spec, planned, graph.order, refs.inputs | refs.used, graph, outputs), []


def _plan_outputs(spec: FlowSpec, refs: _References, problems: list[Problem]) -> dict[str, Renderer]:
    """The declared outputs compiled; they are read after the run, so any node may appear."""
    outputs: dict[str, Renderer] = {}
    for name, value in spec.outputs.items():
        try:
            renderer = compile_value(value, where=f"outputs.{name}")
        except TemplateError as exc:
            problems.append(Problem(exc.problem.message, field=f"outputs.{name}"))
            continue
        others = {ref for ref in renderer.refs if ref.name not in refs.node_ids}
        refs.check(others, owner=None, field=f"outputs.{name}", after=None)
        outputs[name] = renderer
    return outputs
