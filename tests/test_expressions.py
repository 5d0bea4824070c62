"""`{{ }}` templates and `when` conditions: native values, text, references, the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_flow import Flow, TemplateError
from jupyter_flow.expressions import compile_condition, compile_value


def test_lone_expression_yields_the_same_tensor_object() -> None:
    import torch

    t = torch.arange(6.0).reshape(2, 3)
    ctx = {"enc": {"output": {"hidden": t}}}
    assert compile_value("{{ enc.output.hidden }}")(ctx) is t
    assert compile_value("  {{enc.output['hidden']}}  ")(ctx) is t
    # an expression beyond a plain lookup still yields a native tensor, not its text
    doubled = compile_value("{{ enc.output.hidden * 2 }}")(ctx)
    assert isinstance(doubled, torch.Tensor) and torch.equal(doubled, t * 2)


def test_lone_expression_yields_lists_numbers_and_dicts() -> None:
    ctx = {"xs": [1, 2, 3], "n": 4, "cls": {"output": {"scores": {"a": 0.25}}}}
    xs = compile_value("{{ xs }}")(ctx)
    assert xs == [1, 2, 3] and type(xs) is list and xs is ctx["xs"]
    assert compile_value("{{ n + 1 }}")(ctx) == 5
    assert compile_value("{{ xs | length }}")(ctx) == 3
    assert compile_value("{{ cls.output.scores }}")(ctx) == {"a": 0.25}


def test_mixed_text_renders_a_string() -> None:
    ctx = {"xs": [1, 2], "name": "Ada"}
    assert compile_value("items: {{ xs }}")(ctx) == "items: [1, 2]"
    assert compile_value("{{ name }} has {{ xs | length }} items")(ctx) == "Ada has 2 items"
    assert compile_value("no braces at all")(ctx) == "no braces at all"


def test_templates_inside_nested_config() -> None:
    ctx = {"a": {"output": {"x": 1}}, "q": "hi"}
    config = {"body": {"text": "{{ q }}", "values": ["{{ a.output.x }}", 7, "q={{ q }}"]}, "fixed": True}
    assert compile_value(config)(ctx) == {"body": {"text": "hi", "values": [1, 7, "q=hi"]}, "fixed": True}


def test_a_rendered_mapping_keeps_its_keys_in_order_and_is_a_new_dict_each_time() -> None:
    # the order reaches JSON bodies and keyword arguments; a node may change what it got
    ctx = {"a": {"output": {"x": 1, "y": [2]}}, "q": "hi"}
    config = {"first": 0, "one": "{{ a.output.x }}", "mid": "m", "two": "{{ q }}!", "three": "{{ a.output.y }}", "last": None}
    render = compile_value(config)
    got = render(ctx)
    assert list(got) == list(config)
    assert got == {"first": 0, "one": 1, "mid": "m", "two": "hi!", "three": [2], "last": None}
    got["first"] = "changed"
    assert render(ctx) == {"first": 0, "one": 1, "mid": "m", "two": "hi!", "three": [2], "last": None}
    assert list(compile_value({"k": 1, "t": "{{ q }}", "z": 2})(ctx).items()) == [("k", 1), ("t", "hi"), ("z", 2)]


def test_mapping_keys_win_over_methods() -> None:
    # `items` and `keys` are dict methods; a node output field with that name must win
    ctx = {"n": {"output": {"items": ["a", "b"], "keys": 3}}}
    assert compile_value("{{ n.output.items }}")(ctx) == ["a", "b"]
    assert compile_value("{{ n.output.keys + 1 }}")(ctx) == 4


@pytest.mark.parametrize(
    "source",
    [
        "{{ s.__class__.__mro__[1].__subclasses__() }}",
        "{{ n.output.__class__ }}",
        "prefix {{ n.output.__class__ }}",
        "{{ n.output['items'].append(3) }}",
        "{{ n.output.items.pop() }}",
        "{{ s.__init__.__globals__ }}",
    ],
)
def test_sandbox_refuses_unsafe_attribute_access(source: str) -> None:
    ctx = {"s": "text", "n": {"output": {"items": [1, 2]}}}
    with pytest.raises(TemplateError, match="unsafe") as info:
        compile_value(source, node="n2", where="config.text")(ctx)
    assert (info.value.node, info.value.field) == ("n2", "config.text")
    assert ctx["n"]["output"]["items"] == [1, 2]  # nothing was changed


def test_undefined_names_and_fields_fail_with_node_and_field() -> None:
    with pytest.raises(TemplateError, match="'ghost' is undefined") as info:
        compile_value("{{ ghost }}", node="n", where="config.x")({})
    assert (info.value.node, info.value.field) == ("n", "config.x")
    with pytest.raises(TemplateError, match="has no attribute 'nope'"):
        compile_value("{{ a.output.nope }}")({"a": {"output": {}}})


def test_invalid_template_syntax_is_reported_at_compile_time() -> None:
    with pytest.raises(TemplateError, match="invalid template") as info:
        compile_value("{{ a.output. }}", node="n", where="config.text")
    assert info.value.node == "n"


@pytest.mark.parametrize("source", ["{{ a.output.label == 'yes' }}", "a.output.label == 'yes'", "  {{a.output.label=='yes'}} "])
def test_when_accepts_braces_and_bare_expressions(source: str) -> None:
    cond = compile_condition(source)
    assert cond({"a": {"output": {"label": "yes"}}}) is True
    assert cond({"a": {"output": {"label": "no"}}}) is False
    assert {r.name for r in cond.refs} == {"a"}


@pytest.mark.parametrize("source", ["a.output.label ==", "{{ a.output.label }} and more {{ b }}", "   "])
def test_invalid_when_is_a_template_error(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_condition(source, node="b", where="edges[0].when")
    assert (info.value.node, info.value.field) == ("b", "edges[0].when")


def _echo(**kwargs: Any) -> dict[str, Any]:
    return dict(kwargs)


def test_flow_inputs_by_name_and_through_inputs() -> None:
    flow = Flow.from_dict(
        {
            "inputs": {"name": {"type": "string"}, "count": {"type": "integer", "default": 2}},
            "nodes": [
                {
                    "id": "echo",
                    "type": "python",
                    "config": {
                        "function": "echo",
                        "input_mapping": {"a": "{{name}}", "b": "{{ inputs.name }}", "c": "{{ inputs.count * count }}"},
                    },
                }
            ],
        },
        functions={"echo": _echo},
    )
    result = flow.run({"name": "Ada", "count": "3"})  # "3" is coerced to the declared integer
    assert result.outputs["echo"] == {"a": "Ada", "b": "Ada", "c": 9}


def test_node_outputs_reach_downstream_as_live_objects() -> None:
    import torch

    made: dict[str, Any] = {}

    def make() -> dict[str, Any]:
        made["t"] = torch.ones(2, 2)
        return {"tensor": made["t"], "labels": ["x", "y"]}

    def check(tensor: Any, labels: Any, text: str) -> dict[str, Any]:
        return {"same": tensor is made["t"], "labels_type": type(labels).__name__, "text": text}

    flow = Flow.from_dict(
        {
            "nodes": [
                {"id": "make", "type": "python", "config": {"function": "make"}},
                {
                    "id": "check",
                    "type": "python",
                    "config": {
                        "function": "check",
                        "input_mapping": {
                            "tensor": "{{make.output.tensor}}",
                            "labels": "{{ make.output.labels }}",
                            "text": "first: {{ make.output.labels[0] }}",
                        },
                    },
                },
            ],
            "edges": [{"from": "make", "to": "check"}],
        },
        functions={"make": make, "check": check},
    )
    result = flow.run()
    assert result.outputs["check"] == {"same": True, "labels_type": "list", "text": "first: x"}
    assert result["check"].inputs["input_mapping"]["tensor"] is made["t"]
