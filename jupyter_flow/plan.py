"""Compile a FlowSpec into a Plan the engine can run, collecting every problem on the way.

Checks, each giving a Problem that names the node and field: unknown node types (listing
the known ones), node config schemas, duplicate ids, edges to or from missing nodes,
cycles (naming the nodes on the cycle), templates and `when` conditions that do not
parse, references to unknown or non-upstream nodes and to undeclared inputs.
"""

from __future__ import annotations

import graphlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_flow.errors import MissingDependencyError, Problem, TemplateError
from jupyter_flow.expressions import (
    Condition,
    Reference,
    Renderer,
    combine,
    compile_condition,
    compile_fields,
    compile_value,
)
from jupyter_flow.nodes.base import Node
from jupyter_flow.nodes.registry import NodeRegistry
from jupyter_flow.trace import fingerprint
from jupyter_flow.spec import START, EdgeSpec, FlowSpec, NodeSpec

__all__ = ["Plan", "PlannedEdge", "PlannedNode", "build_plan"]


@dataclass
class PlannedEdge:
    spec: EdgeSpec
    condition: Condition | None


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

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass
class Plan:
    spec: FlowSpec
    nodes: dict[str, PlannedNode]
    order: list[str]
    input_names: set[str]
    upstream: dict[str, set[str]]
    downstream: dict[str, set[str]]


def _fingerprint(spec: NodeSpec) -> str:
    return fingerprint(spec.model_dump())


def _check_refs(
    refs: set[Reference],
    *,
    owner: str | None,
    field_name: str,
    allowed: set[str],
    node_ids: set[str],
    inputs: set[str],
    declared: bool,
    problems: list[Problem],
) -> set[str]:
    """Problems for references that cannot resolve; returns the input names used."""
    used: set[str] = set()
    for ref in refs:
        if ref.name == "inputs":
            if ref.attr is not None:
                if declared and ref.attr not in inputs:
                    problems.append(Problem(f"references undeclared input 'inputs.{ref.attr}' (declared: {', '.join(sorted(inputs)) or 'none'})", node=owner, field=field_name))
                used.add(ref.attr)
            continue
        if ref.name in node_ids:
            if ref.name not in allowed:
                problems.append(
                    Problem(
                        f"references node '{ref.name}', which is not upstream of '{owner}': add an edge from "
                        f"'{ref.name}' (or a node after it) to '{owner}'" if owner else f"references node '{ref.name}', which is not upstream here",
                        node=owner,
                        field=field_name,
                    )
                )
            continue
        if ref.attr == "output" or (ref.name not in inputs and declared):
            what = "unknown node" if ref.attr == "output" else "unknown name"
            known = ", ".join(sorted(node_ids)) or "none"
            extra = f"; declared inputs: {', '.join(sorted(inputs)) or 'none'}" if what == "unknown name" else ""
            problems.append(Problem(f"references {what} '{ref.name}' (nodes: {known}{extra})", node=owner, field=field_name))
            continue
        used.add(ref.name)
    return used


def build_plan(spec: FlowSpec, registry: NodeRegistry, base_dir: Path | None = None) -> tuple[Plan | None, list[Problem]]:
    problems: list[Problem] = []
    specs: dict[str, NodeSpec] = {}
    for ns in spec.nodes:
        if ns.id in specs:
            problems.append(Problem("duplicate node id (each node needs its own id)", node=ns.id, field="id"))
        specs[ns.id] = ns
    node_ids = set(specs)

    clash = node_ids & (set(spec.inputs) | {"inputs"})
    for name in sorted(clash):
        problems.append(Problem(f"node id '{name}' is also the name of a flow input; rename one", node=name, field="id"))

    # Edges and the graph.
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    parents: dict[str, set[str]] = defaultdict(set)
    for i, edge in enumerate(spec.edges):
        where = f"edges[{i}] ({edge.describe()})"
        if edge.source != START and edge.source not in node_ids:
            problems.append(Problem(f"edge from missing node '{edge.source}' (nodes: {', '.join(sorted(node_ids))})", field=where))
        if edge.target not in node_ids:
            problems.append(Problem(f"edge to missing node '{edge.target}' (nodes: {', '.join(sorted(node_ids))})", field=where))
        if edge.source == edge.target:
            problems.append(Problem("edge from a node to itself", node=edge.source, field=where))
        if edge.source in node_ids and edge.target in node_ids and edge.source != edge.target:
            parents[edge.target].add(edge.source)
    for nid in node_ids:
        sorter.add(nid, *sorted(parents.get(nid, ())))
    order: list[str] = []
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        problems.append(Problem(f"the edges form a cycle: {' -> '.join(cycle)}", node=cycle[0], field="edges"))

    upstream: dict[str, set[str]] = {nid: set() for nid in node_ids}
    downstream: dict[str, set[str]] = {nid: set() for nid in node_ids}
    if order:
        for nid in order:
            for p in parents.get(nid, ()):
                upstream[nid] |= upstream[p] | {p}
        for nid, ups in upstream.items():
            for u in ups:
                downstream[u].add(nid)

    # Nodes: kinds, configs, templates.
    declared = bool(spec.inputs)
    inputs = set(spec.inputs)
    used_inputs: set[str] = set()
    planned: dict[str, PlannedNode] = {}
    for nid, ns in specs.items():
        try:
            cls = registry.get(ns.type)
        except KeyError as exc:
            problems.append(Problem(str(exc.args[0]), node=nid, field="type"))
            continue
        except MissingDependencyError as exc:
            problems.append(Problem(str(exc), node=nid, field="type"))
            continue
        except (ImportError, AttributeError, TypeError) as exc:
            problems.append(Problem(f"node type {ns.type!r} cannot be loaded: {exc}", node=nid, field="type"))
            continue
        config_problems = cls.check_config(ns)
        problems.extend(config_problems)
        if ns.on_error == "default" and ns.default is None:
            problems.append(Problem("on_error: default needs a `default:` value", node=nid, field="default"))
        if config_problems:
            continue
        try:
            node = cls(ns)
            node.base_dir = base_dir
            fields = compile_fields(ns.config, node=nid, where="config")
            renderer = combine(ns.config, fields, node=nid, where="config")
        except TemplateError as exc:
            problems.append(exc.problem)
            continue
        problems.extend(node.problems())
        allowed = upstream.get(nid, set())
        for key, part in fields.items():
            used_inputs |= _check_refs(part.refs, owner=nid, field_name=f"config.{key}", allowed=allowed,
                                       node_ids=node_ids, inputs=inputs, declared=declared, problems=problems)
        pn = PlannedNode(ns, node, renderer, _fingerprint(ns))
        for j, variant in enumerate(ns.variants):
            vspec = ns.model_copy(update={"config": {**ns.config, **variant.config}, "variants": []})
            vproblems = cls.check_config(vspec)
            if vproblems:
                problems.extend(Problem(p.message, node=nid, field=f"variants[{j}].{p.field}") for p in vproblems)
                continue
            try:
                vrenderer = compile_value(vspec.config, node=nid, where=f"variants[{j}].config")
            except TemplateError as exc:
                problems.append(exc.problem)
                continue
            used_inputs |= _check_refs(vrenderer.refs, owner=nid, field_name=f"variants[{j}].config", allowed=allowed,
                                       node_ids=node_ids, inputs=inputs, declared=declared, problems=problems)
            vnode = cls(vspec)
            vnode.base_dir = base_dir
            pn.variants[variant.id] = (vnode, vrenderer)
        if ns.variants and sum(v.weight for v in ns.variants) <= 0:
            problems.append(Problem("variants need a positive total weight", node=nid, field="variants"))
        if ns.variant_key:
            try:
                pn.variant_key = compile_value(ns.variant_key, node=nid, where="variant_key")
                used_inputs |= _check_refs(pn.variant_key.refs, owner=nid, field_name="variant_key", allowed=allowed,
                                           node_ids=node_ids, inputs=inputs, declared=declared, problems=problems)
            except TemplateError as exc:
                problems.append(exc.problem)
        planned[nid] = pn

    # Edge conditions and branches.
    for i, edge in enumerate(spec.edges):
        where = f"edges[{i}] ({edge.describe()})"
        condition = None
        if edge.when is not None:
            try:
                condition = compile_condition(edge.when, node=edge.target, where=f"{where}.when")
            except TemplateError as exc:
                problems.append(exc.problem)
            else:
                allowed = {edge.source} | upstream.get(edge.source, set()) if edge.source != START else set()
                used_inputs |= _check_refs(condition.refs, owner=edge.target, field_name=f"{where}.when", allowed=allowed,
                                           node_ids=node_ids, inputs=inputs, declared=declared, problems=problems)
        if edge.branch is not None and edge.source in planned:
            branches = getattr(planned[edge.source].node.config, "branches", None)
            if branches is None:
                problems.append(Problem(f"`branch` needs a switch node as source; '{edge.source}' is a '{specs[edge.source].type}' node", field=f"{where}.branch"))
            elif edge.branch not in branches:
                problems.append(Problem(f"'{edge.source}' has no branch {edge.branch!r} (branches: {', '.join(branches)})", field=f"{where}.branch"))
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

    if problems or not order:
        return None, problems
    return Plan(spec, planned, order, inputs | used_inputs, upstream, downstream), []
