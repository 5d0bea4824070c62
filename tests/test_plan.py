"""Checks before any run: every problem names the node and field, and the CLI exits 2
with a message instead of a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from servers import AsgiServer

from jupyter_flow import Flow, FlowValidationError, Problem
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.registry import NodeRegistry
from jupyter_flow.serve.app import flow_app


def _tpl(node_id: str, text: str = "x") -> dict[str, Any]:
    return {"id": node_id, "type": "template", "config": {"template": text}}


def _cli() -> str:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return str(exe) if exe.exists() else shutil.which("jupyter-flow") or "jupyter-flow"


def _problems(data: dict[str, Any]) -> list[Problem]:
    problems = Flow.from_dict(data).problems()
    assert problems, "the flow should be invalid"
    return problems


BAD_FLOWS: dict[str, dict[str, Any]] = {
    "unknown_type": {"nodes": [{"id": "clf", "type": "sklearn", "config": {}}]},
    "duplicate_ids": {"nodes": [_tpl("a"), _tpl("a")]},
    "edge_to_missing": {"nodes": [_tpl("a")], "edges": [{"from": "a", "to": "ghost"}]},
    "cycle": {
        "nodes": [_tpl("a"), _tpl("b"), _tpl("c"), _tpl("d")],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "d"}, {"from": "d", "to": "b"}],
    },
    "unknown_node_ref": {"nodes": [_tpl("report", "{{ ghost.output.text }}")]},
    "not_upstream": {
        "nodes": [_tpl("a"), _tpl("b", "{{ c.output.text }}"), _tpl("c")],
        "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}],
    },
    "invalid_when": {
        "nodes": [_tpl("a"), _tpl("b")],
        "edges": [{"from": "a", "to": "b", "when": "a.output.text =="}],
    },
    "undeclared_input": {
        "inputs": {"document": {"type": "string"}},
        "nodes": [_tpl("a", "{{ inputs.documnet }}")],
    },
}


def test_unknown_node_type_lists_known_kinds() -> None:
    (p,) = _problems(BAD_FLOWS["unknown_type"])
    assert (p.node, p.field) == ("clf", "type")
    assert "sklearn" in p.message
    for kind in ("http", "python", "template", "switch", "vote", "torch", "transformers"):
        assert kind in p.message


def test_duplicate_node_ids() -> None:
    (p,) = _problems(BAD_FLOWS["duplicate_ids"])
    assert (p.node, p.field) == ("a", "id") and "duplicate" in p.message


def test_edges_to_and_from_missing_nodes() -> None:
    data = {"nodes": [_tpl("a")], "edges": [{"from": "a", "to": "ghost"}, {"from": "phantom", "to": "a"}]}
    problems = _problems(data)
    by_edge = {(p.edge, p.field): p.message for p in problems}
    assert "missing node 'ghost'" in by_edge[(0, "to")] and "a -> ghost" in by_edge[(0, "to")]
    assert "missing node 'phantom'" in by_edge[(1, "from")]


def test_cycle_names_the_nodes_on_it() -> None:
    (p,) = _problems(BAD_FLOWS["cycle"])
    assert "cycle" in p.message
    on_cycle = p.message.split("cycle: ", 1)[1].replace("->", " ").split()
    # `a` leads into the cycle but is not on it
    assert set(on_cycle) == {"b", "c", "d"} and on_cycle[0] == on_cycle[-1]
    assert p.node in {"b", "c", "d"}


def test_self_loop_is_reported() -> None:
    problems = _problems({"nodes": [_tpl("a")], "edges": [{"from": "a", "to": "a"}]})
    assert any(p.node == "a" and "itself" in p.message for p in problems)


def test_reference_to_unknown_node() -> None:
    (p,) = _problems(BAD_FLOWS["unknown_node_ref"])
    assert (p.node, p.field) == ("report", "config.template")
    assert "unknown node 'ghost'" in p.message


def test_reference_to_a_node_that_is_not_upstream_names_both() -> None:
    (p,) = _problems(BAD_FLOWS["not_upstream"])
    assert p.node == "b" and p.field.startswith("config.")
    assert "'c'" in p.message and "'b'" in p.message and "upstream" in p.message


def test_reference_to_a_downstream_node_is_not_upstream() -> None:
    data = {"nodes": [_tpl("a", "{{ b.output.text }}"), _tpl("b")], "edges": [{"from": "a", "to": "b"}]}
    (p,) = _problems(data)
    assert p.node == "a" and "'b'" in p.message and "not upstream" in p.message


def test_when_may_only_read_the_source_and_its_upstream() -> None:
    data = {
        "nodes": [_tpl("a"), _tpl("b"), _tpl("c")],
        "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "c", "when": "{{ b.output.text == 'x' }}"}],
    }
    (p,) = _problems(data)
    assert (p.node, p.edge, p.field) == ("c", 1, "when") and "'b'" in p.message


def test_invalid_when() -> None:
    (p,) = _problems(BAD_FLOWS["invalid_when"])
    assert (p.node, p.edge, p.field) == ("b", 0, "when")
    assert "a.output.text ==" in p.message


def test_undeclared_input() -> None:
    (p,) = _problems(BAD_FLOWS["undeclared_input"])
    assert (p.node, p.field) == ("a", "config.template")
    assert "inputs.documnet" in p.message and "document" in p.message


def test_undeclared_bare_name_when_inputs_are_declared() -> None:
    data = {"inputs": {"document": {}}, "nodes": [_tpl("a", "{{ documnet }}")]}
    (p,) = _problems(data)
    assert p.node == "a" and "documnet" in p.message


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "nodes": [_tpl("a", "{{ ghost.output }}"), {"id": "b", "type": "nope"}, _tpl("c"), _tpl("c")],
        "edges": [{"from": "a", "to": "zz"}],
    }
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict(data).validate()
    messages = str(info.value)
    assert "problems" in messages
    for bit in ("ghost", "'nope'", "duplicate", "zz"):
        assert bit in messages


def test_valid_flow_has_no_problems() -> None:
    flow = Flow.from_dict({"nodes": [_tpl("a"), _tpl("b", "{{ a.output.text }}")], "edges": [{"from": "a", "to": "b"}]})
    assert flow.problems() == []
    assert flow.validate() is flow


EXPECTED_IN_MESSAGE = {
    "unknown_type": ["node 'clf'", "field 'type'", "sklearn", "known:"],
    "duplicate_ids": ["node 'a'", "field 'id'", "duplicate"],
    "edge_to_missing": ["edges[0]", "a -> ghost", "missing node 'ghost'"],
    "cycle": ["form a cycle: ", "field 'edges'"],
    "unknown_node_ref": ["node 'report'", "field 'config.template'", "ghost"],
    "not_upstream": ["node 'b'", "'c'", "not upstream"],
    "invalid_when": ["node 'b'", "edges[0]", "field 'when'"],
    "undeclared_input": ["node 'a'", "inputs.documnet"],
}


@pytest.mark.parametrize("case", sorted(BAD_FLOWS))
def test_cli_validate_exits_2_naming_node_and_field(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.flow.json"
    path.write_text(json.dumps(BAD_FLOWS[case]))
    proc = subprocess.run([_cli(), "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and str(path) in proc.stderr
    for bit in EXPECTED_IN_MESSAGE[case]:
        assert bit in proc.stderr, (bit, proc.stderr)
    if case == "cycle":
        on_cycle = proc.stderr.split("cycle: ", 1)[1].replace("->", " ").split()
        assert set(on_cycle) == {"b", "c", "d"}


@pytest.mark.parametrize("text", ["nodes: [a, b\n", "nodes:\n  - id: a\n   type: http\n"])
def test_cli_malformed_yaml_exits_2_with_line_and_column(text: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.flow.yaml"
    path.write_text(text)
    for command in ("validate", "run"):
        proc = subprocess.run([_cli(), command, str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "line " in proc.stderr and "column " in proc.stderr and str(path) in proc.stderr


def test_cli_run_of_an_invalid_flow_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cycle.flow.yaml"
    path.write_text(json.dumps(BAD_FLOWS["cycle"]))
    proc = subprocess.run([_cli(), "run", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "cycle" in proc.stderr
    assert proc.stdout == ""


def test_a_long_chain_plans_with_references_checked_along_it() -> None:
    # reachability is answered per question, not by an ancestor set per node (memory grew
    # with the square of the nodes); the answers must stay the same
    n = 3000
    nodes = [{"id": "n0", "type": "template", "config": {"template": "start"}}]
    nodes += [{"id": f"n{i}", "type": "template", "config": {"template": f"{{{{ n{i - 1}.output.text }}}} and {{{{ n0.output.text }}}}"}}
              for i in range(1, n)]
    edges = [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, n)]
    flow = Flow.from_dict({"nodes": nodes, "edges": edges}).validate()
    assert flow.plan.upstream["n3"] == {"n0", "n1", "n2"}
    assert flow.plan.downstream[f"n{n - 3}"] == {f"n{n - 2}", f"n{n - 1}"}
    assert flow.plan.downstream.get("ghost", set()) == set()
    backwards = [*nodes[:-1], {"id": f"n{n - 1}", "type": "template", "config": {"template": "{{ n5.output.text }}"}},
                 {"id": "early", "type": "template", "config": {"template": f"{{{{ n{n - 1}.output.text }}}}"}}]
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict({"nodes": backwards, "edges": [*edges, {"from": "n0", "to": "early"}]}).validate()
    (problem,) = info.value.problems
    assert problem.node == "early" and f"'n{n - 1}', which is not upstream of 'early'" in problem.message


# -- the plan's node objects ----------------------------------------------------------
class LoadingConfig(NodeConfig):
    model: str


class Loading(Node):
    """A node kind with a model to load: it notes each warm-up, and one model cannot load."""

    kind = "loading"
    Config = LoadingConfig
    loaded: ClassVar[list[tuple[str, str]]] = []

    def warm_up(self) -> None:
        model = self.spec.config["model"]
        if model == "broken":
            raise OSError(f"cannot read the weights of {model}")
        Loading.loaded.append((self.id, model))

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        return {"model": inputs["model"]}


def loading_flow(canary_model: str) -> Flow:
    registry = NodeRegistry(entry_points_group=None)
    registry.register(Loading)
    data = {
        "nodes": [
            {"id": "first", "type": "loading", "config": {"model": "a"},
             "variants": [{"id": "main", "weight": 9}, {"id": "canary", "weight": 1, "config": {"model": canary_model}}]},
            _tpl("between", "{{ first.output.model }}"),
            {"id": "last", "type": "loading", "config": {"model": "c"}},
        ],
        "edges": [{"from": "first", "to": "between"}, {"from": "between", "to": "last"}],
    }
    return Flow.from_dict(data, registry=registry)


def test_node_objects_are_every_node_then_its_variants_in_file_order() -> None:
    flow = loading_flow("b")
    objects = flow.plan.node_objects()
    assert [(o.id, o.spec.config.get("model")) for o in objects] == [
        ("first", "a"), ("first", "a"), ("first", "b"), ("between", None), ("last", "c")]
    assert objects[0] is flow.plan.nodes["first"].node


def test_a_served_flow_loads_every_variant_and_health_names_one_that_cannot_load() -> None:
    # a canary that cannot load must show at start, not when a request first picks it
    Loading.loaded.clear()
    with AsgiServer(flow_app(loading_flow("b"))) as srv:
        assert httpx.get(f"{srv.url}/health").json()["status"] == "ok"
    assert sorted(Loading.loaded) == [("first", "a"), ("first", "a"), ("first", "b"), ("last", "c")]
    with AsgiServer(flow_app(loading_flow("broken"))) as srv:
        health = httpx.get(f"{srv.url}/health")
    assert health.status_code == 503
    assert "node 'first'" in health.json()["error"] and "cannot read the weights of broken" in health.json()["error"]


# -- changing one node's config -------------------------------------------------------
def test_with_config_gives_a_validated_copy_and_leaves_the_flow_alone() -> None:
    flow = Flow.from_dict({"name": "greet", "inputs": {"name": {"type": "text"}},
                           "nodes": [_tpl("hello", "Hello {{ name }}"), _tpl("after", "{{ hello.output.text }}!")],
                           "edges": [{"from": "hello", "to": "after"}]})
    flow.register("unused", len)
    louder = flow.with_config("hello", template="HELLO {{ name }}")
    assert louder.run({"name": "Ada"}).outputs["after"] == {"text": "HELLO Ada!"}
    assert flow.run({"name": "Ada"}).outputs["after"] == {"text": "Hello Ada!"}
    assert flow.spec.node("hello").config == {"template": "Hello {{ name }}"}
    assert louder.functions == {"unused": len} and louder.registry is flow.registry
    same = flow.with_config("hello", {"template": "Hi {{ name }}"})
    assert same.run({"name": "Bo"}).outputs["hello"] == {"text": "Hi Bo"}


def test_with_config_keeps_the_folder_relative_paths_are_read_from(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def shout(text):\n    return {'text': text.upper()}\n")
    path = tmp_path / "shout.flow.yaml"
    path.write_text(json.dumps({"nodes": [{"id": "s", "type": "python",
                                           "config": {"function": "helpers:shout", "input_mapping": {"text": "hi"}}}]}))
    flow = Flow.load(path).with_config("s", input_mapping={"text": "there"})
    assert flow.source == path and flow.run().outputs["s"] == {"text": "THERE"}


def test_with_config_refuses_a_change_that_breaks_the_flow_naming_node_and_field() -> None:
    flow = Flow.from_dict({"nodes": [_tpl("a"), _tpl("b", "{{ a.output.text }}")], "edges": [{"from": "a", "to": "b"}]})
    with pytest.raises(FlowValidationError) as info:
        flow.with_config("a", template="{{ b.output.text }}")  # reads a node downstream of it
    (problem,) = info.value.problems
    assert (problem.node, problem.field) == ("a", "config.template") and "not upstream" in problem.message
    with pytest.raises(FlowValidationError) as info:
        flow.with_config("a", temperature=3)
    assert info.value.problems[0].field == "config.temperature"
    with pytest.raises(FlowValidationError) as info:
        flow.with_config("ghost", template="x")
    (problem,) = info.value.problems
    assert problem.node == "ghost" and "no such node (the flow has: a, b)" in problem.message
    assert flow.validate() is flow
