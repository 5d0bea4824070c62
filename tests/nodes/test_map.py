"""The `map` node: a flow file run once per item of a list, as users write it in flow files:
the items in order, several at once, a failed item failing the node, left out or kept as
null, the flow's other inputs, validation of the flow it runs, and a flow that maps itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow import Flow, FlowRunError, FlowValidationError, register_function

SHOUT = {"spec_version": 1, "name": "shout", "inputs": {"item": {"type": "any"}, "index": {"type": "integer"},
                                                         "suffix": {"type": "string", "default": "!"}},
         "outputs": {"text": "{{ loud.output.text }}"},
         "nodes": [{"id": "loud", "type": "template", "config": {"template": "{{ index }}:{{ item | upper }}{{ suffix }}"}}]}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def mapping(tmp_path: Path, **config: Any) -> Flow:
    write(tmp_path / "shout.flow.yaml", SHOUT)
    node = {"id": "each", "type": "map", "config": {"flow": "shout.flow.yaml", "items": "{{ words }}", **config}}
    data = {"spec_version": 1, "inputs": {"words": {"type": "list"}}, "nodes": [node]}
    return Flow.load(write(tmp_path / "main.flow.yaml", data))


def test_each_item_runs_the_flow_and_the_answers_keep_their_order(tmp_path: Path) -> None:
    flow = mapping(tmp_path, inputs={"suffix": "?"})
    result = flow.run({"words": ["a", "b", "c"]})
    assert result.ok, result.error
    assert result.outputs["each"] == {"output": [{"text": "0:A?"}, {"text": "1:B?"}, {"text": "2:C?"}], "errors": []}
    assert [i["status"] for i in result["each"].extra["items"]] == ["ok", "ok", "ok"]
    one = mapping(tmp_path, output="text").run({"words": ["x"]})
    assert one.outputs["each"]["output"] == ["0:X!"]
    assert mapping(tmp_path).run({"words": []}).outputs["each"] == {"output": [], "errors": []}


@register_function(name="map_test_nap")
def _nap(item: float) -> dict[str, Any]:
    time.sleep(item)
    return {"slept": item}


def _napping(tmp_path: Path, **config: Any) -> Flow:
    write(tmp_path / "nap.flow.yaml", {"spec_version": 1, "inputs": {"item": {"type": "any"}}, "outputs": {"slept": "{{ nap.output.slept }}"},
                                       "nodes": [{"id": "nap", "type": "python", "config": {"function": "map_test_nap", "input_mapping": {"item": "{{ item }}"}}}]})
    node = {"id": "each", "type": "map", "config": {"flow": "nap.flow.yaml", "items": "{{ naps }}", "output": "slept", **config}}
    return Flow.load(write(tmp_path / "naps.flow.yaml", {"spec_version": 1, "inputs": {"naps": {"type": "list"}}, "nodes": [node]}))


def test_concurrency_runs_items_at_the_same_time(tmp_path: Path) -> None:
    flow = _napping(tmp_path, concurrency=4)
    result = flow.run({"naps": [0.5, 0.5, 0.5, 0.5]})
    assert result.ok, result.error
    assert result.outputs["each"]["output"] == [0.5, 0.5, 0.5, 0.5]
    spans = [(i["duration_s"]) for i in result["each"].extra["items"]]
    assert len(spans) == 4 and result["each"].duration_s < sum(spans)  # they overlapped


@register_function(name="map_test_inverse")
def _inverse(item: float) -> float:
    return 1 / item


FAILING = {"spec_version": 1, "inputs": {"item": {"type": "any"}}, "outputs": {"half": "{{ half.output.result }}"},
           "nodes": [{"id": "half", "type": "python", "config": {"function": "map_test_inverse", "input_mapping": {"item": "{{ item }}"}}}]}


@pytest.mark.parametrize(("on_error", "output"), [("skip", [1.0, 0.5]), ("keep", [1.0, None, 0.5])])
def test_a_failed_item_is_left_out_or_kept_as_null(tmp_path: Path, on_error: str, output: list[Any]) -> None:
    write(tmp_path / "half.flow.yaml", FAILING)
    node = {"id": "each", "type": "map", "config": {"flow": "half.flow.yaml", "items": "{{ [1, 0, 2] }}", "output": "half", "on_error": on_error}}
    flow = Flow.load(write(tmp_path / "main.flow.yaml", {"spec_version": 1, "nodes": [node]}))
    result = flow.run()
    assert result.ok, result.error
    assert result.outputs["each"]["output"] == output
    (error,) = result.outputs["each"]["errors"]
    assert error["index"] == 1 and "half" in error["error"]


def test_a_failed_item_fails_the_node_by_default_naming_it(tmp_path: Path) -> None:
    write(tmp_path / "half.flow.yaml", FAILING)
    node = {"id": "each", "type": "map", "config": {"flow": "half.flow.yaml", "items": "{{ [1, 0, 2] }}"}}
    flow = Flow.load(write(tmp_path / "main.flow.yaml", {"spec_version": 1, "nodes": [node]}))
    with pytest.raises(FlowRunError) as info:
        flow.run()
    assert "item 1 of 3 failed in half.flow.yaml" in str(info.value)


def test_validation_checks_the_flow_it_runs_without_running_it(tmp_path: Path) -> None:
    write(tmp_path / "shout.flow.yaml", SHOUT)
    node = {"id": "each", "type": "map", "config": {"flow": "shout.flow.yaml", "items": "{{ [1] }}", "item_input": "word",
                                                    "inputs": {"colour": "red"}, "output": "loudness"}}
    flow = Flow.load(write(tmp_path / "main.flow.yaml", {"spec_version": 1, "nodes": [node]}))
    with pytest.raises(FlowValidationError) as info:
        flow.validate()
    fields = {p.field: p.message for p in info.value.problems if p.node == "each"}
    assert "no input 'word'" in fields["config.item_input"]
    assert "no input 'colour'" in fields["config.inputs.colour"]
    assert "no output 'loudness'" in fields["config.output"]
    broken = dict(SHOUT, nodes=[{"id": "loud", "type": "template", "config": {"template": "{{ nowhere.output.text }}"}}])
    write(tmp_path / "shout.flow.yaml", broken)
    node["config"] = {"flow": "shout.flow.yaml", "items": "{{ [1] }}"}
    with pytest.raises(FlowValidationError) as info:
        Flow.load(write(tmp_path / "main.flow.yaml", {"spec_version": 1, "nodes": [node]})).validate()
    assert "shout.flow.yaml is not a flow this node can run" in str(info.value) and "nowhere" in str(info.value)
    node["config"] = {"flow": "missing.flow.yaml", "items": "{{ [1] }}"}
    with pytest.raises(FlowValidationError, match="no flow file 'missing.flow.yaml'"):
        Flow.load(write(tmp_path / "main.flow.yaml", {"spec_version": 1, "nodes": [node]})).validate()


def test_a_flow_that_maps_itself_is_refused(tmp_path: Path) -> None:
    node = {"id": "again", "type": "map", "config": {"flow": "loop.flow.yaml", "items": "{{ [1] }}"}}
    flow = Flow.load(write(tmp_path / "loop.flow.yaml", {"spec_version": 1, "inputs": {"item": {"type": "any"}}, "nodes": [node]}))
    with pytest.raises(FlowValidationError, match="maps itself"):
        flow.validate()
