"""The flow file: the seed format, round trips, and the errors a user sees for a broken file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow import EdgeSpec, Flow, FlowFileError, FlowSpec, FlowValidationError, NodeSpec
from jupyter_flow.dify import import_dify
from jupyter_flow.editor import parse_yaml
from jupyter_flow.nodes.rules import RuleSetError, load_rules
from jupyter_flow.spec import YamlProblem, dump_spec, load_spec, spec_from_dict, yaml_problem

RICH: dict[str, Any] = {
    "spec_version": 1,
    "name": "contract-review",
    "description": "every kind of field a flow file can hold",
    "inputs": {
        "document": {"type": "file", "default": "samples/contract.pdf"},
        "threshold": {"type": "number", "default": 0.5, "description": "risk cut-off"},
        "note": {"type": "string", "required": False},
    },
    "nodes": [
        {
            "id": "extract",
            "type": "python",
            "title": "Extract text",
            "config": {"function": "textwrap:dedent", "input_mapping": {"text": "{{document}}"}},
        },
        {
            "id": "score",
            "type": "http",
            "config": {
                "endpoint": "http://127.0.0.1:9/score",
                "input_mapping": {"text": "{{extract.output.result}}", "ids": [1, 2, 3]},
                "headers": {"Authorization": "Bearer ${TOKEN}"},
                "output_key": "score",
            },
            "retry": {"max_attempts": 3, "backoff_s": 0.25},
            "timeout_s": 2.5,
            "on_error": "default",
            "default": {"score": 0.0},
            "variants": [
                {"id": "a", "weight": 0.9},
                {"id": "b", "weight": 0.1, "config": {"endpoint": "http://127.0.0.1:9/score-v2"}},
            ],
            "variant_key": "{{document}}",
            "shadow": True,
        },
        {
            "id": "route",
            "type": "switch",
            "config": {"cases": {"high": "{{ score.output.score > threshold }}"}, "default": "low"},
        },
        {"id": "escalate", "type": "template", "config": {"template": "escalate {{document}}"}},
        {"id": "archive", "type": "template", "config": {"template": "archive {{document}}"}},
        {"id": "alert", "type": "template", "config": {"template": "failed: {{ score.error.message }}"}},
    ],
    "edges": [
        {"from": "start", "to": "extract"},
        {"from": "extract", "to": "score", "label": "text"},
        {"from": "score", "to": "route"},
        {"from": "route", "to": "escalate", "branch": "high"},
        {"from": "route", "to": "archive", "branch": "low", "when": "score.output.score >= 0"},
        {"from": "score", "to": "alert", "on": "error"},
    ],
    "layout": {"extract": {"x": 80.0, "y": 120.0}, "score": {"x": 240.5, "y": 120.0}},
    "timeout_s": 30.0,
    "max_concurrency": 4,
}


def test_seed_flow_loads_as_is(seed_flow_path: Path) -> None:
    flow = Flow.load(seed_flow_path).validate()
    assert [n.type for n in flow.spec.nodes] == ["http", "http"]
    cleaner, intent = flow.plan.nodes["cleaner"], flow.plan.nodes["intent"]
    # `start` is not a node: its edge marks `cleaner` as an entry node.
    assert "start" not in flow.plan.nodes
    assert [e.spec.target for e in cleaner.start_edges] == ["cleaner"]
    assert cleaner.incoming == []
    assert [e.spec.source for e in intent.incoming] == ["cleaner"]
    assert intent.start_edges == []
    assert flow.spec.node("cleaner").config["output_key"] == "cleaned_text"
    # the flow reads `user_input` though it declares no inputs
    assert flow.plan.input_names == {"user_input"}


def test_seed_flow_round_trips_through_yaml_and_json(seed_flow_path: Path, tmp_path: Path) -> None:
    spec = load_spec(seed_flow_path)
    for name in ("seed.flow.yaml", "seed.flow.json"):
        dump_spec(spec, tmp_path / name)
        assert load_spec(tmp_path / name) == spec


@pytest.mark.parametrize("suffix", [".flow.yaml", ".flow.json"])
def test_every_field_survives_a_round_trip(tmp_path: Path, suffix: str) -> None:
    spec = spec_from_dict(RICH)
    path = tmp_path / f"rich{suffix}"
    dump_spec(spec, path)
    again = load_spec(path)
    assert again == spec
    # the text on disk is the format its name says
    text = path.read_text()
    if suffix.endswith("json"):
        assert json.loads(text)["spec_version"] == 1
    else:
        assert text.startswith("spec_version: 1")
    # and dumping again gives the same text (nothing drifts between saves)
    dump_spec(again, tmp_path / f"again{suffix}")
    assert (tmp_path / f"again{suffix}").read_text() == text
    # the round-tripped flow is still valid as a whole
    assert Flow(again).problems() == []


def test_round_trip_keeps_edges_from_to_names(tmp_path: Path) -> None:
    spec = spec_from_dict(RICH)
    text = dump_spec(spec)
    assert "from: start" in text and "to: extract" in text
    edge = spec.edges[4]
    assert isinstance(edge, EdgeSpec)
    assert (edge.source, edge.target, edge.branch, edge.when) == ("route", "archive", "low", "score.output.score >= 0")
    node = spec.node("score")
    assert isinstance(node, NodeSpec) and node.retry is not None and node.retry.max_attempts == 3
    assert isinstance(spec, FlowSpec) and spec.layout["score"].x == 240.5


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.flow.yaml"
    path.write_text("nodes:\n  - id: a\n    type: http\n   config: {}\n")
    with pytest.raises(FlowFileError) as info:
        Flow.load(path)
    assert (info.value.line, info.value.column) == (4, 4)
    message = str(info.value)
    assert str(path) in message and "line 4, column 4" in message


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.flow.json"
    path.write_text('{\n  "nodes": [\n    {"id": "a",, "type": "http"}\n  ]\n}\n')
    with pytest.raises(FlowFileError) as info:
        Flow.load(path)
    assert (info.value.line, info.value.column) == (3, 16)
    assert "line 3, column 16" in str(info.value)


def test_missing_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="no such file"):
        Flow.load(tmp_path / "nope.flow.yaml")


def test_unknown_field_names_node_and_field() -> None:
    data = {"nodes": [{"id": "clean", "type": "http", "config": {"endpoint": "http://x"}, "retries": 3}]}
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict(data)
    (problem,) = info.value.problems
    assert (problem.node, problem.field) == ("clean", "retries")
    assert "unknown field" in problem.message
    assert "node 'clean'" in str(info.value) and "field 'retries'" in str(info.value)


def test_unknown_config_field_names_node_field_and_known_fields() -> None:
    flow = Flow.from_dict({"nodes": [{"id": "clean", "type": "http", "config": {"endpont": "http://x"}}]})
    problems = {p.field: p for p in flow.problems()}
    assert problems["config.endpont"].node == "clean"
    assert "endpoint" in problems["config.endpont"].message  # the known fields point at the typo
    assert problems["config.endpoint"].node == "clean"  # and the required one is missing


def test_unknown_top_level_field() -> None:
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict({"nodes": [], "edgez": []})
    assert [(p.node, p.field) for p in info.value.problems] == [(None, "edgez")]


def test_node_without_type_or_endpoint() -> None:
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict({"nodes": [{"id": "cleaner", "config": {"url": "http://x"}}]})
    (problem,) = info.value.problems
    assert (problem.node, problem.field) == ("cleaner", "type")
    assert "no 'type'" in problem.message and "endpoint" in problem.message


def test_node_id_must_be_usable_in_templates() -> None:
    with pytest.raises(FlowValidationError) as info:
        Flow.from_dict({"nodes": [{"id": "my-node", "type": "template", "config": {"template": "x"}}]})
    (problem,) = info.value.problems
    assert problem.field == "id" and "my-node" in problem.message


def test_a_flow_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.flow.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(FlowValidationError, match="must be a mapping"):
        Flow.load(path)


def test_every_reader_of_yaml_names_the_same_line_and_column(tmp_path: Path) -> None:
    # flow files, rule files, Dify apps and YAML typed into the workbench: one place computes
    # where a YAML error is, so each names the line and column the same way
    broken = "nodes:\n  - id: a\n    type: http\n   config: {}\n"
    path = tmp_path / "broken.flow.yaml"
    path.write_text(broken)
    with pytest.raises(FlowFileError) as flow_error:
        Flow.load(path)
    with pytest.raises(RuleSetError) as rules_error:
        load_rules(path)
    with pytest.raises(FlowFileError) as dify_error:
        import_dify(path, tmp_path / "out.flow.yaml")
    with pytest.raises(FlowValidationError) as typed_error:
        parse_yaml(broken, what="config")
    assert (flow_error.value.line, flow_error.value.column) == (dify_error.value.line, dify_error.value.column) == (4, 4)
    assert "not valid YAML at line 4, column 4: " in str(rules_error.value)
    assert "the YAML does not parse (line 4, column 4): " in str(typed_error.value)
    said = {str(flow_error.value).split("line 4, column 4: ")[1], str(rules_error.value).split("line 4, column 4: ")[1],
            str(typed_error.value).split("(line 4, column 4): ")[1]}
    assert len(said) == 1, said


def test_a_yaml_error_is_placed_at_its_problem_else_at_its_context() -> None:
    with pytest.raises(yaml.YAMLError) as info:
        yaml.safe_load("a: [1, 2\nb: 3\n")
    problem = yaml_problem(info.value)
    assert (problem.line, problem.column, problem.place) == (2, 2, "line 2, column 2")
    assert problem.message.startswith("expected ','")
    only_context = yaml.MarkedYAMLError(context="while reading a flow", context_mark=yaml.Mark("f", 0, 6, 1, None, None))
    assert yaml_problem(only_context) == YamlProblem("while reading a flow", 7, 2)
    assert yaml_problem(yaml.YAMLError("no place")) == YamlProblem("no place")
    assert YamlProblem("no place").place == ""
