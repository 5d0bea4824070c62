"""Templates: bounded evaluation, and plain lookups read without Jinja's parser giving the
same references and values as Jinja."""

from __future__ import annotations

import time

import pytest

from jupyter_flow.errors import TemplateError
from jupyter_flow.expressions import _ENV, _plain_paths, _references, compile_value

PLAIN = ["{{ a.b }}", "{{ a.b['c'][0] }} and {{ d }}", "x {{ a.output.text }}!", '  {{ x.y["k"] }}  ', "{{ a[0].b }}",
         "{{a}}{{ a.z }}", "{{ a }}"]
NOT_PLAIN = ["{{ range.x }}", "{{ a.if }}", "{{- a }}", "{% if x %}{{ a }}{% endif %}", "{{ a + b }}",
             "{{ a }} {{ b | upper }}", "{# c #}{{ a }}", "{{ true }}", "{{ a[-1] }}"]


@pytest.mark.parametrize("source", PLAIN)
def test_plain_lookups_give_what_jinja_gives(source: str) -> None:
    paths = _plain_paths(source)
    assert paths is not None
    renderer = compile_value(source)
    assert renderer.refs == _references(_ENV.parse(source))
    context = {"a": {"b": {"c": [7]}, "output": {"text": "t"}, "z": 1, 0: None}, "d": 2, "x": {"y": {"k": [1]}}}
    context["a"] = {**context["a"], "0": None}
    if "[0].b" in source:
        context["a"] = [{"b": 3}]
    expected = _ENV.from_string(source).render(context)
    got = renderer(context)
    assert got == expected if isinstance(got, str) else str(got) == expected.strip()  # a lone lookup keeps its type


@pytest.mark.parametrize("source", NOT_PLAIN)
def test_anything_else_goes_to_jinja(source: str) -> None:
    assert _plain_paths(source) is None


@pytest.mark.parametrize(("source", "says"), [
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "loop items"),
    ("{% for a in x %}{% for b in x %}{% for c in x %}{% endfor %}{% endfor %}{% endfor %}", "loop items"),
    ("{{ 'a' * 10**9 }}", "too large"),
    ("{{ 2 ** big }}", "too large"),
    ("{% for i in range(99999) %}{{ 'x' * 1000 }}{% endfor %}", "characters"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself"),
    # one filter call cannot be stopped once it runs: its arguments are bounded before it starts
    ("{{ 'x' | center(2000000000) }}", "more than 1,000,000"),
    ("{{ x | slice(1000000000) }}", "more than 1,000,000"),
    ("{{ 'a' | indent(width=2000000000) }}", "more than 1,000,000"),
    ("{{ '%2000000000d' % 1 }}", "field wider"),
    ("{{ '%2000000000d' | format(1) }}", "field wider"),
    ("{{ '{:>2000000000}'.format(1) }}", "field wider"),
    ("{{ ('x' * 5000000) | replace('', 'yy') }}", "characters with `replace`"),
])
def test_runaway_templates_stop_with_an_error_naming_node_and_field(source: str, says: str) -> None:
    renderer = compile_value(source, node="n", where="config.t")
    t0 = time.perf_counter()
    with pytest.raises(TemplateError) as info:
        renderer({"x": list(range(1000)), "big": 10**9})
    print(f"{source[:40]!r}: stopped after {time.perf_counter() - t0:.2f} s")
    assert info.value.problem.node == "n" and info.value.problem.field == "config.t" and says in str(info.value)


def test_bounds_are_per_evaluation() -> None:
    renderer = compile_value("{% for i in range(90000) %}{% endfor %}" * 6 + "ok")
    assert renderer({}) == "ok" and renderer({}) == "ok"  # two evaluations, each under the bound


def test_filler_text_is_not_offered() -> None:
    # lipsum(n=3000000) ran for 100 s in one call, past any deadline
    with pytest.raises(TemplateError) as info:
        compile_value("{{ lipsum(n=3000000) }}", node="n", where="config.t")({})
    assert "lipsum" in str(info.value)


def test_filters_with_ordinary_arguments_still_work() -> None:
    renderer = compile_value("{{ 'ab' | center(6) }}|{{ '%5.1f' | format(2.25) }}|{{ x | slice(2) | list | length }}|{{ 'a-b' | replace('-', '+') }}")
    assert renderer({"x": [1, 2, 3]}) == "  ab  |  2.2|2|a+b"
